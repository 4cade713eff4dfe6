import { cp } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { expect } from 'vitest';
import { corralJson, runCorral } from '../cli/up/corral-cli.js';
import { spawnDaemon, type Daemon } from '../cli/up/daemon.js';
import { isolatedEnv } from '../cli/up/local-controller.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import type { HostListResponse } from '../protocol/admin-hosts.js';
import { CLI, poll } from './fleet-fixture.js';

/**
 * Two state dirs for controllers sharing the PostgreSQL database `url`, made as
 * docs/operations.md has an operator make them: `DIR/a` by `controller init`, `DIR/b` a copy
 * of it (same CA, identities and admin token).
 */
export async function sharedControllerStates(dir: string, url: string): Promise<{ a: string; b: string }> {
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  const init = await runCorral(CLI, ['controller', 'init', '--state-dir', a, '--database', url], {
    env: isolatedEnv(),
  });
  expect(init.code, init.stderr).toBe(0);
  await cp(a, b, { recursive: true });
  return { a, b };
}

/**
 * The `node` arguments of `corral controller serve` for `stateDir` on `url`, its admin and
 * worker listeners on loopback with ports of the system's choosing, then `extra`.
 */
export const clusterServeArgs = (stateDir: string, url: string, extra: readonly string[] = []): string[] => [
  CLI.bin,
  'controller',
  'serve',
  '--state-dir',
  stateDir,
  '--database',
  url,
  '--admin-listen',
  '127.0.0.1:0',
  '--worker-listen',
  '127.0.0.1:0',
  ...extra,
];

/** The first page of hosts a controller's admin API at `admin` lists (it must answer 200). */
export async function clusterHostsOn(admin: string, token: string): Promise<HostListResponse['hosts']> {
  const res = await request(`${admin}/v1/hosts`, { headers: { authorization: `Bearer ${token}` } });
  expect(res.statusCode).toBe(200);
  return ((await res.body.json()) as HostListResponse).hosts;
}

/** `corral agent serve` for the worker state dir `worker` as a daemon, logging at info to `logFile`. */
export function spawnClusterAgent(o: {
  readonly worker: string;
  readonly agentPort: number;
  readonly heartbeatIntervalMs: number;
  readonly logFile: string;
  readonly env: NodeJS.ProcessEnv;
}): Promise<Daemon> {
  return spawnDaemon({
    name: 'agent',
    command: process.execPath,
    args: [
      CLI.bin,
      'agent',
      'serve',
      '--state-dir',
      o.worker,
      '--listen',
      `127.0.0.1:${o.agentPort}`,
      '--heartbeat-interval',
      `${o.heartbeatIntervalMs}ms`,
      '--no-systemd',
      '--log-level',
      'info',
    ],
    logFile: o.logFile,
    env: o.env,
  });
}

/**
 * The admin and worker addresses (and the syslog one, with `withSyslog`) a controller serving
 * `stateDir` wrote to its endpoints file, once it has (within 60 s). Remove a stale file first.
 */
export function clusterEndpoints(
  stateDir: string,
  name: string,
  withSyslog: true,
): Promise<{ admin: string; worker: string; syslog: string }>;
export function clusterEndpoints(stateDir: string, name: string): Promise<{ admin: string; worker: string }>;
export function clusterEndpoints(
  stateDir: string,
  name: string,
  withSyslog = false,
): Promise<{ admin: string; worker: string; syslog?: string }> {
  return poll(
    `${name} up`,
    async () => {
      const e = await readEndpointsFile(stateDir).catch(() => undefined /* not written yet */);
      if (e?.admin === undefined || e.worker === undefined) return undefined;
      if (!withSyslog) return { admin: e.admin, worker: e.worker };
      return e.syslog === undefined ? undefined : { admin: e.admin, worker: e.worker, syslog: e.syslog };
    },
    60_000,
  );
}

/** `corral controller enroll --json` of a worker `name` on loopback through the admin API at `admin`. */
export function enrollClusterWorker(o: {
  readonly admin: string;
  readonly token: string;
  readonly name: string;
  readonly agentPort: number;
  readonly outDir: string;
  readonly env: NodeJS.ProcessEnv;
}): Promise<{ hostId: string; controllers?: string[] }> {
  return corralJson(
    CLI,
    [
      'controller',
      'enroll',
      '--url',
      o.admin,
      '--token',
      o.token,
      '--name',
      o.name,
      '--address',
      '127.0.0.1',
      '--agent-port',
      String(o.agentPort),
      '--out-dir',
      o.outDir,
      '--json',
    ],
    { env: o.env },
  );
}
