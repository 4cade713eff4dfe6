import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { access, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBundle } from '../pki/index.js';
import type { AuditListResponse } from '../protocol/admin-audit.js';
import type { HostDetail } from '../protocol/admin-hosts.js';
import type { TokenListResponse } from '../protocol/admin-tokens.js';
import type { TokenCreateResponse } from '../protocol/enrollment.js';
import { parseHostPort } from '../kit/host-port.js';
import { ROOT } from './agent-fixture.js';
import {
  corral,
  heartbeatBody,
  postJson,
  startController,
  workerClient,
  type TestController,
} from './controller-fixture.js';
import { holdingProxy } from './holding-proxy.js';

/**
 * A kill -9 of `controller enroll` or `agent join` after the controller recorded the host
 * but before the bundle reached the disk left a `pending` host holding the name for good.
 * Such a host (never seen, bundle never confirmed written) can now be replaced with
 * `enroll --replace`, audited; a host that was seen or whose bundle was written cannot.
 * The controller runs in this process; every enroll and join is the built CLI as its own
 * process, killed with SIGKILL.
 */
let t: TestController;
let work: string;

beforeAll(async () => {
  t = await startController();
  work = await mkdtemp(join(tmpdir(), 'corral-replace-'));
});
afterAll(async () => {
  await t.close();
  await rm(work, { recursive: true, force: true });
});

const admin = (): string[] => ['--url', t.endpoints.admin, '--token', t.adminToken];
let dirs = 0;
const fresh = (label: string): string => join(work, `${label}-${dirs++}`);

/** The host holding `name` now, if any (the active one). */
async function activeHost(name: string): Promise<HostDetail | undefined> {
  const res = await t.admin<HostDetail>('GET', `/v1/hosts/${name}`);
  return res.status === 200 && res.body.host.status !== 'decommissioned' ? res.body : undefined;
}

async function newToken(name: string): Promise<TokenCreateResponse> {
  const res = await t.admin<TokenCreateResponse>('POST', '/v1/tokens', { name });
  expect(res.status).toBe(200);
  return res.body;
}

async function tokenState(id: string): Promise<string | undefined> {
  const { tokens } = (await t.admin<TokenListResponse>('GET', '/v1/tokens')).body;
  return tokens.find((x) => x.id === id)?.state;
}

async function auditOf(name: string) {
  const { entries } = (await t.admin<AuditListResponse>('GET', '/v1/audit?limit=1000')).body;
  return entries.filter((e) => e.target === name);
}

/** Spawns the built CLI; the caller kills it. */
function spawnCli(args: string[]) {
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'corral.js'), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  return { child, exited, output: () => output };
}

async function hasBundle(dir: string): Promise<boolean> {
  return access(join(dir, 'manifest.json')).then(
    () => true,
    () => false,
  );
}

function enrollArgs(name: string, outDir: string, extra: string[] = []): string[] {
  return [
    'controller',
    'enroll',
    '--name',
    name,
    '--address',
    '127.0.0.1',
    '--out-dir',
    outDir,
    '--json',
    ...extra,
    ...admin(),
  ];
}

function joinArgs(tok: TokenCreateResponse, stateDir: string, tokenFile: string, controller?: string) {
  return [
    'agent',
    'join',
    '--controller',
    controller ?? tok.controller,
    '--ca-pin',
    tok.caPin,
    '--token-file',
    tokenFile,
    '--address',
    '127.0.0.1',
    '--state-dir',
    stateDir,
    '--json',
  ];
}

async function tokenFileFor(tok: TokenCreateResponse): Promise<string> {
  const file = fresh('token');
  await writeFile(file, `${tok.token}\n`, { mode: 0o600 });
  return file;
}

/** `enroll --replace` through the CLI; returns the replacement's id and the id it replaced. */
async function replace(name: string): Promise<{ hostId: string; replaced: string }> {
  const outDir = fresh('replacement');
  const res = await corral(enrollArgs(name, outDir, ['--replace']));
  expect([res.code, res.stderr]).toEqual([0, '']);
  const view = JSON.parse(res.stdout) as { hostId: string; replaced: string; bundleWrittenAt: string };
  expect(view.bundleWrittenAt).toEqual(expect.any(String));
  expect(await hasBundle(outDir)).toBe(true);
  return view;
}

async function expectReplaceAudited(name: string, old: string, replacement: string): Promise<void> {
  const entries = await auditOf(name);
  const retired = entries.find((e) => e.action === 'replace');
  expect(retired).toMatchObject({
    actor: 'admin',
    details: { hostId: old, replacedBy: replacement },
  });
  const enrolled = entries.find((e) => e.action === 'enroll' && e.details.hostId === replacement);
  expect(enrolled?.details.replaces).toBe(old);
  expect(enrolled!.seq).toBeGreaterThan(retired!.seq);
  const verify = await t.admin<{ ok: boolean }>('GET', '/v1/audit/verify');
  expect(verify.body.ok).toBe(true);
}

describe('kill -9 mid enrollment, then enroll --replace', () => {
  it('`controller enroll` killed after the controller recorded the host, before the bundle: --replace takes the name, audited', async () => {
    const name = 'cut-enroll';
    const proxy = await holdingProxy(parseHostPort(t.endpoints.admin.replace(/^http:\/\//, '')), async () =>
      Boolean(await activeHost(name)),
    );
    const outDir = fresh('cut');
    const cli = spawnCli([
      'controller',
      'enroll',
      '--name',
      name,
      '--address',
      '127.0.0.1',
      '--out-dir',
      outDir,
      '--url',
      `http://127.0.0.1:${proxy.port}`,
      '--token',
      t.adminToken,
    ]);
    try {
      await Promise.race([
        proxy.held,
        cli.exited.then(() => {
          throw new Error(`enroll ended before its answer was held: ${cli.output()}`);
        }),
      ]);
      cli.child.kill('SIGKILL');
      expect((await cli.exited)[1]).toBe('SIGKILL');
    } finally {
      await proxy.close();
    }
    const stuck = await activeHost(name);
    expect(stuck).toMatchObject({ host: { status: 'pending' }, bundleWrittenAt: null });
    expect(await hasBundle(outDir)).toBe(false);

    const again = await corral(enrollArgs(name, fresh('again')));
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('CORRAL_ERR_NAME_TAKEN');
    expect(again.stderr).toContain('`controller enroll --replace` takes the name over');

    const { hostId, replaced } = await replace(name);
    expect(replaced).toBe(stuck!.host.id);
    expect(await activeHost(name)).toMatchObject({ host: { id: hostId, status: 'pending' } });
    const old = await t.admin<{ hosts: { id: string; status: string }[] }>('GET', '/v1/hosts');
    expect(old.body.hosts.find((h) => h.id === replaced)?.status).toBe('decommissioned');
    await expectReplaceAudited(name, replaced, hostId);
  }, 120_000);

  it('`agent join` killed after the controller signed its certificates, before the bundle: the token is spent, --replace takes the name', async () => {
    const name = 'cut-join';
    const tok = await newToken(name);
    const proxy = await holdingProxy(parseHostPort(t.endpoints.join), async () =>
      Boolean(await activeHost(name)),
    );
    const stateDir = fresh('cut-worker');
    const cli = spawnCli(joinArgs(tok, stateDir, await tokenFileFor(tok), `127.0.0.1:${proxy.port}`));
    try {
      await Promise.race([
        proxy.held,
        cli.exited.then(() => {
          throw new Error(`join ended before its answer was held: ${cli.output()}`);
        }),
      ]);
      cli.child.kill('SIGKILL');
      await cli.exited;
    } finally {
      await proxy.close();
    }
    const stuck = await activeHost(name);
    expect(stuck).toMatchObject({
      host: { status: 'pending' },
      enrolledVia: 'join',
      bundleWrittenAt: null,
    });
    expect(await tokenState(tok.view.id)).toBe('used');
    expect(await hasBundle(join(stateDir, 'bundle'))).toBe(false);

    const { hostId, replaced } = await replace(name);
    expect(replaced).toBe(stuck!.host.id);
    await expectReplaceAudited(name, replaced, hostId);
  }, 120_000);

  it('refuses --replace of a host that was seen, and of one whose bundle was written (enroll or join)', async () => {
    // Enrolled, bundle written (the CLI confirms it), then seen by a heartbeat.
    const seenDir = fresh('seen');
    const enrolled = await corral(enrollArgs('seen-1', seenDir));
    expect(enrolled.code).toBe(0);
    const bundle = await loadBundle(seenDir);
    {
      await using client = workerClient(t.endpoints.worker, {
        caPem: bundle.caPem,
        certPem: bundle.identities.agent!.certPem,
        keyPem: bundle.identities.agent!.keyPem,
      });
      const hb = await postJson(client, '/v1/heartbeat', heartbeatBody(bundle.manifest.hostId));
      expect(hb.status).toBe(200);
    }
    const seen = await corral(enrollArgs('seen-1', fresh('nope'), ['--replace']));
    expect(seen.code).toBe(1);
    expect(seen.stderr).toMatch(
      /refusing to replace host seen-1: it was seen \(last heartbeat .+\).*CORRAL_ERR_REPLACE_REFUSED/,
    );

    // Enrolled and written, never seen.
    const writtenDir = fresh('written');
    const written = JSON.parse((await corral(enrollArgs('written-1', writtenDir))).stdout) as {
      bundleWrittenAt: string | null;
    };
    expect(written.bundleWrittenAt).toEqual(expect.any(String));
    const refused = await corral(enrollArgs('written-1', fresh('nope'), ['--replace']));
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('refusing to replace host written-1: its bundle was written');
    expect(refused.stderr).toContain('CORRAL_ERR_REPLACE_REFUSED');

    // Joined to the end: the worker confirmed its bundle over mutual TLS.
    const tok = await newToken('joined-1');
    const worker = fresh('joined');
    const joined = await corral(joinArgs(tok, worker, await tokenFileFor(tok)));
    expect([joined.code, joined.stderr]).toEqual([0, '']);
    expect((JSON.parse(joined.stdout) as { bundleConfirmed: string | null }).bundleConfirmed).toEqual(
      expect.any(String),
    );
    const joinRefused = await corral(enrollArgs('joined-1', fresh('nope'), ['--replace']));
    expect(joinRefused.code).toBe(1);
    expect(joinRefused.stderr).toContain('CORRAL_ERR_REPLACE_REFUSED');

    // None of them changed: same ids, nothing audited as replaced.
    for (const name of ['seen-1', 'written-1', 'joined-1']) {
      expect(await activeHost(name)).toBeDefined();
      expect((await auditOf(name)).map((e) => e.action)).not.toContain('replace');
    }
    expect((await readdir(work)).filter((d) => d.startsWith('nope'))).toEqual([]);
  }, 180_000);

  it('at random kill points of `agent join`, a name is never stuck: spent token ⇔ host, and an unconfirmed host is replaceable', async () => {
    // One join to the end, to learn how long a whole join takes here; kill points fall inside it.
    const probe = await newToken('probe-1');
    const started = Date.now();
    const full = await corral(joinArgs(probe, fresh('probe'), await tokenFileFor(probe)));
    expect(full.code).toBe(0);
    const fullMs = Date.now() - started;
    const outcomes: string[] = [];
    for (let round = 0; round < 5; round++) {
      const name = `rand-${round}`;
      const tok = await newToken(name);
      const stateDir = fresh('rand');
      const tokenFile = await tokenFileFor(tok);
      const cli = spawnCli(joinArgs(tok, stateDir, tokenFile));
      const killAfterMs = Math.round(fullMs * (0.3 + 0.7 * Math.random()));
      await Promise.race([new Promise((r) => setTimeout(r, killAfterMs)), cli.exited]);
      cli.child.kill('SIGKILL');
      await cli.exited;
      const host = await activeHost(name);
      const state = await tokenState(tok.view.id);
      if (!host) {
        // Nothing committed: the token is as good as new, and a join with it works.
        expect(state).toBe('active');
        const retry = await corral(joinArgs(tok, fresh('retry'), tokenFile));
        expect(retry.code).toBe(0);
        outcomes.push('nothing recorded, token reused');
      } else if (host.bundleWrittenAt === null) {
        expect(state).toBe('used');
        const { replaced } = await replace(name);
        expect(replaced).toBe(host.host.id);
        const onDisk = await hasBundle(join(stateDir, 'bundle'));
        outcomes.push(`recorded, unconfirmed (bundle on disk: ${String(onDisk)}), replaced`);
      } else {
        expect(state).toBe('used');
        expect((await loadBundle(join(stateDir, 'bundle'))).manifest.hostId).toBe(host.host.id);
        const refused = await corral(enrollArgs(name, fresh('nope'), ['--replace']));
        expect(refused.stderr).toContain('CORRAL_ERR_REPLACE_REFUSED');
        outcomes.push('bundle written and confirmed, replace refused');
      }
    }
    console.log(`join ${fullMs} ms; kill outcomes: ${outcomes.join('; ')}`);
  }, 600_000);
});
