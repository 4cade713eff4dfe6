import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { ErrorCode, isCorralError } from '../protocol/errors.js';
import { SingleFlight } from './single-flight.js';

/** A task that records when it starts and ends, and finishes when told to. */
function gate(log: string[], name: string) {
  let open: () => void = () => undefined;
  const opened = new Promise<void>((r) => (open = r));
  return {
    open: () => open(),
    task: async (): Promise<string> => {
      log.push(`start ${name}`);
      await opened;
      log.push(`end ${name}`);
      return name;
    },
  };
}

describe('SingleFlight', () => {
  it('runs one task at a time, in the order accepted, past a failure', async () => {
    const log: string[] = [];
    const f = new SingleFlight({ name: 'test', maxQueued: 10 });
    const a = gate(log, 'a');
    const results = [
      f.run(a.task),
      f.run(async () => {
        log.push('b');
        throw new Error('b failed');
      }),
      f.run(async () => {
        log.push('c');
        return 'c';
      }),
    ];
    await sleep(10);
    expect(log).toEqual(['start a']);
    expect(f.waiting).toBe(2);
    a.open();
    const settled = await Promise.allSettled(results);
    expect(log).toEqual(['start a', 'end a', 'b', 'c']);
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
  });

  it('refuses a task past the bound at once, and it never runs', async () => {
    const log: string[] = [];
    const f = new SingleFlight({ name: 'uploads', maxQueued: 1 });
    const a = gate(log, 'a');
    const first = f.run(a.task);
    await sleep(1);
    const second = f.run(async () => void log.push('second'));
    const third = f.run(async () => void log.push('third'));
    const refusal = await third.catch((e: unknown) => e);
    expect(isCorralError(refusal, ErrorCode.UNAVAILABLE)).toBe(true);
    expect((refusal as Error).message).toContain('uploads');
    a.open();
    await Promise.all([first, second]);
    await f.idle();
    expect(log).toEqual(['start a', 'end a', 'second']);
  });

  it('share: joins a task of the same key that waits or runs', async () => {
    const log: string[] = [];
    const f = new SingleFlight({ name: 'test', maxQueued: 10 });
    const a = gate(log, 'a');
    const p1 = f.share('k', a.task);
    await sleep(1); // running now
    const p2 = f.share('k', async () => 'other');
    expect(p2).toBe(p1);
    a.open();
    expect(await Promise.all([p1, p2])).toEqual(['a', 'a']);
    // Settled: the next ask is a new task.
    expect(await f.share('k', async () => 'again')).toBe('again');
  });

  it('coalesce: joins a waiting task, but queues anew behind a running one', async () => {
    const log: string[] = [];
    const f = new SingleFlight({ name: 'test', maxQueued: 1 });
    const a = gate(log, 'a');
    const running = f.coalesce('k', a.task);
    await sleep(1);
    const waiting = f.coalesce('k', async () => 'b');
    const joined = f.coalesce('k', async () => 'c');
    expect(joined).toBe(waiting);
    expect(waiting).not.toBe(running);
    a.open();
    expect(await Promise.all([running, waiting, joined])).toEqual(['a', 'b', 'b']);
  });

  it('idle waits for tasks accepted while it waits', async () => {
    const log: string[] = [];
    const f = new SingleFlight({ name: 'test', maxQueued: 10 });
    const a = gate(log, 'a');
    void f.run(a.task);
    const idle = f.idle().then(() => log.push('idle'));
    void f.run(async () => void log.push('late'));
    a.open();
    await idle;
    expect(log).toEqual(['start a', 'end a', 'late', 'idle']);
  });
});
