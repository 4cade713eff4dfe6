import { describe, expect, it } from 'vitest';
import { identityOf, isSameProcess, parseProcStat } from './proc.js';

describe('/proc parsing', () => {
  it('reads fields after a comm that holds spaces and parentheses', () => {
    const fields = [
      'S',
      '1',
      '4242',
      '4242',
      ...Array.from({ length: 15 }, () => '0'),
      '987654',
      '0',
      '25',
      '0',
    ];
    const stat = parseProcStat(4242, `4242 (my (odd) name) ${fields.join(' ')}`);
    expect(stat).toMatchObject({
      comm: 'my (odd) name',
      state: 'S',
      ppid: 1,
      pgrp: 4242,
      session: 4242,
      startTime: '987654',
      rssBytes: 25 * 4096,
    });
  });

  it('names this process by pid, start time and boot id', async () => {
    const me = await identityOf(process.pid);
    expect(me?.pid).toBe(process.pid);
    expect(await isSameProcess(me!)).toBe(true);
    expect(await isSameProcess({ ...me!, startTime: '1' })).toBe(false);
  });
});
