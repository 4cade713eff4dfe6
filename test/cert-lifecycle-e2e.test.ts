import { chmod, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAdminClient, type AdminClient } from '../cli/admin-client.js';
import { corralJson } from '../cli/up/corral-cli.js';
import { spawnDaemon, type Daemon } from '../cli/up/daemon.js';
import { freePort } from '../cli/up/free-port.js';
import { isolatedEnv } from '../cli/up/local-controller.js';
import { loadControllerIdentity, openDatabase } from '../controller/index.js';
import { identityFromPem } from '../pki/index.js';
import type { AuditListResponse } from '../protocol/admin-audit.js';
import type { HostDetail } from '../protocol/admin-hosts.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import { metricValue, pinExpiredAgentCertificate } from './expired-cert-fixture.js';
import { CLI, poll, tempDir } from './fleet-fixture.js';

/**
 * Real processes: `corral controller serve` on fixed ports (so it can be restarted under the
 * same address the bundles name) and `corral agent serve` per worker.
 */
let dir: string;
let ctlDir: string;
let workerPort: number;
let joinPort: number;
let controller: Daemon | undefined;
let admin: AdminClient;
const env = isolatedEnv();
const agents: Daemon[] = [];

async function serve(): Promise<void> {
  controller = await spawnDaemon({
    name: 'controller',
    command: process.execPath,
    args: [
      CLI.bin,
      'controller',
      'serve',
      '--state-dir',
      ctlDir,
      '--admin-listen',
      '127.0.0.1:0',
      '--worker-listen',
      `127.0.0.1:${workerPort}`,
      '--join-listen',
      `127.0.0.1:${joinPort}`,
      '--syslog-listen',
      '127.0.0.1:0',
      // Long enough that a heartbeat followed by a renewal (two keys, two CSRs, fsyncs) stays
      // well inside the two intervals after which a host counts as stale, on a loaded machine.
      '--heartbeat-interval',
      '3s',
      '--log-level',
      'info',
    ],
    logFile: join(dir, 'controller.log'),
    env,
  });
  const endpoints = await poll('controller endpoints', async () => {
    const e = await readEndpointsFile(ctlDir).catch(() => undefined /* not written yet */);
    return e?.admin !== undefined && controller?.running() ? e : undefined;
  });
  const token = (await readFile(join(ctlDir, 'admin-token'), 'utf8')).trim();
  admin = createAdminClient({ url: endpoints.admin ?? '', token });
}

async function enroll(name: string): Promise<{ hostId: string; stateDir: string; agentPort: number }> {
  const stateDir = join(dir, name);
  const agentPort = await freePort();
  const e = await corralJson<{ hostId: string }>(
    CLI,
    [
      'controller',
      'enroll',
      '--state-dir',
      ctlDir,
      '--name',
      name,
      '--address',
      '127.0.0.1',
      '--agent-port',
      String(agentPort),
      '--updater-port',
      String(await freePort()),
      '--out-dir',
      join(stateDir, 'bundle'),
      '--json',
    ],
    { env },
  );
  return { hostId: e.hostId, stateDir, agentPort };
}

async function startAgent(w: { stateDir: string; agentPort: number }, extra: string[]): Promise<Daemon> {
  const agent = await spawnDaemon({
    name: 'agent',
    command: process.execPath,
    args: [
      CLI.bin,
      'agent',
      'serve',
      '--state-dir',
      w.stateDir,
      '--listen',
      `127.0.0.1:${w.agentPort}`,
      '--log-level',
      'info',
      '--no-systemd',
      ...extra,
    ],
    logFile: join(w.stateDir, 'agent.log'),
    env,
  });
  agents.push(agent);
  return agent;
}

const logLines = async (file: string): Promise<Record<string, unknown>[]> =>
  (await readFile(file, 'utf8').catch(() => ''))
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

beforeAll(async () => {
  dir = await tempDir('certlife');
  ctlDir = join(dir, 'controller');
  workerPort = await freePort();
  joinPort = await freePort();
  await corralJson(CLI, ['controller', 'init', '--state-dir', ctlDir, '--address', '127.0.0.1', '--json'], {
    env,
  });
  await serve();
}, 120_000);

afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  await controller?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

describe('certificate lifecycle with real processes', () => {
  it('an agent whose certificate expired while it was off says so once per backoff; /metrics counts it by host', async () => {
    const w = await enroll('exp-1');
    // The worker was switched off past its certificate's expiry: stop the controller, pin a
    // certificate minted in the past in its place, start the controller again.
    await controller?.stop();
    const identity = await loadControllerIdentity(ctlDir);
    const db = await openDatabase(identity.paths.database);
    const minted = await pinExpiredAgentCertificate(db, identity.ca, { id: w.hostId, name: 'exp-1' });
    await db.destroy();
    await writeFile(join(w.stateDir, 'bundle', 'agent.crt'), minted.certPem);
    await writeFile(join(w.stateDir, 'bundle', 'agent.key'), minted.keyPem, { mode: 0o600 });
    await chmod(join(w.stateDir, 'bundle', 'agent.key'), 0o600);
    await serve();

    const agent = await startAgent(w, ['--backoff-base', '300ms', '--backoff-cap', '600ms']);
    const expiredLines = await poll('four expiry lines in the agent log', async () => {
      const lines = (await logLines(agent.logFile)).filter((l) =>
        String(l.msg).startsWith('heartbeat failed'),
      );
      return lines.length >= 4 ? lines : undefined;
    });
    const expectedAt = minted.notAfter.toISOString();
    for (const [i, line] of expiredLines.entries()) {
      expect(line).toMatchObject({
        level: 50,
        msg: 'heartbeat failed: the agent certificate has expired and the controller refuses it; enroll this worker again',
        expiredAt: expectedAt,
        failures: i + 1,
      });
      expect(line.reEnroll).toEqual(expect.stringContaining('corral controller decommission exp-1 --yes'));
      expect(line.reEnroll).toEqual(expect.stringContaining('corral controller token create --name exp-1'));
      expect(line.reEnroll).toEqual(expect.stringContaining(join(w.stateDir, 'bundle')));
    }
    console.log('agent log line:', JSON.stringify(expiredLines[0]));

    const text = await admin.text('/metrics');
    expect(
      metricValue(text, 'corral_worker_certificates_expired_total{host="exp-1"}'),
    ).toBeGreaterThanOrEqual(4);
    expect(metricValue(text, 'corral_worker_tls_refused_total{reason="expired"}')).toBeGreaterThanOrEqual(4);
    console.log(
      text
        .split('\n')
        .filter((l) => l.includes('expired'))
        .join('\n'),
    );
    const refused = (await logLines(join(dir, 'controller.log'))).filter(
      (l) => l.msg === 'refused an expired worker certificate; the host must be enrolled again',
    );
    expect(refused[0]).toMatchObject({ hostName: 'exp-1', hostId: w.hostId, notAfter: expectedAt });
    await agent.stop();
  });

  it('repeated renewals by a real agent keep the host online, on its newest certificate', async () => {
    const w = await enroll('renew-loop');
    // Always due (renew 100 days before a 90-day expiry): the agent renews after every heartbeat.
    const agent = await startAgent(w, [
      '--heartbeat-interval',
      '500ms',
      '--renew-before',
      `${100 * 86_400_000}ms`,
    ]);
    const renewals = async (): Promise<number> =>
      (await admin.get<AuditListResponse>('/v1/audit?limit=1000')).entries.filter(
        (e) =>
          e.action === 'renew' &&
          e.target === 'renew-loop' &&
          (e.details as { role?: string }).role === 'agent',
      ).length;
    const statuses = new Set<string>();
    await poll(
      'six agent renewals',
      async () => {
        const d = await admin.get<HostDetail>('/v1/hosts/renew-loop');
        if (d.host.lastSeen !== null) statuses.add(d.host.status);
        return (await renewals()) >= 6 ? true : undefined;
      },
      120_000,
      200,
    );
    // Online throughout (after the first heartbeat), never stale or offline.
    expect([...statuses]).toEqual(['online']);
    const bundled = identityFromPem(await readFile(join(w.stateDir, 'bundle', 'agent.crt'), 'utf8'));
    const detail = await poll('the bundle certificate in use', async () => {
      const d = await admin.get<HostDetail>('/v1/hosts/renew-loop');
      const now = identityFromPem(await readFile(join(w.stateDir, 'bundle', 'agent.crt'), 'utf8'));
      return d.host.agentFingerprint === now.fingerprint && d.host.status === 'online' ? d : undefined;
    });
    expect(detail.pins.filter((p) => p.role === 'agent').length).toBeLessThanOrEqual(2);
    expect(bundled.hostId).toBe(w.hostId);
    const trouble = (await logLines(agent.logFile)).filter((l) => Number(l.level) >= 40);
    expect(trouble).toEqual([]);
    await agent.stop();
  });
});
