import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDatabase, type ControllerDb } from '../db/open-database.js';
import { pruneAllEvents } from './event-retention.js';

const DAY_MS = 86_400_000;
const NOW_MS = Date.parse('2026-06-01T00:00:00.000Z');
const HOSTS = 300;

let dir: string;
let db: ControllerDb;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'corral-retention-'));
  db = await openDatabase(join(dir, 'corral.db'));
  const hosts = Array.from({ length: HOSTS }, (_, i) => ({
    id: `host-${i}`,
    name: `h-${i}`,
    address: '10.0.0.1',
    agent_port: 1,
    updater_port: 2,
    enrolled_at: '2026-01-01T00:00:00.000Z',
    enrolled_via: 'bundle',
    generation: 0,
    labels: '{}',
    sans: '[]',
  }));
  for (let i = 0; i < hosts.length; i += 100)
    await db
      .insertInto('hosts')
      .values(hosts.slice(i, i + 100))
      .execute();
});
afterEach(async () => {
  await db.destroy();
  await rm(dir, { recursive: true, force: true });
});

/** `n` events of a host, received `ageMs` (and a millisecond per event less) before NOW_MS. */
async function seed(hostId: string, prefix: string, n: number, ageMs: number): Promise<void> {
  const rows = Array.from({ length: n }, (_, i) => ({
    host_id: hostId,
    event_id: `${prefix}-${String(i).padStart(4, '0')}`,
    type: 'service.started',
    time: new Date(NOW_MS - ageMs + i).toISOString(),
    received_at: new Date(NOW_MS - ageMs + i).toISOString(),
  }));
  for (let i = 0; i < rows.length; i += 100)
    await db
      .insertInto('events')
      .values(rows.slice(i, i + 100))
      .execute();
}

const ids = async (hostId: string): Promise<string[]> =>
  (
    await db
      .selectFrom('events')
      .select('event_id')
      .where('host_id', '=', hostId)
      .orderBy('event_id')
      .execute()
  ).map((r) => r.event_id);

describe('pruneAllEvents', () => {
  it('deletes every aged event across many hosts (more than one batch) and trims only crowded hosts', async () => {
    // 300 hosts × 10 aged events: 3,000 to delete, beyond one statement's batch.
    for (let i = 0; i < HOSTS; i++) {
      await seed(`host-${i}`, 'old', 10, 2 * DAY_MS);
      await seed(`host-${i}`, 'new', 3, 60_000);
    }
    await seed('host-7', 'burst', 20, 30_000);

    const deleted = await pruneAllEvents(db, { maxAgeMs: DAY_MS, maxPerHost: 8, pruneEveryMs: 1 }, NOW_MS);

    // host-7 keeps its newest 8: the burst's last 8 (received after its 3 recent ones).
    expect(deleted).toBe(HOSTS * 10 + (23 - 8));
    expect(await ids('host-7')).toEqual(
      Array.from({ length: 8 }, (_, i) => `burst-${String(12 + i).padStart(4, '0')}`),
    );
    for (const host of ['host-0', 'host-150', `host-${HOSTS - 1}`])
      expect(await ids(host)).toEqual(['new-0000', 'new-0001', 'new-0002']);
    const left = await db
      .selectFrom('events')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirst();
    expect(Number(left?.n)).toBe((HOSTS - 1) * 3 + 8);
    expect(await pruneAllEvents(db, { maxAgeMs: DAY_MS, maxPerHost: 8, pruneEveryMs: 1 }, NOW_MS)).toBe(0);
  });
});
