/**
 * The deploy health gate against real agents: a host's step succeeds only once its services
 * have run without a break for min healthy; a crashing service fails the step with its own
 * reason; a canary deploy of a crashing spec halts after the canary; `autoRevert` puts the
 * previous spec back as a second operation, and the processes running afterwards are the old
 * ones (read by command line from /proc).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { HostDetail, HostListResponse } from '../protocol/admin-hosts.js';
import type { DeployResponse } from '../protocol/deployment.js';
import type { OperationDetail } from '../protocol/operations.js';
import { corral, startController, waitFor, type TestController } from './controller-fixture.js';
import { addWorker, LIVENESS_INTERVAL_MS, spec, svc } from './deploy-fixture.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/** Short enough for a test, long enough that a crash loop (restarts 20-200 ms apart) shows. */
const MIN_HEALTHY_MS = 1_500;

async function fleet(names: readonly string[]): Promise<TestController> {
  const t = await startController({
    heartbeatIntervalMs: LIVENESS_INTERVAL_MS,
    deploy: { minHealthyMs: MIN_HEALTHY_MS, healthStartMs: 4_000 },
  });
  cleanups.push(() => t.close());
  for (const name of names) {
    const w = await addWorker(t, name);
    cleanups.push(() => w.destroy());
  }
  await waitFor(async () => {
    const { hosts } = (await t.admin<HostListResponse>('GET', '/v1/hosts')).body;
    return names.every((n) => hosts.find((h) => h.name === n)?.status === 'online');
  });
  return t;
}

const deploy = (t: TestController, body: unknown) => t.admin<DeployResponse>('POST', '/v1/deploy', body);
const messages = async (t: TestController, id: string | null) =>
  (await t.admin<OperationDetail>('GET', `/v1/ops/${id ?? ''}`)).body.log.map((l) => l.message);
const outcomes = (r: { hosts: readonly { host: string; outcome: string }[] }) =>
  r.hosts.map((h) => `${h.host}:${h.outcome}`);

/** `sleep N`, one per host: the version is in the command line. */
const good = (seconds: number) => spec(svc('web', { count: 3, args: ['-c', `exec sleep ${seconds}`] }));
/** Exits at once, every time: the agent restarts it until its limit, then marks it failed. */
const crashing = spec(svc('web', { count: 3, args: ['-c', 'echo broken >&2; exit 3'] }));

/** The command line of the process each host reports for its `web` instance. */
async function commandLines(t: TestController, names: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const name of names) {
    const res = await t.admin<HostDetail>('GET', `/v1/hosts/${name}`);
    if (res.status !== 200) throw new Error(`host ${name}: ${res.status} ${JSON.stringify(res.body)}`);
    const host = res.body;
    const web = host.services.find((s) => s.name.startsWith('web'));
    const cmdline =
      web?.pid != null
        ? (await readFile(`/proc/${web.pid}/cmdline`, 'utf8').catch(() => '')).split('\0').join(' ').trim()
        : '';
    out.push(`${name}:${cmdline}`);
  }
  return out;
}

describe('deploy health gate', () => {
  it('succeeds only after min healthy; a crashing service fails its host with the reason', async () => {
    const t = await fleet(['a-1']);
    const ok = await deploy(t, { spec: spec(svc('web', { args: ['-c', 'exec sleep 300'] })) });
    expect(ok.body).toMatchObject({ ok: true, state: 'succeeded' });
    const log = await messages(t, ok.body.operationId);
    expect(log).toContain('generation 1 accepted (1 services); waiting for its services to run for 1500 ms');
    expect(log).toContain('1 services running for 1500 ms');

    const bad = await deploy(t, { spec: spec(svc('web', { args: ['-c', 'echo broken >&2; exit 3'] })) });
    expect(bad.body).toMatchObject({ ok: false, state: 'failed' });
    const [host] = bad.body.hosts;
    expect(host?.outcome).toBe('failed');
    // The agent's own words for the service: its state and last error.
    expect(host?.reason).toMatch(/^unhealthy: (not healthy in time: )?web: (failed|restarting|starting)/);
    expect((await messages(t, bad.body.operationId)).at(-1)).toBe('deploy failed: 1 of 1 hosts failed');
  });

  it('a canary deploy of a crashing spec halts after the canary; auto-revert puts the old spec back', async () => {
    const names = ['a-1', 'b-1', 'c-1'];
    const t = await fleet(names);
    const first = await deploy(t, { spec: good(301) });
    expect(first.body).toMatchObject({ ok: true, state: 'succeeded' });
    const before = await commandLines(t, names);
    expect(before).toEqual(names.map((n) => `${n}:sleep 301`));

    // Without auto-revert: halted after the canary, the rest untouched, resumable.
    const halted = await deploy(t, { spec: crashing, rollout: { canary: 1, canaryWaitMs: 0 } });
    expect(halted.body).toMatchObject({ ok: false, state: 'halted' });
    expect(halted.body.reason).toMatch(/^halted at a-1: unhealthy: /);
    expect(outcomes(halted.body)).toEqual(['a-1:failed', 'b-1:untouched', 'c-1:untouched']);
    expect(halted.body.revert).toBeUndefined();
    expect((await commandLines(t, names)).slice(1)).toEqual(before.slice(1));
    const cancelled = await t.admin('POST', `/v1/ops/${halted.body.operationId ?? ''}/cancel`, {});
    expect(cancelled.status).toBe(200);

    // Put the good spec back, then the crashing one with auto-revert.
    expect((await deploy(t, { spec: good(302) })).body).toMatchObject({ ok: true });
    const reverted = await deploy(t, {
      spec: crashing,
      rollout: { canary: 1, canaryWaitMs: 0, autoRevert: true },
    });
    expect(reverted.body).toMatchObject({ ok: false });
    expect(reverted.body.state).not.toBe('halted');
    expect(reverted.body.reason).toMatch(/^a-1: unhealthy: .*; the previous spec is put back$/);
    expect(reverted.body.revert).toMatchObject({ state: 'succeeded', reason: null });
    const revertId = reverted.body.revert?.operationId ?? '';
    expect(revertId).not.toBe(reverted.body.operationId);
    expect((await messages(t, revertId))[0]).toBe(
      `auto-revert of ${reverted.body.operationId ?? ''}: the previous spec (3 services) goes back to 3 hosts`,
    );
    // Nothing to resume: the failed deploy was put right by the second operation.
    const resume = await t.admin('POST', `/v1/ops/${reverted.body.operationId ?? ''}/resume`, {});
    expect(resume.status).toBe(409);
    // The old processes run everywhere: the canary's crashing copy replaced by `sleep 302`.
    expect(await commandLines(t, names)).toEqual(names.map((n) => `${n}:sleep 302`));
  });

  it('corral controller deploy --min-healthy --auto-revert: progress on stderr, the revert shown, exit 1', async () => {
    const t = await fleet(['a-1']);
    const dir = await mkdtemp(join(tmpdir(), 'corral-gate-cli-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const target = ['--url', t.endpoints.admin, '--token', t.adminToken];
    const yaml = (args: string) =>
      `services:\n  - name: web\n    command: /bin/sh\n    args: ["-c", "${args}"]\n    stopGraceMs: 1000\n`;
    const goodFile = join(dir, 'good.yaml');
    const badFile = join(dir, 'bad.yaml');
    await writeFile(goodFile, yaml('exec sleep 303'));
    await writeFile(badFile, yaml('exit 3'));

    const tooLong = await corral(['controller', 'deploy', goodFile, '--min-healthy', '2h', ...target]);
    expect(tooLong.code).toBe(2);
    expect(tooLong.stderr).toContain('--min-healthy may be at most 1h');

    const ok = await corral(['controller', 'deploy', goodFile, '--min-healthy', '1s', ...target]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stderr).toContain(
      '[a-1] generation 1 accepted (1 services); waiting for its services to run for 1000 ms',
    );

    const bad = await corral([
      'controller',
      'deploy',
      badFile,
      '--min-healthy',
      '1s',
      '--auto-revert',
      ...target,
    ]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/auto-revert: operation \S+ succeeded/);
    expect(bad.stderr).toContain('1 of 1 hosts failed');
    expect(await commandLines(t, ['a-1'])).toEqual(['a-1:sleep 303']);
  });
});
