import { afterAll, describe, expect, it } from 'vitest';
import type { ServiceRestartResponse } from '../protocol/admin-restart.js';
import type { HostListResponse } from '../protocol/admin-hosts.js';
import type { AuditListResponse } from '../protocol/admin-audit.js';
import type { DeployResponse, ServiceListResponse } from '../protocol/deployment.js';
import { corral, startController, waitFor, type TestController } from './controller-fixture.js';
import { addWorker, LIVENESS_INTERVAL_MS, observedMap, spec, svc } from './deploy-fixture.js';
import { pidsWithMarker } from './fleet-fixture.js';

/**
 * `corral controller restart` against a real controller and a real agent (the built `corral`,
 * `npx tsc -p .` first): the service's process is replaced (a new pid, the old one gone, one
 * process after), an unknown service is refused with its code and changes nothing, and the
 * audit log has the entry.
 */
const tag = `restart-${process.pid}`;
const marker = `MARK-${tag}-web`;
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

describe('controller restart', { timeout: 120_000 }, () => {
  it('replaces the process on its host, refuses an unknown service, and is audited', async () => {
    const t: TestController = await startController({ heartbeatIntervalMs: LIVENESS_INTERVAL_MS });
    cleanups.push(() => t.close());
    const w = await addWorker(t, 'rs-a', {});
    cleanups.push(() => w.destroy());
    await waitFor(async () => {
      const { hosts } = (await t.admin<HostListResponse>('GET', '/v1/hosts')).body;
      return hosts.find((h) => h.name === 'rs-a')?.status === 'online';
    });
    const web = svc('rs-web', { args: ['-c', `while true; do sleep 1; done # ${marker}`] });
    expect((await t.admin<DeployResponse>('POST', '/v1/deploy', { spec: spec(web) })).status).toBe(200);
    const observed = async () =>
      observedMap((await t.admin<ServiceListResponse>('GET', '/v1/services')).body.services);
    await waitFor(async () => (await observed())['rs-web@rs-a'] === 'running');
    await waitFor(async () => (await pidsWithMarker(marker)).length === 1);
    const [before] = await pidsWithMarker(marker);
    const target = ['--url', t.endpoints.admin, '--token', t.adminToken];

    const r = await corral(['controller', 'restart', 'rs-web', '--json', ...target]);
    expect(r.code, r.stderr).toBe(0);
    const answer = JSON.parse(r.stdout) as ServiceRestartResponse;
    expect(answer.ok).toBe(true);
    expect(answer.state).toBe('succeeded');
    expect(answer.instances.map((i) => [i.host, i.instance, i.ok])).toEqual([['rs-a', 'rs-web', true]]);
    await waitFor(async () => {
      const now = await pidsWithMarker(marker);
      return now.length === 1 && now[0] !== before;
    });

    const table = await corral(['controller', 'restart', 'rs-web', '--host', 'rs-a', ...target]);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/rs-a/);

    const unknown = await corral(['controller', 'restart', 'nope', '--json', ...target]);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain('CORRAL_ERR_NOT_FOUND');
    expect((await pidsWithMarker(marker)).length).toBe(1);

    const audit = (await t.admin<AuditListResponse>('GET', '/v1/audit')).body;
    expect(JSON.stringify(audit)).toContain('service rs-web');
  });
});
