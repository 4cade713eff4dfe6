import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { DEFAULT_HEARTBEAT_INTERVAL_MS } from '../protocol/constants.js';
import { isCorralError, ErrorCode } from '../protocol/errors.js';
import { AGENT_DEFAULTS, agentConfig } from './agent-config.js';
import type { AgentOptions } from './agent-options.js';

const log = pino({ level: 'silent' });
const base: AgentOptions = {
  stateDir: '/var/lib/corral/agent',
  listen: { host: '127.0.0.1', port: 8765 },
  version: '1.2.3',
  log,
};

function refusal(o: Partial<AgentOptions>): string {
  try {
    agentConfig({ ...base, ...o });
  } catch (e: unknown) {
    if (isCorralError(e, ErrorCode.VALIDATION)) return e.message;
    throw e;
  }
  throw new Error('accepted');
}

describe('agentConfig', () => {
  it('fills every default from AGENT_DEFAULTS', () => {
    const c = agentConfig(base);
    expect(c).toMatchObject({
      logFile: join(base.stateDir, 'logs', 'worker.log'),
      baseEnv: { PATH: AGENT_DEFAULTS.path },
      heartbeat: { ...AGENT_DEFAULTS.heartbeat, intervalMs: DEFAULT_HEARTBEAT_INTERVAL_MS },
      restart: AGENT_DEFAULTS.restart,
      adoptPollMs: 1000,
      logPollMs: 500,
      defaultStopGraceMs: 10_000,
      concurrency: 16,
      reinitialize: false,
      selfDestruct: {
        installDirs: [],
        extraDirs: [],
        keepDirs: [],
        units: [],
        reaperCommand: null,
        systemd: 'auto',
      },
    });
    expect(c.paths).toMatchObject({
      bundleDir: join(base.stateDir, 'bundle'),
      runDir: join(base.stateDir, 'run'),
      healthSocket: join(base.stateDir, 'run', 'agent.sock'),
      diskPaths: [base.stateDir, '/'],
    });
    expect(c.now).toBe(Date.now);
    expect(c.log).toBe(log);
  });

  it('keeps what was given, and heartbeats off as null', () => {
    const c = agentConfig({
      ...base,
      heartbeat: { enabled: false, intervalMs: 5 },
      restart: { maxRestarts: 2 },
      concurrency: 3,
      selfDestruct: { reaperCommand: ['/usr/bin/corral', 'agent', 'reap', '--plan'], systemd: 'never' },
    });
    expect(c.heartbeat).toBeNull();
    expect(c.restart).toEqual({ ...AGENT_DEFAULTS.restart, maxRestarts: 2 });
    expect(c.concurrency).toBe(3);
    expect(c.selfDestruct).toMatchObject({
      reaperCommand: ['/usr/bin/corral', 'agent', 'reap', '--plan'],
      systemd: 'never',
    });
  });

  it('is frozen all the way down, and shares nothing with the options it came from', () => {
    const keepDirs = ['/srv/keep'];
    const c = agentConfig({ ...base, selfDestruct: { keepDirs } });
    keepDirs.push('/later');
    expect(c.selfDestruct.keepDirs).toEqual(['/srv/keep']);
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.heartbeat)).toBe(true);
    expect(Object.isFrozen(c.selfDestruct.keepDirs)).toBe(true);
    expect(Object.isFrozen(c.paths.diskPaths)).toBe(true);
    expect(() => ((c.restart as { maxRestarts: number }).maxRestarts = 1)).toThrow(TypeError);
    // The logger is the caller's: it stays usable.
    expect(Object.isFrozen(c.log)).toBe(false);
  });

  it('refuses values out of range, naming the field', () => {
    expect(refusal({ listen: { host: '127.0.0.1', port: 70_000 } })).toContain('/listen/port');
    expect(refusal({ logPollMs: 0 })).toContain('/logPollMs');
    expect(refusal({ adoptPollMs: Number.NaN })).toContain('/adoptPollMs');
    expect(refusal({ concurrency: 0 })).toContain('/concurrency');
    expect(refusal({ concurrency: 1.5 })).toContain('/concurrency');
    expect(refusal({ version: '' })).toContain('/version');
    expect(refusal({ instance: 'not a token' })).toContain('/instance');
    expect(refusal({ restart: { windowMs: -1 } })).toContain('/restart/windowMs');
    expect(refusal({ heartbeat: { backoffCapMs: 0 } })).toContain('/heartbeat/backoffCapMs');
    expect(refusal({ heartbeat: { minIntervalMs: 5000, maxIntervalMs: 1000 } })).toMatch(
      /minIntervalMs \(5000\) is above \/heartbeat\/maxIntervalMs \(1000\)/,
    );
    expect(refusal({ selfDestruct: { reaperCommand: [] } })).toContain('/selfDestruct/reaperCommand');
  });
});
