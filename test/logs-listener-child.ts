/**
 * A syslog listener in a process of its own, so a test can kill -9 it mid-stream. Run as
 * `node dist/test/logs-listener-child.js CONFIG.json`; prints `listening PORT` once bound.
 * CONFIG: { tls, logDir, port, pins: [{ fingerprint, hostId, hostName }], journalBytes?,
 * maxFileBytes?, keepFiles? } (the test's pin table, fixed for the life of the process; the size
 * of the ingest journal's files; the size at which ingest files rotate, and how many are kept).
 */
import { readFile } from 'node:fs/promises';
import pino from 'pino';
import { createSyslogListener, type PinnedHost } from '../controller/syslog/index.js';
import type { TlsMaterial } from '../pki/tls-options.js';

interface ChildConfig {
  readonly tls: TlsMaterial;
  readonly logDir: string;
  readonly port: number;
  readonly pins: readonly (PinnedHost & { fingerprint: string })[];
  readonly journalBytes?: number;
  readonly maxFileBytes?: number;
  readonly keepFiles?: number;
}

const config = JSON.parse(await readFile(process.argv[2] ?? '', 'utf8')) as ChildConfig;
const pins = new Map(config.pins.map((p) => [p.fingerprint, { hostId: p.hostId, hostName: p.hostName }]));
const listener = createSyslogListener({
  tls: config.tls,
  logDir: config.logDir,
  pins: { lookup: (fp) => pins.get(fp), onRevoked: () => () => undefined },
  log: pino({ level: 'warn' }, pino.destination(2)),
  journalBytes: config.journalBytes,
  maxFileBytes: config.maxFileBytes,
  retention:
    config.keepFiles === undefined ? undefined : { keepFiles: config.keepFiles, keepMs: 365 * 86_400_000 },
});
const addr = await listener.listen('127.0.0.1', config.port);
process.stdout.write(`listening ${addr.port}\n`);
process.once('SIGTERM', () => void listener.close());
