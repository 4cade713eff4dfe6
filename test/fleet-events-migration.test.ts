import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuditLog } from '../controller/audit/audit-log.js';
import { openDatabase, openReadConnection } from '../controller/db/open-database.js';
import { MIGRATIONS } from '../controller/db/migrations.js';
import { readEvents } from '../controller/events/event-log.js';
import { createFleetEvents } from '../controller/events/fleet-events.js';
import { silentLog, waitFor } from './controller-fixture.js';

/**
 * A database from before fleet events: its hosts get the status they had as the one last
 * told, so the first controller with events tells no enrollment again and no status it did
 * not see change itself.
 */
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'corral-mig-events-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const INTERVAL_MS = 1_000;
const host = (id: string, o: { last_seen: string | null; decommissioned_at: string | null }) => ({
  id,
  name: id,
  address: '10.0.0.9',
  agent_port: 8765,
  updater_port: 8766,
  sans: '[]',
  labels: '{}',
  enrolled_at: '2026-01-02T03:04:05.000Z',
  enrolled_via: 'join',
  agent_version: null,
  generation: 0,
  metrics: null,
  ...o,
});

describe('the 0010-fleet-events migration', () => {
  it('seeds the status last told from the hosts there are, so nothing is told twice', async () => {
    const file = join(dir, 'corral.db');
    const old = await openDatabase(file, { migrations: MIGRATIONS.filter(([name]) => name < '0010') });
    await old
      .insertInto('hosts')
      .values([
        host('h-seen', { last_seen: '2026-01-03T00:00:00.000Z', decommissioned_at: null }),
        host('h-never', { last_seen: null, decommissioned_at: null }),
        host('h-gone', {
          last_seen: '2026-01-03T00:00:00.000Z',
          decommissioned_at: '2026-01-04T00:00:00.000Z',
        }),
      ])
      .execute();
    await old.destroy();

    const db = await openDatabase(file);
    const readDb = await openReadConnection(file);
    let nowMs = Date.parse('2026-02-01T00:00:00.000Z');
    const clock = { now: () => nowMs };
    const events = createFleetEvents({
      db,
      readDb,
      clock,
      log: silentLog,
      audit: createAuditLog({ db, clock }),
      intervalMs: INTERVAL_MS,
      options: { sweepEveryMs: 10 },
    });
    try {
      const seeded = await db
        .selectFrom('fleet_host_status')
        .select(['host_id', 'status'])
        .orderBy('host_id')
        .execute();
      expect(seeded).toEqual([
        { host_id: 'h-gone', status: 'decommissioned' },
        { host_id: 'h-never', status: 'pending' },
        { host_id: 'h-seen', status: 'online' },
      ]);
      await events.start();
      await events.settle();
      expect(await readEvents(db, 0, 100)).toEqual([]);
      // The host last seen a month ago goes stale only once this controller waited the intervals out.
      nowMs += 2 * INTERVAL_MS;
      await waitFor(async () => (await readEvents(db, 0, 100)).length > 0);
      expect((await readEvents(db, 0, 100)).map((e) => [e.kind, e.host?.id, e.data.from])).toEqual([
        ['host.stale', 'h-seen', 'online'],
      ]);
    } finally {
      await events.close();
      await readDb.destroy();
      await db.destroy();
    }
  });
});
