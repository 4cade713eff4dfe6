import { once } from 'node:events';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type TLSSocket } from 'node:tls';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createForwarder, openPositionStore } from '../forwarder/index.js';
import { createCa } from '../pki/index.js';
import { clientTlsOptions, type TlsMaterial } from '../pki/tls-options.js';
import { encodeFrame } from '../protocol/syslog-frame.js';
import {
  appendSlowly,
  captureLog,
  exactlyOnceProblem,
  logLine,
  makePki,
  startListener,
  tempDir,
  TestPinTable,
  waitFor,
  waitForLines,
  writeLines,
} from './logs-fixtures.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

/** A raw TLS client, as any RFC 5425 sender would connect. */
async function dial(material: TlsMaterial, port: number): Promise<TLSSocket> {
  const socket = connect({
    ...clientTlsOptions(material, { roles: ['controller'] }),
    host: '127.0.0.1',
    port,
  });
  socket.on('error', () => undefined /* refusals surface as errors; tests look at 'close' */);
  cleanups.push(async () => void socket.destroy());
  await once(socket, 'secureConnect');
  return socket;
}

/** Resolves when the peer has closed the connection (the listener refused or dropped it). */
async function closedByPeer(socket: TLSSocket): Promise<void> {
  if (socket.destroyed) return;
  await once(socket, 'close');
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function lineCount(path: string): Promise<number> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text === '' ? 0 : text.split('\n').length - 1;
}

async function setup(limits: { idleTimeoutMs?: number; maxConnectionsPerHost?: number } = {}) {
  const pki = await makePki();
  const pins = new TestPinTable();
  const dir = await tempDir('logs-listener');
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const logs = captureLog('info');
  const logDir = join(dir, 'ingest');
  const { listener, port } = await startListener(pki, pins, logDir, { log: logs.log, ...limits });
  cleanups.push(() => listener.close());
  return { pki, pins, dir, logDir, listener, port, logs };
}

function reasonsLogged(entries: readonly Record<string, unknown>[]): unknown[] {
  return entries.map((e) => e.reason).filter((r) => r !== undefined);
}

describe('syslog listener: who may send', () => {
  it('refuses a certificate from an impostor CA and ingests nothing', async () => {
    const { pki, pins, logDir, listener, port, logs } = await setup();
    const impostorCa = await createCa({ commonName: 'Corral CA' });
    const fake = await impostorCa.issue({ role: 'agent', hostId: 'web-1', commonName: 'web-1' });
    // The listener's real CA pins 'web-1' for a different (genuine) certificate.
    pins.pin(await pki.host('web-1'));
    const socket = connect({
      ...clientTlsOptions(
        { caPem: pki.ca.certPem, certPem: fake.certPem, keyPem: fake.keyPem },
        { roles: ['controller'] },
      ),
      host: '127.0.0.1',
      port,
    });
    socket.on('error', () => undefined /* the handshake is refused */);
    socket.write(encodeFrame(logLine(1)));
    await closedByPeer(socket);
    await waitFor('refusal counted', () => listener.stats().refused['handshake-failed'] === 1);
    expect(await exists(join(logDir, 'web-1.log'))).toBe(false);
    expect(reasonsLogged(logs.entries)).toContain('handshake-failed');
  });

  it('refuses a certificate of our CA that is not pinned, and ingests nothing', async () => {
    const { pki, logDir, listener, port, logs } = await setup();
    const stranger = await pki.host('web-9');
    const socket = await dial(stranger, port);
    socket.write(encodeFrame(logLine(1)));
    await closedByPeer(socket);
    expect(listener.stats().refused.unpinned).toBe(1);
    expect(await exists(join(logDir, 'web-9.log'))).toBe(false);
    expect(reasonsLogged(logs.entries)).toContain('unpinned');
  });

  it('refuses a pinned certificate whose role is not the agent', async () => {
    const { pki, pins, logDir, listener, port } = await setup();
    const operator = await pki.ca.issue({ role: 'operator', commonName: 'alice' });
    const material = { caPem: pki.ca.certPem, certPem: operator.certPem, keyPem: operator.keyPem };
    pins.pin({ ...material, hostId: 'web-1', hostName: 'web-1', fingerprint: operator.fingerprint });
    const socket = await dial(material, port);
    socket.write(encodeFrame(logLine(1)));
    await closedByPeer(socket);
    expect(listener.stats().refused['wrong-role']).toBe(1);
    expect(await exists(join(logDir, 'web-1.log'))).toBe(false);
  });

  it('closes a decommissioned host at once and refuses it afterwards', async () => {
    const { pki, pins, logDir, listener, port } = await setup();
    const host = await pki.host('web-1');
    pins.pin(host);
    const live = await dial(host, port);
    live.write(Buffer.concat([1, 2, 3].map((n) => encodeFrame(logLine(n)))));
    const ingest = join(logDir, 'web-1.log');
    await waitFor('3 lines', async () => (await lineCount(ingest)) === 3);

    pins.revoke('web-1');
    await closedByPeer(live);
    expect(listener.stats().closed['host-revoked']).toBe(1);

    const again = await dial(host, port);
    again.write(encodeFrame(logLine(4)));
    await closedByPeer(again);
    expect(listener.stats().refused.unpinned).toBe(1);
    expect(await lineCount(ingest)).toBe(3);
  });

  it('files lines under the pinned host, whatever HOSTNAME the message claims', async () => {
    const { pki, pins, logDir, port } = await setup();
    const web2 = await pki.host('web-2');
    pins.pin(web2);
    const socket = await dial(web2, port);
    // A standard RFC 5425 sender: the frame may end in LF, which is not part of the line.
    socket.write(encodeFrame(`${logLine(7, 200, 'web-1')}\n`));
    await waitFor('one line for web-2', async () => (await lineCount(join(logDir, 'web-2.log'))) === 1);
    expect(await exists(join(logDir, 'web-1.log'))).toBe(false);
    expect((await readFile(join(logDir, 'web-2.log'), 'utf8')).trim()).toBe(logLine(7, 200, 'web-1'));
  });
});

describe('syslog listener: bad input closes only its own connection', () => {
  it('survives a garbage prefix, an oversize frame and a half-sent frame next to a healthy stream', async () => {
    const { pki, pins, dir, logDir, listener, port, logs } = await setup();
    const good = await pki.host('web-1');
    const bad = await pki.host('web-2');
    pins.pin(good);
    pins.pin(bad);

    const file = join(dir, 'app.log');
    await writeLines(file, 0, 1000);
    const store = await openPositionStore(join(dir, 'positions.db'));
    const forwarder = createForwarder({
      tls: good,
      controller: { host: '127.0.0.1', port },
      files: [file],
      mode: 'corral',
      store,
      log: pino({ level: 'silent' }),
      pollIntervalMs: 20,
      backoffBaseMs: 20,
    });
    const ac = new AbortController();
    const running = forwarder.run(ac.signal);
    cleanups.push(async () => {
      ac.abort();
      await running;
      await forwarder.close();
      await store.close();
    });
    const writing = appendSlowly(file, 1000, 8000, { perStep: 100, stepMs: 3 });
    await waitFor('the stream is flowing', async () => (await lineCount(join(logDir, 'web-1.log'))) > 1000);

    const garbage = await dial(bad, port);
    garbage.write('GET / HTTP/1.1\r\n\r\n');
    const oversize = await dial(bad, port);
    oversize.write(`${encodeFrame(logLine(1)).toString()}70000 ${'z'.repeat(1000)}`);
    const half = await dial(bad, port);
    half.write(`${encodeFrame(logLine(2)).toString()}300 ${'h'.repeat(100)}`);
    await Promise.all([closedByPeer(garbage), closedByPeer(oversize)]);
    await sleep(50);
    half.destroy();

    await writing;
    const seqs = await waitForLines(join(logDir, 'web-1.log'), 8000);
    expect(exactlyOnceProblem(seqs, 8000)).toBeUndefined();
    await waitFor('the half-sent frame noticed', () => listener.stats().closed['truncated-frame'] === 1);
    const closed = listener.stats().closed;
    expect(closed['malformed-length']).toBe(1);
    expect(closed['frame-too-large']).toBe(1);
    // Whole frames before the bad part are kept; the broken frames are not.
    expect((await readFile(join(logDir, 'web-2.log'), 'utf8')).split('\n').sort()).toEqual(
      ['', logLine(1), logLine(2)].sort(),
    );
    expect(reasonsLogged(logs.entries)).toEqual(
      expect.arrayContaining(['malformed-length', 'frame-too-large', 'truncated-frame']),
    );
  });
});

describe('syslog listener: limits', () => {
  it('closes a connection that stays idle, and says so', async () => {
    const { pki, pins, listener, port, logs } = await setup({ idleTimeoutMs: 150 });
    const host = await pki.host('web-1');
    pins.pin(host);
    const socket = await dial(host, port);
    await closedByPeer(socket);
    expect(listener.stats().closed.idle).toBe(1);
    expect(reasonsLogged(logs.entries)).toContain('idle');
  });

  it('refuses connections beyond the per-host limit, and only for that host', async () => {
    const { pki, pins, logDir, listener, port } = await setup({ maxConnectionsPerHost: 2 });
    const web1 = await pki.host('web-1');
    const web2 = await pki.host('web-2');
    pins.pin(web1);
    pins.pin(web2);
    const first = await dial(web1, port);
    const second = await dial(web1, port);
    await waitFor('two connections', () => listener.stats().connectionsOpen === 2);
    const third = await dial(web1, port);
    await closedByPeer(third);
    expect(listener.stats().refused['too-many-connections']).toBe(1);
    const other = await dial(web2, port);
    other.write(encodeFrame(logLine(1)));
    first.write(encodeFrame(logLine(2)));
    second.write(encodeFrame(logLine(3)));
    await waitFor('web-2 ingested', async () => (await lineCount(join(logDir, 'web-2.log'))) === 1);
    await waitFor('web-1 ingested', async () => (await lineCount(join(logDir, 'web-1.log'))) === 2);
  });
});

describe('syslog listener: text from workers is escaped in ingest files', () => {
  // A worker's line with every kind of byte a terminal acts on, and some that it does not.
  const hostile = Buffer.concat([
    Buffer.from('<134>1 2025-01-01T00:00:00.000Z web-1 app 1 - - ', 'latin1'),
    Buffer.from('cr\r nul\x00 esc\x1b[2J bel\x07 del\x7f tab\t c1 ', 'latin1'),
    Buffer.from([0xc2, 0x9b]),
    Buffer.from('31m utf8 é © end', 'utf8'),
  ]);
  const escaped = Buffer.concat([
    Buffer.from('<134>1 2025-01-01T00:00:00.000Z web-1 app 1 - - ', 'latin1'),
    Buffer.from('cr#015 nul#000 esc#033[2J bel#007 del#177 tab\t c1 #302#233', 'latin1'),
    Buffer.from('31m utf8 é © end', 'utf8'),
  ]);

  it('a Corral forwarder: CR, NUL, ESC, other C0, DEL and C1 as #ooo; TAB and UTF-8 kept', async () => {
    const { pki, pins, dir, logDir, port } = await setup();
    const host = await pki.host('web-1');
    pins.pin(host);
    const file = join(dir, 'app.log');
    await writeFile(file, Buffer.concat([hostile, Buffer.from('\nlast\n')]));
    const store = await openPositionStore(join(dir, 'positions.db'));
    const forwarder = createForwarder({
      tls: host,
      controller: { host: '127.0.0.1', port },
      files: [file],
      mode: 'corral',
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
    const ingest = join(logDir, 'web-1.log');
    await waitFor('both lines', async () => (await lineCount(ingest)) === 2);
    expect((await readFile(ingest)).equals(Buffer.concat([escaped, Buffer.from('\nlast\n')]))).toBe(true);
  });

  it('a standard RFC 5425 sender: the same, and an LF inside a message as #012', async () => {
    const { pki, pins, logDir, port } = await setup();
    const host = await pki.host('web-1');
    pins.pin(host);
    const socket = await dial(host, port);
    socket.write(encodeFrame(Buffer.concat([hostile, Buffer.from('\ninner\n')])));
    const ingest = join(logDir, 'web-1.log');
    await waitFor('the line', async () => (await lineCount(ingest)) === 1);
    expect((await readFile(ingest)).equals(Buffer.concat([escaped, Buffer.from('#012inner\n')]))).toBe(true);
  });
});
