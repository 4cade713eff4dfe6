import { describe, expect, it } from 'vitest';
import { compareAge, locate, planLook, planRecovery, type FileInfo } from './generation-plan.js';
import type { GenerationRecord } from './position-store.js';

const hash = (c: string): string => c.repeat(64);
const id = (c: string): string => c.repeat(32);

function file(name: string, head: string, o: { ino?: string; size?: number; mtime?: number } = {}): FileInfo {
  return {
    file: `/var/log/${name}`,
    isPath: name === 'app.log',
    dev: '1',
    ino: o.ino ?? String(name.length * 7 + head.charCodeAt(0)),
    size: o.size ?? 1000,
    mtimeNs: BigInt(o.mtime ?? 0),
    headHash: hash(head),
  };
}

function record(
  stream: string,
  head: string,
  state: GenerationRecord['state'],
  o: { ino?: string; offset?: number } = {},
) {
  return {
    streamId: id(stream),
    dev: '1',
    ino: o.ino ?? '99',
    headHash: hash(head),
    offset: o.offset ?? 0,
    state,
  };
}

describe('compareAge: oldest first', () => {
  const cases: [string, FileInfo[], string[]][] = [
    [
      'by modification time',
      [file('app.log.1', 'b', { mtime: 2 }), file('app.log.2', 'a', { mtime: 1 })],
      ['app.log.2', 'app.log.1'],
    ],
    [
      'the path last, whatever its time',
      [file('app.log', 'c', { mtime: 1 }), file('app.log.1', 'b', { mtime: 5 })],
      ['app.log.1', 'app.log'],
    ],
    [
      'a tie: the larger rotation number first',
      [file('app.log.2', 'b'), file('app.log.10', 'a'), file('app.log.3', 'c')],
      ['app.log.10', 'app.log.3', 'app.log.2'],
    ],
    [
      'a tie without numbers: by name (dates sort)',
      [file('app.log-20240102', 'b'), file('app.log-20240101', 'a')],
      ['app.log-20240101', 'app.log-20240102'],
    ],
  ];
  for (const [name, files, order] of cases) {
    it(name, () => expect([...files].sort(compareAge).map((f) => f.file.slice(9))).toEqual(order));
  }
});

describe('locate: where an unfinished generation is now', () => {
  it('prefers its own inode (renamed) to a copy with the same first line', () => {
    const own = file('app.log.2', 'a', { ino: '99' });
    const copy = file('app.log.1', 'a', { ino: '5', size: 5000 });
    expect(locate(record('1', 'a', 'reading'), [copy, own])).toBe(own);
  });
  it('takes a copy when the inode now holds another first line (copytruncate)', () => {
    const truncated = file('app.log', 'z', { ino: '99' });
    const copy = file('app.log.1', 'a', { ino: '5' });
    expect(locate(record('1', 'a', 'reading'), [truncated, copy])).toBe(copy);
  });
  it('never a file shorter than what was acknowledged', () => {
    expect(
      locate(record('1', 'a', 'reading', { offset: 2000 }), [file('app.log.1', 'a', { size: 1000 })]),
    ).toBeUndefined();
  });
});

describe('planLook: which files are new generations', () => {
  it('two rotations while stopped: the middle generation is new, and before the path', () => {
    const plan = planLook(
      [record('1', 'a', 'reading', { ino: '10' })],
      [
        file('app.log', 'c', { mtime: 9 }),
        file('app.log.1', 'b', { mtime: 5 }),
        file('app.log.2', 'a', { ino: '10', mtime: 3 }),
      ],
    );
    expect(plan.located.get(id('1'))?.file).toBe('/var/log/app.log.2');
    expect(plan.fresh.map((f) => f.file)).toEqual(['/var/log/app.log.1', '/var/log/app.log']);
  });
  it('files of finished or skipped generations are not new, wherever they moved', () => {
    const plan = planLook(
      [record('1', 'a', 'done'), record('2', 'b', 'skipped'), record('3', 'c', 'reading', { ino: '7' })],
      [file('app.log.7', 'a'), file('app.log.3', 'b'), file('app.log', 'c', { ino: '7' })],
    );
    expect(plan.fresh).toEqual([]);
    expect(plan.gone).toEqual([]);
  });
  it('finished records whose files are gone can be forgotten; unfinished ones are not "gone"', () => {
    const plan = planLook([record('1', 'a', 'done'), record('2', 'b', 'pending')], [file('app.log', 'c')]);
    expect(plan.gone).toEqual([id('1')]);
    expect(plan.located.has(id('2'))).toBe(false);
    expect(plan.fresh.map((f) => f.headHash)).toEqual([hash('c')]);
  });
  it('a copy caught before the truncate is one generation with the original', () => {
    const plan = planLook([], [file('app.log', 'n'), file('app.log.1', 'n', { ino: '3' })]);
    expect(plan.fresh.map((f) => f.file)).toEqual(['/var/log/app.log']);
  });
  it('a reused inode with another first line is a new generation', () => {
    const plan = planLook([record('1', 'a', 'done', { ino: '42' })], [file('app.log', 'q', { ino: '42' })]);
    expect(plan.fresh.map((f) => f.headHash)).toEqual([hash('q')]);
  });
});

describe('planRecovery: placing files from what the listener knows', () => {
  const files = [
    file('app.log.3', 'a', { mtime: 1, size: 500 }),
    file('app.log.2', 'b', { mtime: 2, size: 800 }),
    file('app.log.1', 'c', { mtime: 3, size: 900 }),
    file('app.log', 'd', { mtime: 4, size: 100 }),
  ];
  it('resumes the newest known file at its position; older are finished, newer shipped from the start', () => {
    const plan = planRecovery(
      files,
      new Map([
        [hash('a'), { streamId: id('a'), position: 500 }],
        [hash('b'), { streamId: id('b'), position: 300 }],
      ]),
    );
    expect(plan?.map((p) => [p.file.file.slice(9), p.state, 'offset' in p ? p.offset : undefined])).toEqual([
      ['app.log.3', 'done', 500],
      ['app.log.2', 'reading', 300],
      ['app.log.1', 'pending', 0],
      ['app.log', 'pending', 0],
    ]);
  });
  it('an unknown file older than a known one was there before (or forgotten): skipped', () => {
    const plan = planRecovery(files, new Map([[hash('c'), { streamId: id('c'), position: 900 }]]));
    expect(plan?.map((p) => p.state)).toEqual(['skipped', 'skipped', 'done', 'reading']);
  });
  it('the listener knows none: it cannot tell', () => {
    expect(planRecovery(files, new Map([[hash('a'), undefined]]))).toBeUndefined();
  });
});
