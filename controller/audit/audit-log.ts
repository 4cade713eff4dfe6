import type { Kysely } from 'kysely';
import type { AuditBreak, AuditEntry, AuditVerification } from '../../protocol/admin-audit.js';
import { isoAt, type Clock } from '../clock.js';
import type { ControllerDatabase } from '../db/schema.js';
import { lockOrderedAppend } from '../db/audit-lock.js';
import { decodeJsonColumn, StoredDetails } from '../db/json-column.js';
import { canonicalHash, canonicalJson } from '../../kit/canonical-json.js';

export const AUDIT_GENESIS_HASH = '0'.repeat(64);
const VERIFY_PAGE_ROWS = 1000;

export interface AuditInput {
  /** Who did it: `admin` (an operator token), `host:<name>`, `local` (the CLI on the controller). */
  readonly actor: string;
  /** What was done: `enroll`, `join`, `token-create`, `token-revoke`, `decommission`, `renew`, … */
  readonly action: string;
  /** What it was done to, usually a host or token name. */
  readonly target: string;
  readonly details?: Record<string, unknown>;
}

export interface AuditLog {
  /**
   * Appends one entry. Pass the transaction of the change being audited so both commit or
   * neither does; without one, the append runs in its own transaction.
   */
  append(input: AuditInput, executor?: Kysely<ControllerDatabase>): Promise<AuditEntry>;
  list(options?: { after?: number; limit?: number }): Promise<AuditEntry[]>;
  /** Walks the whole chain and names the first entry that does not hold. */
  verify(): Promise<AuditVerification>;
}

export function auditHash(entry: Omit<AuditEntry, 'hash'>): string {
  return canonicalHash({
    seq: entry.seq,
    time: entry.time,
    actor: entry.actor,
    action: entry.action,
    target: entry.target,
    details: entry.details,
    prev_hash: entry.prevHash,
  });
}

interface AuditRow {
  seq: number;
  time: string;
  actor: string;
  action: string;
  target: string;
  details: string;
  prev_hash: string;
  hash: string;
}

function toEntry(row: AuditRow): AuditEntry {
  return {
    seq: row.seq,
    time: row.time,
    actor: row.actor,
    action: row.action,
    target: row.target,
    details: decodeJsonColumn(StoredDetails, row.details, {
      table: 'audit',
      column: 'details',
      row: row.seq,
    }),
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

export function createAuditLog(deps: { db: Kysely<ControllerDatabase>; clock: Clock }): AuditLog {
  const { db, clock } = deps;

  async function appendIn(trx: Kysely<ControllerDatabase>, input: AuditInput): Promise<AuditEntry> {
    await lockOrderedAppend(trx);
    const last = await trx
      .selectFrom('audit')
      .select(['seq', 'hash'])
      .orderBy('seq', 'desc')
      .limit(1)
      .executeTakeFirst();
    // Round-trip through JSON so the hashed value is exactly what a reader will parse back.
    const details = JSON.parse(canonicalJson(input.details ?? {})) as Record<string, unknown>;
    const body = {
      seq: (last?.seq ?? 0) + 1,
      time: isoAt(clock.now()),
      actor: input.actor,
      action: input.action,
      target: input.target,
      details,
      prevHash: last?.hash ?? AUDIT_GENESIS_HASH,
    };
    const entry: AuditEntry = { ...body, hash: auditHash(body) };
    await trx
      .insertInto('audit')
      .values({
        seq: entry.seq,
        time: entry.time,
        actor: entry.actor,
        action: entry.action,
        target: entry.target,
        details: canonicalJson(entry.details),
        prev_hash: entry.prevHash,
        hash: entry.hash,
      })
      .execute();
    return entry;
  }

  return {
    async append(input, executor) {
      if (executor?.isTransaction) return appendIn(executor, input);
      return (executor ?? db).transaction().execute((trx) => appendIn(trx, input));
    },

    async list(options = {}) {
      const rows = await db
        .selectFrom('audit')
        .selectAll()
        .where('seq', '>', options.after ?? 0)
        .orderBy('seq', 'asc')
        .limit(options.limit ?? 100)
        .execute();
      return rows.map(toEntry);
    },

    async verify() {
      let expectedSeq = 1;
      let prevHash = AUDIT_GENESIS_HASH;
      const broken = (seq: number, reason: AuditBreak, message: string): AuditVerification => ({
        ok: false,
        checked: expectedSeq - 1,
        headHash: null,
        firstBroken: { seq, reason, message },
      });
      for (;;) {
        const rows = await db
          .selectFrom('audit')
          .selectAll()
          .where('seq', '>=', expectedSeq)
          .orderBy('seq', 'asc')
          .limit(VERIFY_PAGE_ROWS)
          .execute();
        for (const row of rows) {
          if (row.seq !== expectedSeq) {
            return broken(expectedSeq, 'sequence-gap', `entry ${expectedSeq} is missing`);
          }
          if (row.prev_hash !== prevHash) {
            return broken(row.seq, 'chain-broken', `entry ${row.seq} does not follow entry ${row.seq - 1}`);
          }
          let entry: AuditEntry;
          try {
            entry = toEntry(row);
          } catch {
            // Details that are not JSON: someone wrote this row by hand.
            return broken(row.seq, 'unreadable', `entry ${row.seq} has unreadable details`);
          }
          if (auditHash(entry) !== row.hash) {
            return broken(row.seq, 'hash-mismatch', `entry ${row.seq} was changed after it was written`);
          }
          prevHash = row.hash;
          expectedSeq++;
        }
        if (rows.length < VERIFY_PAGE_ROWS) break;
      }
      return {
        ok: true,
        checked: expectedSeq - 1,
        headHash: expectedSeq > 1 ? prevHash : null,
        firstBroken: null,
      };
    },
  };
}
