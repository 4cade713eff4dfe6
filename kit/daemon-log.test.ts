import { mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { multistream, pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDaemonLogSink, daemonLogLine } from './daemon-log.js';
import { createWorkerLog, type WorkerLog } from './worker-log.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'corral-daemon-log-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const linesOf = async (path: string): Promise<string[]> =>
  (await readFile(path, 'utf8')).split('\n').filter((l) => l.length > 0);

/** `<PRI>1 TIME HOST APP PROCID MSGID - MSG`, split into its parts. */
function parts(line: string): { pri: number; time: string; host: string; app: string; msg: string } {
  const m = /^<(\d+)>1 (\S+) (\S+) (\S+) (\S+) (\S+) - (.*)$/.exec(line);
  if (!m) throw new Error(`not an RFC 5424 line: ${line}`);
  return { pri: Number(m[1]), time: m[2]!, host: m[3]!, app: m[4]!, msg: m[7]! };
}

describe('daemon log lines', () => {
  it('a pino record becomes one RFC 5424 line: its time, its severity, msg then its own fields, no stack', () => {
    const record = JSON.stringify({
      level: 50,
      time: Date.parse('2026-12-02T10:00:00.000Z'),
      pid: 1,
      hostname: 'ignored',
      name: 'corral-agent',
      msg: 'heartbeat failed',
      err: { type: 'Error', message: 'connect ECONNREFUSED', stack: 'Error: at x\n at y' },
      delayMs: 400,
    });
    const line = daemonLogLine(`${record}\n`, {
      appName: 'corral-agent',
      hostname: 'w-1',
      now: () => new Date(),
    });
    const p = parts(line);
    expect(p.pri).toBe(8 + 3);
    expect(p.time).toBe('2026-12-02T10:00:00.000Z');
    expect(p.host).toBe('w-1');
    expect(p.app).toBe('corral-agent');
    expect(p.msg).toBe(
      'heartbeat failed {"err":{"type":"Error","message":"connect ECONNREFUSED"},"delayMs":400}',
    );
    expect(line).not.toContain('\n');
  });

  it('warn is warning, info is info; text that is not JSON is kept as text, control bytes replaced', () => {
    const at = { appName: 'corral-updater', hostname: 'w-1', now: () => new Date(0) };
    expect(parts(daemonLogLine('{"level":40,"msg":"slow"}', at)).pri).toBe(8 + 4);
    expect(parts(daemonLogLine('{"level":30,"msg":"ok"}', at)).pri).toBe(8 + 6);
    const odd = parts(daemonLogLine('not json \x1b[31m red\n', at));
    expect(odd.msg).toBe('not json \ufffd[31m red');
    expect(odd.time).toBe('1970-01-01T00:00:00.000Z');
  });
});

describe('daemon log sink', () => {
  it('pino at info ships info and above into the worker log and keeps debug on stdout only', async () => {
    const path = join(dir, 'logs', 'worker.log');
    const sink = createDaemonLogSink({
      log: createWorkerLog(path),
      appName: 'corral-agent',
      hostname: 'w-1',
    });
    const seen: string[] = [];
    const log = pino(
      { name: 'corral-agent', level: 'debug' },
      multistream([
        { level: 'debug', stream: { write: (s: string) => void seen.push(s) } },
        { level: 'info', stream: sink },
      ]),
    );
    log.debug('only on stdout');
    log.info({ hostId: 'h-1' }, 'agent started');
    log.warn('slow disk');
    await sink.close();
    const lines = (await linesOf(path)).map(parts);
    expect(lines.map((l) => l.msg)).toEqual(['agent started {"hostId":"h-1"}', 'slow disk']);
    expect(lines.every((l) => l.app === 'corral-agent')).toBe(true);
    expect(seen).toHaveLength(3);
    expect(sink.dropped()).toBe(0);
  });

  it('a full queue drops records, counts them, and the next batch says how many', async () => {
    const path = join(dir, 'worker.log');
    const inner = createWorkerLog(path);
    // A worker log whose first append waits: records pile up behind it.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let first = true;
    const slow: WorkerLog = {
      path,
      async append(lines) {
        if (first) {
          first = false;
          await held;
        }
        await inner.append(lines);
      },
      close: () => inner.close(),
    };
    const sink = createDaemonLogSink({ log: slow, appName: 'corral-agent', hostname: 'w-1', maxQueued: 10 });
    for (let i = 0; i < 50; i += 1) sink.write(`{"level":30,"msg":"line ${i}"}\n`);
    // 1 in the held append, 10 queued, 39 dropped.
    expect(sink.dropped()).toBe(39);
    release();
    await sink.close();
    const msgs = (await linesOf(path)).map((l) => parts(l).msg);
    expect(msgs.slice(0, 11)).toEqual(Array.from({ length: 11 }, (_, i) => `line ${i}`));
    expect(msgs[11]).toMatch(/^39 log lines of this daemon were dropped/);
    expect(msgs).toHaveLength(12);
  });

  it('follows a rename-and-create rotation: lines after it go to the new file', async () => {
    const path = join(dir, 'worker.log');
    const sink = createDaemonLogSink({
      log: createWorkerLog(path),
      appName: 'corral-forwarder',
      hostname: 'w-1',
    });
    sink.write('{"level":30,"msg":"before"}');
    await sink.idle();
    await rename(path, `${path}.1`);
    sink.write('{"level":30,"msg":"after"}');
    await sink.close();
    expect((await linesOf(`${path}.1`)).map((l) => parts(l).msg)).toEqual(['before']);
    expect((await linesOf(path)).map((l) => parts(l).msg)).toEqual(['after']);
  });

  it('after close() a record is ignored, not thrown', async () => {
    const path = join(dir, 'worker.log');
    const sink = createDaemonLogSink({
      log: createWorkerLog(path),
      appName: 'corral-agent',
      hostname: 'w-1',
    });
    await sink.close();
    expect(() => sink.write('{"level":30,"msg":"late"}')).not.toThrow();
    await sink.close();
  });
});
