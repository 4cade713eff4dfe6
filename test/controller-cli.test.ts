import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CliExit } from '../cli/exit.js';
import { buildProgram } from '../cli/program.js';
import { loadBundle } from '../pki/index.js';
import { agentMaterial, standInAgent, startController, type TestController } from './controller-fixture.js';

let t: TestController;
let work: string;
beforeAll(async () => {
  t = await startController();
  work = await mkdtemp(join(tmpdir(), 'corral-cli-'));
});
afterAll(async () => {
  await t.close();
  await rm(work, { recursive: true, force: true });
});

/** Runs one `corral` command in this process (the same tree the binary builds), output captured. */
async function run(...args: string[]): Promise<{ out: string; err: string; exit: number }> {
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

describe('controller CLI against a running controller', () => {
  it('enrolls to a bundle directory, lists and shows hosts as tables or JSON', async () => {
    const dir = join(work, 'b1');
    const res = await run(
      'controller',
      'enroll',
      '--name',
      'cli-1',
      '--address',
      '10.1.0.1',
      '--label',
      'tier=db',
      '--agent-port',
      '9555',
      '--out-dir',
      dir,
    );
    expect([res.exit, res.err]).toEqual([0, '']);
    expect(res.out).toMatch(/^bundleDir\s+/m);
    expect(res.out).not.toContain('PRIVATE KEY');
    const bundle = await loadBundle(dir);
    expect(bundle.manifest).toMatchObject({ hostName: 'cli-1', agentPort: 9555 });

    const table = await run('controller', 'hosts', '--status', 'pending');
    expect(table.out.split('\n')[0]).toMatch(/^NAME\s+ADDRESS\s+STATUS/);
    expect(table.out).toMatch(/^cli-1\s+10\.1\.0\.1\s+pending\s+-\s+-\s+tier=db\s+[0-9a-f]{12}\s+eligible$/m);
    expect((await run('controller', 'hosts', '--status', 'online', '--json')).out.trim()).toBe('[]');
    expect((await run('controller', 'hosts', '--status', 'bogus')).exit).toBe(2);

    const one = await run('controller', 'host', 'cli-1');
    expect(one.out).toMatch(/^agent port\s+9555$/m);
    expect(one.out).toMatch(
      new RegExp(`^agent fingerprint\\s+${bundle.identities.agent!.fingerprint}$`, 'm'),
    );
    const missing = await run('controller', 'host', 'nope');
    expect([missing.exit, missing.err]).toEqual([1, 'no host named nope (CORRAL_ERR_NOT_FOUND)']);
    const dup = await run(
      'controller',
      'enroll',
      '--name',
      'cli-1',
      '--address',
      '10.1.0.1',
      '--out-dir',
      join(work, 'b2'),
    );
    expect(dup.err).toContain('CORRAL_ERR_NAME_TAKEN');
  });

  it('creates, lists and revokes join tokens', async () => {
    const created: { id: string; token: string; caPin: string; command: string } = JSON.parse(
      (await run('controller', 'token', 'create', '--name', 'cli-2', '--ttl', '2h', '--json')).out,
    );
    expect(created).toMatchObject({
      name: 'cli-2',
      controller: t.endpoints.join,
      caPin: `sha256:${t.identity.ca.fingerprint}`,
    });
    // The join line reads the token from stdin: it never goes on a command line, where ps shows it.
    expect(created.command).toBe(
      `corral agent join --controller ${t.endpoints.join} --ca-pin ${created.caPin} --state-dir <agent-state-dir> --token-file -`,
    );
    expect(created.command).not.toContain(created.token);
    const human = await run('controller', 'token', 'create', '--name', 'cli-3');
    expect(human.out).toContain('it never shows in ps):\n  corral worker install --controller');
    expect(human.out).toContain(
      'Or only join, for daemons you run yourself:\n  corral agent join --controller',
    );
    expect(human.out).toMatch(/--token-file -\n$/);
    const list = await run('controller', 'token', 'list');
    expect(list.out).toMatch(new RegExp(`^${created.id}\\s+cli-2\\s+active\\s`, 'm'));
    expect((await run('controller', 'token', 'revoke', created.id)).exit).toBe(0);
    const after = JSON.parse((await run('controller', 'token', 'list', '--json')).out) as {
      id: string;
      state: string;
    }[];
    expect(after.find((x) => x.id === created.id)?.state).toBe('revoked');
    expect((await run('controller', 'token', 'create', '--name', 'cli-4', '--ttl', 'soon')).exit).toBe(2);
  });

  it('checks reachability (exit 1 when a host does not answer), decommissions with --yes, shows the audit log', async () => {
    const agent = await standInAgent();
    try {
      const up = await t.enroll('cli-up', { agentPort: agent.port });
      agent.arm(agentMaterial(up), up.hostId);
      await t.enroll('cli-down', { agentPort: 1 });
      const check = await run('controller', 'check', '--timeout', '2000');
      expect(check.exit).toBe(1);
      expect(check.out).toMatch(/^cli-up\s+127\.0\.0\.1:\d+\s+pending\s+yes\s+[\d.]+\s+9\.9\.9\s+-$/m);
      expect(check.out).toMatch(
        /^cli-down\s+127\.0\.0\.1:1\s+pending\s+no\s+-\s+-\s+CORRAL_ERR_UNAVAILABLE/m,
      );
      expect(check.err).toMatch(/did not answer/);

      const gone = await run('controller', 'decommission', 'cli-up', '--yes');
      expect(gone.out).toMatch(/^self-destruct\s+accepted by the agent$/m);
      expect(agent.calls.map((c) => c.path)).toEqual(['/v1/health', '/v1/self-destruct']);
    } finally {
      await agent.close();
    }
    const audit = await run('controller', 'audit');
    expect(audit.out).toMatch(/^\d+\s+\S+\s+admin\s+decommission\s+cli-up\s+[0-9a-f]{12}$/m);
    const verify = await run('controller', 'audit', '--verify');
    expect(verify.out).toMatch(/^chain\s+intact$/m);
  });
});
