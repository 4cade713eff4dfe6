import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PER_HOST_SERIES_MAX_HOSTS } from '../controller/http/fleet-metrics.js';
import { MAX_HOST_PAGE_LIMIT, type HostListResponse } from '../protocol/admin-hosts.js';
import { DEFAULT_HEARTBEAT_INTERVAL_MS } from '../protocol/constants.js';
import { ErrorCode } from '../protocol/errors.js';
import { HOST_STATUSES, type HostStatus } from '../protocol/host.js';
import type { OperatorCreateResponse } from '../protocol/operators.js';
import { heartbeatBody, startController, type TestController } from './controller-fixture.js';

/**
 * `/metrics` of a fleet with more hosts than PER_HOST_SERIES_MAX_HOSTS (rows written straight
 * into a real controller's database): the per-host gauges leave `/metrics` and are counted as
 * omitted, `/metrics/hosts` holds them for every active host with a heartbeat, and the status
 * counts are the ones the host list's views give.
 */
const HOSTS = 2 * PER_HOST_SERIES_MAX_HOSTS;
const STATUS_OF = (i: number): HostStatus => HOST_STATUSES[i % HOST_STATUSES.length]!;

let t: TestController;
let prom: string;
let reader: string;
/** Each host's name → its load1 and status, as seeded. */
const seeded = new Map<string, { load1: number; status: HostStatus }>();

beforeAll(async () => {
  t = await startController();
  const make = async (name: string, scopes: string[]) =>
    (await t.admin<OperatorCreateResponse>('POST', '/v1/operators', { name, scopes })).body.token ?? '';
  prom = await make('prometheus', ['metrics']);
  reader = await make('reader', ['read']);
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
    const name = `h-${String(i).padStart(5, '0')}`;
    const load1 = (i % 97) / 4;
    seeded.set(name, { load1, status });
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
      metrics:
        status === 'pending'
          ? null
          : JSON.stringify({
              ...heartbeatBody(`id-${i}`).metrics,
              load1,
              memAvailableBytes: i * 1024,
              diskFreeBytes: i * 4096,
            }),
      decommissioned_at: status === 'decommissioned' ? '2024-02-01T00:00:00.000Z' : null,
    };
  });
  for (let i = 0; i < rows.length; i += 100) {
    await t.db
      .insertInto('hosts')
      .values(rows.slice(i, i + 100))
      .execute();
  }
}, 60_000);
afterAll(async () => {
  await t.close();
});

async function text(path: string): Promise<string> {
  const res = await t.admin<string>('GET', path, undefined, prom);
  expect(res.status).toBe(200);
  return res.body;
}

/** `series value` lines of one metric name, as name{labels} → value. */
function samples(body: string, metric: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of body.split('\n')) {
    if (!line.startsWith(`${metric}{`)) continue;
    const space = line.lastIndexOf(' ');
    out.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return out;
}

describe('/metrics above the per-host series cap', () => {
  it('leaves the per-host gauges out and says for how many hosts', async () => {
    const body = await text('/metrics');
    const withHeartbeat = [...seeded.values()].filter(
      (h) => h.status !== 'pending' && h.status !== 'decommissioned',
    ).length;
    expect(withHeartbeat).toBeGreaterThan(PER_HOST_SERIES_MAX_HOSTS);
    expect(samples(body, 'corral_host_load1').size).toBe(0);
    expect(body).toContain(`\ncorral_host_series_omitted_hosts ${withHeartbeat}\n`);
    expect(body).toContain('# TYPE corral_services gauge');
  });

  it('/metrics/hosts holds the gauges of every active host with a heartbeat, and needs the metrics scope', async () => {
    const body = await text('/metrics/hosts');
    const load = samples(body, 'corral_host_load1');
    const expected = [...seeded].filter(([, h]) => h.status !== 'pending' && h.status !== 'decommissioned');
    expect(load.size).toBe(expected.length);
    for (const [name, h] of expected) expect(load.get(`corral_host_load1{host="${name}"}`)).toBe(h.load1);
    expect(samples(body, 'corral_host_disk_free_bytes').size).toBe(expected.length);
    const refused = await t.admin<{ error: { code: string } }>('GET', '/metrics/hosts', undefined, reader);
    expect([refused.status, refused.body.error.code]).toEqual([403, ErrorCode.SCOPE]);
  });

  it('counts hosts by status as the host views of the whole list do', async () => {
    const views: HostStatus[] = [];
    let cursor: string | null = null;
    for (let pages = 0; pages < 100; pages++) {
      const q = new URLSearchParams({ limit: String(MAX_HOST_PAGE_LIMIT) });
      if (cursor !== null) q.set('cursor', cursor);
      const res = await t.admin<HostListResponse>('GET', `/v1/hosts?${q.toString()}`);
      expect(res.status, JSON.stringify(res.body).slice(0, 300)).toBe(200);
      const page = res.body;
      views.push(...page.hosts.map((h) => h.status));
      cursor = page.nextCursor;
      if (cursor === null) break;
    }
    expect(views).toHaveLength(HOSTS);
    const body = await text('/metrics');
    for (const status of HOST_STATUSES) {
      const n = views.filter((s) => s === status).length;
      expect(n).toBeGreaterThan(0);
      expect(body).toContain(`\ncorral_hosts{status="${status}"} ${n}\n`);
    }
  });
});
