import { homedir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { checkDeletable, isWithin } from './self-destruct-plan.js';

describe('what the reaper may delete', () => {
  it.each(['/var/lib/corral', '/opt/corral', '/tmp/corral-x/state', '/srv/corral/releases'])(
    'allows %s',
    (dir) => {
      expect(checkDeletable(dir)).toBe(dir);
    },
  );

  it.each([
    '/',
    '/usr',
    '/var/lib',
    '/etc',
    '/opt',
    '/tmp',
    'relative/dir',
    '/var/lib/../lib',
    '/tmp//x',
    '/corral',
    homedir(),
  ])('refuses %s', (dir) => {
    expect(() => checkDeletable(dir)).toThrow(/refusing to delete/);
  });

  it('tells inside from outside', () => {
    expect(isWithin('/a/b/c', '/a/b')).toBe(true);
    expect(isWithin('/a/b', '/a/b')).toBe(true);
    expect(isWithin('/a/bc', '/a/b')).toBe(false);
    expect(isWithin('/a', '/a/b')).toBe(false);
  });
});
