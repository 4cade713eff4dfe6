import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogCapture } from './log-capture.js';
import { formatSyslogLine } from '../../kit/rfc5424.js';
import { createWorkerLog } from '../../kit/worker-log.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function setup(truncateAboveBytes?: number) {
  const dir = await mkdtemp(join(tmpdir(), 'corral-capture-'));
  dirs.push(dir);
  const workerLog = createWorkerLog(join(dir, 'logs/worker.log'));
  const make = () =>
    createLogCapture({
      serviceDir: dir,
      service: 'web',
      hostname: 'host-1',
      workerLog,
      pid: () => 123,
      now: () => Date.parse('2030-01-02T03:04:05.678Z'),
      ...(truncateAboveBytes !== undefined && { truncateAboveBytes }),
    });
  const lines = async () =>
    (await readFile(join(dir, 'logs/worker.log'), 'utf8').catch(() => '')).split('\n').filter(Boolean);
  return { dir, workerLog, make, lines };
}

describe('service output to RFC 5424', () => {
  it('formats a line with PRI, timestamp, host, app, pid and stream', () => {
    expect(
      formatSyslogLine({
        time: new Date(0),
        hostname: 'h 1',
        appName: 'web',
        procId: 7,
        msgId: 'stderr',
        severity: 'err',
        message: 'a\u0007b',
      }),
    ).toBe('<11>1 1970-01-01T00:00:00.000Z h_1 web 7 stderr - a\ufffdb');
  });

  it('ships complete lines, holds a partial one until output pauses, and resumes from saved offsets', async () => {
    const t = await setup();
    await writeFile(join(t.dir, 'stdout.log'), 'one\ntwo\npart');
    await writeFile(join(t.dir, 'stderr.log'), 'bad\n');
    expect(await t.make().pump()).toBe(3);
    expect(await t.lines()).toEqual([
      '<14>1 2030-01-02T03:04:05.678Z host-1 web 123 stdout - one',
      '<14>1 2030-01-02T03:04:05.678Z host-1 web 123 stdout - two',
      '<11>1 2030-01-02T03:04:05.678Z host-1 web 123 stderr - bad',
    ]);
    // A new capture (an agent restart) resumes where the last one stopped: no duplicates.
    const second = t.make();
    await appendFile(join(t.dir, 'stdout.log'), 'ial\nthree\n');
    expect(await second.pump()).toBe(2);
    expect((await t.lines()).slice(3)).toEqual([
      '<14>1 2030-01-02T03:04:05.678Z host-1 web 123 stdout - partial',
      '<14>1 2030-01-02T03:04:05.678Z host-1 web 123 stdout - three',
    ]);
    await appendFile(join(t.dir, 'stdout.log'), 'no newline');
    expect(await second.pump()).toBe(0);
    expect(await second.pump()).toBe(1);
    expect((await t.lines()).at(-1)).toContain(' - no newline');
    await t.workerLog.close();
  });

  it('truncates a fully shipped file over the limit and keeps going', async () => {
    const t = await setup(10);
    const c = t.make();
    await writeFile(join(t.dir, 'stdout.log'), 'a long enough line\n');
    expect(await c.pump()).toBe(1);
    await c.pump();
    expect(await readFile(join(t.dir, 'stdout.log'), 'utf8')).toBe('');
    await appendFile(join(t.dir, 'stdout.log'), 'after\n');
    expect(await c.pump()).toBe(1);
    expect((await t.lines()).at(-1)).toContain(' - after');
    await t.workerLog.close();
  });
});
