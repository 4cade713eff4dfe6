import { mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { backupFileName, pruneBackupFiles } from './backup-files.js';

let dir = '';
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('pruneBackupFiles', () => {
  it('keeps the newest backups, removes a crashed write’s old temp file, and leaves the rest alone', async () => {
    dir = await mkdtemp(join(tmpdir(), 'corral-backup-files-'));
    const t0 = Date.UTC(2026, 11, 2, 12, 0, 0);
    const backups = [0, 1, 2, 3].map((i) => backupFileName(t0 + i * 60_000));
    for (const name of backups) await writeFile(join(dir, name), 'x');
    const stale = '.corral-backup-aaaaaaaaaaaa.tmp';
    const fresh = '.corral-backup-bbbbbbbbbbbb.tmp';
    await writeFile(join(dir, stale), 'half');
    await writeFile(join(dir, fresh), 'in progress');
    await writeFile(join(dir, 'notes.txt'), 'not ours');
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    await utimes(join(dir, stale), twoHoursAgo, twoHoursAgo);

    const deleted = await pruneBackupFiles(dir, 2);
    expect(deleted).toEqual(backups.slice(0, 2));
    expect((await readdir(dir)).sort()).toEqual([fresh, ...backups.slice(2), 'notes.txt'].sort());
  });
});
