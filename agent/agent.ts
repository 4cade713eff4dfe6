import { mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { dirname, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { controllerAddresses, ensurePrivateDir, PRIVATE_DIR_MODE } from '../pki/index.js';
import { RELEASE_VERSION_RE } from '../protocol/release.js';
import { formatHostPort } from '../kit/host-port.js';
import { readEndpointsFile, writeEndpointsFile } from '../kit/endpoints-file.js';
import { agentConfig } from './agent-config.js';
import { loadAgentIdentity } from './agent-identity.js';
import { createAgentCore, type AgentCore } from './agent-core.js';
import type { AgentOptions } from './agent-options.js';
import { createControllerClient } from './link/controller-client.js';
import { openControllerDirectory } from './link/controller-directory.js';
import { loadDesiredState } from './reconcile/desired-store.js';
import { openEventOutbox, type NewEvent } from './link/event-outbox.js';
import { runHeartbeatLoop } from './link/heartbeat-loop.js';
import { readHostMetrics } from './link/host-metrics.js';
import { readDefaultRouteInterface } from './reconcile/host-vars.js';
import { claimPidFile } from '../kit/pid-file.js';
import { agentInstance } from './runtime/orphans.js';
import { startLocalHealth } from './local-health.js';
import { createRuntimes } from './runtime/runtimes.js';
import { CorralError, ErrorCode } from '../protocol/errors.js';
import { createReconciler, type JobResult } from './reconcile/reconciler.js';
import { renewIfDue } from './link/renewal.js';
import { createSelfDestruct } from './self-destruct/self-destruct.js';
import { MAX_WIPE_REPORT_CONTROLLERS } from './self-destruct/self-destruct-plan.js';
import { createAgentServer } from './server.js';
import { serviceDirs } from './supervise/service-record.js';
import { createServiceTable } from './supervise/service-table.js';
import { checkAgentState, type Reinitialized } from './state/state-check.js';
import { trackStateFiles } from './state/state-manifest.js';
import { createWorkerLog } from '../kit/worker-log.js';

export interface Agent {
  /** host:port the mTLS API is bound to. */
  readonly address: string;
  readonly hostId: string;
  /** What `reinitialize` replaced at this start (empty when the state was whole). */
  readonly reinitialized: readonly Reinitialized[];
  readonly core: AgentCore;
  /** Resolves when no reconcile is running or queued. */
  idle(): Promise<void>;
  /** Stops the agent; services keep running for the next agent to re-adopt. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts the worker agent on an enrolled state dir, with `options` resolved by agentConfig
 * (every default in AGENT_DEFAULTS). Throws CORRAL_ERR_VALIDATION for an option out of range,
 * a PkiError (CORRAL_ERR_BUNDLE_MISSING / _INVALID / _KEY_PERMISSIONS) when there is no usable
 * identity, CORRAL_ERR_CONFLICT when another agent runs on the same state dir, and
 * CORRAL_ERR_STATE_DAMAGED (naming each file and the way back; nothing changed) when a state
 * file that existed is missing, empty or damaged, unless `reinitialize` asks to replace it.
 */
export async function createAgent(options: AgentOptions): Promise<Agent> {
  const c = agentConfig(options);
  const { now, random, paths } = c;
  const log = c.log.child({ component: 'agent' });
  const startedAt = now();
  const identity = await loadAgentIdentity(paths.bundleDir);
  const manifest = identity.manifest;
  await ensurePrivateDir(c.stateDir);
  await mkdir(paths.runDir, { recursive: true, mode: PRIVATE_DIR_MODE });
  // One agent per state dir: `run/agent.pid`, in the pid-file format every daemon shares (the
  // updater may have written it for this process already, with the same version and token).
  const lock = await claimPidFile(c.stateDir, 'agent', {
    exclusive: true,
    ...(RELEASE_VERSION_RE.test(c.version) ? { version: c.version } : {}),
    ...(c.instance !== null ? { instance: c.instance } : {}),
  });
  const cleanups: (() => Promise<void> | void)[] = [() => lock.release()];
  const cleanup = async (): Promise<void> => {
    for (const fn of cleanups.splice(0).reverse()) {
      await Promise.resolve()
        .then(fn)
        .catch((err: unknown) => log.error({ err }, 'agent cleanup step failed'));
    }
  };
  try {
    // Before anything reads or writes state: a lost or damaged state file stops the start here.
    const checked = await checkAgentState(c.stateDir, { reinitialize: c.reinitialize, now });
    for (const r of checked.reinitialized) {
      log.warn(
        { file: r.file, problem: r.problem, movedTo: r.movedTo, destroyed: r.destroyed },
        'state file reinitialized',
      );
    }
    const stateFiles = trackStateFiles(c.stateDir, checked.files, (err) =>
      log.error({ err }, 'state manifest not saved'),
    );
    const workerLog = createWorkerLog(c.logFile);
    cleanups.push(() => workerLog.close());
    const outbox = await openEventOutbox(paths.outboxFile, {
      now,
      onError: (err) => log.error({ err }, 'event outbox not saved'),
      stateFiles,
    });
    cleanups.push(() => outbox.flush());
    const emit = (e: NewEvent): void => void outbox.add(e);
    const runtimes = createRuntimes({
      adoptPollMs: c.adoptPollMs,
      allowedWorkingDirs: c.allowedWorkingDirs,
      container: { socket: c.containers.socket, allowedVolumeDirs: c.containers.allowedVolumeDirs },
    });
    cleanups.push(() => {
      for (const r of runtimes.values()) r.close();
    });
    const instance = agentInstance(resolve(c.stateDir));
    const dirs = serviceDirs(paths.servicesDir, stateFiles);
    const { defaultStopGraceMs } = c;
    const table = createServiceTable({
      runtimes,
      dirs,
      log,
      limits: c.restart,
      random,
      now,
      baseEnv: c.baseEnv,
      defaultStopGraceMs,
      instance,
      emit: (e) =>
        emit({ type: e.type, service: e.service, ...(e.detail !== undefined && { detail: e.detail }) }),
      hostname: manifest.hostName,
      workerLog,
      stateFiles,
    });
    await table.restore();
    cleanups.push(() => table.detachAll());

    let markApplied: (generation: number) => void = () => undefined;
    const finished = (r: JobResult): void => {
      const base = { generation: r.job.generation, operationId: r.job.operationId, detail: r.detail };
      if (r.outcome === 'superseded') {
        if (r.job.kind === 'apply') emit({ ...base, type: 'apply-failed' });
        return;
      }
      markApplied(r.job.generation);
      if (r.outcome === 'failed') emit({ ...base, type: 'apply-failed' });
      else if (r.job.kind === 'teardown') emit({ ...base, type: 'teardown-finished' });
      else if (r.job.kind === 'apply' || r.steps > 0) emit({ ...base, type: 'apply-finished' });
    };
    const reconciler = createReconciler({
      table,
      log,
      concurrency: c.concurrency,
      finished,
    });
    cleanups.push(() => reconciler.close());

    const metrics = () => readHostMetrics(c.stateDir);
    const core = createAgentCore({
      version: c.version,
      hostId: manifest.hostId,
      statePath: paths.desiredStateFile,
      stateFiles,
      initial: await loadDesiredState(paths.desiredStateFile),
      facts: {
        name: manifest.hostName,
        id: manifest.hostId,
        address: manifest.address,
        interface: await readDefaultRouteInterface(),
      },
      table,
      reconciler,
      log,
      now,
      startedAt,
      metrics,
      checkSpec: (spec, where) => {
        const runtime = runtimes.get(spec.runtime);
        if (!runtime) {
          throw new CorralError(
            ErrorCode.VALIDATION,
            `${where}/runtime: this agent has no ${spec.runtime} runtime`,
          );
        }
        runtime.check(spec, where);
      },
    });
    const sd = c.selfDestruct;
    markApplied = (generation) => core.markApplied(generation);
    /** Where the wipe report goes, in order: the controller the agent talks to, then the others. */
    let reportTo = (): string[] => controllerAddresses(manifest);
    const selfDestruct = createSelfDestruct({
      config: {
        stateDir: c.stateDir,
        installDirs: sd.installDirs,
        extraDirs: sd.extraDirs,
        keepDirs: [dirname(c.logFile), ...sd.keepDirs],
        units: sd.units,
        logFile: c.logFile,
        containers: { socket: c.containers.socket, instance },
      },
      hostId: manifest.hostId,
      hostname: manifest.hostName,
      reaperCommand: sd.reaperCommand ?? undefined,
      systemd: sd.systemd,
      agent: { pid: lock.record.pid, startTime: lock.record.startTime, bootId: lock.record.bootId },
      defaultStopGraceMs,
      log,
      services: () =>
        table.workloads().map((w) => ({
          name: w.name,
          ref: w.ref,
          stopGraceMs: w.stopGraceMs ?? defaultStopGraceMs,
        })),
      runtimes,
      instance,
      freeze: () => core.freeze(),
      now,
      reportTarget: () => {
        if (c.heartbeat === null) return null;
        const to = reportTo();
        return {
          hostId: manifest.hostId,
          controller: to[0] ?? manifest.controller,
          controllers: to.slice(0, MAX_WIPE_REPORT_CONTROLLERS),
          ...identity.material(),
        };
      },
    });

    const server = createAgentServer({
      material: identity.material(),
      pinnedFingerprint: () => manifest.controllerClientFingerprint,
      core,
      diagnostics: {
        diskPaths: paths.diskPaths,
        serviceDir: (name) => (table.names().includes(name) ? dirs.dir(name) : undefined),
        servicePids: () =>
          new Map(
            table
              .workloads()
              .flatMap((w) => (w.ref.kind === 'process' ? [[w.ref.pid, w.name] as const] : [])),
          ),
      },
      selfDestruct,
      log,
    });
    identity.onChange((m) => server.reloadTls(m));
    cleanups.push(() => server.api.close());
    await server.api.listen(c.listen.host, c.listen.port);
    const bound = server.api.server.address() as AddressInfo;
    const address = formatHostPort(bound.address, bound.port);
    // Merged: the updater may share this state dir and keep its own entry here.
    const others = await readEndpointsFile(c.stateDir).catch(() => undefined /* unreadable: rewrite it */);
    await writeEndpointsFile(c.stateDir, { ...others, agent: address });

    const local = await startLocalHealth(paths.healthSocket, () => ({
      version: c.version,
      pid: process.pid,
      uptimeSeconds: (now() - startedAt) / 1000,
    }));
    cleanups.push(() => local.close());

    emit({ type: 'agent-started', detail: `version ${c.version}` });
    core.startup();

    const hb = c.heartbeat;
    const directory = await openControllerDirectory({
      stateDir: c.stateDir,
      bundleAddresses: controllerAddresses(manifest),
      log,
    });
    const client =
      hb === null
        ? undefined
        : createControllerClient(directory.workerAddresses(), identity.material(), {
            onFailover: (from, to, err) =>
              log.warn({ err, from, to }, 'controller unreachable; trying the next one'),
          });
    if (client) {
      reportTo = () => [...new Set([client.current(), ...client.addresses()])];
      identity.onChange((m) => client.reload(m));
      cleanups.push(() => client.close());
    }

    const loops = new AbortController();
    const running: Promise<void>[] = [];
    cleanups.push(async () => {
      loops.abort();
      await Promise.all(running);
      await table.pumpLogs();
    });
    const { logPollMs } = c;
    running.push(
      (async () => {
        while (!loops.signal.aborted) {
          await table.pumpLogs();
          await sleep(logPollMs, undefined, { signal: loops.signal }).catch(
            () => undefined /* AbortError: stopping */,
          );
        }
      })(),
    );

    if (client && hb) {
      running.push(
        runHeartbeatLoop(
          {
            client: () => client,
            outbox,
            timing: hb,
            random,
            log,
            collect: async () => ({
              hostId: manifest.hostId,
              agentVersion: c.version,
              generation: core.appliedGeneration(),
              metrics: await metrics(),
              services: (await core.status()).services,
            }),
            certificate: {
              notAfter: () => identity.notAfter('agent'),
              now,
              reEnroll:
                `on the controller: corral controller decommission ${manifest.hostName} --yes, then ` +
                `corral controller token create --name ${manifest.hostName}; on this worker: move ` +
                `${identity.bundleDir} aside and run the corral agent join line it prints with --state-dir ${c.stateDir}`,
            },
            onControllers: async (list) => {
              if (await directory.accept(list, new Date(now())))
                client.setAddresses(directory.workerAddresses());
            },
            onDecommissioned: async () => {
              const { launch } = await selfDestruct.prepare({ hostId: manifest.hostId });
              await launch();
            },
            afterBeat: async (signal) => {
              await renewIfDue(
                {
                  identity,
                  client: () => client,
                  renewBeforeMs: hb.renewBeforeMs,
                  now,
                  log,
                },
                signal,
              );
            },
          },
          loops.signal,
        ),
      );
    }

    log.info({ address, hostId: manifest.hostId, version: c.version }, 'agent listening');
    let closing: Promise<void> | undefined;
    const close = (): Promise<void> => {
      closing ??= (async () => {
        log.info('agent stopping');
        await cleanup();
      })();
      return closing;
    };
    return {
      address,
      hostId: manifest.hostId,
      reinitialized: checked.reinitialized,
      core,
      idle: () => reconciler.idle(),
      close,
      [Symbol.asyncDispose]: close,
    };
  } catch (e: unknown) {
    await cleanup();
    throw e;
  }
}

export type { AgentOptions } from './agent-options.js';
