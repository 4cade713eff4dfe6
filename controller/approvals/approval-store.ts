import type { Kysely, Selectable } from 'kysely';
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
import { isoAt, type Clock } from '../clock.js';
import type { ApprovalsTable, ControllerDatabase } from '../db/schema.js';
import { newId } from '../secrets.js';

type Row = Selectable<ApprovalsTable>;

/** How many other operators must approve each action; an action not listed runs at once. */
export type ApprovalPolicy = Partial<Record<ApprovalAction, number>>;

/** Runs an approved request as its requester's operation; what it returns is kept as the result. */
export type ApprovalExecutor = (request: unknown, actor: string) => Promise<unknown>;

export interface ApprovalStore {
  /** Approvals this action needs (0: none, run it now). */
  required(action: ApprovalAction): number;
  /**
   * Records a request for an action that needs approval, or returns the pending one for the
   * same action and target (idempotent). Requests by the controller itself use requester
   * `controller` (reschedule, heal: the scheduling work raises them here).
   */
  request(action: ApprovalAction, target: string, body: unknown, requester: string): Promise<ApprovalView>;
  list(): Promise<ApprovalView[]>;
  get(id: string): Promise<ApprovalView>;
  /** One approval by `approver` (never the requester); at the required count the action runs. */
  approve(id: string, approver: string): Promise<ApprovalView>;
  reject(id: string, approver: string, reason: string | undefined): Promise<ApprovalView>;
  /** The requester withdraws a pending request. */
  cancel(id: string, actor: string): Promise<ApprovalView>;
  /**
   * For requests the controller raised itself: a pending one whose cause went away (the host
   * came back, the service recovered) is cancelled as `resolved`; approved or running ones
   * are left alone. Returns how many were cancelled.
   */
  cancelResolved(action: ApprovalAction, target: string): Promise<number>;
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
  readonly executors: Partial<Record<ApprovalAction, ApprovalExecutor>>;
}): ApprovalStore {
  const { db, audit, clock, policy, executors } = deps;
  const ttlMs = deps.ttlMs ?? DEFAULT_APPROVAL_TTL_MS;
  const now = (): string => isoAt(clock.now());

  /** Moves pending rows past their expiry to `expired`, each audited. */
  async function expire(where?: { action: string; target: string } | { id: string }): Promise<void> {
    const at = now();
    await db.transaction().execute(async (trx) => {
      let q = trx
        .selectFrom('approvals')
        .selectAll()
        .where('state', '=', 'pending')
        .where('expires_at', '<=', at);
      if (where && 'id' in where) q = q.where('id', '=', where.id);
      else if (where) q = q.where('action', '=', where.action).where('target', '=', where.target);
      for (const row of await q.execute()) {
        await trx
          .updateTable('approvals')
          .set({ state: 'expired', decided_at: at })
          .where('id', '=', row.id)
          .execute();
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
    });
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

  async function run(row: Row): Promise<ApprovalView> {
    const executor = executors[row.action as ApprovalAction];
    await db.transaction().execute(async (trx) => {
      await move(trx, row.id, 'approved', { state: 'running' });
      await audit.append(
        {
          actor: row.requester,
          action: 'approval-running',
          target: row.id,
          details: { action: row.action, target: row.target },
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
      result = (await executor(JSON.parse(row.request), row.requester)) ?? null;
    } catch (e: unknown) {
      state = 'failed';
      reason = e instanceof Error ? e.message.slice(0, 2000) : String(e).slice(0, 2000);
    }
    const at = now();
    await db.transaction().execute(async (trx) => {
      await move(trx, row.id, 'running', { state, result: JSON.stringify(result), reason, decided_at: at });
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
    return view(await load(row.id));
  }

  return {
    required: (action) => policy[action] ?? 0,

    async request(action, target, body, requester) {
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
        if (existing) return view(existing);
        await trx.insertInto('approvals').values(row).execute();
        await audit.append(
          {
            actor: requester,
            action: 'approval-requested',
            target: row.id,
            details: { action, target, required: row.required },
          },
          trx,
        );
        return view(row);
      });
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

    async approve(id, approver) {
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
      return done
        ? run({ ...row, approvers: JSON.stringify(approvers), state: 'approved' })
        : view(await load(id));
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
      return view(await load(id));
    },

    async cancel(id, actor) {
      const row = await load(id);
      if (row.state !== 'pending')
        throw new CorralError(ErrorCode.CONFLICT, `approval ${id} is ${row.state}, not pending`);
      if (row.requester !== actor)
        throw new CorralError(
          ErrorCode.FORBIDDEN,
          `only ${row.requester}, who requested ${id}, may cancel it`,
        );
      await db.transaction().execute(async (trx) => {
        await move(trx, id, 'pending', {
          state: 'cancelled',
          reason: 'cancelled by the requester',
          decided_at: now(),
        });
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
      return view(await load(id));
    },

    async cancelResolved(action, target) {
      await expire({ action, target });
      return db.transaction().execute(async (trx) => {
        const rows = await trx
          .selectFrom('approvals')
          .selectAll()
          .where('action', '=', action)
          .where('target', '=', target)
          .where('state', '=', 'pending')
          .where('requester', '=', 'controller')
          .execute();
        for (const row of rows) {
          await move(trx, row.id, 'pending', { state: 'cancelled', reason: 'resolved', decided_at: now() });
          await audit.append(
            {
              actor: 'controller',
              action: 'approval-cancelled',
              target: row.id,
              details: { action, target, reason: 'resolved' },
            },
            trx,
          );
        }
        return rows.length;
      });
    },
  };
}
