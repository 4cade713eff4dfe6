import type { Socket } from 'node:net';
import type { Kysely, Selectable } from 'kysely';
import type { Logger } from 'pino';
import {
  APPROVAL_ACTIONS,
  APPROVAL_STATES,
  DEFAULT_APPROVAL_TTL_MS,
  type ApprovalAction,
  type ApprovalState,
  type ApprovalView,
} from '../../protocol/approvals.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { FleetEventSink } from '../events/event-log.js';
import { isoAt, type Clock } from '../clock.js';
import type { ApprovalsTable, ControllerDatabase } from '../db/schema.js';
import { newId } from '../secrets.js';

type Row = Selectable<ApprovalsTable>;

/** The requester of the approvals the controller raises for its own actions (reschedule, heal). */
export const CONTROLLER_REQUESTER = 'controller';

/** How many other operators must approve each action; an action not listed runs at once. */
export type ApprovalPolicy = Partial<Record<ApprovalAction, number>>;

/** Controller config `approvals:`. */
export interface ApprovalConfig {
  readonly policy: ApprovalPolicy;
  /** How long a request waits for its approvals, in ms (default DEFAULT_APPROVAL_TTL_MS). */
  readonly ttlMs?: number | undefined;
  /** `update` needs approval only for pushes to all hosts (`update: { count: N, all: true }`). */
  readonly updateAllOnly?: boolean | undefined;
}

/** What runs an approved request, as its requester's operation. */
export interface ApprovalExecutor {
  /**
   * Runs the stored request as `actor` (the requester); what it returns is kept as the
   * result. `approval` names the request, who approved it, and the connection the run was
   * asked on (a revocation leaves that one open: it is answering).
   */
  run(
    request: unknown,
    actor: string,
    approval: RunContext & { readonly id: string; readonly approvers: readonly string[] },
  ): Promise<unknown>;
  /**
   * The requester runs it once approved, by asking again (`claim`), because its answer holds
   * a secret for them only (a new operator token or key). The approval keeps `redact(result)`.
   * `applies` picks the requests it is for (default: all of the action's).
   */
  readonly byRequester?: {
    redact(result: unknown): unknown;
    applies?(request: unknown): boolean;
  };
  /** Frees what a request holds (a kept release upload) once it ends without running. */
  discard?(request: unknown): Promise<void>;
}

/** The admin request an approved action runs in. */
export interface RunContext {
  readonly socket?: Socket | undefined;
}

/** A request recorded or found: `created` false when the pending one already there answers. */
export interface ApprovalRequested {
  readonly approval: ApprovalView;
  readonly created: boolean;
}

export interface ApprovalStore {
  /** Approvals this action needs (0: none, run it now). */
  required(action: ApprovalAction): number;
  /** Sets what runs approved requests of `action` (one per action; a second replaces it). */
  register(action: ApprovalAction, executor: ApprovalExecutor): void;
  /**
   * Records a request for an action that needs approval, or returns the pending one for the
   * same action and target (idempotent). Requests by the controller itself use requester
   * `controller` (reschedule, heal: the scheduler raises them). With `unlessRejected`, a
   * target whose latest request was rejected is answered with that one, not asked again.
   */
  request(
    action: ApprovalAction,
    target: string,
    body: unknown,
    requester: string,
    o?: { readonly unlessRejected?: boolean },
  ): Promise<ApprovalRequested>;
  /**
   * For actions run `byRequester`: the approved request of this action and target that
   * `requester` made, run now with its full answer, or undefined when there is none. Throws
   * CONFLICT when `body` is not what was approved.
   */
  claim(
    action: ApprovalAction,
    target: string,
    body: unknown,
    requester: string,
    ctx?: RunContext,
  ): Promise<{ approval: ApprovalView; result: unknown } | undefined>;
  /** Pending requests that have not expired. */
  pendingCount(): Promise<number>;
  list(): Promise<ApprovalView[]>;
  get(id: string): Promise<ApprovalView>;
  /** One approval by `approver` (never the requester); at the required count the action runs. */
  approve(id: string, approver: string, ctx?: RunContext): Promise<ApprovalView>;
  reject(id: string, approver: string, reason: string | undefined): Promise<ApprovalView>;
  /** The requester withdraws a pending request (or an approved one waiting for them to run it). */
  cancel(id: string, actor: string): Promise<ApprovalView>;
  /**
   * For requests the controller raised itself: pending ones of `action` whose cause went away
   * (the host came back, the service recovered), that is every target but `stillNeeded`, are
   * cancelled as `resolved`; approved or running ones are left alone. Returns how many.
   */
  cancelResolved(action: ApprovalAction, stillNeeded: string | null): Promise<number>;
}

const isAction = (a: string): a is ApprovalAction => (APPROVAL_ACTIONS as readonly string[]).includes(a);
const isState = (s: string): s is ApprovalState => (APPROVAL_STATES as readonly string[]).includes(s);

function view(row: Row): ApprovalView {
  if (!isAction(row.action) || !isState(row.state)) {
    throw new CorralError(ErrorCode.INTERNAL, `approval ${row.id} has an unknown action or state`);
  }
  return {
    id: row.id,
    action: row.action,
    target: row.target,
    state: row.state,
    requester: row.requester,
    required: row.required,
    approvers: JSON.parse(row.approvers) as string[],
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    decidedAt: row.decided_at,
    reason: row.reason,
    result: row.result === null ? null : (JSON.parse(row.result) as unknown),
  };
}

export function createApprovalStore(deps: {
  readonly db: Kysely<ControllerDatabase>;
  readonly audit: AuditLog;
  readonly clock: Clock;
  readonly policy: ApprovalPolicy;
  readonly ttlMs?: number | undefined;
  readonly log?: Logger | undefined;
  /** `approval.pending` and `approval.decided` go here, in the transaction of each change. */
  readonly events?: FleetEventSink | undefined;
}): ApprovalStore {
  const { db, audit, clock, policy } = deps;
  /** Tells the fleet event stream that `row` was decided (`state`) by `by`. */
  const decided = async (
    trx: Kysely<ControllerDatabase>,
    row: Pick<Row, 'id' | 'action' | 'target' | 'requester'>,
    state: string,
    by: string,
    reason?: string | null,
  ): Promise<void> =>
    deps.events?.append(trx, [
      {
        kind: 'approval.decided',
        data: {
          approval: row.id,
          action: row.action,
          target: row.target,
          requester: row.requester,
          state,
          by,
          reason: reason ?? null,
        },
      },
    ]);
  const ttlMs = deps.ttlMs ?? DEFAULT_APPROVAL_TTL_MS;
  const executors = new Map<ApprovalAction, ApprovalExecutor>();
  const now = (): string => isoAt(clock.now());
  const executorOf = (action: string): ApprovalExecutor | undefined =>
    isAction(action) ? executors.get(action) : undefined;
  /** Whether an approved row waits for its requester to run it (claim) instead of running now. */
  const waitsForRequester = (row: Pick<Row, 'action' | 'request'>): boolean => {
    const by = executorOf(row.action)?.byRequester;
    return by !== undefined && (by.applies?.(JSON.parse(row.request)) ?? true);
  };

  /** Lets the executor free what ended requests held; a failure is logged, never thrown. */
  async function discard(rows: readonly Row[]): Promise<void> {
    for (const row of rows) {
      const executor = executorOf(row.action);
      if (!executor?.discard) continue;
      try {
        await executor.discard(JSON.parse(row.request));
      } catch (e: unknown) {
        deps.log?.warn({ err: e, approvalId: row.id }, 'approval request could not be discarded');
      }
    }
  }

  /** Moves pending rows past their expiry to `expired`, each audited. */
  async function expire(where?: { action: string; target: string } | { id: string }): Promise<void> {
    const at = now();
    const expired = await db.transaction().execute(async (trx) => {
      let q = trx
        .selectFrom('approvals')
        .selectAll()
        .where('state', '=', 'pending')
        .where('expires_at', '<=', at);
      if (where && 'id' in where) q = q.where('id', '=', where.id);
      else if (where) q = q.where('action', '=', where.action).where('target', '=', where.target);
      const rows = await q.execute();
      for (const row of rows) {
        await trx
          .updateTable('approvals')
          .set({ state: 'expired', decided_at: at })
          .where('id', '=', row.id)
          .execute();
        await decided(trx, row, 'expired', 'controller');
        await audit.append(
          {
            actor: 'controller',
            action: 'approval-expired',
            target: row.id,
            details: { action: row.action, target: row.target },
          },
          trx,
        );
      }
      return rows;
    });
    await discard(expired);
  }

  async function load(id: string): Promise<Row> {
    await expire({ id });
    const row = await db.selectFrom('approvals').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new CorralError(ErrorCode.NOT_FOUND, `no approval ${id}`);
    return row;
  }

  /** Moves a row from `from` to `to` in one statement; a race loser gets CONFLICT. */
  async function move(
    trx: Kysely<ControllerDatabase>,
    id: string,
    from: ApprovalState,
    set: Partial<Omit<Row, 'id'>>,
  ): Promise<void> {
    const changed = await trx
      .updateTable('approvals')
      .set(set)
      .where('id', '=', id)
      .where('state', '=', from)
      .executeTakeFirst();
    if (changed.numUpdatedRows !== 1n)
      throw new CorralError(ErrorCode.CONFLICT, `approval ${id} is no longer ${from}`);
  }

  /**
   * Runs an approved row as its requester: approved → running → completed | failed, each
   * audited. Returns the view and the action's whole answer (the view keeps it redacted when
   * the executor says so).
   */
  async function run(row: Row, ctx: RunContext = {}): Promise<{ approval: ApprovalView; result: unknown }> {
    const executor = executorOf(row.action);
    await db.transaction().execute(async (trx) => {
      await move(trx, row.id, 'approved', { state: 'running' });
      await audit.append(
        {
          actor: row.requester,
          action: 'approval-running',
          target: row.id,
          details: {
            action: row.action,
            target: row.target,
            approvers: JSON.parse(row.approvers) as unknown,
          },
        },
        trx,
      );
    });
    let state: ApprovalState = 'completed';
    let result: unknown = null;
    let reason: string | null = null;
    try {
      if (!executor)
        throw new CorralError(ErrorCode.INTERNAL, `nothing runs approved ${row.action} requests here`);
      const approvers = JSON.parse(row.approvers) as string[];
      result =
        (await executor.run(JSON.parse(row.request), row.requester, { ...ctx, id: row.id, approvers })) ??
        null;
    } catch (e: unknown) {
      state = 'failed';
      reason = e instanceof Error ? e.message.slice(0, 2000) : String(e).slice(0, 2000);
    }
    const kept = executor?.byRequester && result !== null ? executor.byRequester.redact(result) : result;
    const at = now();
    await db.transaction().execute(async (trx) => {
      await move(trx, row.id, 'running', { state, result: JSON.stringify(kept), reason, decided_at: at });
      await audit.append(
        {
          actor: row.requester,
          action: `approval-${state}`,
          target: row.id,
          details: { action: row.action, target: row.target, ...(reason !== null && { reason }) },
        },
        trx,
      );
    });
    return { approval: view(await load(row.id)), result };
  }

  return {
    required: (action) => policy[action] ?? 0,

    register(action, executor) {
      executors.set(action, executor);
    },

    async request(action, target, body, requester, o = {}) {
      await expire({ action, target });
      const at = clock.now();
      const row: Row = {
        id: newId('apr'),
        action,
        target,
        request: JSON.stringify(body ?? null),
        requester,
        required: Math.max(1, policy[action] ?? 1),
        approvers: '[]',
        state: 'pending',
        reason: null,
        result: null,
        created_at: isoAt(at),
        expires_at: isoAt(at + ttlMs),
        decided_at: null,
      };
      return db.transaction().execute(async (trx) => {
        const existing = await trx
          .selectFrom('approvals')
          .selectAll()
          .where('action', '=', action)
          .where('target', '=', target)
          .where('state', '=', 'pending')
          .executeTakeFirst();
        if (existing) return { approval: view(existing), created: false };
        if (o.unlessRejected) {
          const latest = await trx
            .selectFrom('approvals')
            .selectAll()
            .where('action', '=', action)
            .where('target', '=', target)
            .orderBy('created_at', 'desc')
            .limit(1)
            .executeTakeFirst();
          if (latest?.state === 'rejected') return { approval: view(latest), created: false };
        }
        await trx.insertInto('approvals').values(row).execute();
        await deps.events?.append(trx, [
          {
            kind: 'approval.pending',
            data: { approval: row.id, action, target, requester, required: row.required },
          },
        ]);
        await audit.append(
          {
            actor: requester,
            action: 'approval-requested',
            target: row.id,
            details: { action, target, required: row.required },
          },
          trx,
        );
        return { approval: view(row), created: true };
      });
    },

    async claim(action, target, body, requester, ctx) {
      if (!executorOf(action)?.byRequester) return undefined;
      const row = await db
        .selectFrom('approvals')
        .selectAll()
        .where('action', '=', action)
        .where('target', '=', target)
        .where('requester', '=', requester)
        .where('state', '=', 'approved')
        .orderBy('created_at', 'desc')
        .limit(1)
        .executeTakeFirst();
      if (!row || !waitsForRequester(row)) return undefined;
      if (row.request !== JSON.stringify(body ?? null)) {
        throw new CorralError(
          ErrorCode.CONFLICT,
          `approval ${row.id} approved ${action} ${target} with other settings; cancel it or ask for exactly what was approved`,
        );
      }
      return run(row, ctx);
    },

    async pendingCount() {
      const row = await db
        .selectFrom('approvals')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('state', '=', 'pending')
        .where('expires_at', '>', now())
        .executeTakeFirst();
      return Number(row?.n ?? 0);
    },

    async list() {
      await expire();
      const rows = await db
        .selectFrom('approvals')
        .selectAll()
        .orderBy('created_at', 'desc')
        .limit(1000)
        .execute();
      return rows.map(view);
    },

    async get(id) {
      return view(await load(id));
    },

    async approve(id, approver, ctx) {
      const row = await load(id);
      if (row.state !== 'pending')
        throw new CorralError(ErrorCode.CONFLICT, `approval ${id} is ${row.state}, not pending`);
      if (row.requester === approver) {
        throw new CorralError(
          ErrorCode.FORBIDDEN,
          `${approver} requested ${id} and cannot approve it; another operator must`,
        );
      }
      const approvers = JSON.parse(row.approvers) as string[];
      if (approvers.includes(approver))
        throw new CorralError(ErrorCode.CONFLICT, `${approver} already approved ${id}`);
      approvers.push(approver);
      const done = approvers.length >= row.required;
      const at = now();
      await db.transaction().execute(async (trx) => {
        await move(trx, id, 'pending', {
          approvers: JSON.stringify(approvers),
          ...(done && { state: 'approved', decided_at: at }),
        });
        if (done) await decided(trx, row, 'approved', approver);
        await audit.append(
          {
            actor: approver,
            action: done ? 'approval-approved' : 'approval-approve',
            target: id,
            details: { action: row.action, target: row.target, requester: row.requester, approvers },
          },
          trx,
        );
      });
      // An action whose answer is a secret waits for its requester to run it (claim).
      if (!done || waitsForRequester(row)) return view(await load(id));
      return (await run({ ...row, approvers: JSON.stringify(approvers), state: 'approved' }, ctx)).approval;
    },

    async reject(id, approver, reason) {
      const row = await load(id);
      if (row.state !== 'pending')
        throw new CorralError(ErrorCode.CONFLICT, `approval ${id} is ${row.state}, not pending`);
      if (row.requester === approver) {
        throw new CorralError(
          ErrorCode.FORBIDDEN,
          `${approver} requested ${id}: cancel it instead of rejecting it`,
        );
      }
      await db.transaction().execute(async (trx) => {
        await move(trx, id, 'pending', { state: 'rejected', reason: reason ?? null, decided_at: now() });
        await decided(trx, row, 'rejected', approver, reason);
        await audit.append(
          {
            actor: approver,
            action: 'approval-rejected',
            target: id,
            details: { action: row.action, target: row.target, ...(reason !== undefined && { reason }) },
          },
          trx,
        );
      });
      await discard([row]);
      return view(await load(id));
    },

    async cancel(id, actor) {
      const row = await load(id);
      const waiting = row.state === 'approved' && waitsForRequester(row);
      if (row.state !== 'pending' && !waiting)
        throw new CorralError(ErrorCode.CONFLICT, `approval ${id} is ${row.state}, not pending`);
      if (row.requester !== actor)
        throw new CorralError(
          ErrorCode.FORBIDDEN,
          `only ${row.requester}, who requested ${id}, may cancel it`,
        );
      await db.transaction().execute(async (trx) => {
        await move(trx, id, waiting ? 'approved' : 'pending', {
          state: 'cancelled',
          reason: 'cancelled by the requester',
          decided_at: now(),
        });
        await decided(trx, row, 'cancelled', actor, 'cancelled by the requester');
        await audit.append(
          {
            actor,
            action: 'approval-cancelled',
            target: id,
            details: { action: row.action, target: row.target },
          },
          trx,
        );
      });
      await discard([row]);
      return view(await load(id));
    },

    async cancelResolved(action, stillNeeded) {
      await expire();
      const at = now();
      const rows = await db.transaction().execute(async (trx) => {
        let q = trx
          .selectFrom('approvals')
          .selectAll()
          .where('action', '=', action)
          .where('state', '=', 'pending')
          .where('requester', '=', CONTROLLER_REQUESTER);
        if (stillNeeded !== null) q = q.where('target', '!=', stillNeeded);
        const found = await q.execute();
        for (const row of found) {
          await move(trx, row.id, 'pending', { state: 'cancelled', reason: 'resolved', decided_at: at });
          await decided(trx, row, 'cancelled', CONTROLLER_REQUESTER, 'resolved');
          await audit.append(
            {
              actor: CONTROLLER_REQUESTER,
              action: 'approval-cancelled',
              target: row.id,
              details: { action, target: row.target, reason: 'resolved' },
            },
            trx,
          );
        }
        return found;
      });
      await discard(rows);
      return rows.length;
    },
  };
}
