import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_HEARTBEAT_INTERVAL_MS } from '../protocol/constants.js';
import { DEFAULT_HOST_PAGE_LIMIT, type HostListResponse } from '../protocol/admin-hosts.js';
import { ErrorCode } from '../protocol/errors.js';
import { HOST_STATUSES, type HostStatus } from '../protocol/host.js';
import { startController, type TestController } from './controller-fixture.js';

/**
 * `GET /v1/hosts` a page at a time against a real controller (admin reads on its read-only
 * connection) whose database holds more hosts than one default page, in every status.
 */
const HOSTS = DEFAULT_HOST_PAGE_LIMIT + 37;
const STATUS_OF = (i: number): HostStatus => HOST_STATUSES[i % HOST_STATUSES.length]!;

let t: TestController;
/** Every seeded host's name and status, in list order (names are unique here). */
const seeded: { name: string; status: HostStatus }[] = [];

beforeAll(async () => {
  t = await startController();
  const now = Date.now();
  const lastSeen: Record<HostStatus, string | null> = {
    pending: null,
    online: new Date(now - 1_000).toISOString(),
    stale: new Date(now - 2.5 * DEFAULT_HEARTBEAT_INTERVAL_MS).toISOString(),
    offline: new Date(now - 3_600_000).toISOString(),
    decommissioned: new Date(now - 3_600_000).toISOString(),
  };
  const rows = Array.from({ length: HOSTS }, (_, i) => {
    const status = STATUS_OF(i);
    // Names out of insertion order, so the list's order is the sort's, not the table's.
    const name = `h-${String((i * 7919) % HOSTS).padStart(4, '0')}`;
    seeded.push({ name, status });
    return {
      id: `id-${i}`,
      name,
      address: '10.0.0.1',
      agent_port: 8765,
      updater_port: 8766,
      sans: '[]',
      labels: '{}',
      enrolled_at: '2024-01-01T00:00:00.000Z',
      enrolled_via: 'bundle',
      last_seen: lastSeen[status],
      agent_version: null,
      generation: 0,
      metrics: null,
      decommissioned_at: status === 'decommissioned' ? '2024-02-01T00:00:00.000Z' : null,
    };
  });
  for (let i = 0; i < rows.length; i += 100) {
    await t.db
      .insertInto('hosts')
      .values(rows.slice(i, i + 100))
      .execute();
  }
  seeded.sort((a, b) => (a.name < b.name ? -1 : 1));
}, 60_000);
afterAll(async () => {
  await t.close();
});

type Err = { error: { code: string } };

async function page(query: string): Promise<HostListResponse> {
  const res = await t.admin<HostListResponse>('GET', `/v1/hosts${query}`);
  expect(res.status).toBe(200);
  return res.body;
}

/** Every page from the first to `nextCursor: null`; `between` runs after each page. */
async function walk(params: Record<string, string>, between?: () => Promise<void>) {
  const pages: HostListResponse[] = [];
  let cursor: string | null = null;
  do {
    const q = new URLSearchParams(params);
    if (cursor !== null) q.set('cursor', cursor);
    const p = await page(`?${q.toString()}`);
    pages.push(p);
    cursor = p.nextCursor;
    await between?.();
  } while (cursor !== null && pages.length < 1000);
  return { pages, names: pages.flatMap((p) => p.hosts.map((h) => h.name)) };
}

describe('host list paging', () => {
  it('without a limit answers the default page size and a cursor to the rest; existing callers see the first page', async () => {
    const first = await page('');
    expect(first.hosts).toHaveLength(DEFAULT_HOST_PAGE_LIMIT);
    expect(first.nextCursor).toEqual(expect.any(String));
    expect(first.hosts.map((h) => h.name)).toEqual(
      seeded.slice(0, DEFAULT_HOST_PAGE_LIMIT).map((h) => h.name),
    );
    const rest = await page(`?cursor=${encodeURIComponent(first.nextCursor ?? '')}`);
    expect(rest.nextCursor).toBeNull();
    expect(rest.hosts.map((h) => h.name)).toEqual(seeded.slice(DEFAULT_HOST_PAGE_LIMIT).map((h) => h.name));
  });

  it('walks every host once, in name order, in pages no larger than the limit', async () => {
    const { pages, names } = await walk({ limit: '97' });
    expect(names).toEqual(seeded.map((h) => h.name));
    expect(pages.every((p) => p.hosts.length <= 97)).toBe(true);
    expect(pages).toHaveLength(Math.ceil(HOSTS / 97));
  });

  it('a host enrolled mid-walk neither repeats nor drops the others: seen when it sorts after the cursor', async () => {
    let enrolled = false;
    const { names } = await walk({ limit: '200' }, async () => {
      if (enrolled) return;
      enrolled = true;
      await t.enroll('a-before-every-cursor');
      await t.enroll('z-after-every-cursor');
    });
    expect(names).toEqual([...seeded.map((h) => h.name), 'z-after-every-cursor']);
  });

  it('filters by status on every page, and /metrics counts the same hosts', async () => {
    const metrics = await t.admin<string>('GET', '/metrics');
    for (const status of HOST_STATUSES) {
      const expected = seeded.filter((h) => h.status === status).map((h) => h.name);
      const { names, pages } = await walk({ status, limit: '40' });
      // The hosts enrolled by the test before are pending too.
      const extra = status === 'pending' ? ['a-before-every-cursor', 'z-after-every-cursor'] : [];
      expect(names).toEqual([...expected, ...extra].sort());
      expect(pages.flatMap((p) => p.hosts).every((h) => h.status === status)).toBe(true);
      expect(metrics.body).toContain(`corral_hosts{status="${status}"} ${expected.length + extra.length}\n`);
    }
  });

  it('refuses a cursor it did not make and a limit out of bounds, with CORRAL_ERR_VALIDATION', async () => {
    const forged = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
    const bad = [
      '?cursor=not%20base64!',
      `?cursor=${forged({ name: 'x' })}`,
      `?cursor=${forged(['a', 'b'])}`,
      `?cursor=${forged(['a', 1, 'c'])}`,
      `?cursor=${forged(['a', 'b', 'c'.repeat(300)])}`,
      `?cursor=${Buffer.from('not json').toString('base64url')}`,
      `?cursor=${'A'.repeat(2000)}`,
      '?limit=0',
      '?limit=1001',
      '?limit=ten',
      '?limit=2.5',
      '?offset=10',
    ];
    for (const q of bad) {
      const res = await t.admin<Err>('GET', `/v1/hosts${q}`);
      expect([q, res.status, res.body.error.code]).toEqual([q, 400, ErrorCode.VALIDATION]);
    }
  });
});
