/**
 * The forwarder fails over along several listeners (in process, real TLS): it skips one that
 * presents another CA's certificate, reads its list again before every connect, and moves on
 * when the listener it ships to is gone, with no line lost and none twice on one listener.
 */
import { once } from 'node:events';
import { rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createServer } from 'node:tls';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createForwarder, openPositionStore, type SyslogTarget } from '../forwarder/index.js';
import { createCa } from '../pki/index.js';
import {
  appendLines,
  exactlyOnceProblem,
  makePki,
  sequencesIn,
  startListener,
  tempDir,
  TestPinTable,
  waitFor,
  waitForLines,
  writeLines,
} from './logs-fixtures.js';

const silent = pino({ level: 'silent' });
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

describe('forwarder failover between listeners', () => {
  it('skips another CA, takes a listener added to its list, and moves on when its listener is gone', async () => {
    const pki = await makePki();
    const pins = new TestPinTable();
    const host = await pki.host('web-1');
    pins.pin(host);
    const dir = await tempDir('logs-failover');
    cleanups.push(() => rm(dir, { recursive: true, force: true }));

    const other = await createCa({ commonName: 'other CA' });
    const fake = await other.issue({
      role: 'controller',
      commonName: 'controller',
      ipAddresses: ['127.0.0.1'],
    });
    let impostorSessions = 0;
    const impostor = createServer({ cert: fake.certPem, key: fake.keyPem }, (socket) => {
      impostorSessions++;
      socket.destroy();
    });
    impostor.listen(0, '127.0.0.1');
    await once(impostor, 'listening');
    cleanups.push(async () => {
      impostor.close();
      await once(impostor, 'close');
    });
    const l1 = await startListener(pki, pins, join(dir, 'ingest-1'));
    let l1Open = true;
    cleanups.push(async () => {
      if (l1Open) await l1.listener.close();
    });
    const l2 = await startListener(pki, pins, join(dir, 'ingest-2'));
    cleanups.push(() => l2.listener.close());

    const targets: SyslogTarget[] = [
      { host: '127.0.0.1', port: (impostor.address() as AddressInfo).port },
      { host: '127.0.0.1', port: l1.port },
    ];
    const file = join(dir, 'app.log');
    await writeLines(file, 0, 5000);
    const store = await openPositionStore(join(dir, 'positions.db'));
    const forwarder = createForwarder({
      tls: host,
      controller: () => targets,
      files: [file],
      mode: 'corral',
      store,
      log: silent,
      pollIntervalMs: 20,
      backoffBaseMs: 20,
      backoffCapMs: 200,
      connectTimeoutMs: 2000,
    });
    const ac = new AbortController();
    const done = forwarder.run(ac.signal);
    cleanups.push(async () => {
      ac.abort();
      await done;
      await forwarder.close();
      await store.close();
    });

    const first = await waitForLines(join(dir, 'ingest-1', 'web-1.log'), 5000);
    expect(exactlyOnceProblem(first, 5000)).toBeUndefined();
    expect(impostorSessions).toBe(0);
    expect(forwarder.stats()).toMatchObject({ failovers: 0, controller: `127.0.0.1:${l1.port}` });

    // The list gains the second listener; the first goes away.
    targets.push({ host: '127.0.0.1', port: l2.port });
    await waitFor('every line acknowledged by the first', () => forwarder.stats().files[0]?.inFlight === 0);
    await l1.listener.close();
    l1Open = false;
    await appendLines(file, 5000, 9000);
    const atL1 = await sequencesIn(join(dir, 'ingest-1', 'web-1.log'));
    await waitFor(
      'every line at one listener or the other',
      async () =>
        new Set([...atL1, ...(await sequencesIn(join(dir, 'ingest-2', 'web-1.log')))]).size === 9000,
    );
    const atL2 = await sequencesIn(join(dir, 'ingest-2', 'web-1.log'));
    expect(exactlyOnceProblem(atL1, atL1.length)).toBeUndefined();
    const resumedAt = atL2[0] ?? -1;
    expect(resumedAt).toBe(atL1.length);
    expect(exactlyOnceProblem(atL2, 9000 - resumedAt, resumedAt)).toBeUndefined();
    expect(forwarder.stats()).toMatchObject({
      failovers: 1,
      failoverUnackedBytes: 0,
      controller: `127.0.0.1:${l2.port}`,
    });
    expect(impostorSessions).toBe(0);
  });
});
