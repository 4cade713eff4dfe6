import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import {
  createForwarder,
  FORWARDER_MODES,
  isForwarderError,
  openPositionStore,
  readPositionReport,
  type ForwarderMode,
} from '../../forwarder/index.js';
import { ensurePrivateDir } from '../../pki/index.js';
import { createDaemonLogger } from '../daemon-logger.js';
import { listenForShutdown } from '../../kit/shutdown.js';
import {
  CONTROLLER_LIST_FILE,
  RELEASE_VERSION_ENV,
  RELEASE_VERSION_RE,
  WORKER_LOG_FILE,
} from '../../protocol/index.js';
import { FORWARDER_INSTANCE_ENV, INSTANCE_TOKEN_RE } from '../../protocol/pid-file.js';
import { claimPidFile } from '../../kit/pid-file.js';
import { readControllerList } from '../../kit/controller-list-file.js';
import { parseHostPort } from '../../kit/host-port.js';
import { configPath } from '../config/config-file.js';
import { refuseOldSpellings } from '../config/old-flags.js';
import { durationFlag, loadWorkerConfig } from '../config/worker-config.js';
import { CliExit, EXIT_FAILURE, EXIT_USAGE } from '../exit.js';
import { settleShutdown } from '../shutdown-result.js';
import { renderJson, renderRecord, renderTable, type Output } from '../output.js';
import { hostPortOption, loadWorkerIdentity } from '../worker-bundle.js';

/** Where, under the worker state dir, the forwarder keeps its positions. */
export const FORWARDER_POSITIONS_FILE = 'forwarder/positions.db';

interface RunOptions {
  config?: string;
  stateDir?: string;
  file: string[];
  controller: string[];
  mode?: string;
  pollInterval?: string;
  logLevel?: string;
}

function isMode(value: string): value is ForwarderMode {
  return (FORWARDER_MODES as readonly string[]).includes(value);
}

async function run(opts: RunOptions): Promise<void> {
  const file = configPath(opts.config);
  const config = await loadWorkerConfig(file);
  const f = config.forwarder ?? {};
  const stateDir = opts.stateDir ?? config.stateDir;
  if (stateDir === undefined)
    throw new CliExit(
      EXIT_USAGE,
      file ? `give --state-dir, or stateDir in ${file}` : 'give --state-dir (or --config)',
    );
  const mode = opts.mode ?? f.mode ?? 'corral';
  if (!isMode(mode)) throw new CliExit(EXIT_USAGE, `--mode must be one of ${FORWARDER_MODES.join(', ')}`);
  const files =
    opts.file.length > 0
      ? opts.file
      : (f.files ?? [config.agent?.logFile ?? join(resolve(stateDir), WORKER_LOG_FILE)]);
  const o = {
    stateDir,
    file: files,
    mode,
    logLevel: opts.logLevel ?? f.logLevel ?? 'info',
    controllers:
      opts.controller.length > 0 ? opts.controller : f.controller !== undefined ? [f.controller] : [],
  };
  const pollIntervalMs =
    opts.pollInterval !== undefined
      ? durationFlag('--poll-interval', opts.pollInterval)
      : (f.pollIntervalMs ?? 250);
  const { bundle, identity: agent } = await loadWorkerIdentity(o.stateDir, 'agent');
  const given = o.controllers.map((c) => hostPortOption('--controller', c));
  const bundleSyslog = bundle.manifest.syslog;
  if (given.length === 0 && bundleSyslog === undefined) {
    const kept = await readControllerList(o.stateDir).catch(() => undefined /* told below */);
    if (!kept?.controllers.some((c) => c.syslog !== undefined))
      throw new CliExit(
        EXIT_USAGE,
        'no --controller given and neither the bundle nor the controller list names a syslog address',
      );
  }

  // Its own log goes home too, as `corral-forwarder` lines, when it follows the worker log
  // (a forwarder given other files writes nothing into them).
  const workerLog = resolve(config.agent?.logFile ?? join(resolve(stateDir), WORKER_LOG_FILE));
  const logger = createDaemonLogger({
    name: 'corral-forwarder',
    level: o.logLevel,
    workerLog: o.file.some((f) => resolve(f) === workerLog) ? workerLog : undefined,
    hostname: bundle.manifest.hostName,
  });
  const { log } = logger;
  const ac = new AbortController();
  // Taken before the store opens and the loop starts: a signal meanwhile stops it once it has.
  const shutdown = listenForShutdown({
    forceOnSecondSignal: true,
    onSignal: (signal) => {
      log.info({ signal }, 'forwarder stopping');
      ac.abort();
    },
  });
  await ensurePrivateDir(join(o.stateDir, 'forwarder'));
  const store = await openPositionStore(join(o.stateDir, FORWARDER_POSITIONS_FILE)).catch(
    async (e: unknown) => {
      shutdown.dispose();
      await logger.close();
      if (isForwarderError(e)) throw new CliExit(EXIT_FAILURE, `${e.message} (${e.code})`);
      throw e;
    },
  );
  // Without --controller: the syslog listeners of the agent's controller list (written from
  // heartbeat answers, read again before every connect), then the bundle's.
  const controller =
    given.length > 0
      ? given
      : () =>
          syslogTargets(o.stateDir, bundleSyslog, (err) =>
            log.warn({ err }, 'the controller list is unreadable; using the bundle syslog address'),
          );
  const forwarder = createForwarder({
    tls: { caPem: bundle.caPem, certPem: agent.certPem, keyPem: agent.keyPem },
    controller,
    files: o.file,
    mode: o.mode,
    store,
    log,
    pollIntervalMs,
  });

  log.info(
    given.length > 0
      ? { controllers: o.controllers, mode: o.mode, files: o.file }
      : { controllers: CONTROLLER_LIST_FILE, syslog: bundleSyslog, mode: o.mode, files: o.file },
    'forwarder started',
  );
  // Found by the reaper whoever started it; a token and version from the updater that started
  // it let a restarted updater adopt it again.
  const instance = process.env[FORWARDER_INSTANCE_ENV];
  const release = process.env[RELEASE_VERSION_ENV];
  const pidFile = await claimPidFile(o.stateDir, 'forwarder', {
    exclusive: false,
    ...(instance !== undefined && INSTANCE_TOKEN_RE.test(instance) ? { instance } : {}),
    ...(release !== undefined && RELEASE_VERSION_RE.test(release) ? { version: release } : {}),
  });
  const running = forwarder.run(ac.signal);
  let failure: unknown;
  let end: string | undefined;
  void running.then(
    (e) => (end = e),
    (e: unknown) => (failure = e), // said after the shutdown
  );
  const result = await shutdown.wait(
    [
      {
        name: 'stop the forwarding loop',
        run: async () => {
          ac.abort();
          await running;
        },
      },
      { name: 'save positions and close files', run: () => forwarder.close() },
      { name: 'close the position store', run: () => store.close() },
      { name: 'remove the pid file', run: () => pidFile.release() },
    ],
    running,
  );
  const failed = settleShutdown(log, result);
  const stats = forwarder.stats();
  log.info(
    {
      failovers: stats.failovers,
      failoverUnackedBytes: stats.failoverUnackedBytes,
      sessions: stats.sessions,
    },
    'forwarder stopped',
  );
  if (end === 'decommissioned')
    log.warn('the controller says this host is decommissioned; the forwarder stopped and exits');
  await logger.close();
  log.flush();
  if (isForwarderError(failure)) throw new CliExit(EXIT_FAILURE, `${failure.message} (${failure.code})`);
  if (failed.length > 0) throw new CliExit(EXIT_FAILURE, 'forwarder did not shut down cleanly');
}

/** `corral forwarder status`: each followed file's generations and the lost-generation counter. */
async function status(o: { stateDir: string; json?: boolean }, io: Output): Promise<void> {
  const report = await readPositionReport(join(o.stateDir, FORWARDER_POSITIONS_FILE)).catch((e: unknown) => {
    if (isForwarderError(e)) throw new CliExit(EXIT_FAILURE, `${e.message} (${e.code})`);
    throw e;
  });
  if (o.json) {
    io.out(renderJson(report));
    return;
  }
  const counts = new Map<string, Map<string, number>>();
  for (const g of report.generations) {
    const byState = counts.get(g.path) ?? new Map<string, number>();
    byState.set(g.state, (byState.get(g.state) ?? 0) + 1);
    counts.set(g.path, byState);
  }
  io.out(
    renderRecord([
      ['positions', `${report.file} (${report.database}; marker ${report.marker})`],
      ['recovery', report.recovery],
      [
        'lost',
        `${report.lostGenerations} generations vanished before they were read (${report.lostBytes} bytes unread)`,
      ],
    ]),
  );
  const open = report.generations.filter((g) => g.state !== 'done' && g.state !== 'skipped');
  io.out(
    `\n${renderTable(
      ['file', 'state', 'stream', 'acked', 'size'],
      open.map((g) => [g.path, g.state, g.streamId, g.offset, g.size]),
    )}`,
  );
  for (const [path, byState] of counts) {
    io.out(
      `${path}: ${byState.get('done') ?? 0} done, ${byState.get('skipped') ?? 0} there before it was followed\n`,
    );
  }
}

/** The syslog listeners of `stateDir/controllers.json` in its order, then `bundleSyslog`; each once. */
async function syslogTargets(
  stateDir: string,
  bundleSyslog: string | undefined,
  onUnreadable: (err: unknown) => void,
): Promise<{ host: string; port: number }[]> {
  const kept = await readControllerList(stateDir).catch((err: unknown) => {
    onUnreadable(err);
    return undefined;
  });
  const out: { host: string; port: number }[] = [];
  for (const address of [...(kept?.controllers ?? []).map((c) => c.syslog), bundleSyslog]) {
    if (address === undefined) continue;
    try {
      out.push(parseHostPort(address));
    } catch (e: unknown) {
      if (!(e instanceof Error)) throw e; // CORRAL_ERR_VALIDATION: not HOST:PORT, so not dialled
    }
  }
  return out;
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** `corral forwarder …`. */
export function registerForwarderCommands(program: Command, io: Output): Command {
  const forwarder = program
    .command('forwarder')
    .description('ship worker logs to the controller over syslog-over-TLS');

  const runCmd = forwarder
    .command('run')
    .description('tail RFC 5424 log files and ship every line over mutual TLS, following rotations')
    .option('--config <file>', 'worker config file (YAML; default: $CORRAL_CONFIG); flags win over it')
    .option('--state-dir <dir>', 'worker state dir (holds bundle/; positions go to forwarder/positions.db)')
    .option(
      '--file <path>',
      `log file to follow (repeat for more; default: the config's files, else <state-dir>/${WORKER_LOG_FILE})`,
      collect,
      [],
    )
    .option(
      '--controller <host:port>',
      "syslog listener to send to; repeat to fail over along several (default: the listeners of the agent's controller list, then the bundle's)",
      collect,
      [],
    )
    .option(
      '--mode <mode>',
      `corral (exactly once, Corral's listener; the default) or rfc5425 (any receiver, at least once)`,
    )
    .option('--poll-interval <duration>', 'how often idle files are looked at again (default 250ms)')
    .option('--log-level <level>', 'pino log level (default info)');
  refuseOldSpellings(runCmd, ['poll-interval']);
  runCmd.action(async (opts: RunOptions) => {
    await run(opts);
  });
  forwarder
    .command('status')
    .description(
      "show the forwarder's positions: files, generations, and generations lost before they were read",
    )
    .requiredOption('--state-dir <dir>', 'worker state dir (positions in forwarder/positions.db)')
    .option('--json', 'print JSON')
    .action(async (opts: { stateDir: string; json?: boolean }) => {
      await status(opts, io);
    });
  return forwarder;
}
