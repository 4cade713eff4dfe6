import { existsSync } from 'node:fs';
import { mkdir, readlink, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { packRelease } from '../controller/release/pack.js';
import { pushRelease } from '../controller/release/push.js';
import { fetchReleases } from '../controller/release/updater-client.js';
import { writeBundle, identityFromPem } from '../pki/index.js';
import type { Updater } from '../updater/index.js';
import {
  agentHealth,
  agentPidFile,
  buildRelease,
  CORRAL_BIN,
  createFleet,
  createWorker,
  killRecordedAgent,
  ROOT,
  spawnUpdater,
  startUpdater,
  target,
  tempDir,
  until,
  type Fleet,
  type UpdaterProcess,
  type Worker,
} from './updater-harness.js';

let fleet: Fleet;
let dir: string;
const procs: UpdaterProcess[] = [];
const pids: number[] = [];
const workers: Worker[] = [];
const inProcess: Updater[] = [];

beforeAll(async () => {
  fleet = await createFleet();
  dir = await tempDir('updater-self');
});

afterEach(async () => {
  for (const u of inProcess.splice(0)) await u.close();
  for (const p of procs.splice(0)) await p.stop();
  for (const pid of pids.splice(0)) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch (e: unknown) {
      void e; // already gone
    }
  }
  for (const w of workers.splice(0)) {
    await until(async () => (existsSync(agentPidFile(w)) ? undefined : true), 'agent stop', 10_000).catch(
      () => killRecordedAgent(w),
    );
  }
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

describe('update-self', () => {
  it('replaces the updater with the new release, which answers with its version; the agent keeps running', async () => {
    const w = await createWorker(fleet, join(dir, 'self'), 'w-self');
    workers.push(w);
    const port = await freePort();
    const p = await spawnUpdater(w, { listen: `127.0.0.1:${port}` });
    procs.push(p);
    const updaterStart = { command: process.execPath, args: [CORRAL_BIN, 'updater', 'serve'] };
    const [v1, v2] = await Promise.all([
      buildRelease(dir, '1.0.0', 'good', { updater: updaterStart }),
      buildRelease(dir, '2.0.0', 'good', { updater: updaterStart }),
    ]);
    const t = target(w, port);
    expect((await pushRelease({ file: v1.file, targets: [t], tls: fleet.controllerClient })).ok).toBe(true);
    const agentBefore = await until(() => agentHealth(w), 'agent');

    const report = await pushRelease({
      file: v2.file,
      targets: [t],
      tls: fleet.controllerClient,
      includeSelf: true,
    });
    expect(report.results[0]).toMatchObject({ outcome: 'self-updated', current: '2.0.0' });
    expect(report.ok).toBe(true);
    const rel = await fetchReleases(t, fleet.controllerClient);
    pids.push(rel.updater.pid);
    expect(rel.updater.version).toBe('2.0.0');
    expect(rel.updater.pid).not.toBe(p.child.pid);
    expect(await readlink(join(w.root, 'self', 'current'))).toBe('releases/2.0.0');
    // The agent was restarted once, for 2.0.0, and then handed over untouched.
    const agentAfter = await agentHealth(w);
    expect(agentAfter?.version).toBe('2.0.0');
    expect(agentAfter?.pid).not.toBe(agentBefore.pid);
    expect(rel.history.map((h) => h.outcome)).toEqual(['updated', 'updated', 'self-updated']);
  });

  it('refuses a self-update whose release does not say how to start the updater', async () => {
    const w = await createWorker(fleet, join(dir, 'noself'), 'w-noself');
    const u = await startUpdater(w);
    inProcess.push(u);
    const v1 = await buildRelease(dir, '1.0.0');
    const report = await pushRelease({
      file: v1.file,
      targets: [target(w, u.port)],
      tls: fleet.controllerClient,
      includeSelf: true,
    });
    expect(report.results[0]).toMatchObject({ outcome: 'failed', code: 'CORRAL_ERR_RELEASE_REFUSED' });
  });
});

describe('updater managing the real corral agent', () => {
  const agentBuilt = existsSync(join(ROOT, 'dist', 'agent', 'index.js'));

  /** A release whose start command runs `corral agent serve` from this checkout. */
  async function realAgentRelease(version: string, extraArgs: string[] = []) {
    const src = join(dir, `real-${version}`);
    await mkdir(src, { recursive: true });
    await writeFile(join(src, 'README'), `corral ${version}\n`);
    await writeFile(
      join(src, 'corral-release.json'),
      JSON.stringify({
        start: {
          command: process.execPath,
          args: [
            CORRAL_BIN,
            'agent',
            'serve',
            '--state-dir',
            '${agentStateDir}',
            '--listen',
            '127.0.0.1:0',
            '--no-systemd',
            ...extraArgs,
          ],
        },
        include: ['README'],
      }),
    );
    const packed = await packRelease({ dir: src, version, out: join(dir, `real-${version}.tar.gz`) });
    return packed.file;
  }

  it.skipIf(!agentBuilt)('installs, updates and rolls back the real agent', async () => {
    const w = await createWorker(fleet, join(dir, 'real'), 'w-real');
    workers.push(w);
    const agentId = await fleet.ca.issue({
      role: 'agent',
      hostId: 'w-real',
      commonName: 'w-real',
      ipAddresses: ['127.0.0.1'],
    });
    await writeBundle(join(w.stateDir, 'agent', 'bundle'), {
      caPem: fleet.ca.certPem,
      manifest: {
        version: 1,
        hostId: 'w-real',
        hostName: 'w-real',
        address: '127.0.0.1',
        agentPort: 0,
        updaterPort: 0,
        controller: '127.0.0.1:9',
        controllerClientFingerprint: identityFromPem(fleet.controllerClient.certPem).fingerprint,
        caFingerprint: fleet.ca.fingerprint,
      },
      identities: { agent: { certPem: agentId.certPem, keyPem: agentId.keyPem } },
    });
    const u = await startUpdater(w, { env: { PATH: process.env.PATH, HOME: process.env.HOME } });
    inProcess.push(u);
    const t = target(w, u.port);
    const tls = fleet.controllerClient;

    const first = await pushRelease({ file: await realAgentRelease('1.0.0'), targets: [t], tls });
    expect(first.results[0]).toMatchObject({ outcome: 'updated', current: '1.0.0' });
    expect((await agentHealth(w))?.version).toBe('1.0.0');
    const second = await pushRelease({ file: await realAgentRelease('1.1.0'), targets: [t], tls });
    expect(second.results[0]).toMatchObject({ outcome: 'updated', current: '1.1.0' });
    expect((await agentHealth(w))?.version).toBe('1.1.0');

    const bad = await pushRelease({
      file: await realAgentRelease('1.2.0', ['--heartbeat-interval', 'soon']),
      targets: [t],
      tls,
    });
    expect(bad.results[0], JSON.stringify(bad.results[0])).toMatchObject({
      outcome: 'rolled-back',
      current: '1.1.0',
    });
    expect(bad.results[0]?.agentOutput).toContain('--heartbeat-interval');
    expect((await agentHealth(w))?.version).toBe('1.1.0');
  });
});
