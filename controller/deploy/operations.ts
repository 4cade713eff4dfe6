import { randomUUID } from 'node:crypto';
import type { Kysely, Selectable } from 'kysely';
import type { Logger } from 'pino';
import type {
  LogLevel,
  OperationDetail,
  OperationKind,
  OperationLogEntry,
  OperationState,
  OperationStepView,
  OperationView,
  StepState,
} from '../../protocol/operations.js';
import { MAX_OPERATION_LOG_PAGE, OperationSummary } from '../../protocol/operations.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { decodeJsonColumn } from '../db/json-column.js';
import { isoAt, type Clock } from '../clock.js';
import type { OperationsTable, OperationStepsTable } from '../db/deploy-schema.js';
import type { ControllerDatabase } from '../db/schema.js';
import { SingleFlight } from '../../kit/single-flight.js';
import type { FleetEventSink } from '../events/event-log.js';

/** Log writes of one operation that may wait behind the one being written (one per host step). */
const OPERATION_LOG_MAX_QUEUED = 4096;

type Db = Kysely<ControllerDatabase>;

export const RESTART_REASON = 'controller restarted while the operation was running';
export const DEFAULT_OPERATION_LIST = 100;

export interface LogLine {
  readonly level: LogLevel;
  readonly message: string;
  readonly host?: string | null;
}

export interface StepUpdate {
  readonly hostId: string;
  readonly state: StepState;
  readonly detail?: string | null;
  readonly generation?: number;
}

export interface NewOperation {
  readonly kind: OperationKind;
  readonly actor: string;
  readonly target: string;
  readonly summary: OperationSummary;
  readonly steps: readonly {
    hostId: string;
    hostName: string;
    generation: number;
    services: number;
  }[];
}

/**
 * A running operation. Every write (log lines, step changes, the caller's own rows) goes
 * through one queue in call order, each in its own transaction, so log sequence numbers are
 * committed in order and a reader following with `afterSeq` never skips a line.
 */
export interface OperationRecorder {
  readonly id: string;
  record(
    lines: readonly LogLine[],
    step?: StepUpdate,
    extra?: (trx: Db, nowIso: string) => Promise<void>,
  ): Promise<void>;
  /** Ends the operation in `state`; `reason` says why it did not succeed (e.g. why it halted). */
  finish(
    state: OperationState,
    summary: OperationSummary,
    line: LogLine,
    reason?: string | null,
  ): Promise<void>;
}

export interface Operations {
  /** Inserts a running operation with pending steps inside `trx` (the change it carries out). */
  begin(trx: Db, op: NewOperation, first: readonly LogLine[]): Promise<OperationRecorder>;
  /**
   * Marks every operation still `running` whose controller is not in `live` (default: none is)
   * as failed, with a log line, and its unfinished steps too: they belonged to a controller
   * that died and will never end them. Returns each one's id and the hosts of the steps it
   * left unfinished.
   */
  failInterrupted(
    reason?: string,
    live?: ReadonlySet<string>,
  ): Promise<{ readonly id: string; readonly hostIds: readonly string[] }[]>;
  /**
   * Sets a halted operation running again (its reason and end cleared) with `line` in its log,
   * and gives its recorder. Throws CONFLICT unless it is `halted`, NOT_FOUND when it is unknown.
   */
  reopen(id: string, line: LogLine): Promise<OperationRecorder>;
  /**
   * Ends a halted operation `cancelled`: its steps never started become `skipped`. Throws as
   * `reopen`. `extra` runs in the same transaction.
   */
  cancel(id: string, line: LogLine, extra?: (trx: Db) => Promise<void>): Promise<OperationView>;
  /** Each step's host id and state, in no particular order. */
  stepStates(id: string): Promise<{ hostId: string; hostName: string; state: StepState }[]>;
  list(limit?: number): Promise<OperationView[]>;
  detail(id: string, afterSeq?: number): Promise<OperationDetail | undefined>;
}

async function insertLines(trx: Db, id: string, firstSeq: number, lines: readonly LogLine[], nowIso: string) {
  if (lines.length === 0) return;
  await trx
    .insertInto('operation_log')
    .values(
      lines.map((l, i) => ({
        operation_id: id,
        seq: firstSeq + i,
        time: nowIso,
        level: l.level,
        host: l.host ?? null,
        message: l.message.slice(0, 2000),
      })),
    )
    .execute();
}

export function createOperations(deps: {
  db: Db;
  clock: Clock;
  log: Logger;
  /** `operation.started` and `operation.finished` go here, in the transactions that start and end it. */
  events?: FleetEventSink;
  /** Recorded on every operation this process begins or reopens (ClusterLink.id). */
  controllerId?: string;
}): Operations {
  const { db, clock, log, events } = deps;
  const now = (): string => isoAt(clock.now());

  function recorder(id: string, nextSeq: number, kind: OperationKind): OperationRecorder {
    const turns = new SingleFlight({ name: `operation ${id} log`, maxQueued: OPERATION_LOG_MAX_QUEUED });
    let seq = nextSeq;
    const serialized = (fn: () => Promise<void>): Promise<void> => turns.run(fn);
    return {
      id,
      record(lines, step, extra) {
        return serialized(async () => {
          const nowIso = now();
          await db.transaction().execute(async (trx) => {
            if (extra) await extra(trx, nowIso);
            if (step) {
              const running = step.state === 'running';
              await trx
                .updateTable('operation_steps')
                .set({
                  state: step.state,
                  ...(step.detail !== undefined && { detail: step.detail }),
                  ...(step.generation !== undefined && { generation: step.generation }),
                  ...(running ? { started_at: nowIso } : { finished_at: nowIso }),
                })
                .where('operation_id', '=', id)
                .where('host_id', '=', step.hostId)
                .execute();
            }
            await insertLines(trx, id, seq, lines, nowIso);
          });
          seq += lines.length;
        });
      },
      finish(state, summary, line, reason = null) {
        return serialized(async () => {
          const nowIso = now();
          await db.transaction().execute(async (trx) => {
            await trx
              .updateTable('operations')
              .set({
                state,
                finished_at: nowIso,
                summary: JSON.stringify(summary),
                reason: reason === null ? null : reason.slice(0, 2000),
              })
              .where('id', '=', id)
              .execute();
            await insertLines(trx, id, seq, [line], nowIso);
            await events?.append(trx, [
              {
                kind: 'operation.finished',
                operationId: id,
                data: {
                  kind,
                  outcome: state,
                  hosts: summary.hosts,
                  failedHosts: summary.failedHosts,
                  message: line.message,
                },
              },
            ]);
          });
          seq += 1;
        });
      },
    };
  }

  /** The halted operation `id` (its kind and next log seq), or throws NOT_FOUND / CONFLICT. */
  async function halted(trx: Db, id: string): Promise<{ kind: OperationKind; nextSeq: number }> {
    const row = await trx
      .selectFrom('operations')
      .select(['kind', 'state'])
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row) throw new CorralError(ErrorCode.NOT_FOUND, `no operation ${id}`);
    if (row.state !== 'halted') {
      throw new CorralError(
        ErrorCode.CONFLICT,
        `operation ${id} is ${row.state}; only a halted one resumes or is cancelled`,
      );
    }
    const last = await trx
      .selectFrom('operation_log')
      .select((eb) => eb.fn.max('seq').as('seq'))
      .where('operation_id', '=', id)
      .executeTakeFirst();
    return { kind: row.kind as OperationKind, nextSeq: Number(last?.seq ?? 0) + 1 };
  }

  return {
    async reopen(id, line) {
      const nowIso = now();
      const { kind, nextSeq } = await db.transaction().execute(async (trx) => {
        const h = await halted(trx, id);
        await trx
          .updateTable('operations')
          .set({ state: 'running', finished_at: null, reason: null, controller: deps.controllerId ?? null })
          .where('id', '=', id)
          .execute();
        await insertLines(trx, id, h.nextSeq, [line], nowIso);
        return h;
      });
      return recorder(id, nextSeq + 1, kind);
    },

    async cancel(id, line, extra) {
      const nowIso = now();
      await db.transaction().execute(async (trx) => {
        const h = await halted(trx, id);
        await trx
          .updateTable('operations')
          .set({ state: 'cancelled', finished_at: nowIso })
          .where('id', '=', id)
          .execute();
        await trx
          .updateTable('operation_steps')
          .set({ state: 'skipped', detail: 'cancelled before it was sent', finished_at: nowIso })
          .where('operation_id', '=', id)
          .where('state', '=', 'pending')
          .execute();
        await insertLines(trx, id, h.nextSeq, [line], nowIso);
        if (extra) await extra(trx);
        await events?.append(trx, [
          {
            kind: 'operation.finished',
            operationId: id,
            data: { kind: h.kind, outcome: 'cancelled', message: line.message },
          },
        ]);
      });
      const row = await db
        .selectFrom('operations')
        .selectAll()
        .where('id', '=', id)
        .executeTakeFirstOrThrow();
      return toView(row);
    },

    async stepStates(id) {
      const rows = await db
        .selectFrom('operation_steps')
        .select(['host_id', 'host_name', 'state'])
        .where('operation_id', '=', id)
        .execute();
      return rows.map((r) => ({ hostId: r.host_id, hostName: r.host_name, state: r.state as StepState }));
    },

    async begin(trx, op, first) {
      const id = randomUUID();
      const nowIso = now();
      await trx
        .insertInto('operations')
        .values({
          id,
          kind: op.kind,
          state: 'running',
          actor: op.actor,
          target: op.target,
          created_at: nowIso,
          finished_at: null,
          reason: null,
          summary: JSON.stringify(op.summary),
          controller: deps.controllerId ?? null,
        })
        .execute();
      if (op.steps.length > 0) {
        await trx
          .insertInto('operation_steps')
          .values(
            op.steps.map((s) => ({
              operation_id: id,
              host_id: s.hostId,
              host_name: s.hostName,
              state: 'pending',
              generation: s.generation,
              services: s.services,
              detail: null,
              started_at: null,
              finished_at: null,
            })),
          )
          .execute();
      }
      await insertLines(trx, id, 1, first, nowIso);
      await events?.append(trx, [
        {
          kind: 'operation.started',
          operationId: id,
          data: { kind: op.kind, actor: op.actor, target: op.target, hosts: op.steps.length },
        },
      ]);
      return recorder(id, first.length + 1, op.kind);
    },

    async failInterrupted(reason = RESTART_REASON, live = new Set<string>()) {
      const running = await db
        .selectFrom('operations')
        .select(['id', 'kind', 'controller'])
        .where('state', '=', 'running')
        .execute();
      const failed: { id: string; hostIds: string[] }[] = [];
      for (const { id, kind, controller } of running) {
        if (controller !== null && live.has(controller)) continue;
        const nowIso = now();
        const hostIds = await db.transaction().execute(async (trx) => {
          // Only while still running: its owner may have ended it since (it was not gone after all).
          const ended = await trx
            .updateTable('operations')
            .set({ state: 'failed', reason, finished_at: nowIso })
            .where('id', '=', id)
            .where('state', '=', 'running')
            .executeTakeFirst();
          if (Number(ended.numUpdatedRows) === 0) return undefined;
          const last = await trx
            .selectFrom('operation_log')
            .select((eb) => eb.fn.max('seq').as('seq'))
            .where('operation_id', '=', id)
            .executeTakeFirst();
          const open = await trx
            .selectFrom('operation_steps')
            .select('host_id')
            .where('operation_id', '=', id)
            .where('state', 'in', ['pending', 'running'])
            .execute();
          await trx
            .updateTable('operation_steps')
            .set({ state: 'failed', detail: reason, finished_at: nowIso })
            .where('operation_id', '=', id)
            .where('state', 'in', ['pending', 'running'])
            .execute();
          await insertLines(
            trx,
            id,
            Number(last?.seq ?? 0) + 1,
            [{ level: 'error', message: reason }],
            nowIso,
          );
          await events?.append(trx, [
            {
              kind: 'operation.finished',
              operationId: id,
              data: { kind, outcome: 'failed', message: reason },
            },
          ]);
          return open.map((r) => r.host_id);
        });
        if (hostIds === undefined) continue;
        failed.push({ id, hostIds });
        log.warn(
          { operationId: id, controllerId: controller, reason },
          'interrupted operation marked failed',
        );
      }
      return failed;
    },

    async list(limit = DEFAULT_OPERATION_LIST) {
      const rows = await db
        .selectFrom('operations')
        .selectAll()
        .orderBy('created_at', 'desc')
        .orderBy('id')
        .limit(limit)
        .execute();
      return rows.map(toView);
    },

    async detail(id, afterSeq = 0) {
      const row = await db.selectFrom('operations').selectAll().where('id', '=', id).executeTakeFirst();
      if (!row) return undefined;
      const [steps, lines] = await Promise.all([
        db
          .selectFrom('operation_steps')
          .selectAll()
          .where('operation_id', '=', id)
          .orderBy('host_name')
          .execute(),
        db
          .selectFrom('operation_log')
          .selectAll()
          .where('operation_id', '=', id)
          .where('seq', '>', afterSeq)
          .orderBy('seq')
          .limit(MAX_OPERATION_LOG_PAGE)
          .execute(),
      ]);
      return {
        operation: toView(row),
        steps: steps.map(toStepView),
        log: lines.map((l): OperationLogEntry => ({
          seq: l.seq,
          time: l.time,
          level: l.level as LogLevel,
          host: l.host,
          message: l.message,
        })),
      };
    },
  };
}

function toView(row: Selectable<OperationsTable>): OperationView {
  return {
    id: row.id,
    kind: row.kind as OperationKind,
    state: row.state as OperationState,
    actor: row.actor,
    target: row.target,
    createdAt: row.created_at,
    finishedAt: row.finished_at,
    reason: row.reason,
    summary: decodeJsonColumn(OperationSummary, row.summary, {
      table: 'operations',
      column: 'summary',
      row: row.id,
    }),
  };
}

function toStepView(row: Selectable<OperationStepsTable>): OperationStepView {
  return {
    host: row.host_name,
    state: row.state as StepState,
    generation: row.generation,
    services: row.services,
    detail: row.detail,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
  };
}
