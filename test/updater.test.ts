import { readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pushRelease } from '../controller/release/push.js';
import { fetchReleases, requestRollback } from '../controller/release/updater-client.js';
import { clientTlsOptions, type TlsMaterial } from '../pki/index.js';
import type { PausePhase, Updater } from '../updater/index.js';
import {
  agentHealth,
  agentVersion,
  buildRelease,
  createFleet,
  createWorker,
  startUpdater,
  target,
  tempDir,
  until,
  type BuiltRelease,
  type Fleet,
  type Worker,
} from './updater-harness.js';

let fleet: Fleet;
let dir: string;
let v1: BuiltRelease;
let v2: BuiltRelease;
let v2crash: BuiltRelease;
let v2silent: BuiltRelease;
const open: Updater[] = [];

beforeAll(async () => {
  fleet = await createFleet();
  dir = await tempDir('updater');
  [v1, v2, v2crash, v2silent] = await Promise.all([
    buildRelease(dir, '1.0.0'),
    buildRelease(dir, '2.0.0'),
    buildRelease(dir, '2.0.0', 'crash'),
    buildRelease(dir, '2.0.0', 'silent'),
  ]);
});

afterEach(async () => {
  for (const u of open.splice(0)) await u.close();
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let workerCount = 0;
async function worker(options: Parameters<typeof startUpdater>[1] = {}): Promise<{ w: Worker; u: Updater }> {
  const w = await createWorker(fleet, join(dir, `w${++workerCount}`), `w-${workerCount}`);
  const u = await startUpdater(w, options);
  open.push(u);
  return { w, u };
}

async function push(w: Worker, u: Updater, release: BuiltRelease, extra: { force?: boolean } = {}) {
  const report = await pushRelease({
    file: release.file,
    sha256: release.sha256,
    targets: [target(w, u.port)],
    tls: fleet.controllerClient,
    ...extra,
  });
  return report.results[0]!;
}

describe('updater with a real agent process (the stand-in agent shipped in each release)', () => {
  it('puts a good release live: current swaps and the agent reports the new version', async () => {
    const { w, u } = await worker();
    expect(u.recovery.current).toBeNull();
    const first = await push(w, u, v1);
    expect(first).toMatchObject({ outcome: 'updated', current: '1.0.0' });
    expect(await agentVersion(w)).toBe('1.0.0');

    const second = await push(w, u, v2);
    expect(second).toMatchObject({ outcome: 'updated', current: '2.0.0', reason: null });
    expect(await agentVersion(w)).toBe('2.0.0');
    expect(await readlink(join(w.root, 'current'))).toBe('releases/2.0.0');

    const rel = await fetchReleases(target(w, u.port), fleet.controllerClient);
    expect(rel.current).toBe('2.0.0');
    expect(rel.previous).toBe('1.0.0');
    expect(rel.releases.map((r) => [r.version, r.active])).toEqual([
      ['1.0.0', false],
      ['2.0.0', true],
    ]);
    expect(rel.history.map((h) => [h.version, h.outcome])).toEqual([
      ['1.0.0', 'updated'],
      ['2.0.0', 'updated'],
    ]);
  });

  it('rolls back on its own when the new agent exits, with the reason and its last output', async () => {
    const { w, u } = await worker();
    await push(w, u, v1);
    const result = await push(w, u, v2crash);
    expect(result.outcome).toBe('rolled-back');
    expect(result.current).toBe('1.0.0');
    expect(result.reason).toContain('exited with code 3');
    expect(result.agentOutput).toContain('configuration missing');
    expect(await agentVersion(w)).toBe('1.0.0');
    expect(await readlink(join(w.root, 'current'))).toBe('releases/1.0.0');
    expect(await readdir(join(w.root, 'releases'))).toEqual(['1.0.0']);
  });

  it('rolls back when the new agent never reports its version within the timeout', async () => {
    const { w, u } = await worker({ healthTimeoutMs: 1500 });
    await push(w, u, v1);
    const result = await push(w, u, v2silent);
    expect(result).toMatchObject({ outcome: 'rolled-back', current: '1.0.0' });
    expect(result.reason).toContain('did not report version 2.0.0 within 1500 ms');
    expect(result.agentOutput).toContain('never healthy');
    expect(await agentVersion(w)).toBe('1.0.0');
  });

  it('refuses a version that rolled back, until it is pushed with force', async () => {
    const { w, u } = await worker();
    await push(w, u, v1);
    expect((await push(w, u, v2crash)).outcome).toBe('rolled-back');

    const again = await push(w, u, v2crash);
    expect(again).toMatchObject({ outcome: 'failed', code: 'CORRAL_ERR_RELEASE_REFUSED' });
    expect(again.reason).toContain('push it with force');
    expect(await agentVersion(w)).toBe('1.0.0');
    // A fixed build under the same version goes in only with force.
    expect((await push(w, u, v2)).code).toBe('CORRAL_ERR_RELEASE_REFUSED');
    const forced = await push(w, u, v2, { force: true });
    expect(forced).toMatchObject({ outcome: 'updated', current: '2.0.0' });
    expect(await agentVersion(w)).toBe('2.0.0');

    const history = (await fetchReleases(target(w, u.port), fleet.controllerClient)).history;
    expect(history.map((h) => h.outcome)).toEqual([
      'updated',
      'rolled-back',
      'refused',
      'refused',
      'updated',
    ]);
    expect(history.at(-1)?.forced).toBe(true);
  });

  it('rolls back to the previous release on request, and keeps only the last K releases', async () => {
    const { w, u } = await worker({ keep: 3 });
    for (const v of ['1.0.0', '1.1.0', '1.2.0', '1.3.0']) {
      const r = await buildRelease(dir, v);
      expect((await push(w, u, r)).outcome).toBe('updated');
    }
    expect((await readdir(join(w.root, 'releases'))).sort()).toEqual(['1.1.0', '1.2.0', '1.3.0']);
    const rb = await requestRollback(target(w, u.port), fleet.controllerClient);
    expect(rb).toMatchObject({ outcome: 'rolled-back', current: '1.2.0', previous: '1.3.0' });
    expect(await agentVersion(w)).toBe('1.2.0');
  });

  it('supervises the live agent: when it dies, it is started again', async () => {
    const { w, u } = await worker();
    await push(w, u, v1);
    const first = await until(() => agentHealth(w), 'the agent');
    process.kill(first.pid, 'SIGKILL');
    const again = await until(async () => {
      const h = await agentHealth(w);
      return h && h.pid !== first.pid ? h : undefined;
    }, 'the agent to be restarted');
    expect(again.version).toBe('1.0.0');
  });

  it('pushes to several hosts concurrently and reports progress per host', async () => {
    // Each updater holds its update once the upload is staged, until every updater has one
    // staged, or for at most HOLD_MS. A pusher that waits for one host's answer before it
    // uploads to the next leaves every host but the last to wait out the bound: named below.
    const HOSTS = 3;
    const HOLD_MS = 15_000;
    const stagedAt: number[] = [];
    const waitedOut: number[] = [];
    let allStaged!: () => void;
    const everyone = new Promise<void>((resolve) => (allStaged = resolve));
    const hold =
      (host: number) =>
      async (phase: PausePhase): Promise<void> => {
        if (phase !== 'staged') return;
        stagedAt.push(host);
        if (stagedAt.length === HOSTS) allStaged();
        const bound = new AbortController();
        const outcome = await Promise.race([
          everyone.then(() => 'together' as const),
          sleep(HOLD_MS, 'alone' as const, { signal: bound.signal }),
        ]);
        bound.abort();
        if (outcome === 'alone') waitedOut.push(host);
      };
    const hosts = [];
    for (let i = 0; i < HOSTS; i++) hosts.push(await worker({ pause: hold(i) }));
    const phases: string[] = [];
    const report = await pushRelease({
      file: v1.file,
      targets: hosts.map((h) => target(h.w, h.u.port)),
      tls: fleet.controllerClient,
      concurrency: HOSTS,
      onProgress: (p) => phases.push(`${p.hostName}:${p.phase}`),
    });
    expect(stagedAt.sort()).toEqual([0, 1, 2]);
    expect(waitedOut, 'hosts held with no other upload staged beside them').toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.results.map((r) => [r.hostName, r.outcome])).toEqual(
      hosts.map((h) => [h.w.name, 'updated']),
    );
    for (const { w } of hosts) {
      expect(phases).toContain(`${w.name}:uploading`);
      expect(phases).toContain(`${w.name}:done`);
      expect(await agentVersion(w)).toBe('1.0.0');
    }
  }, 120_000);

  it('fails a host whose updater certificate is not the pinned one', async () => {
    const a = await worker();
    const b = await worker();
    const wrong = { ...target(a.w, a.u.port), updaterFingerprint: b.w.updaterFingerprint };
    const report = await pushRelease({ file: v1.file, targets: [wrong], tls: fleet.controllerClient });
    expect(report.ok).toBe(false);
    expect(report.results[0]).toMatchObject({ outcome: 'failed', code: 'CORRAL_ERR_PIN_MISMATCH' });
  });
});

describe('pruning never removes the rollback target', () => {
  const releases = async (w: Worker): Promise<string[]> => (await readdir(join(w.root, 'releases'))).sort();

  it('keep 1 (raised to 2) keeps current and previous through updates, rollbacks and a failed push', async () => {
    const { w, u } = await worker({ keep: 1 });
    const t = target(w, u.port);
    const r = Object.fromEntries(
      await Promise.all(
        ['1.0.0', '2.0.0', '3.0.0', '4.0.0'].map(async (v) => [v, await buildRelease(dir, v)] as const),
      ),
    );
    for (const v of ['1.0.0', '2.0.0', '3.0.0']) expect((await push(w, u, r[v]!)).outcome).toBe('updated');
    expect(await releases(w)).toEqual(['2.0.0', '3.0.0']);
    expect(await requestRollback(t, fleet.controllerClient)).toMatchObject({
      current: '2.0.0',
      previous: '3.0.0',
    });
    expect(await releases(w)).toEqual(['2.0.0', '3.0.0']);
    // The new release's rollback target is 2.0.0 (where it came from), not the newer 3.0.0.
    expect((await push(w, u, r['4.0.0']!)).outcome).toBe('updated');
    expect(await releases(w)).toEqual(['2.0.0', '4.0.0']);
    expect((await fetchReleases(t, fleet.controllerClient)).previous).toBe('2.0.0');
    // A release that rolls back changes neither.
    const bad = await buildRelease(dir, '5.0.0', 'crash');
    expect((await push(w, u, bad)).outcome).toBe('rolled-back');
    expect(await releases(w)).toEqual(['2.0.0', '4.0.0']);
    expect(await requestRollback(t, fleet.controllerClient)).toMatchObject({
      outcome: 'rolled-back',
      current: '2.0.0',
    });
    expect(await agentVersion(w)).toBe('2.0.0');
  });

  it('a failed re-push of the rollback target under its own version puts the old copy back', async () => {
    const { w, u } = await worker({ keep: 2 });
    const t = target(w, u.port);
    await push(w, u, v1);
    await push(w, u, v2);
    const before = (await fetchReleases(t, fleet.controllerClient)).releases.find(
      (x) => x.version === '1.0.0',
    );
    // A different (broken) build named 1.0.0: it replaces the copy on disk only if it works.
    const broken = await buildRelease(dir, '1.0.0', 'crash');
    const result = await push(w, u, broken);
    expect(result).toMatchObject({ outcome: 'rolled-back', current: '2.0.0' });
    expect(await releases(w)).toEqual(['1.0.0', '2.0.0']);
    const rel = await fetchReleases(t, fleet.controllerClient);
    expect(rel.previous).toBe('1.0.0');
    expect(rel.releases.find((x) => x.version === '1.0.0')).toEqual(before);
    const manifest = await readFile(join(w.root, 'releases', '1.0.0', 'manifest.json'), 'utf8');
    expect(manifest).toContain('"good"');
    expect(await requestRollback(t, fleet.controllerClient)).toMatchObject({
      outcome: 'rolled-back',
      current: '1.0.0',
    });
    expect(await agentVersion(w)).toBe('1.0.0');
  });
});

/** Stands in for a service manager (`systemctl restart corral-agent`): restarts the agent from ROOT/current. */
const RESTART_SCRIPT = `import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
const [root, agentStateDir, pidFile] = process.argv.slice(2);
try { process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGTERM'); } catch { /* none running */ }
const release = root + '/current';
const manifest = JSON.parse(readFileSync(release + '/manifest.json', 'utf8'));
const args = manifest.start.args.map((a) => a.replaceAll('\${release}', release).replaceAll('\${agentStateDir}', agentStateDir));
const child = spawn(manifest.start.command, args, { detached: true, stdio: 'ignore', env: process.env });
writeFileSync(pidFile, String(child.pid));
child.unref();
console.log('service manager restarted the agent for ' + process.env.CORRAL_RELEASE_VERSION);
`;

describe('updater with a configured restart command', () => {
  it('restarts the agent through the command, and still rolls back an unhealthy release', async () => {
    const script = join(dir, 'restart-agent.mjs');
    await writeFile(script, RESTART_SCRIPT);
    const pidFile = join(dir, 'service-manager.pid');
    const w = await createWorker(fleet, join(dir, 'cmd'), 'w-cmd');
    const agentStateDir = join(w.stateDir, 'agent');
    const u = await startUpdater(w, {
      agentRestartCommand: [process.execPath, script, w.root, agentStateDir, pidFile],
      healthTimeoutMs: 3000,
    });
    open.push(u);
    try {
      expect(await push(w, u, v1)).toMatchObject({ outcome: 'updated', current: '1.0.0' });
      expect(await agentVersion(w)).toBe('1.0.0');
      const result = await push(w, u, v2crash);
      expect(result).toMatchObject({ outcome: 'rolled-back', current: '1.0.0' });
      expect(result.reason).toContain('did not report version 2.0.0');
      expect(result.agentOutput).toContain('restarted the agent for 2.0.0');
      expect(await agentVersion(w)).toBe('1.0.0');
    } finally {
      process.kill(Number(await readFile(pidFile, 'utf8')), 'SIGTERM');
    }
  });
});

describe('push dry run', () => {
  it('contacts each updater and says what would happen, changing nothing', async () => {
    const { w, u } = await worker();
    await push(w, u, v1);
    const dry = await pushRelease({
      file: v2.file,
      targets: [target(w, u.port)],
      tls: fleet.controllerClient,
      dryRun: true,
    });
    expect(dry.results[0]).toMatchObject({
      outcome: 'dry-run',
      current: '1.0.0',
      reason: 'would update 1.0.0 -> 2.0.0',
    });
    expect(dry.ok).toBe(false);
    expect(await agentVersion(w)).toBe('1.0.0');
  });
});

describe('updater access', () => {
  async function call(port: number, material: TlsMaterial) {
    const dispatcher = new Agent({ connect: clientTlsOptions(material, { roles: ['updater'] }) });
    try {
      const res = await request(`https://localhost:${port}/v1/releases`, { dispatcher });
      return { status: res.statusCode, body: (await res.body.json()) as { error?: { code: string } } };
    } finally {
      await dispatcher.close();
    }
  }

  it('answers 403 to any certificate but the pinned controller-client', async () => {
    const { u } = await worker();
    const ok = await call(u.port, fleet.controllerClient);
    expect(ok.status).toBe(200);

    const operator = await fleet.ca.issue({ role: 'operator', commonName: 'alice' });
    const agent = await fleet.ca.issue({ role: 'agent', hostId: 'w-9', commonName: 'w-9' });
    const otherClient = await fleet.ca.issue({ role: 'controller-client', commonName: 'controller-client' });
    // The same answers as the agent's guard (kit/fastify/pinned-peer.ts): another role is
    // FORBIDDEN, the right role with another certificate PIN_MISMATCH.
    for (const [cert, code] of [
      [operator, 'CORRAL_ERR_FORBIDDEN'],
      [agent, 'CORRAL_ERR_FORBIDDEN'],
      [otherClient, 'CORRAL_ERR_PIN_MISMATCH'],
    ] as const) {
      const res = await call(u.port, { caPem: fleet.ca.certPem, certPem: cert.certPem, keyPem: cert.keyPem });
      expect({ status: res.status, code: res.body.error?.code }).toEqual({ status: 403, code });
    }
  });
});
