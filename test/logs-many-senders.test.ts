import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createSyslogListener } from '../controller/syslog/index.js';
import { createForwarder, openPositionStore } from '../forwarder/index.js';
import {
  appendLines,
  exactlyOnceProblem,
  makePki,
  tempDir,
  TestPinTable,
  waitFor,
  waitForLines,
  type HostIdentity,
} from './logs-fixtures.js';

const silent = pino({ level: process.env.LOGS_TEST_LOG ?? 'silent' }, pino.destination(2));
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

const SENDERS = 24;
const LINES = 1_500;

async function runForwarder(host: HostIdentity, port: number, file: string, dbPath: string): Promise<void> {
  const store = await openPositionStore(dbPath);
  const forwarder = createForwarder({
    tls: host,
    controller: { host: '127.0.0.1', port },
    files: [file],
    mode: 'corral',
    store,
    log: silent,
    pollIntervalMs: 20,
    backoffBaseMs: 20,
    backoffCapMs: 200,
    windowBytes: 64 * 1024,
  });
  const ac = new AbortController();
  const done = forwarder.run(ac.signal);
  cleanups.push(async () => {
    ac.abort();
    await done;
    await forwarder.close();
    await store.close();
  });
}

describe('syslog listener: many senders at once, grouped commits', () => {
  it(`${SENDERS} forwarders over real TLS send at once: commits carry several hosts, and every line of every host is stored exactly once, in order`, async () => {
    const pki = await makePki();
    const pins = new TestPinTable();
    const dir = await tempDir('logs-many');
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const logDir = join(dir, 'ingest');
    const listener = createSyslogListener({ tls: pki.controller, logDir, pins, log: silent });
    cleanups.push(() => listener.close());
    const { port } = await listener.listen('127.0.0.1', 0);
    const hosts: HostIdentity[] = [];
    for (let i = 0; i < SENDERS; i++) {
      const host = await pki.host(`m-${String(i).padStart(2, '0')}`);
      pins.pin(host);
      hosts.push(host);
    }
    const sources = hosts.map((h) => join(dir, `${h.hostId}.src.log`));
    for (const [i, host] of hosts.entries()) {
      await writeFile(sources[i] as string, '');
      await runForwarder(host, port, sources[i] as string, join(dir, `${host.hostId}.db`));
    }
    // Every sender connected before any has lines: their batches then meet in the store.
    await waitFor('every sender connected', () => listener.stats().connectionsOpen >= SENDERS);
    await Promise.all(sources.map((s) => appendLines(s, 0, LINES)));
    for (const host of hosts) {
      const seqs = await waitForLines(join(logDir, `${host.hostId}.log`), LINES);
      expect(exactlyOnceProblem(seqs, LINES), host.hostId).toBeUndefined();
    }
    await waitFor('every line committed', () => listener.stats().linesIngested === SENDERS * LINES);
    const stats = listener.stats();
    expect(stats.linesDuplicate).toBe(0);
    // Grouped: the commits held more host parts than there were commits.
    expect(stats.hostParts).toBeGreaterThan(stats.commits);
  });
});
