import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CliExit } from '../cli/exit.js';
import { buildProgram } from '../cli/program.js';
import type { AuditEntry } from '../protocol/admin-audit.js';
import type { AdminDiagnoseResponse } from '../protocol/admin-diagnose.js';
import type { DeployResponse } from '../protocol/deployment.js';
import type { EventsPage } from '../protocol/fleet-events.js';
import {
  agentMaterial,
  standInAgent,
  startController,
  waitFor,
  type TestController,
} from './controller-fixture.js';
import {
  addWorker,
  LIVENESS_INTERVAL_MS,
  observedMap,
  servicesOf,
  spec,
  svc,
  type FleetWorker,
} from './deploy-fixture.js';

type Err = { error: { code: string; message: string } };

let t: TestController;
let worker: FleetWorker;
beforeAll(async () => {
  t = await startController({ heartbeatIntervalMs: LIVENESS_INTERVAL_MS });
  worker = await addWorker(t, 'diag-a');
  await waitFor(async () =>
    (await t.admin<EventsPage>('GET', '/v1/events')).body.events.some((e) => e.kind === 'host.online'),
  );
  const deployed = await t.admin<DeployResponse>('POST', '/v1/deploy', {
    spec: spec(
      svc('talker', {
        args: ['-c', 'echo hello-from-talker; printf "red \\033[31m alert\\007\\n" >&2; exec sleep 300'],
      }),
    ),
  });
  expect(deployed.status).toBe(200);
  await waitFor(async () => observedMap(await servicesOf(t))['talker@diag-a'] === 'running');
});
afterAll(async () => {
  await worker.destroy();
  await t.close();
});

const diagnose = (host: string, body: Record<string, unknown>) =>
  t.admin<AdminDiagnoseResponse & Err>('POST', `/v1/hosts/${host}/diagnose`, body);
const diagnoseAudit = async (): Promise<AuditEntry[]> =>
  (await t.admin<{ entries: AuditEntry[] }>('GET', '/v1/audit?limit=1000')).body.entries.filter(
    (e) => e.action === 'diagnose',
  );

/** Runs one `corral` command in this process against the test controller, output captured. */
async function cli(...args: string[]): Promise<{ out: string; err: string; exit: number }> {
  let out = '';
  let err = '';
  const argv = [...args, '--url', t.endpoints.admin, '--token', t.adminToken];
  const io = { out: (s: string) => (out += s), err: (s: string) => (err += s) };
  const program = await buildProgram({ version: '0.0.0-test', io }, argv);
  try {
    await program.parseAsync(['node', 'corral', ...argv]);
    return { out, err, exit: 0 };
  } catch (e: unknown) {
    if (e instanceof CliExit) return { out, err: err + e.message, exit: e.exitCode };
    const code = (e as { code?: unknown }).code;
    return { out, err: `${err}${e instanceof Error ? e.message : String(e)} (${String(code)})`, exit: 1 };
  }
}

describe('controller diagnose', () => {
  it('tells the deploy that started the service as operation events with their outcome', async () => {
    const events = (await t.admin<EventsPage>('GET', '/v1/events?limit=1000')).body.events;
    const ops = events.filter((e) => e.kind.startsWith('operation.'));
    expect(ops.map((e) => [e.kind, e.data.kind, e.data.outcome ?? null])).toEqual([
      ['operation.started', 'deploy', null],
      ['operation.finished', 'deploy', 'succeeded'],
    ]);
    expect(new Set(ops.map((e) => e.operationId)).size).toBe(1);
    await waitFor(async () =>
      (await t.admin<EventsPage>('GET', '/v1/events?limit=1000')).body.events.some(
        (e) => e.kind === 'service.state_changed' && e.service === 'talker' && e.data.to === 'running',
      ),
    );
  });

  it('runs each allow-listed diagnostic on the real agent over its pinned connection, audited', async () => {
    const memory = await diagnose('diag-a', { kind: 'memory' });
    expect(memory.status).toBe(200);
    expect(memory.body).toMatchObject({ host: 'diag-a', hostId: worker.hostId, result: { kind: 'memory' } });
    if (memory.body.result.kind !== 'memory') throw new Error('not a memory result');
    expect(memory.body.result.totalBytes).toBeGreaterThan(0);
    expect(memory.body.result.agentRssBytes).toBeGreaterThan(0);

    const disk = await diagnose('diag-a', { kind: 'disk' });
    expect(disk.status).toBe(200);
    if (disk.body.result.kind !== 'disk') throw new Error('not a disk result');
    expect(disk.body.result.filesystems.length).toBeGreaterThan(0);

    const processes = await diagnose('diag-a', { kind: 'processes' });
    if (processes.body.result.kind !== 'processes') throw new Error('not a processes result');
    expect(processes.body.result.total).toBeGreaterThan(0);

    const tail = await diagnose('diag-a', { kind: 'log-tail', service: 'talker', lines: 10 });
    expect(tail.status).toBe(200);
    if (tail.body.result.kind !== 'log-tail') throw new Error('not a log-tail result');
    expect(tail.body.result.stdout.join('\n')).toContain('hello-from-talker');
    expect(tail.body.result.stderr.join('\n')).toContain('red \u001b[31m alert\u0007');

    const unknown = await diagnose('diag-a', { kind: 'log-tail', service: 'nope' });
    expect([unknown.status, unknown.body.error.code]).toEqual([404, 'CORRAL_ERR_NOT_FOUND']);
    const noService = await diagnose('diag-a', { kind: 'log-tail' });
    expect([noService.status, noService.body.error.code]).toEqual([400, 'CORRAL_ERR_VALIDATION']);

    expect(
      (await diagnoseAudit()).map((e) => [e.actor, e.target, e.details.kind, e.details.outcome]),
    ).toEqual([
      ['admin', 'diag-a', 'memory', 'ok'],
      ['admin', 'diag-a', 'disk', 'ok'],
      ['admin', 'diag-a', 'processes', 'ok'],
      ['admin', 'diag-a', 'log-tail', 'ok'],
      ['admin', 'diag-a', 'log-tail', 'CORRAL_ERR_NOT_FOUND'],
    ]);

    // The CLI: a readable view, the worker's bytes escaped.
    const shown = await cli('controller', 'diagnose', 'diag-a', 'log-tail', '--service', 'talker');
    expect([shown.exit, shown.err]).toEqual([0, '']);
    expect(shown.out).toContain('stdout | hello-from-talker\n');
    expect(shown.out).toContain('stderr | red \\x1b[31m alert\\x07\n');
    // eslint-disable-next-line no-control-regex -- no raw control byte may reach the terminal
    expect(shown.out).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/);
    const mem = await cli('controller', 'diagnose', 'diag-a', 'memory');
    expect(mem.out).toMatch(/^memory total\s+\d+ bytes$/m);
  });

  it('refuses a kind outside the allow-list with its own code before any agent is called', async () => {
    const before = (await diagnoseAudit()).length;
    const refused = await diagnose('diag-a', { kind: 'shell' });
    expect([refused.status, refused.body.error.code]).toEqual([400, 'CORRAL_ERR_DIAGNOSTIC_NOT_ALLOWED']);
    expect(refused.body.error.message).toContain('disk, memory, processes, log-tail');
    // Nothing was called, so nothing was audited; even for a host that does not exist.
    expect(await diagnose('no-such-host', { kind: '../../etc/passwd' })).toMatchObject({
      status: 400,
      body: { error: { code: 'CORRAL_ERR_DIAGNOSTIC_NOT_ALLOWED' } },
    });
    expect(await diagnoseAudit()).toHaveLength(before);

    const cliRefused = await cli('controller', 'diagnose', 'diag-a', 'shell');
    expect(cliRefused.exit).toBe(2);
    expect(cliRefused.err).toContain('CORRAL_ERR_DIAGNOSTIC_NOT_ALLOWED');

    // With the agent down a refused kind is still the same refusal; an allowed one fails the call, audited.
    await worker.stop();
    expect((await diagnose('diag-a', { kind: 'shell' })).body.error.code).toBe(
      'CORRAL_ERR_DIAGNOSTIC_NOT_ALLOWED',
    );
    const down = await diagnose('diag-a', { kind: 'memory' });
    expect([down.status, down.body.error.code]).toEqual([503, 'CORRAL_ERR_UNAVAILABLE']);
    expect((await diagnoseAudit()).at(-1)?.details).toMatchObject({
      kind: 'memory',
      outcome: 'CORRAL_ERR_UNAVAILABLE',
    });
    await worker.start();
  });

  it('does not ask an agent whose certificate is not the one pinned for the host', async () => {
    const impostor = await standInAgent();
    const enrolled = await t.enroll('diag-imp', { agentPort: impostor.port });
    // A certificate of this CA and the agent role, but pinned to another host.
    const other = await t.enroll('diag-other');
    impostor.arm(agentMaterial(other), enrolled.hostId);
    const res = await diagnose('diag-imp', { kind: 'memory' });
    expect([res.status, res.body.error.code]).toEqual([503, 'CORRAL_ERR_UNAVAILABLE']);
    expect(res.body.error.message).toContain('CORRAL_ERR_PIN_MISMATCH');
    expect(impostor.calls).toEqual([]);
    await impostor.close();
  });
});
