import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { HostListResponse } from '../../protocol/admin-hosts.js';
import type { ServiceListResponse, ServiceView } from '../../protocol/deployment.js';
import { readEndpointsFile } from '../../kit/endpoints-file.js';
import type { HostStatus, HostView } from '../../protocol/host.js';
import { createAdminClient, type AdminClient } from '../admin-client.js';
import { corralJson, type CorralCommand } from './corral-cli.js';
import { spawnDaemon, type Daemon } from './daemon.js';
import { tailOf } from './log-tail.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';

/** How often start-up conditions are polled, in ms. */
export const POLL_MS = 100;
export const DEFAULT_START_TIMEOUT_MS = 60_000;

/** A `corral controller serve` process that `corral up` (or a test) started. */
export interface LocalController {
  readonly stateDir: string;
  readonly daemon: Daemon;
  /** Bound addresses from `run/endpoints.json`: admin URL, worker, join, syslog. */
  readonly endpoints: Readonly<Record<string, string>>;
  readonly adminUrl: string;
  readonly admin: AdminClient;
  /** The environment for `corral controller …` commands aimed at this controller. */
  readonly env: NodeJS.ProcessEnv;
  hosts(): Promise<HostView[]>;
  /** What `corral controller services` shows. */
  services(): Promise<ServiceView[]>;
  /** Polls until every named host has one of `statuses`; throws after `timeoutMs`. */
  waitForHosts(names: readonly string[], statuses: readonly HostStatus[], timeoutMs?: number): Promise<void>;
}

export interface LocalControllerOptions {
  readonly cli: CorralCommand;
  readonly stateDir: string;
  /** Log file for the controller's own output. */
  readonly logFile: string;
  readonly heartbeatIntervalMs: number;
  /** The address workers dial (init --address); default 127.0.0.1. */
  readonly address?: string;
  /** Host the worker, join and syslog listeners bind; default `address`. */
  readonly workerListenHost?: string;
  readonly logLevel?: string;
  readonly startTimeoutMs?: number;
  /** More `controller serve` flags (e.g. `--reschedule-after 2s`). */
  readonly serveArgs?: readonly string[];
  /** More `controller init` flags (e.g. `--database postgres://…`). */
  readonly initArgs?: readonly string[];
}

/** The environment for child `corral` commands: never aimed at a controller by the caller's env. */
export function isolatedEnv(base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env = { ...base };
  delete env.CORRAL_URL;
  delete env.CORRAL_TOKEN;
  delete env.CORRAL_HOME;
  delete env.CORRAL_CONFIG;
  return env;
}

/**
 * Runs `controller init` and `controller serve` through the CLI and waits for the endpoints
 * file. Throws (after stopping the process) when it exits or does not come up in time.
 */
export async function startLocalController(o: LocalControllerOptions): Promise<LocalController> {
  const address = o.address ?? '127.0.0.1';
  const listenHost = o.workerListenHost ?? address;
  const env = isolatedEnv();
  await corralJson(
    o.cli,
    ['controller', 'init', '--state-dir', o.stateDir, '--address', address, '--json', ...(o.initArgs ?? [])],
    {
      env,
    },
  );
  const daemon = await spawnDaemon({
    name: 'controller',
    command: o.cli.node ?? process.execPath,
    args: [
      o.cli.bin,
      'controller',
      'serve',
      '--state-dir',
      o.stateDir,
      '--admin-listen',
      '127.0.0.1:0',
      '--worker-listen',
      `${listenHost}:0`,
      '--heartbeat-interval',
      `${o.heartbeatIntervalMs}ms`,
      '--log-level',
      o.logLevel ?? 'warn',
      '--syslog-listen',
      `${listenHost}:0`,
      ...(o.serveArgs ?? []),
    ],
    logFile: o.logFile,
    env,
  });
  try {
    const deadline = Date.now() + (o.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
    let endpoints: Record<string, string> | undefined;
    while (!endpoints?.admin) {
      if (!daemon.running())
        throw new CorralError(ErrorCode.UNAVAILABLE, `the controller exited: ${await tailOf(o.logFile)}`);
      if (Date.now() > deadline)
        throw new CorralError(ErrorCode.TIMEOUT, `the controller did not start: ${await tailOf(o.logFile)}`);
      await sleep(POLL_MS);
      endpoints = await readEndpointsFile(o.stateDir).catch(() => undefined /* half-written: retry */);
    }
    const token = (await readFile(join(o.stateDir, 'admin-token'), 'utf8')).trim();
    const admin = createAdminClient({ url: endpoints.admin, token });
    const hosts = async (): Promise<HostView[]> => (await admin.get<HostListResponse>('/v1/hosts')).hosts;
    return {
      stateDir: o.stateDir,
      daemon,
      endpoints,
      adminUrl: endpoints.admin,
      admin,
      env: { ...env, CORRAL_HOME: o.stateDir },
      hosts,
      services: async () => (await admin.get<ServiceListResponse>('/v1/services')).services,
      async waitForHosts(names, statuses, timeoutMs = DEFAULT_START_TIMEOUT_MS) {
        const until = Date.now() + timeoutMs;
        for (;;) {
          const byName = new Map((await hosts()).map((h) => [h.name, h.status]));
          const waiting = names.filter((n) => !statuses.includes(byName.get(n) ?? 'pending'));
          if (waiting.length === 0) return;
          if (Date.now() > until) {
            throw new CorralError(
              ErrorCode.TIMEOUT,
              `hosts not ${statuses.join('/')} in time: ${waiting.map((n) => `${n}=${byName.get(n) ?? 'missing'}`).join(', ')}`,
            );
          }
          await sleep(POLL_MS);
        }
      },
    };
  } catch (e: unknown) {
    await daemon.stop();
    throw e;
  }
}
