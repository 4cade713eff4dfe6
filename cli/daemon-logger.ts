import { hostname as osHostname } from 'node:os';
import { destination, levels, multistream, pino, type Level, type Logger } from 'pino';
import { createDaemonLogSink, type DaemonLogSink } from '../kit/daemon-log.js';
import { LOG_REDACT_PATHS } from '../kit/log-redact.js';
import { createWorkerLog } from '../kit/worker-log.js';

export interface DaemonLogger {
  readonly log: Logger;
  /** Writes what is still queued for the worker log and closes it; the stdout stream stays. */
  close(): Promise<void>;
}

/** The lowest level shipped home: debug and trace stay on the terminal (and never feed back through the forwarder). */
const SHIPPED_MIN_LEVEL: Level = 'info';

/**
 * A worker daemon's one pino: JSON on stdout as before, and, when `workerLog` is given, the
 * same records at `info` and above as RFC 5424 lines (APP-NAME `name`) in the worker log the
 * forwarder ships. Logging never waits for that file (see kit/daemon-log.ts).
 */
export function createDaemonLogger(o: {
  /** `corral-agent`, `corral-updater`, `corral-forwarder`: pino's name and the lines' APP-NAME. */
  readonly name: string;
  readonly level: string;
  readonly workerLog?: string | undefined;
  /** The host's enrolled name when known, else the machine's. */
  readonly hostname?: string | undefined;
}): DaemonLogger {
  const stdout = destination({ dest: 1, sync: true });
  const options = { name: o.name, redact: [...LOG_REDACT_PATHS] };
  if (o.workerLog === undefined || o.level === 'silent') {
    return { log: pino({ ...options, level: o.level }, stdout), close: () => Promise.resolve() };
  }
  const sink: DaemonLogSink = createDaemonLogSink({
    log: createWorkerLog(o.workerLog),
    appName: o.name,
    hostname: o.hostname ?? osHostname(),
  });
  // Shipped: the daemon's own level when it is above info (warn: only warnings go home too), else info.
  const level = o.level as Level;
  const shipped: Level = (levels.values[level] ?? 0) > (levels.values.info ?? 30) ? level : SHIPPED_MIN_LEVEL;
  const streams = multistream([
    { level, stream: stdout },
    { level: shipped, stream: sink },
  ]);
  return { log: pino({ ...options, level }, streams), close: () => sink.close() };
}
