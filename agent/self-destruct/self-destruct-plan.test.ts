import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkDeletable, checkDirectoryOnDisk, isWithin } from './self-destruct-plan.js';

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

describe('what is on disk where the reaper would delete', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'corral-sdp-'));
    await mkdir(join(root, 'real'));
    await writeFile(join(root, 'file'), 'x');
    await symlink(join(root, 'real'), join(root, 'link'));
    await symlink(join(root, 'nowhere'), join(root, 'dangling'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('accepts a directory and a missing path', async () => {
    expect(await checkDirectoryOnDisk(join(root, 'real'))).toBe('directory');
    expect(await checkDirectoryOnDisk(join(root, 'missing'))).toBe('missing');
  });

  it('refuses a symbolic link to a directory, a dangling link and a plain file', async () => {
    await expect(checkDirectoryOnDisk(join(root, 'link'))).rejects.toMatchObject({
      code: 'CORRAL_ERR_VALIDATION',
      message: expect.stringContaining('is a symbolic link') as unknown,
    });
    await expect(checkDirectoryOnDisk(join(root, 'dangling'))).rejects.toMatchObject({
      code: 'CORRAL_ERR_VALIDATION',
    });
    await expect(checkDirectoryOnDisk(join(root, 'file'))).rejects.toThrow(/not a directory/);
  });
});
