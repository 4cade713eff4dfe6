import { describe, expect, it } from 'vitest';
import { linkTargetStaysInside } from '../protocol/release.js';
import { ArchiveChecker, type ArchiveEntryHeader } from './archive-rules.js';

const limits = { maxExtractedBytes: 1000, maxEntries: 10 };
const file = (path: string, extra: Partial<ArchiveEntryHeader> = {}): ArchiveEntryHeader => ({
  path,
  type: 'File',
  mode: 0o644,
  size: 1,
  ...extra,
});

describe('ArchiveChecker', () => {
  const refused: [string, ArchiveEntryHeader[], RegExp][] = [
    ['absolute path', [file('/etc/passwd')], /absolute/],
    ['drive path', [file('C:/x')], /absolute/],
    ['.. segment', [file('a/../../x')], /climbs out/],
    ['backslash', [file('a\\..\\x')], /backslash/],
    ['hard link', [file('h', { type: 'Link', linkpath: 'a' })], /hard link/],
    ['character device', [file('d', { type: 'CharacterDevice' })], /character device/],
    ['block device', [file('d', { type: 'BlockDevice' })], /block device/],
    ['FIFO', [file('f', { type: 'FIFO' })], /FIFO/],
    ['setuid', [file('s', { mode: 0o4755 })], /setuid/],
    ['setgid', [file('s', { mode: 0o2755 })], /setgid/],
    ['absolute link', [file('l', { type: 'SymbolicLink', linkpath: '/etc' })], /out of the release/],
    ['climbing link', [file('a/l', { type: 'SymbolicLink', linkpath: '../../x' })], /out of the release/],
    ['link via link', [file('a/l', { type: 'SymbolicLink', linkpath: 'b/../../..' })], /out of the release/],
    [
      'entry under a link',
      [file('l', { type: 'SymbolicLink', linkpath: 'a' }), file('l/x')],
      /below a symbolic link/,
    ],
    ['duplicate', [file('a'), file('a')], /twice/],
    ['too large', [file('a', { size: 2000 })], /more than 1000 bytes/],
    ['too many', Array.from({ length: 11 }, (_, i) => file(`f${i}`)), /more than 10 entries/],
    ['dot segment', [file('a/./b')], /plain relative/],
  ];
  for (const [name, entries, reason] of refused) {
    it(`refuses ${name}`, () => {
      const checker = new ArchiveChecker(limits);
      const reasons = entries.map((e) => checker.check(e)).filter((r) => r !== undefined);
      expect(reasons[0]).toMatch(reason);
    });
  }

  it('accepts plain files, directories, ./ prefixes and links that stay inside', () => {
    const checker = new ArchiveChecker(limits);
    const ok = [
      file('./', { type: 'Directory', size: 0 }),
      file('./bin/', { type: 'Directory', size: 0 }),
      file('bin/corral.js', { mode: 0o755 }),
      file('node_modules/.bin/x', { type: 'SymbolicLink', linkpath: '../x/bin/x.js' }),
      file('current', { type: 'SymbolicLink', linkpath: 'bin' }),
    ];
    expect(ok.map((e) => checker.check(e))).toEqual(ok.map(() => undefined));
    expect(checker.entries).toBe(4);
  });
});

describe('linkTargetStaysInside', () => {
  it.each([
    ['a', 'b', true],
    ['a/b', '../c', true],
    ['a/b/c', '../../d/e', true],
    ['a', '.', true],
    ['a', '..', false],
    ['a/b', '../../c', false],
    ['a/b', 'c/../../d', false],
    ['a', '/etc', false],
    ['a', '', false],
  ])('%s -> %s is %s', (link, target, inside) => {
    expect(linkTargetStaysInside(link, target)).toBe(inside);
  });
});
