import { rm } from 'node:fs/promises';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import type { OperationView } from '../../protocol/operations.js';
import { HaltedRollout } from '../../protocol/rollout.js';
import type { AuditLog } from '../audit/audit-log.js';
import { decodeJsonColumn } from '../db/json-column.js';
import type { ControllerDatabase } from '../db/schema.js';
import type { Operations } from './operations.js';

type Db = Kysely<ControllerDatabase>;

/** The kinds of operation that roll out in steps and can halt. */
export type RolloutKind = 'deploy' | 'update';

/** Keeps what resuming `operationId` needs; its operation is being ended `halted` (same transaction). */
export async function saveHalted(
  trx: Db,
  operationId: string,
  kind: RolloutKind,
  rollout: HaltedRollout,
  nowIso: string,
): Promise<void> {
  await trx
    .insertInto('halted_rollouts')
    .values({ operation_id: operationId, kind, rollout: JSON.stringify(rollout), halted_at: nowIso })
    .onConflict((oc) =>
      oc.column('operation_id').doUpdateSet({ rollout: JSON.stringify(rollout), halted_at: nowIso }),
    )
    .execute();
}

/** The halted rollout of `operationId`, or throws NOT_FOUND (unknown) / CONFLICT (not halted). */
export async function loadHalted(
  db: Db,
  operationId: string,
): Promise<{ kind: RolloutKind; rollout: HaltedRollout }> {
  const row = await db
    .selectFrom('halted_rollouts')
    .selectAll()
    .where('operation_id', '=', operationId)
    .executeTakeFirst();
  if (!row) {
    const op = await db
      .selectFrom('operations')
      .select('state')
      .where('id', '=', operationId)
      .executeTakeFirst();
    if (!op) throw new CorralError(ErrorCode.NOT_FOUND, `no operation ${operationId}`);
    throw new CorralError(
      ErrorCode.CONFLICT,
      `operation ${operationId} is ${op.state}; only a halted rollout resumes or is cancelled`,
    );
  }
  return {
    kind: row.kind as RolloutKind,
    rollout: decodeJsonColumn(HaltedRollout, row.rollout, {
      table: 'halted_rollouts',
      column: 'rollout',
      row: operationId,
    }),
  };
}

export async function forgetHalted(trx: Db, operationId: string): Promise<void> {
  await trx.deleteFrom('halted_rollouts').where('operation_id', '=', operationId).execute();
}

/** Continues a halted rollout of one kind: sends its untouched hosts, as the same operation. */
export type RolloutResumer = (operationId: string, rollout: HaltedRollout, actor: string) => Promise<void>;

/** `ops resume` and `ops cancel`. */
export interface RolloutControl {
  /** The kind of the halted rollout `operationId`; throws as resume does when there is none. */
  kindOf(operationId: string): Promise<RolloutKind>;
  /** Runs the halted operation's untouched hosts; answers once it ends (again `halted`, perhaps). */
  resume(operationId: string, actor: string): Promise<OperationView>;
  /** Ends a halted operation `cancelled`, its untouched hosts `skipped` and left as they are. */
  cancel(operationId: string, actor: string): Promise<OperationView>;
}

export function createRolloutControl(o: {
  readonly db: Db;
  readonly operations: Operations;
  readonly audit: AuditLog;
  readonly log: Logger;
  readonly resumers: Readonly<Record<RolloutKind, RolloutResumer>>;
}): RolloutControl {
  async function view(id: string): Promise<OperationView> {
    const d = await o.operations.detail(id, Number.MAX_SAFE_INTEGER);
    if (!d) throw new CorralError(ErrorCode.NOT_FOUND, `no operation ${id}`);
    return d.operation;
  }
  return {
    kindOf: async (id) => (await loadHalted(o.db, id)).kind,
    async resume(id, actor) {
      const { kind, rollout } = await loadHalted(o.db, id);
      await o.audit.append({ actor, action: 'resume', target: id, details: { kind } });
      o.log.info({ operationId: id, kind, actor }, 'halted rollout resumed');
      await o.resumers[kind](id, rollout, actor);
      return view(id);
    },
    async cancel(id, actor) {
      const { kind, rollout } = await loadHalted(o.db, id);
      const op = await o.operations.cancel(
        id,
        { level: 'warn', message: `cancelled by ${actor}; the hosts not yet sent stay as they are` },
        async (trx) => {
          await forgetHalted(trx, id);
          await o.audit.append({ actor, action: 'cancel', target: id, details: { kind } }, trx);
        },
      );
      if (rollout.update) await rm(rollout.update.file, { force: true });
      o.log.info({ operationId: id, kind, actor }, 'halted rollout cancelled');
      return op;
    },
  };
}

/**
 * Hosts a halted or cancelled deploy left untouched, and no operation has sent anything since:
 * their stored set is the deploy's, unsent on purpose, so the scheduler must not heal them
 * (send it) on its own. A later operation that sends the host releases it.
 */
export async function heldHosts(db: Db): Promise<Set<string>> {
  const untouched = await db
    .selectFrom('operation_steps')
    .innerJoin('operations', 'operations.id', 'operation_steps.operation_id')
    .select(['operation_steps.host_id as hostId', 'operations.created_at as createdAt'])
    .where('operations.kind', '=', 'deploy')
    .where('operations.state', 'in', ['halted', 'cancelled'])
    .where('operation_steps.state', 'in', ['pending', 'skipped'])
    .execute();
  if (untouched.length === 0) return new Set();
  const sent = await db
    .selectFrom('operation_steps')
    .innerJoin('operations', 'operations.id', 'operation_steps.operation_id')
    .select(['operation_steps.host_id as hostId', 'operations.created_at as createdAt'])
    .where(
      'operation_steps.host_id',
      'in',
      untouched.map((u) => u.hostId),
    )
    .where('operation_steps.state', 'not in', ['pending', 'skipped'])
    .execute();
  const held = new Set<string>();
  for (const u of untouched) {
    if (!sent.some((s) => s.hostId === u.hostId && s.createdAt > u.createdAt)) held.add(u.hostId);
  }
  return held;
}
