import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEntry } from '../protocol/admin-audit.js';
import type { HostDetail } from '../protocol/admin-hosts.js';
import type { TokenView } from '../protocol/enrollment.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import { ROOT } from './agent-fixture.js';
import { corral, waitFor } from './controller-fixture.js';

/**
 * A joining worker names the address the controller will later dial. The controller now
 * records where the join really came from beside it, shows both when they differ, and with
 * `controller serve --join-allowed-cidr` refuses claims outside the CIDRs, leaving the token
 * usable. Everything here is the built CLI as real processes: `controller serve` on
 * 127.0.0.1, workers joining from 127.0.0.1 and claiming 127.0.0.2 or other addresses.
 */
let dir: string;
let state: string;
let serve: ChildProcess;
let joinAddress: string;

const CIDRS = ['127.0.0.0/30', 'fd00:1::/64'];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'corral-joinsrc-'));
  state = join(dir, 'controller');
  const init = await corral(['controller', 'init', '--state-dir', state, '--address', '127.0.0.1']);
  expect(init.code).toBe(0);
  serve = spawn(
    process.execPath,
    [
      join(ROOT, 'bin', 'corral.js'),
      'controller',
      'serve',
      '--state-dir',
      state,
      '--admin-listen',
      '127.0.0.1:0',
      '--worker-listen',
      '127.0.0.1:0',
      ...CIDRS.flatMap((c) => ['--join-allowed-cidr', c]),
      '--log-level',
      'warn',
    ],
    { stdio: 'ignore' },
  );
  const endpoints = await waitFor(async () => {
    if (serve.exitCode !== null) throw new Error('controller serve exited');
    return (await readEndpointsFile(state).catch(() => undefined)) !== undefined;
  }, 30_000).then(() => readEndpointsFile(state));
  joinAddress = endpoints!.join!;
}, 60_000);

afterAll(async () => {
  if (serve.exitCode === null && serve.signalCode === null) {
    serve.kill('SIGTERM');
    await once(serve, 'exit');
  }
  await rm(dir, { recursive: true, force: true });
});

const ctl = (...args: string[]) => corral(['controller', ...args, '--state-dir', state]);

async function token(name: string): Promise<{ id: string; token: string; caPin: string; file: string }> {
  const res = await ctl('token', 'create', '--name', name, '--json');
  expect(res.code).toBe(0);
  const t = JSON.parse(res.stdout) as { id: string; token: string; caPin: string; controller: string };
  expect(t.controller).toBe(joinAddress);
  const file = join(dir, `${name}.token`);
  await writeFile(file, `${t.token}\n`, { mode: 0o600 });
  return { ...t, file };
}

function joinAs(tok: { caPin: string; file: string }, address: string, stateDir: string) {
  return corral([
    'agent',
    'join',
    '--controller',
    joinAddress,
    '--ca-pin',
    tok.caPin,
    '--token-file',
    tok.file,
    '--address',
    address,
    '--state-dir',
    stateDir,
    '--json',
  ]);
}

async function tokenState(id: string): Promise<TokenView['state'] | undefined> {
  const list = JSON.parse((await ctl('token', 'list', '--json')).stdout) as TokenView[];
  return list.find((t) => t.id === id)?.state;
}

const hasBundle = (stateDir: string): Promise<boolean> =>
  access(join(stateDir, 'bundle', 'manifest.json')).then(
    () => true,
    () => false,
  );

describe('where a join came from, and which addresses it may claim', () => {
  it('records the source beside the claimed address and shows both in `controller host` when they differ', async () => {
    const tok = await token('claims-other');
    const joined = await joinAs(tok, '127.0.0.2', join(dir, 'w-other'));
    expect([joined.code, joined.stderr]).toEqual([0, '']);
    expect(JSON.parse(joined.stdout)).toMatchObject({ hostName: 'claims-other', address: '127.0.0.2' });

    const detail = JSON.parse((await ctl('host', 'claims-other', '--json')).stdout) as HostDetail;
    expect(detail.host.address).toBe('127.0.0.2');
    expect(detail.joinSource).toBe('127.0.0.1');
    const shown = (await ctl('host', 'claims-other')).stdout;
    expect(shown).toMatch(/^address\s+127\.0\.0\.2$/m);
    expect(shown).toMatch(/^join source\s+127\.0\.0\.1 \(differs from the claimed address 127\.0\.0\.2\)$/m);

    const audit = JSON.parse((await ctl('audit', '--json')).stdout) as AuditEntry[];
    const entry = audit.find((e) => e.action === 'join' && e.target === 'claims-other');
    expect(entry?.details).toMatchObject({ address: '127.0.0.2', source: '127.0.0.1' });
  }, 120_000);

  it('shows no second address when the claim is where the join came from', async () => {
    const tok = await token('claims-own');
    expect((await joinAs(tok, '127.0.0.1', join(dir, 'w-own'))).code).toBe(0);
    const detail = JSON.parse((await ctl('host', 'claims-own', '--json')).stdout) as HostDetail;
    expect([detail.host.address, detail.joinSource]).toEqual(['127.0.0.1', '127.0.0.1']);
    expect((await ctl('host', 'claims-own')).stdout).not.toContain('join source');
  }, 120_000);

  it('refuses a claimed address outside the CIDRs with a coded error, changes nothing, and the token still works', async () => {
    const tok = await token('claims-outside');
    for (const [address, why] of [
      ['10.9.9.9', 'outside the addresses this controller accepts for joins (127.0.0.0/30, fd00:1::/64)'],
      ['127.0.0.5', 'outside the addresses'],
      ['fd00:2::5', 'outside the addresses'],
      ['worker.example.net', 'is not an IP address'],
    ] as const) {
      const stateDir = join(dir, `w-out-${address}`);
      const refused = await joinAs(tok, address, stateDir);
      expect(refused.code, address).toBe(1);
      expect(refused.stderr).toContain(why);
      expect(refused.stderr).toContain('(CORRAL_ERR_JOIN_ADDRESS_REFUSED)');
      expect(await hasBundle(stateDir)).toBe(false);
    }
    expect(await tokenState(tok.id)).toBe('active');
    const missing = await ctl('host', 'claims-outside');
    expect(missing.code).toBe(1);
    const audit = JSON.parse((await ctl('audit', '--json')).stdout) as AuditEntry[];
    expect(audit.filter((e) => e.target === 'claims-outside').map((e) => e.action)).toEqual(['token-create']);

    // The same token, now claiming an address inside: joins.
    const joined = await joinAs(tok, 'fd00:1::7', join(dir, 'w-in'));
    expect([joined.code, joined.stderr]).toEqual([0, '']);
    expect(await tokenState(tok.id)).toBe('used');
    const detail = JSON.parse((await ctl('host', 'claims-outside', '--json')).stdout) as HostDetail;
    expect([detail.host.address, detail.joinSource]).toEqual(['fd00:1::7', '127.0.0.1']);
  }, 180_000);

  it('refuses a bad --join-allowed-cidr at start with a usage error', async () => {
    const res = await corral([
      'controller',
      'serve',
      '--state-dir',
      join(dir, 'never-served'),
      '--join-allowed-cidr',
      '10.0.0.0/33',
    ]);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('--join-allowed-cidr: "10.0.0.0/33": the prefix length must be 0 to 32');
  }, 60_000);
});
