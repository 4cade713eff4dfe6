import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { afterEach, describe, expect, it } from 'vitest';
import type { BackupManifest } from '../protocol/backup.js';
import { ErrorCode } from '../protocol/errors.js';
import { extractBackup, packBackup, type PackSource } from './backup-archive.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

const source = (path: string, text: string): PackSource => ({
  path,
  bytes: Buffer.byteLength(text),
  read: async function* () {
    yield Buffer.from(text);
  },
});

function manifestOf(sources: readonly PackSource[]): BackupManifest {
  return {
    format: 'corral-controller-backup',
    version: 1,
    createdAt: '2026-01-01T00:00:00.000Z',
    stateId: 'a'.repeat(32),
    caFingerprint: 'b'.repeat(64),
    auditSeq: 1,
    auditHead: 'c'.repeat(64),
    files: sources.map((s) => ({ path: s.path, bytes: s.bytes })),
  };
}

/** A raw archive: length, manifest JSON as given, then `tail`. */
function raw(manifest: unknown, tail = Buffer.alloc(0)): Buffer {
  const json = Buffer.from(JSON.stringify(manifest));
  const length = Buffer.alloc(4);
  length.writeUInt32BE(json.length, 0);
  return Buffer.concat([length, json, tail]);
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e: unknown) {
    return String((e as { code?: unknown }).code);
  }
  return 'accepted';
}

async function* once(b: Buffer): AsyncGenerator<Buffer> {
  yield b;
}

describe('backup archive', () => {
  it('packs and extracts each file with its own mode (keys 0600), whatever the archive says', async () => {
    const sources = [source('ca/ca.key', 'KEY'), source('ca/ca.crt', 'CERT'), source('admin-token', 'tok')];
    const packed = await buffer(packBackup(manifestOf(sources), sources));
    const dir = await mkdtemp(join(tmpdir(), 'corral-archive-'));
    dirs.push(dir);
    const manifest = await extractBackup(once(packed), dir);
    expect(manifest.files.map((f) => f.path)).toEqual(['ca/ca.key', 'ca/ca.crt', 'admin-token']);
    expect(await readFile(join(dir, 'ca/ca.key'), 'utf8')).toBe('KEY');
    expect((await stat(join(dir, 'ca/ca.key'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'ca/ca.crt'))).mode & 0o777).toBe(0o644);
    expect((await stat(join(dir, 'ca'))).mode & 0o777).toBe(0o700);
    // Check-only extraction writes nothing.
    const dry = await mkdtemp(join(tmpdir(), 'corral-archive-'));
    dirs.push(dry);
    await extractBackup(once(packed), undefined);
    expect(await readdir(dry)).toEqual([]);
  });

  it('fails the pack when a file yields other than its announced size', async () => {
    const liar: PackSource = { ...source('admin-token', 'abc'), bytes: 10 };
    expect(await codeOf(buffer(packBackup(manifestOf([liar]), [liar])))).toBe(ErrorCode.WRITE_FAILED);
  });

  it('refuses paths outside the state files, escapes, duplicates, oversize, bad schema and stray bytes', async () => {
    const ok = manifestOf([source('admin-token', 'x')]);
    const cases: unknown[] = [
      { ...ok, files: [{ path: '../etc/passwd', bytes: 1 }] },
      { ...ok, files: [{ path: 'ca/../../x', bytes: 1 }] },
      { ...ok, files: [{ path: 'uploads/evil', bytes: 1 }] },
      {
        ...ok,
        files: [
          { path: 'admin-token', bytes: 1 },
          { path: 'admin-token', bytes: 1 },
        ],
      },
      { ...ok, files: [{ path: 'admin-token', bytes: 10 * 1024 * 1024 }] },
      { ...ok, version: 2 },
      { ...ok, extra: true },
      'not an object',
    ];
    for (const m of cases) {
      expect(await codeOf(extractBackup(once(raw(m, Buffer.from('x'))), undefined))).toBe(
        ErrorCode.BACKUP_DAMAGED,
      );
    }
    // Short, long, and a manifest length past its bound.
    expect(await codeOf(extractBackup(once(raw(ok)), undefined))).toBe(ErrorCode.BACKUP_DAMAGED);
    expect(await codeOf(extractBackup(once(raw(ok, Buffer.from('xy'))), undefined))).toBe(
      ErrorCode.BACKUP_DAMAGED,
    );
    expect(await codeOf(extractBackup(once(Buffer.from([0xff, 0xff, 0xff, 0xff])), undefined))).toBe(
      ErrorCode.BACKUP_DAMAGED,
    );
    expect(await codeOf(extractBackup(once(raw(ok, Buffer.from('x'))), undefined))).toBe('accepted');
  });
});
