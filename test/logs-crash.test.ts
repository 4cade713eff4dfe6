import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { appendFile, readFile, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { createServer, connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createForwarder, openPositionStore } from '../forwarder/index.js';
import {
  appendSlowly,
  exactlyOnceProblem,
  killHard,
  makePki,
  sequencesIn,
  spawnForwarder,
  spawnListener,
  startListener,
  tempDir,
  TestPinTable,
  waitFor,
  waitForLines,
  workerStateDir,
  writeLines,
  type Cleanups,
} from './logs-fixtures.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const cleanups: Cleanups = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

async function setup() {
  const pki = await makePki();
  const pins = new TestPinTable();
  const host = await pki.host('web-1');
  pins.pin(host);
  const dir = await tempDir('logs-crash');
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return { pki, pins, host, dir };
}

describe('exactly once across crashes (kill -9)', () => {
  it('kill -9 of the forwarder mid-stream, twice: nothing lost, nothing twice', async () => {
    const { pki, pins, host, dir } = await setup();
    const logDir = join(dir, 'ingest');
    const ingest = join(logDir, 'web-1.log');
    const { listener, port } = await startListener(pki, pins, logDir);
    cleanups.push(() => listener.close());
    const stateDir = await workerStateDir(pki, host, port);
    cleanups.push(() => rm(stateDir, { recursive: true, force: true }));
    const file = join(stateDir, 'logs', 'app.log');
    await writeLines(file, 0, 1000);

    const writing = appendSlowly(file, 1000, 15_000, { perStep: 100, stepMs: 3 });
    let forwarder = spawnForwarder(cleanups, stateDir, [file]);
    for (const atLeast of [2000, 6000]) {
      await waitFor(`${atLeast} lines`, async () => (await sequencesIn(ingest)).length >= atLeast);
      await killHard(forwarder);
      forwarder = spawnForwarder(cleanups, stateDir, [file]);
    }
    await writing;
    const seqs = await waitForLines(ingest, 15_000);
    expect(exactlyOnceProblem(seqs, 15_000)).toBeUndefined();
  });

  it('kill -9 of the listener mid-stream: nothing lost, nothing twice', async () => {
    const { pki, host, dir } = await setup();
    const logDir = join(dir, 'ingest');
    const ingest = join(logDir, 'web-1.log');
    const first = await spawnListener(cleanups, pki, host, logDir, dir, 0);
    const file = join(dir, 'app.log');
    await writeLines(file, 0, 1000);
    const store = await openPositionStore(join(dir, 'positions.db'));
    const forwarder = createForwarder({
      tls: host,
      controller: { host: '127.0.0.1', port: first.port },
      files: [file],
      mode: 'corral',
      store,
      log: pino({ level: 'silent' }),
      pollIntervalMs: 20,
      backoffBaseMs: 20,
      backoffCapMs: 200,
    });
    const ac = new AbortController();
    const running = forwarder.run(ac.signal);
    cleanups.push(async () => {
      ac.abort();
      await running;
      await forwarder.close();
      await store.close();
    });
    const writing = appendSlowly(file, 1000, 15_000, { perStep: 100, stepMs: 3 });
    let child = first;
    for (const atLeast of [2000, 6000]) {
      await waitFor(`${atLeast} lines`, async () => (await sequencesIn(ingest)).length >= atLeast);
      await killHard(child);
      child = await spawnListener(cleanups, pki, host, logDir, dir, first.port);
    }
    await writing;
    const seqs = await waitForLines(ingest, 15_000);
    expect(exactlyOnceProblem(seqs, 15_000)).toBeUndefined();
  });

  it('a network cut that leaves the old connection half-open: nothing lost, nothing twice', async () => {
    const { pki, pins, host, dir } = await setup();
    const logDir = join(dir, 'ingest');
    const ingest = join(logDir, 'web-1.log');
    const { listener, port } = await startListener(pki, pins, logDir);
    cleanups.push(() => listener.close());
    // A relay that can black-hole its current connections (no FIN, no RST: a cut cable).
    const relays: { client: Socket; upstream: Socket; cut: boolean }[] = [];
    const proxy = createServer((client) => {
      const upstream = netConnect({ host: '127.0.0.1', port });
      const relay = { client, upstream, cut: false };
      relays.push(relay);
      client.on('data', (d: Buffer) => void (relay.cut || upstream.write(d)));
      upstream.on('data', (d: Buffer) => void (relay.cut || client.write(d)));
      for (const s of [client, upstream]) s.on('error', () => undefined /* torn down by the test */);
      client.on('close', () => relay.cut || upstream.destroy());
    });
    proxy.listen(0, '127.0.0.1');
    await once(proxy, 'listening');
    cleanups.push(async () => {
      for (const r of relays) for (const s of [r.client, r.upstream]) s.destroy();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    });
    const proxyPort = (proxy.address() as AddressInfo).port;

    const file = join(dir, 'app.log');
    await writeLines(file, 0, 1000);
    const store = await openPositionStore(join(dir, 'positions.db'));
    const forwarder = createForwarder({
      tls: host,
      controller: { host: '127.0.0.1', port: proxyPort },
      files: [file],
      mode: 'corral',
      store,
      log: pino({ level: 'silent' }),
      pollIntervalMs: 20,
      backoffBaseMs: 20,
      backoffCapMs: 100,
      responseTimeoutMs: 500,
    });
    const ac = new AbortController();
    const running = forwarder.run(ac.signal);
    cleanups.push(async () => {
      ac.abort();
      await running;
      await forwarder.close();
      await store.close();
    });
    const writing = appendSlowly(file, 1000, 12_000, { perStep: 100, stepMs: 3 });
    await waitFor('2000 lines', async () => (await sequencesIn(ingest)).length >= 2000);
    for (const relay of relays) relay.cut = true;
    await writing;
    const seqs = await waitForLines(ingest, 12_000);
    expect(exactlyOnceProblem(seqs, 12_000)).toBeUndefined();
    expect(listener.stats().closed['stream-taken']).toBeGreaterThanOrEqual(1);
  });

  it('a listener restarting after a crash drops the uncommitted tail of an ingest file', async () => {
    const { pki, pins, host, dir } = await setup();
    const logDir = join(dir, 'ingest');
    const ingest = join(logDir, 'web-1.log');
    const first = await startListener(pki, pins, logDir);
    const file = join(dir, 'app.log');
    await writeLines(file, 0, 500);
    const store = await openPositionStore(join(dir, 'positions.db'));
    cleanups.push(() => store.close());
    const forwarder = createForwarder({
      tls: host,
      controller: { host: '127.0.0.1', port: first.port },
      files: [file],
      mode: 'corral',
      store,
      log: pino({ level: 'silent' }),
      pollIntervalMs: 20,
      backoffBaseMs: 20,
      backoffCapMs: 100,
    });
    const ac = new AbortController();
    const running = forwarder.run(ac.signal);
    await waitForLines(ingest, 500);
    ac.abort();
    await running;
    await first.listener.close();
    // What a crash between the write and its commit record leaves behind.
    await appendFile(ingest, 'half-written line that was never acknow');
    const committed = (await readFile(ingest, 'utf8')).length;
    expect(committed).toBeGreaterThan(0);

    const second = await startListener(pki, pins, logDir);
    cleanups.push(() => second.listener.close());
    await appendSlowly(file, 500, 1000);
    const ac2 = new AbortController();
    const forwarder2 = createForwarder({
      tls: host,
      controller: { host: '127.0.0.1', port: second.port },
      files: [file],
      mode: 'corral',
      store,
      log: pino({ level: 'silent' }),
      pollIntervalMs: 20,
    });
    const running2 = forwarder2.run(ac2.signal);
    cleanups.push(async () => {
      ac2.abort();
      await running2;
      await forwarder2.close();
    });
    const seqs = await waitForLines(ingest, 1000);
    expect(exactlyOnceProblem(seqs, 1000)).toBeUndefined();
    expect(await readFile(ingest, 'utf8')).not.toContain('half-written');
  });
});

describe('corral forwarder run', () => {
  it('refuses to start without an enrolled identity, with exit code 2', async () => {
    const dir = await tempDir('forwarder-cli');
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const child = spawn(
      process.execPath,
      [
        join(ROOT, 'bin', 'corral.js'),
        'forwarder',
        'run',
        '--state-dir',
        dir,
        '--file',
        join(dir, 'app.log'),
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const [code] = (await once(child, 'exit')) as [number];
    expect(code).toBe(2);
    expect(stderr).toContain('CORRAL_ERR_BUNDLE_MISSING');
  });
});
