import type { Kysely } from 'kysely';
import { DeploymentService, type PendingInstance } from '../../protocol/deployment.js';
import { decodeJsonColumn } from '../db/json-column.js';
import type { ControllerDatabase } from '../db/schema.js';

type Db = Kysely<ControllerDatabase>;

/** The services of the last deploy, in spec order. */
export async function loadIntent(db: Db): Promise<DeploymentService[]> {
  const rows = await db.selectFrom('deployment_services').selectAll().orderBy('position').execute();
  return rows.map((r) =>
    decodeJsonColumn(DeploymentService, r.spec, {
      table: 'deployment_services',
      column: 'spec',
      row: r.name,
    }),
  );
}

/** Replaces the stored spec with `services` (inside the caller's transaction). */
export async function storeIntent(
  trx: Db,
  services: readonly DeploymentService[],
  nowIso: string,
): Promise<void> {
  await trx.deleteFrom('deployment_services').execute();
  for (const [i, s] of services.entries()) {
    await trx
      .insertInto('deployment_services')
      .values({ name: s.name, position: i, spec: JSON.stringify(s), updated_at: nowIso })
      .execute();
  }
}

/** Drops the named services from the stored spec. */
export async function forgetIntent(trx: Db, names: readonly string[]): Promise<void> {
  if (names.length > 0) await trx.deleteFrom('deployment_services').where('name', 'in', names).execute();
}

/**
 * Replaces the pending list; an instance pending before keeps its `since`. Returns how many
 * instances are pending now.
 */
export async function storePending(
  trx: Db,
  pending: readonly PendingInstance[],
  nowIso: string,
): Promise<number> {
  const before = new Map(
    (await trx.selectFrom('pending_instances').select(['instance', 'since']).execute()).map((r) => [
      r.instance,
      r.since,
    ]),
  );
  await trx.deleteFrom('pending_instances').execute();
  for (const p of pending) {
    await trx
      .insertInto('pending_instances')
      .values({
        instance: p.service,
        service: p.service.split('#', 1)[0] ?? p.service,
        reason: p.reason.slice(0, 2000),
        since: before.get(p.service) ?? nowIso,
      })
      .execute();
  }
  return pending.length;
}

export async function countPending(db: Db): Promise<number> {
  const row = await db
    .selectFrom('pending_instances')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}
