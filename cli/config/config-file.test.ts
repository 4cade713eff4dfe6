import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CliExit } from '../exit.js';
import { loadWorkerConfig, renderWorkerConfig } from './worker-config.js';
import { loadControllerConfig } from './controller-config.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'corral-config-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function refusal(text: string, load = loadWorkerConfig): Promise<string> {
  const file = join(dir, `c-${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(file, text);
  try {
    await load(file);
  } catch (e: unknown) {
    expect(e).toBeInstanceOf(CliExit);
    expect((e as CliExit).exitCode).toBe(2);
    const message = (e as Error).message;
    expect(message).toContain(file);
    return message;
  }
  throw new Error('the config was accepted');
}

describe('worker.yaml', () => {
  it('reads what install writes, durations in ms', async () => {
    const file = join(dir, 'worker.yaml');
    await writeFile(
      file,
      renderWorkerConfig({
        stateDir: '/var/lib/corral',
        root: '/opt/corral',
        configDir: '/etc/corral',
        agentListen: '0.0.0.0:8765',
        updaterListen: '0.0.0.0:8766',
        systemd: false,
        units: [],
        logFile: '/var/lib/corral/logs/worker.log',
      }),
    );
    const c = await loadWorkerConfig(file);
    expect(c.stateDir).toBe('/var/lib/corral');
    expect(c.agent).toMatchObject({
      heartbeatIntervalMs: 30_000,
      installDirs: ['/opt/corral'],
      extraDirs: ['/etc/corral'],
    });
    expect(c.updater).toMatchObject({
      root: '/opt/corral',
      healthTimeoutMs: 30_000,
      watchMs: 30_000,
      keep: 3,
    });
    expect(c.forwarder).toMatchObject({ files: ['/var/lib/corral/logs/worker.log'], pollIntervalMs: 250 });
  });

  it('an empty file is an empty config; watch may be 0', async () => {
    const empty = join(dir, 'empty.yaml');
    await writeFile(empty, '');
    expect(await loadWorkerConfig(empty)).toEqual({});
    const zero = join(dir, 'zero.yaml');
    await writeFile(zero, 'updater:\n  watch: 0\n');
    expect((await loadWorkerConfig(zero)).updater?.watchMs).toBe(0);
  });

  it.each([
    ['stateDir: /x\nagnt: {}\n', 'unknown key "agnt" (known: stateDir, agent, updater, forwarder)'],
    ['agent:\n  installDir: [/opt]\n', 'unknown key "agent.installDir" (known in agent: listen,'],
    [
      'agent:\n  heartbeatInterval: 30\n',
      'agent.heartbeatInterval: expected a duration with its unit, like 30s, 5m or 250ms, got 30',
    ],
    ['agent:\n  heartbeatInterval: soon\n', 'got "soon"'],
    ['updater:\n  keep: 1\n', 'updater.keep: expected a whole number from 2 to 32, got 1'],
    ['updater:\n  root: opt/corral\n', 'updater.root: expected an absolute path'],
    ['agent:\n  listen: nowhere\n', 'agent.listen: expected HOST:PORT'],
    ['forwarder:\n  mode: tcp\n', 'forwarder.mode: expected one of corral, rfc5425, got "tcp"'],
    ['agent:\n  systemd: yes\n', 'agent.systemd: expected true or false, got "yes"'],
    ['stateDir: /a\nstateDir: /b\n', 'not valid YAML'],
    ['- a\n- b\n', 'must be a mapping'],
    ['agent: [1]\n', 'agent: expected a mapping'],
  ])('refuses %j naming the file and the key', async (text, expected) => {
    expect(await refusal(text)).toContain(expected);
  });

  it('refuses a missing file', async () => {
    await expect(loadWorkerConfig(join(dir, 'nope.yaml'))).rejects.toThrow(/cannot be read/);
  });
});

describe('controller.yaml', () => {
  it('reads its keys and refuses a worker key', async () => {
    const file = join(dir, 'controller.yaml');
    await writeFile(
      file,
      'stateDir: /var/lib/corral-controller\ncontroller:\n  heartbeatInterval: 1m\n  adminListen: 127.0.0.1:8770\nlogs:\n  max_file_mb: 32\n  keep_days: 7\n',
    );
    expect(await loadControllerConfig(file)).toEqual({
      stateDir: '/var/lib/corral-controller',
      controller: { heartbeatInterval: 60_000, adminListen: '127.0.0.1:8770' },
      logs: { max_file_mb: 32, keep_days: 7 },
    });
    expect(await refusal('agent: {}\n', loadControllerConfig)).toContain(
      'unknown key "agent" (known: stateDir, database, controller, logs, approvals, backup, cluster)',
    );
  });

  it('reads the cluster resync period, and refuses one without a unit', async () => {
    const file = join(dir, 'controller-cluster.yaml');
    await writeFile(file, 'cluster:\n  resync: 2m\n');
    expect(await loadControllerConfig(file)).toEqual({ cluster: { resync: 120_000 } });
    expect(await refusal('cluster:\n  resync: 10\n', loadControllerConfig)).toContain('cluster.resync');
  });

  it('reads the failed-service retry keys, and refuses a bad count', async () => {
    const file = join(dir, 'controller-retry.yaml');
    await writeFile(file, 'controller:\n  retryCooldown: 30s\n  retryMax: 2\n');
    expect(await loadControllerConfig(file)).toEqual({ controller: { retryCooldown: 30_000, retryMax: 2 } });
    expect(await refusal('controller:\n  retryMax: -1\n', loadControllerConfig)).toContain(
      'controller.retryMax',
    );
  });

  it('reads the approvals an action needs, and refuses an action it does not know', async () => {
    const file = join(dir, 'controller-approvals.yaml');
    await writeFile(file, 'approvals:\n  decommission: 1\n  expireAfter: 30m\n');
    expect(await loadControllerConfig(file)).toEqual({
      approvals: { decommission: 1, expireAfter: 1_800_000 },
    });
    expect(await refusal('approvals:\n  reboot: 1\n', loadControllerConfig)).toContain(
      'unknown key "approvals.reboot" (known in approvals: decommission, teardown, update, drain, operators, reschedule, heal, expireAfter)',
    );
    const rule = join(dir, 'controller-approvals-rule.yaml');
    await writeFile(rule, 'approvals:\n  update: { count: 2, all: true }\n  reschedule: 1\n  heal: 1\n');
    expect(await loadControllerConfig(rule)).toEqual({
      approvals: { update: { count: 2, all: true }, reschedule: 1, heal: 1 },
    });
    expect(
      await refusal('approvals:\n  update: { count: 1, every: true }\n', loadControllerConfig),
    ).toContain('approvals.update: expected a whole number from 0 to 10, or { count: N, all: true|false }');
    expect(await refusal('approvals:\n  teardown: -1\n', loadControllerConfig)).toContain(
      'approvals.teardown: expected a whole number from 0 to 10',
    );
    expect(await refusal('logs:\n  max_file_mb: 0\n', loadControllerConfig)).toContain('logs.max_file_mb');
  });
});
