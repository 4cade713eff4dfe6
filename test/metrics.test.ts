/**
 * `/metrics` over a real controller: reachable with a `metrics`-scoped token (which reaches
 * nothing else) and refused to a `read` one; the per-host gauges carry the values the hosts'
 * last heartbeats reported; services, operations and approvals count what the API lists;
 * the syslog listener `serve` runs beside the controller counts ingested lines and refused
 * connections; the Node process series are there.
 */
import { once } from 'node:events';
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { controllerExtraListeners } from '../cli/commands/controller-serve.js';
import { escapeLabel } from '../controller/http/metrics.js';
import { clientTlsOptions } from '../pki/index.js';
import type { ApprovalPending } from '../protocol/approvals.js';
import type { EnrollResponse } from '../protocol/enrollment.js';
import { ErrorCode } from '../protocol/errors.js';
import type { OperationListResponse } from '../protocol/operations.js';
import type { OperatorCreateResponse } from '../protocol/operators.js';
import { encodeFrame } from '../protocol/syslog-frame.js';
import {
  agentMaterial,
  heartbeatBody,
  postJson,
  silentLog,
  startController,
  waitFor,
  workerClient,
  type TestController,
} from './controller-fixture.js';
import { spec, svc } from './deploy-fixture.js';
import { logLine } from './logs-fixtures.js';
import { freePort } from './rsyslog-fixtures.js';

type ErrorBody = { error: { code: string; message: string } };
let t: TestController;
let prom: string;
let reader: string;
let syslog: { endpoint: string; close(): Promise<void> } | undefined;
const hosts: Record<string, EnrollResponse> = {};

beforeAll(async () => {
  t = await startController({ heartbeatBudget: 'unlimited', approvals: { policy: { teardown: 1 } } });
  const make = async (name: string, scopes: string[]) =>
    (await t.admin<OperatorCreateResponse>('POST', '/v1/operators', { name, scopes })).body.token ?? '';
  prom = await make('prometheus', ['metrics']);
  reader = await make('reader', ['read']);
  const [extra] = controllerExtraListeners(t.dir, { host: '127.0.0.1', port: 0 }, silentLog);
  syslog = await extra?.start(t.controller, t.identity);
}, 60_000);
afterAll(async () => {
  await syslog?.close();
  await t?.close();
});

async function scrape(): Promise<string> {
  const res = await t.admin<string>('GET', '/metrics', undefined, prom);
  expect(res.status).toBe(200);
  return res.body;
}

/** The value of one series (`name{labels}` exactly as exposed), or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('/metrics', () => {
  it('needs the metrics scope, and that scope reaches nothing else', async () => {
    const refused = await t.admin<ErrorBody>('GET', '/metrics', undefined, reader);
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe(ErrorCode.SCOPE);
    expect(refused.body.error.message).toContain('metrics');
    const hostsRefused = await t.admin<ErrorBody>('GET', '/v1/hosts', undefined, prom);
    expect([hostsRefused.status, hostsRefused.body.error.code]).toEqual([403, ErrorCode.SCOPE]);
    expect((await t.admin('GET', '/metrics', undefined, null)).status).toBe(401);
    expect(await scrape()).toContain('# TYPE corral_hosts gauge');
  });

  it('has per-host gauges from the last heartbeats, and counts services, operations and approvals', async () => {
    const metrics = {
      'mx-1': { load1: 1.25, memAvailableBytes: 123_456_789, diskFreeBytes: 987_654_321 },
      'mx-2': { load1: 0, memAvailableBytes: 42, diskFreeBytes: 7 },
    };
    for (const [name, m] of Object.entries(metrics)) {
      const enrolled = await t.enroll(name, { agentPort: await freePort() });
      hosts[name] = enrolled;
      await using client = workerClient(t.endpoints.worker, agentMaterial(enrolled));
      const base = heartbeatBody(enrolled.hostId);
      const now = new Date().toISOString();
      const res = await postJson(client, '/v1/heartbeat', {
        ...base,
        metrics: { ...base.metrics, ...m },
        services:
          name === 'mx-1'
            ? [
                { name: 'a', state: 'running', restarts: 0, lastError: null, pid: 1, since: now },
                { name: 'b', state: 'running', restarts: 0, lastError: null, pid: 2, since: now },
                { name: 'c', state: 'failed', restarts: 3, lastError: 'exit 1', pid: null, since: now },
              ]
            : [],
      });
      expect(res.status).toBe(200);
    }
    // A deploy (its dispatch fails: no agent listens) and a teardown waiting for approval.
    expect((await t.admin('POST', '/v1/deploy', { spec: spec(svc('api')) })).status).toBe(200);
    const asked = await t.admin<ApprovalPending>('POST', '/v1/teardown', { service: 'api' });
    expect(asked.status).toBe(202);

    const text = await scrape();
    for (const [name, m] of Object.entries(metrics)) {
      expect(sample(text, `corral_host_load1{host="${name}"}`)).toBe(m.load1);
      expect(sample(text, `corral_host_memory_available_bytes{host="${name}"}`)).toBe(m.memAvailableBytes);
      expect(sample(text, `corral_host_disk_free_bytes{host="${name}"}`)).toBe(m.diskFreeBytes);
    }
    expect(sample(text, 'corral_services{state="running"}')).toBe(2);
    expect(sample(text, 'corral_services{state="failed"}')).toBe(1);
    expect(sample(text, 'corral_approvals_pending')).toBe(1);
    const ops = (await t.admin<OperationListResponse>('GET', '/v1/ops')).body.operations;
    const deploy = ops.find((o) => o.kind === 'deploy');
    expect(deploy).toBeDefined();
    expect(sample(text, `corral_operations{kind="deploy",outcome="${deploy?.state ?? ''}"}`)).toBe(1);
    expect(sample(text, 'corral_operations{kind="update",outcome="succeeded"}')).toBe(0);
    expect(sample(text, 'process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(sample(text, 'nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
    expect(text).toContain(`nodejs_version_info{version="${process.version}"} 1`);
  });

  it('counts log lines the syslog listener ingested and connections it refused, by reason', async () => {
    const before = await scrape();
    expect(sample(before, 'corral_log_lines_ingested_total')).toBe(0);
    const port = Number(syslog?.endpoint.split(':').pop());
    const enrolled = hosts['mx-1'];
    if (!enrolled) throw new Error('mx-1 was not enrolled');

    // A pinned agent certificate sends three lines as any RFC 5425 sender would.
    const socket = connect({
      ...clientTlsOptions(agentMaterial(enrolled), { roles: ['controller'] }),
      host: '127.0.0.1',
      port,
    });
    socket.on('error', () => undefined /* closed by the listener at the end */);
    await once(socket, 'secureConnect');
    socket.write(Buffer.concat([1, 2, 3].map((n) => encodeFrame(logLine(n, 200, 'mx-1')))));
    await waitFor(async () => sample(await scrape(), 'corral_log_lines_ingested_total') === 3);
    socket.destroy();

    // No client certificate at all: refused before any line is read.
    const bare = connect({ host: '127.0.0.1', port, ca: t.identity.ca.certPem, servername: 'localhost' });
    bare.on('error', () => undefined /* the listener refuses it */);
    await waitFor(async () => {
      const text = await scrape();
      return (
        (sample(text, 'corral_log_connections_refused_total{reason="handshake-failed"}') ?? 0) +
          (sample(text, 'corral_log_connections_refused_total{reason="no-certificate"}') ?? 0) >=
        1
      );
    });
    bare.destroy();
    const after = await scrape();
    expect(sample(after, 'corral_log_lines_dropped_total{reason="duplicate"}')).toBe(0);
    expect(sample(after, 'corral_log_connections_refused_total{reason="unpinned"}')).toBe(0);
  });

  it('escapes label values as the text format requires', () => {
    expect(escapeLabel('a"b\\c\nd')).toBe('a\\"b\\\\c\\nd');
  });
});
