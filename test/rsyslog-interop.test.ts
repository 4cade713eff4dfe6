import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createForwarder, openPositionStore } from '../forwarder/index.js';
import {
  exactlyOnceProblem,
  makePki,
  startListener,
  tempDir,
  TestPinTable,
  waitForLines,
  writeLines,
} from './logs-fixtures.js';
import {
  findRsyslog,
  freePort,
  receiverConfig,
  senderConfig,
  startRsyslog,
  waitForPort,
  writeTlsFiles,
} from './rsyslog-fixtures.js';

const rsyslog = await findRsyslog();
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

/** Lines in order with repeats of a line collapsed: what at-least-once delivery must equal. */
function collapsed(seqs: readonly number[]): number[] {
  return seqs.filter((s, i) => i === 0 || s !== seqs[i - 1]);
}

const title = rsyslog.skipReason
  ? `rsyslog interop (SKIPPED: ${rsyslog.skipReason})`
  : 'rsyslog interop (private rsyslogd on 127.0.0.1, TLS with certificates from our CA)';

describe.skipIf(rsyslog.bin === undefined)(title, () => {
  const bin = rsyslog.bin ?? '';

  it("Corral's forwarder in rfc5425 mode delivers every line to an rsyslog TLS receiver", async () => {
    const pki = await makePki();
    const host = await pki.host('web-1');
    const dir = await tempDir('rsyslog-recv');
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const tls = await writeTlsFiles(join(dir, 'tls'), 'server', pki.controller);
    const port = await freePort();
    const out = join(dir, 'received.log');
    const receiver = await startRsyslog(bin, dir, receiverConfig(dir, tls, port, out));
    cleanups.push(() => receiver.stop());
    await waitForPort(port);

    const file = join(dir, 'app.log');
    await writeLines(file, 0, 5000);
    const store = await openPositionStore(join(dir, 'positions.db'));
    const forwarder = createForwarder({
      tls: host,
      controller: { host: '127.0.0.1', port },
      files: [file],
      mode: 'rfc5425',
      store,
      log: pino({ level: 'silent' }),
      pollIntervalMs: 20,
    });
    const ac = new AbortController();
    const running = forwarder.run(ac.signal);
    cleanups.push(async () => {
      ac.abort();
      await running;
      await forwarder.close();
      await store.close();
    });
    const seqs = await waitForLines(out, 5000);
    expect(exactlyOnceProblem(collapsed(seqs), 5000)).toBeUndefined();
  });

  it("an rsyslog TLS sender (imfile → omfwd, octet-counted) is ingested by Corral's listener under its pinned host", async () => {
    const pki = await makePki();
    const host = await pki.host('web-1');
    const pins = new TestPinTable();
    pins.pin(host);
    const dir = await tempDir('rsyslog-send');
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const logDir = join(dir, 'ingest');
    const { listener, port } = await startListener(pki, pins, logDir);
    cleanups.push(() => listener.close());

    const file = join(dir, 'app.log');
    await writeLines(file, 0, 5000, 200);
    const tls = await writeTlsFiles(join(dir, 'tls'), 'agent', host);
    const sender = await startRsyslog(bin, dir, senderConfig(dir, tls, file, port, 'localhost'));
    cleanups.push(() => sender.stop());
    const seqs = await waitForLines(join(logDir, 'web-1.log'), 5000);
    expect(exactlyOnceProblem(collapsed(seqs), 5000)).toBeUndefined();
    expect(listener.stats().refused.unpinned).toBe(0);
  });
});
