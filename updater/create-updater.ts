import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { TlsMaterial } from '../pki/index.js';
import {
  AGENT_HEALTH_SOCKET,
  DEFAULT_MAX_EXTRACTED_BYTES,
  DEFAULT_MAX_RELEASE_BYTES,
} from '../protocol/index.js';
import { formatHostPort } from '../kit/host-port.js';
import { readEndpointsFile, writeEndpointsFile } from '../kit/endpoints-file.js';
import { runShutdown } from '../kit/shutdown.js';
import { Activator, type PausePhase } from './activator.js';
import type { AgentRelease, AgentRunner } from './agent-runner.js';
import { DEFAULT_MAX_ARCHIVE_ENTRIES } from './archive-rules.js';
import { CommandAgentRunner } from './command-agent-runner.js';
import { ProcessAgentRunner } from './process-agent-runner.js';
import { openState, type StateOpening } from './open-state.js';
import { recover, type RecoveryReport } from './recover.js';
import { ensureLayout, releaseLayout } from './release-layout.js';
import { ReleaseManager } from './release-manager.js';
import { installSelfRelease } from './self-update.js';
import { expandStart, type StartVars } from './start-spec.js';
import { StateStore } from './state-store.js';
import { buildUpdaterServer } from './updater-server.js';

export const DEFAULT_KEEP_RELEASES = 3;
/** Releases kept at most (the journal lists at most 64). */
export const MAX_KEEP_RELEASES = 32;
export const DEFAULT_HEALTH_TIMEOUT_MS = 30_000;
export const DEFAULT_HEALTH_INTERVAL_MS = 200;
/** How long a new release is watched after its health check, in ms. */
export const DEFAULT_WATCH_MS = 30_000;

export interface UpdaterOptions {
  /** `R`: releases, `current`, journal and history live here. */
  readonly root: string;
  /** The updater's state dir (bundle, run/endpoints.json). */
  readonly stateDir: string;
  /** The agent's state dir: its health socket is `<agentStateDir>/run/agent.sock`. */
  readonly agentStateDir: string;
  /** The updater identity from the bundle, and the CA. */
  readonly tls: TlsMaterial;
  readonly controllerClientFingerprint: string;
  readonly listen: { readonly host: string; readonly port: number };
  /** Restart the agent with this command (no shell) instead of supervising it as a child. */
  readonly agentRestartCommand?: readonly string[];
  /**
   * Whether the built-in runner also runs the forwarder a release names (default true): the
   * updater is then the whole supervision tree of a node without a service manager.
   */
  readonly superviseForwarder?: boolean;
  /** Replaces the built-in runners (each is chosen from the options above otherwise). */
  readonly runner?: AgentRunner;
  /** Environment for the agent (the CLI passes its own). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The version this updater runs, as reported by GET /v1/releases. */
  readonly updaterVersion: string;
  readonly log: Logger;
  readonly clock?: () => Date;
  readonly keep?: number;
  readonly maxReleaseBytes?: number;
  readonly maxExtractedBytes?: number;
  readonly healthTimeoutMs?: number;
  readonly healthIntervalMs?: number;
  /**
   * After a new release reported healthy, it is watched this long (0: not at all) and rolled
   * back if its agent exits or turns unhealthy meanwhile; the update answers after it, in ms.
   */
  readonly watchMs?: number;
  /** Start over where the journal is unusable and the tree cannot rebuild it (see open-state.ts). */
  readonly reinitialize?: boolean;
  /** Called after a self-update's 202 went out, with the release to restart into. */
  readonly onSelfUpdate?: (release: AgentRelease) => void;
  /** Test hook: holds an update at a phase (tests kill the updater there). */
  readonly pause?: (phase: PausePhase) => Promise<void>;
  readonly agentStopTimeoutMs?: number;
}

export interface Updater {
  /** host:port actually bound (port 0 resolved). */
  readonly endpoint: string;
  readonly port: number;
  readonly recovery: RecoveryReport;
  /** How the journal was opened, and what the operator must be told about it. */
  readonly opening: StateOpening;
  readonly manager: ReleaseManager;
  /** Stops accepting, aborts an update in flight, stops the agent unless `keepAgent`. Idempotent. */
  close(options?: { keepAgent?: boolean }): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts a worker's updater: lays out the root, opens its journal (rebuilt from the tree where
 * it was lost and the tree allows; else CORRAL_ERR_STATE_DAMAGED, see open-state.ts), recovers
 * from whatever a previous process left (before listening), then serves the mTLS API and records its address in
 * `<stateDir>/run/endpoints.json` (merged with what else is there, e.g. the agent's).
 */
export async function createUpdater(o: UpdaterOptions): Promise<Updater> {
  const log = o.log;
  const clock = o.clock ?? (() => new Date());
  const keep = Math.min(MAX_KEEP_RELEASES, Math.max(2, o.keep ?? DEFAULT_KEEP_RELEASES));
  const layout = releaseLayout(o.root);
  await ensureLayout(layout);
  const store = new StateStore(layout);
  const opening = await openState({ layout, store, log, clock, reinitialize: o.reinitialize ?? false });
  const healthTimeoutMs = o.healthTimeoutMs ?? DEFAULT_HEALTH_TIMEOUT_MS;
  const watchMs = o.watchMs ?? DEFAULT_WATCH_MS;
  const lifetime = new AbortController();
  const vars = (release: AgentRelease): StartVars => ({
    release: release.dir,
    version: release.version,
    root: o.root,
    stateDir: o.stateDir,
    agentStateDir: o.agentStateDir,
  });
  const runner =
    o.runner ??
    (o.agentRestartCommand && o.agentRestartCommand.length > 0
      ? new CommandAgentRunner({
          restartCommand: o.agentRestartCommand,
          env: o.env,
          log: log.child({ component: 'agent' }),
        })
      : new ProcessAgentRunner({
          stateDir: o.agentStateDir,
          logFile: layout.agentLog,
          command: (release) => expandStart(release.manifest.start, vars(release)),
          ...(o.superviseForwarder !== false
            ? {
                forwarder: {
                  logFile: layout.forwarderLog,
                  command: (release: AgentRelease) =>
                    release.manifest.forwarder
                      ? expandStart(release.manifest.forwarder, vars(release))
                      : null,
                },
              }
            : {}),
          env: o.env,
          log: log.child({ component: 'agent' }),
          ...(o.agentStopTimeoutMs !== undefined ? { stopTimeoutMs: o.agentStopTimeoutMs } : {}),
        }));
  const healthSocket = join(o.agentStateDir, AGENT_HEALTH_SOCKET);
  const activator = new Activator({
    layout,
    runner,
    healthSocket,
    healthTimeoutMs,
    healthIntervalMs: o.healthIntervalMs ?? DEFAULT_HEALTH_INTERVAL_MS,
    watchMs,
    log,
    signal: lifetime.signal,
    ...(o.pause ? { pause: o.pause } : {}),
  });
  const limits = {
    maxExtractedBytes: o.maxExtractedBytes ?? DEFAULT_MAX_EXTRACTED_BYTES,
    maxEntries: DEFAULT_MAX_ARCHIVE_ENTRIES,
  };
  const maxReleaseBytes = o.maxReleaseBytes ?? DEFAULT_MAX_RELEASE_BYTES;
  const manager = new ReleaseManager({
    layout,
    store,
    runner,
    activator,
    log,
    clock,
    keep,
    maxReleaseBytes,
    limits,
    updaterVersion: o.updaterVersion,
    timing: { healthTimeoutMs, watchMs },
  });

  let recovery: RecoveryReport;
  try {
    recovery = await recover({ layout, store, runner, activator, manager, healthSocket, log, clock });
  } catch (e: unknown) {
    await runner.close({ keepAgent: true });
    throw e;
  }

  const app = buildUpdaterServer({
    tls: o.tls,
    controllerClientFingerprint: o.controllerClientFingerprint,
    manager,
    maxReleaseBytes,
    installSelf: (upload) =>
      installSelfRelease(
        {
          manager,
          layout,
          store,
          log,
          clock,
          keep,
          maxReleaseBytes,
          limits,
          updaterVersion: o.updaterVersion,
        },
        upload,
      ),
    onSelfUpdate: (release) => o.onSelfUpdate?.(release),
    log: log.child({ component: 'http' }),
  });
  try {
    await app.listen({ host: o.listen.host, port: o.listen.port });
  } catch (e: unknown) {
    await runner.close({ keepAgent: true });
    throw e;
  }
  const bound = app.server.address() as AddressInfo;
  const endpoint = formatHostPort(bound.address, bound.port);
  const existing = (await readEndpointsFile(o.stateDir).catch(() => undefined)) ?? {};
  await writeEndpointsFile(o.stateDir, { ...existing, updater: endpoint });
  log.info({ endpoint, current: recovery.current }, 'updater listening');

  let closing: Promise<void> | undefined;
  const close = (options: { keepAgent?: boolean } = {}): Promise<void> => {
    closing ??= runShutdown([
      { name: 'stop-accepting', run: () => app.close() },
      { name: 'abort-loops', run: async () => lifetime.abort() },
      { name: 'close-runner', run: () => runner.close(options) },
    ]).then((outcomes) => {
      for (const phase of outcomes)
        if (!phase.ok)
          log.warn({ phase: phase.name, timedOut: phase.timedOut ?? false }, 'shutdown phase failed');
    });
    return closing;
  };
  return {
    endpoint,
    port: bound.port,
    recovery,
    opening,
    manager,
    close,
    [Symbol.asyncDispose]: () => close(),
  };
}
