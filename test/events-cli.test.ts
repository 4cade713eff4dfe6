import { spawn } from 'node:child_process';
import { access, chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CliExit } from '../cli/exit.js';
import { buildProgram } from '../cli/program.js';
import type { EnrollResponse } from '../protocol/enrollment.js';
import type { FleetEvent } from '../protocol/fleet-events.js';
import type { ServiceStatus } from '../protocol/heartbeat.js';
import {
  agentMaterial,
  corral,
  heartbeatBody,
  postJson,
  startController,
  waitFor,
  workerClient,
  type TestController,
} from './controller-fixture.js';

/** What a compromised worker puts in a service error: CSI, OSC 52, BEL, C1, CR, LF, bidi. */
const HOSTILE = 'boom\u001b[2J\u001b]52;c;cm0gLXJmIH4K\u0007\u009b31m\rFAKE\nweb-9  online\u202egnp.exe';
/** Its start as a table cell shows it. */
const SHOWN_START = 'lastError="boom\\x1b[2J\\x1b]52;c;cm0gLXJmIH4K\\x07\\x9b31m\\rFAKE\\nweb-9';
/** Anything a terminal would act on (LF and TAB between lines aside). */
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const RAW_CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/;

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

let t: TestController;
let work: string;
let host: EnrollResponse;
beforeAll(async () => {
  t = await startController({ heartbeatIntervalMs: 30_000 });
  work = await mkdtemp(join(tmpdir(), 'corral-events-cli-'));
  host = await t.enroll('cli-ev');
});
afterAll(async () => {
  await t.close();
  await rm(work, { recursive: true, force: true });
});

async function beat(services: ServiceStatus[]): Promise<void> {
  await using client = workerClient(t.endpoints.worker, agentMaterial(host));
  expect((await postJson(client, '/v1/heartbeat', heartbeatBody(host.hostId, { services }))).status).toBe(
    200,
  );
}
const failed = (lastError: string, state: ServiceStatus['state'] = 'failed'): ServiceStatus => ({
  name: 'web',
  state,
  restarts: 3,
  lastError,
  pid: null,
  since: null,
});

/** Runs one `corral` command in this process against the test controller, output captured. */
async function run(
  args: string[],
  target = ['--url', t.endpoints.admin],
): Promise<{ out: string; err: string; exit: number }> {
  let out = '';
  let err = '';
  const argv = [...args, ...target, '--token', t.adminToken];
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

describe('corral controller events', () => {
  it('lists events as a table with worker text escaped, or as JSON, and from a cursor on', async () => {
    await beat([failed(HOSTILE)]);
    await waitFor(async () => (await run(['controller', 'events'])).out.includes('service.state_changed'));
    const table = await run(['controller', 'events']);
    expect([table.exit, table.err]).toEqual([0, '']);
    const lines = table.out.split('\n');
    expect(lines[0]).toMatch(/^CURSOR\s+TIME\s+KIND\s+HOST\s+SERVICE\s+DETAIL$/);
    expect(lines[1]).toMatch(/^1\s+\S+\s+host\.enrolled\s+cli-ev\s+-\s+via=bundle address=127\.0\.0\.1$/);
    const row = lines.find((l) => l.includes('service.state_changed')) ?? '';
    expect(row).toContain('from=null to=failed restarts=3 ');
    expect(row).toContain(SHOWN_START);
    expect(table.out).not.toMatch(RAW_CONTROL);
    // One row per event: the LF in the worker's text made no row of its own.
    expect(lines.filter((l) => l.includes('web-9'))).toHaveLength(1);

    const json = await run(['controller', 'events', '--json']);
    expect(json.out).not.toMatch(RAW_CONTROL);
    const events = JSON.parse(json.out) as FleetEvent[];
    expect(events.find((e) => e.kind === 'service.state_changed')?.data.lastError).toBe(HOSTILE);

    const last = events.at(-1)?.cursor ?? 0;
    const after = await run(['controller', 'events', '--since', String(last - 1), '--json']);
    expect((JSON.parse(after.out) as FleetEvent[]).map((e) => e.cursor)).toEqual([last]);
    const bad = await run(['controller', 'events', '--since', 'yesterday']);
    expect(bad.exit).toBe(2);
  });

  it('follows with -f: new events appear as they happen, escaped, until interrupted', async () => {
    const child = spawn(
      process.execPath,
      [
        join(ROOT, 'bin', 'corral.js'),
        'controller',
        'events',
        '-f',
        '--url',
        t.endpoints.admin,
        '--token',
        t.adminToken,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (c: string) => (out += c));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    try {
      await waitFor(() => out.includes('host.enrolled'), 30_000);
      const before = out.split('\n').length;
      await beat([failed(`again${HOSTILE}`, 'restarting')]);
      await t.enroll('cli-ev-2');
      await waitFor(() => out.includes('cli-ev-2'), 30_000);
      const added = out
        .split('\n')
        .slice(before - 1)
        .filter((l) => l !== '');
      expect(added.map((l) => l.split(/\s+/)[2])).toEqual(['service.state_changed', 'host.enrolled']);
      expect(added[0]).toContain('lastError="againboom\\x1b[2J');
      // Bytes as written to the pipe: no raw control reached it.
      expect(out).not.toMatch(RAW_CONTROL);
      // Nothing shown twice.
      const cursors = out
        .split('\n')
        .slice(1)
        .filter((l) => l !== '')
        .map((l) => l.split(/\s+/)[0]);
      expect(new Set(cursors).size).toBe(cursors.length);
    } finally {
      child.kill('SIGINT');
      await new Promise((r) => child.once('close', r));
    }
    expect(err).toBe('');
  });
});

describe('corral controller notify', () => {
  it('adds, lists, shows deliveries of and removes webhooks; the secret is never shown back', async () => {
    const secretFile = join(work, 'hook.secret');
    await writeFile(secretFile, 'a-receiver-secret-of-enough-length\n');
    await chmod(secretFile, 0o600);
    const admin = ['--admin-url', t.endpoints.admin];
    const added = await run(
      [
        'controller',
        'notify',
        'add',
        'pager',
        '--url',
        'https://pager.example.net/in',
        '--events',
        'host.offline,release.rolled_back',
        '--secret-file',
        secretFile,
      ],
      admin,
    );
    expect([added.exit, added.err]).toEqual([0, '']);
    expect(added.out).toMatch(/^secret\s+as given in the secret file \(never shown\)$/m);
    expect(added.out).not.toContain('a-receiver-secret');

    const made = await run(
      [
        'controller',
        'notify',
        'add',
        'chat',
        '--url',
        'https://chat.example.net/',
        '--events',
        'host.*',
        '--json',
      ],
      admin,
    );
    const secret = (JSON.parse(made.out) as { secret: string }).secret;
    expect(secret).toMatch(/^corral_whsec_/);
    expect(made.err).toContain('shown this once');

    const list = await run(['controller', 'notify', 'list']);
    expect(list.out).toMatch(/^NAME\s+URL\s+EVENTS\s+PENDING\s+DELIVERED\s+FAILED\s+LAST DELIVERED$/m);
    expect(list.out).toMatch(
      /^pager\s+https:\/\/pager\.example\.net\/in\s+host\.offline,release\.rolled_back\s+0\s+0\s+0\s+-$/m,
    );
    expect(list.out + (await run(['controller', 'notify', 'list', '--json'])).out).not.toContain(secret);

    const plain = await run(
      ['controller', 'notify', 'add', 'lan', '--url', 'http://192.0.2.10/hook', '--events', '*'],
      admin,
    );
    expect(plain.exit).toBe(1);
    expect(plain.err).toContain('CORRAL_ERR_WEBHOOK_TARGET_REFUSED');
    const kind = await run(
      ['controller', 'notify', 'add', 'lan', '--url', 'https://x.example.net/', '--events', 'host.gone'],
      admin,
    );
    expect(kind.exit).toBe(2);

    const log = await run(['controller', 'notify', 'deliveries', 'chat']);
    expect(log.out).toMatch(
      /^ID\s+EVENT\s+KIND\s+STATE\s+ATTEMPTS\s+LAST ATTEMPT\s+LAST ANSWER\s+NEXT ATTEMPT$/m,
    );
    for (const name of ['pager', 'chat']) {
      const removed = await run(['controller', 'notify', 'remove', name]);
      expect(removed.out).toMatch(new RegExp(`^removed\\s+${name}$`, 'm'));
    }
    expect((await run(['controller', 'notify', 'remove', 'chat'])).err).toContain('CORRAL_ERR_NOT_FOUND');
  });
});

describe('corral controller serve, fleet event retention', () => {
  it('refuses an unusable age or count (exit 2) before it touches any state', async () => {
    const none = join(work, 'no-state');
    for (const [flag, value] of [
      ['--fleet-events-max', '0'],
      ['--fleet-events-max', '2.5'],
      ['--fleet-event-max-age', 'soon'],
    ] as const) {
      const r = await corral(['controller', 'serve', '--state-dir', none, flag, value]);
      expect([r.code, r.stderr]).toEqual([2, expect.stringContaining(flag)]);
    }
    await expect(access(none)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
