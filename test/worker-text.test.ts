import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeployResponse, ServiceView } from '../protocol/deployment.js';
import type { HostDetail } from '../protocol/admin-hosts.js';
import { ErrorCode } from '../protocol/errors.js';
import type { OperationDetail } from '../protocol/operations.js';
import {
  agentMaterial,
  heartbeatBody,
  lifecycleEvent,
  postJson,
  startController,
  workerClient,
  type TestController,
} from './controller-fixture.js';

/**
 * What a compromised worker sends, as text: a screen clear (CSI), a clipboard write (OSC 52),
 * a window title (OSC 0 ended by ST), BEL, 8-bit C1 CSI and OSC, a CR that would overwrite the
 * line, an LF that would fake a table row, a bidi override and a line separator.
 */
const HOSTILE =
  'boom\u001b[2J\u001b]52;c;cm0gLXJmIH4K\u0007\u001b]0;owned\u001b\\\u0007\u009b31m\u009d0;t\u009c' +
  '\rFAKE\nweb-9  online\u202egnp.exe\u2028end';
/** The same, as the CLI must show it. */
const SHOWN =
  'boom\\x1b[2J\\x1b]52;c;cm0gLXJmIH4K\\x07\\x1b]0;owned\\x1b\\\\x07\\x9b31m\\x9d0;t\\x9c' +
  '\\rFAKE\\nweb-9  online\\u{202e}gnp.exe\\u{2028}end';

const AGENT_VERSIONS: readonly (readonly [string, string])[] = [
  ['ESC', '1.0.0\u001b'],
  ['BEL', '1.0.0\u0007'],
  ['CSI', '1.0.0\u001b[2J'],
  ['OSC 52', '1\u001b]52;c;cm0gLXJmIH4K\u0007'],
  ['C1 CSI', '1.0.0\u009b31m'],
  ['CR', '1.0.0\rFAKE'],
  ['LF', '1.0.0\nweb-9'],
  ['bidi override', '1.0.0\u202e'],
  ['space', '1.0.0 beta'],
  ['too long', '1'.repeat(65)],
];

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The built `corral` binary as a separate process; stdout and stderr as raw bytes. */
function cli(
  t: TestController,
  ...args: string[]
): Promise<{ code: number; stdout: Buffer; stderr: Buffer }> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [join(ROOT, 'bin', 'corral.js'), ...args, '--url', t.endpoints.admin, '--token', t.adminToken],
      { encoding: 'buffer', maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        done({ code, stdout, stderr });
      },
    );
  });
}

/**
 * Bytes a terminal could act on, in output bytes: C0 controls but LF and TAB, DEL, UTF-8 C1
 * (C2 80–C2 9F), and UTF-8 of U+200B–U+200F, U+2028–U+202E, U+2066–U+2069.
 */
function actionable(bytes: Buffer): string[] {
  const found: string[] = [];
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i] ?? 0;
    const next = bytes[i + 1] ?? 0;
    const third = bytes[i + 2] ?? 0;
    if ((b < 0x20 && b !== 0x0a && b !== 0x09) || b === 0x7f) found.push(`0x${b.toString(16)} at ${i}`);
    else if (b === 0xc2 && next >= 0x80 && next <= 0x9f) found.push(`C1 0x${next.toString(16)} at ${i}`);
    else if (
      b === 0xe2 &&
      ((next === 0x80 && ((third >= 0x8b && third <= 0x8f) || (third >= 0xa8 && third <= 0xae))) ||
        (next === 0x81 && third >= 0xa6 && third <= 0xa9))
    )
      found.push(`U+20xx (${next.toString(16)} ${third.toString(16)}) at ${i}`);
  }
  return found;
}

/**
 * A worker's agent API answered by the compromised worker itself, over real mutual TLS with
 * the host's enrolled agent certificate: its health names a hostile version, and it refuses
 * every apply with a hostile message.
 */
async function compromisedAgent() {
  let hostId = '';
  const server = createHttpsServer(
    { requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' },
    (req, res) => {
      req.resume();
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        if (req.method === 'GET' && req.url === '/v1/health') {
          res.end(JSON.stringify({ version: '9\u001b]0;pwned\u0007', hostId, uptimeSeconds: 1 }));
        } else if (req.method === 'POST' && req.url === '/v1/apply') {
          res.statusCode = 400;
          res.end(JSON.stringify({ error: { code: ErrorCode.VALIDATION, message: HOSTILE } }));
        } else {
          res.statusCode = 404;
          res.end('{}');
        }
      });
    },
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    arm(material: { caPem: string; certPem: string; keyPem: string }, id: string) {
      hostId = id;
      server.setSecureContext({ ca: material.caPem, cert: material.certPem, key: material.keyPem });
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

let t: TestController;
let work: string;
beforeAll(async () => {
  // A long interval: the host stays online (deployable) however slowly this machine runs the CLI.
  t = await startController({ heartbeatIntervalMs: 600_000 });
  work = await mkdtemp(join(tmpdir(), 'corral-worker-text-'));
});
afterAll(async () => {
  await t.close();
  await rm(work, { recursive: true, force: true });
});

describe('text a compromised worker sends reaches the operator escaped', () => {
  it('refuses control characters in the agent version, stores service errors and event details as sent, and every CLI view shows them escaped', async () => {
    const agent = await compromisedAgent();
    try {
      const enrolled = await t.enroll('evil-1', { agentPort: agent.port });
      agent.arm(agentMaterial(enrolled), enrolled.hostId);
      await using client = workerClient(t.endpoints.worker, agentMaterial(enrolled));

      expect(
        (await postJson(client, '/v1/heartbeat', heartbeatBody(enrolled.hostId, { agentVersion: '1.0.0' })))
          .status,
      ).toBe(200);
      for (const [name, agentVersion] of AGENT_VERSIONS) {
        const res = await postJson(client, '/v1/heartbeat', heartbeatBody(enrolled.hostId, { agentVersion }));
        expect([name, res.status, res.body.error?.code]).toEqual([name, 400, ErrorCode.VALIDATION]);
        expect(res.body.error?.message).toContain('agentVersion');
      }
      // NUL and lone surrogates cannot be stored faithfully: refused in free text too.
      for (const lastError of ['a\u0000b', 'a\ud800b']) {
        const services = [
          { name: 'api', state: 'failed' as const, restarts: 0, lastError, pid: null, since: null },
        ];
        const res = await postJson(client, '/v1/heartbeat', heartbeatBody(enrolled.hostId, { services }));
        expect([res.status, res.body.error?.code]).toEqual([400, ErrorCode.VALIDATION]);
      }
      const refusedAll = await t.admin<string>('GET', '/metrics');
      expect(refusedAll.body).toContain(
        `corral_heartbeats_rejected_total{reason="validation"} ${AGENT_VERSIONS.length + 2}`,
      );

      const event = lifecycleEvent({ type: 'service-failed', service: 'api', detail: HOSTILE });
      const services = [
        { name: 'api', state: 'failed' as const, restarts: 3, lastError: HOSTILE, pid: null, since: null },
      ];
      const ok = await postJson(
        client,
        '/v1/heartbeat',
        heartbeatBody(enrolled.hostId, { agentVersion: '1.0.0', services, events: [event] }),
      );
      expect(ok.status).toBe(200);

      // Stored exactly as sent: the admin API gives the worker's text back unchanged.
      const stored = (await t.admin<HostDetail>('GET', '/v1/hosts/evil-1')).body;
      expect(stored.host.agentVersion).toBe('1.0.0');
      expect(stored.services[0]?.lastError).toBe(HOSTILE);
      expect(stored.recentEvents[0]?.detail).toBe(HOSTILE);

      // Separate CLI processes, run side by side (each one starts a whole Node).
      const [hostsTable, record, servicesTable, hostJson, servicesJsonOut] = await Promise.all([
        cli(t, 'controller', 'hosts'),
        cli(t, 'controller', 'host', 'evil-1'),
        cli(t, 'controller', 'services'),
        cli(t, 'controller', 'host', 'evil-1', '--json'),
        cli(t, 'controller', 'services', '--json'),
      ]);
      expect(hostsTable.code).toBe(0);
      expect(actionable(hostsTable.stdout)).toEqual([]);
      expect(hostsTable.stdout.toString()).toMatch(/^evil-1\s+127\.0\.0\.1\s+online\s+\S+\s+1\.0\.0\s/m);

      expect(record.code).toBe(0);
      expect(actionable(record.stdout)).toEqual([]);
      const recordText = record.stdout.toString();
      expect(recordText).toMatch(/^agent version\s+1\.0\.0$/m);
      // Table cells are bounded: the long escaped text ends in an ellipsis, never in a new row.
      expect(recordText).toContain(SHOWN.slice(0, 60));
      expect(recordText).toMatch(/^api\s+failed\s+(?:-\s+){3}3\s+-\s+-\s+boom\\x1b\[2J.*…$/m);
      expect(recordText).toMatch(/^service-failed\s+\S+\s+api\s+-\s+boom\\x1b\[2J.*…$/m);
      expect(recordText).not.toMatch(/^(web-9|FAKE)/m);

      expect(servicesTable.code).toBe(0);
      expect(actionable(servicesTable.stdout)).toEqual([]);
      expect(servicesTable.stdout.toString()).toMatch(
        /^api\s+evil-1\s+(?:\S+\s+){3}removed\s+failed\s+3\s+boom\\x1b\[2J/m,
      );

      // JSON: the same value back, with every actionable character a JSON escape.
      for (const json of [hostJson, servicesJsonOut]) {
        expect(json.code).toBe(0);
        expect(actionable(json.stdout)).toEqual([]);
        expect(json.stdout.toString()).toContain('\\u009b31m');
        expect(json.stdout.toString()).toContain('\\u202e');
        expect(json.stdout.toString()).toContain('\\u2028');
      }
      const detailJson = JSON.parse(hostJson.stdout.toString()) as HostDetail;
      expect(detailJson.services[0]?.lastError).toBe(HOSTILE);
      expect(detailJson.recentEvents[0]?.detail).toBe(HOSTILE);
      const servicesJson = JSON.parse(servicesJsonOut.stdout.toString()) as ServiceView[];
      expect(servicesJson.find((s) => s.host === 'evil-1')?.lastError).toBe(HOSTILE);

      // The agent's refusal of an apply travels into the operation's steps and log.
      const spec = join(work, 'spec.json');
      await writeFile(
        spec,
        JSON.stringify({
          services: [{ name: 'api', command: '/bin/true', placement: { hosts: ['evil-1'] } }],
        }),
      );
      const deploy = await cli(t, 'controller', 'deploy', spec, '--json');
      expect(deploy.code).toBe(1);
      expect(actionable(deploy.stdout)).toEqual([]);
      expect(actionable(deploy.stderr)).toEqual([]);
      const res = JSON.parse(deploy.stdout.toString()) as DeployResponse;
      expect(res.hosts[0]?.reason).toBe(`agent refused (400): ${HOSTILE} (${ErrorCode.VALIDATION})`);
      const opId = res.operationId ?? '';

      const [deployTable, show, showJson, check] = await Promise.all([
        cli(t, 'controller', 'deploy', spec),
        cli(t, 'controller', 'ops', 'show', opId),
        cli(t, 'controller', 'ops', 'show', opId, '--json'),
        cli(t, 'controller', 'check', '--timeout', '3000', '--json'),
      ]);
      // Read once the second deploy has finished (and failed the same way).
      const afterDeploy = await cli(t, 'controller', 'services');
      expect(deployTable.code).toBe(1);
      expect(actionable(deployTable.stdout)).toEqual([]);
      expect(actionable(deployTable.stderr)).toEqual([]);
      expect(deployTable.stdout.toString()).toMatch(
        /^evil-1\s+failed\s+\d+\s+1\s+agent refused \(400\): boom\\x1b/m,
      );

      expect(show.code).toBe(0);
      expect(actionable(show.stdout)).toEqual([]);
      const showText = show.stdout.toString();
      expect(showText).toMatch(/^evil-1\s+failed\s+1\s+1\s+agent refused \(400\): boom\\x1b\[2J.*…/m);
      // A log line carries the whole message, escaped, on one line.
      expect(showText).toContain(
        `[evil-1] failed: agent refused (400): ${SHOWN} (${ErrorCode.VALIDATION})\n`,
      );
      expect(showText).not.toMatch(/^(web-9|FAKE)/m);
      expect(actionable(showJson.stdout)).toEqual([]);
      const op = JSON.parse(showJson.stdout.toString()) as OperationDetail;
      expect(op.steps[0]?.detail).toBe(res.hosts[0]?.reason);

      // After the failed dispatch, `services` shows the agent's refusal as the service's error.
      expect(actionable(afterDeploy.stdout)).toEqual([]);
      expect(afterDeploy.stdout.toString()).toMatch(
        /^api\s+evil-1\s+(?:\S+\s+){3}running\s+failed\s+\S+\s+agent refused \(400\): boom\\x1b/m,
      );

      // A hostile version in the agent's health answer does not pass the schema either.
      expect(actionable(check.stdout)).toEqual([]);
      const checked = JSON.parse(check.stdout.toString()) as {
        name: string;
        reachable: boolean;
        agentVersion: string | null;
      }[];
      expect(checked.find((c) => c.name === 'evil-1')).toMatchObject({
        reachable: false,
        agentVersion: null,
      });
    } finally {
      await agent.close();
    }
  }, 240_000);

  it('takes a runtime, image and container id only in their own shapes, and shows them in services and host', async () => {
    const enrolled = await t.enroll('box-1');
    await using client = workerClient(t.endpoints.worker, agentMaterial(enrolled));
    const containerId = 'f0'.repeat(32);
    const box = {
      name: 'box',
      state: 'running' as const,
      restarts: 0,
      lastError: null,
      pid: null,
      since: null,
      runtime: 'container',
      image: 'corral-test/busybox:1',
      containerId,
    };
    for (const bad of [
      { runtime: 'container\u001b[2J' },
      { image: 'busybox\u001b]0;owned\u0007' },
      { image: 'busybox\nbox-9  online' },
      { image: 'a'.repeat(513) },
      { containerId: `${containerId}\n` },
    ]) {
      const services = [{ ...box, ...bad }];
      const res = await postJson(client, '/v1/heartbeat', heartbeatBody(enrolled.hostId, { services }));
      expect([res.status, res.body.error?.code]).toEqual([400, ErrorCode.VALIDATION]);
    }
    const ok = await postJson(client, '/v1/heartbeat', heartbeatBody(enrolled.hostId, { services: [box] }));
    expect(ok.status).toBe(200);

    const [servicesTable, record, servicesJsonOut] = await Promise.all([
      cli(t, 'controller', 'services', '--host', 'box-1'),
      cli(t, 'controller', 'host', 'box-1'),
      cli(t, 'controller', 'services', '--host', 'box-1', '--json'),
    ]);
    expect(servicesTable.code).toBe(0);
    expect(servicesTable.stdout.toString()).toMatch(
      /^SERVICE\s+HOST\s+RUNTIME\s+IMAGE\s+CONTAINER\s+DESIRED\s/m,
    );
    expect(servicesTable.stdout.toString()).toMatch(
      /^box\s+box-1\s+container\s+corral-test\/busybox:1\s+f0f0f0f0f0f0\s+removed\s+running\s/m,
    );
    expect(record.code).toBe(0);
    expect(record.stdout.toString()).toMatch(
      /^box\s+running\s+container\s+corral-test\/busybox:1\s+f0f0f0f0f0f0\s+0\s/m,
    );
    const views = JSON.parse(servicesJsonOut.stdout.toString()) as ServiceView[];
    expect(views).toEqual([
      expect.objectContaining({ service: 'box', runtime: 'container', image: box.image, containerId }),
    ]);
  }, 120_000);
});
