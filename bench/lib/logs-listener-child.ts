/**
 * The syslog listener alone in a process, for `npm run bench -- logs --senders N`: its CPU is
 * then the listener's own, read from /proc by the bench. Run as
 * `node dist/bench/lib/logs-listener-child.js CONFIG.json`; prints `listening PORT` once bound,
 * then answers each `stats` line on stdin with one line of JSON (the listener's stats()).
 * CONFIG: { tls, logDir, pins: [{ fingerprint, hostId, hostName }], perHostCommits? }.
 */
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import pino from 'pino';
import { createSyslogListener, type PinnedHost } from '../../controller/syslog/index.js';
import type { TlsMaterial } from '../../pki/tls-options.js';

interface ChildConfig {
  readonly tls: TlsMaterial;
  readonly logDir: string;
  readonly pins: readonly (PinnedHost & { fingerprint: string })[];
  /** One host per commit (the ungrouped path), for the side-by-side. */
  readonly perHostCommits?: boolean;
}

const config = JSON.parse(await readFile(process.argv[2] ?? '', 'utf8')) as ChildConfig;
const pins = new Map(config.pins.map((p) => [p.fingerprint, { hostId: p.hostId, hostName: p.hostName }]));
const listener = createSyslogListener({
  tls: config.tls,
  logDir: config.logDir,
  pins: { lookup: (fp) => pins.get(fp), onRevoked: () => () => undefined },
  log: pino({ level: 'warn' }, pino.destination(2)),
  perHostCommits: config.perHostCommits === true,
  // No rotation: the bench compares each host's one ingest file with its source.
  maxFileBytes: 2 ** 50,
});
const addr = await listener.listen('127.0.0.1', 0);
process.stdout.write(`listening ${addr.port}\n`);
for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() === 'stats') process.stdout.write(`${JSON.stringify(listener.stats())}\n`);
}
await listener.close();
