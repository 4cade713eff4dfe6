import type { Kysely } from 'kysely';
import type { ControllerDatabase } from '../db/schema.js';
import { isoAt } from '../clock.js';
import type { DesiredEntry, FleetSnapshot } from './desired-state.js';

/** Wait after a service's agent gives up on it before the controller tries again, by default, in ms. */
export const DEFAULT_RETRY_COOLDOWN_MS = 120_000;
/** Tries by the controller before a service is escalated, by default. */
export const DEFAULT_MAX_RETRIES = 5;

export interface RetryPolicy {
  readonly cooldownMs: number;
  readonly maxRetries: number;
}

export interface RetryDecision {
  /** Host id → instances tried again now (their host gets its set under a new generation). */
  readonly due: ReadonlyMap<string, readonly { service: string; attempt: number }[]>;
  readonly escalated: readonly { hostId: string; service: string; reason: string }[];
}

/**
 * A desired instance its online host reports `failed` (the agent's restart limit) is tried
 * again once `cooldownMs` passed since the failure was first seen or since the last try, at
 * most `maxRetries` times; then it is escalated with the last error, and left alone until it
 * runs again. An instance that has run for a whole cooldown since it last started resets its
 * count (a try that crashes again soon after is no success). Writes `service_retries`.
 */
export async function decideRetries(
  db: Kysely<ControllerDatabase>,
  snap: FleetSnapshot,
  next: readonly DesiredEntry[],
  policy: RetryPolicy,
  nowMs: number,
): Promise<RetryDecision> {
  const [observed, rows] = await Promise.all([
    db
      .selectFrom('service_observed')
      .select(['host_id', 'service', 'state', 'since', 'last_error'])
      .execute(),
    db.selectFrom('service_retries').selectAll().execute(),
  ]);
  const key = (h: string, s: string) => `${h}\u0000${s}`;
  const desired = new Set(next.map((e) => key(e.hostId, e.service)));
  const seen = new Map(observed.map((o) => [key(o.host_id, o.service), o]));
  const retries = new Map(rows.map((r) => [key(r.host_id, r.service), r]));
  const nowIso = isoAt(nowMs);
  const due = new Map<string, { service: string; attempt: number }[]>();
  const escalated: { hostId: string; service: string; reason: string }[] = [];
  const forget: { hostId: string; service: string }[] = [];
  for (const r of rows) {
    const o = seen.get(key(r.host_id, r.service));
    const stable =
      o?.state === 'running' && o.since !== null && nowMs - Date.parse(o.since) >= policy.cooldownMs;
    if (!desired.has(key(r.host_id, r.service)) || stable)
      forget.push({ hostId: r.host_id, service: r.service });
  }
  await db.transaction().execute(async (trx) => {
    for (const f of forget) {
      await trx
        .deleteFrom('service_retries')
        .where('host_id', '=', f.hostId)
        .where('service', '=', f.service)
        .execute();
    }
    for (const o of observed) {
      const k = key(o.host_id, o.service);
      if (o.state !== 'failed' || !desired.has(k) || snap.hosts.get(o.host_id)?.status !== 'online') continue;
      const r = retries.get(k);
      if (!r) {
        await trx
          .insertInto('service_retries')
          .values({ host_id: o.host_id, service: o.service, attempts: 0, failed_at: nowIso })
          .execute();
        continue;
      }
      if (r.escalated_at !== null || nowMs - Date.parse(r.failed_at) < policy.cooldownMs) continue;
      if (r.attempts >= policy.maxRetries) {
        const reason = `failed after ${r.attempts} retries by the controller: ${o.last_error ?? 'no error reported'}`;
        await trx
          .updateTable('service_retries')
          .set({ escalated_at: nowIso, reason: reason.slice(0, 2000) })
          .where('host_id', '=', o.host_id)
          .where('service', '=', o.service)
          .execute();
        escalated.push({ hostId: o.host_id, service: o.service, reason });
        continue;
      }
      await trx
        .updateTable('service_retries')
        .set({ attempts: r.attempts + 1, failed_at: nowIso })
        .where('host_id', '=', o.host_id)
        .where('service', '=', o.service)
        .execute();
      due.set(o.host_id, [...(due.get(o.host_id) ?? []), { service: o.service, attempt: r.attempts + 1 }]);
    }
  });
  return { due, escalated };
}

/** Escalated instances, as `hostId\0service` → reason and attempts. */
export async function loadEscalated(
  db: Kysely<ControllerDatabase>,
): Promise<Map<string, { reason: string; attempts: number }>> {
  const rows = await db
    .selectFrom('service_retries')
    .selectAll()
    .where('escalated_at', 'is not', null)
    .execute();
  return new Map(
    rows.map((r) => [`${r.host_id}\u0000${r.service}`, { reason: r.reason ?? '', attempts: r.attempts }]),
  );
}
