import { execFile } from 'node:child_process';
import { chmod, mkdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { list, type ReadEntry } from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packRelease } from '../controller/release/pack.js';
import { readReleaseFile } from '../controller/release/read-release.js';
import { createCa } from '../pki/index.js';
import { CORRAL_BIN, tempDir } from './updater-harness.js';

let dir: string;

beforeAll(async () => {
  dir = await tempDir('release-pack');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
async function source(
  files: Record<string, string>,
  manifest: Record<string, unknown> = {},
): Promise<string> {
  const src = join(dir, `src${++n}`);
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(src, path, '..'), { recursive: true });
    await writeFile(join(src, path), content);
  }
  await writeFile(
    join(src, 'corral-release.json'),
    JSON.stringify({
      start: { command: 'node', args: ['${release}/bin/corral.js', 'agent', 'serve'] },
      include: ['bin', 'lib'],
      ...manifest,
    }),
  );
  return src;
}

interface Listed {
  path: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: string;
  uname: string;
}

async function listing(file: string): Promise<Listed[]> {
  const out: Listed[] = [];
  await list({
    file,
    onReadEntry: (e: ReadEntry) => {
      out.push({
        path: e.path,
        type: e.type,
        mode: e.mode ?? 0,
        uid: e.uid ?? -1,
        gid: e.gid ?? -1,
        mtime: e.mtime?.toISOString() ?? '',
        uname: e.uname ?? '',
      });
    },
  });
  return out;
}

describe('corral controller release pack', () => {
  it('is deterministic: same input, same bytes, whatever the files’ times and permissions', async () => {
    const src = await source({
      'bin/corral.js': 'console.log(1)\n',
      'lib/a.js': 'export const a = 1;\n',
      'lib/b/c.js': '//c\n',
    });
    const a = await packRelease({ dir: src, version: '1.2.3', out: join(dir, 'a.tar.gz') });
    await utimes(join(src, 'lib', 'a.js'), new Date('2011-01-01'), new Date('2011-01-01'));
    await chmod(join(src, 'lib', 'a.js'), 0o600);
    await chmod(join(src, 'bin', 'corral.js'), 0o700);
    const b = await packRelease({ dir: src, version: '1.2.3', out: join(dir, 'b.tar.gz') });
    await chmod(join(src, 'bin', 'corral.js'), 0o755);
    const c = await packRelease({ dir: src, version: '1.2.3', out: join(dir, 'c.tar.gz') });
    expect(b.sha256).toBe(c.sha256);
    expect(await readFile(b.file)).toEqual(await readFile(c.file));
    // A time or a non-exec permission change makes no difference at all.
    expect(a.sha256).not.toBe(b.sha256); // bin/corral.js became executable between a and b
    const entries = await listing(c.file);
    expect(entries.map((e) => e.path)).toEqual([
      'bin/',
      'bin/corral.js',
      'lib/',
      'lib/a.js',
      'lib/b/',
      'lib/b/c.js',
      'manifest.json',
    ]);
    for (const e of entries) {
      expect([e.uid, e.gid, e.uname, e.mtime]).toEqual([0, 0, '', '2000-01-01T00:00:00.000Z']);
    }
    expect(entries.find((e) => e.path === 'bin/corral.js')?.mode).toBe(0o755);
    expect(entries.find((e) => e.path === 'lib/a.js')?.mode).toBe(0o644);
  });

  it('packs only what the include list names, plus a normalized manifest', async () => {
    const src = await source(
      { 'bin/corral.js': 'x', 'lib/a.js': 'y', 'notes.txt': 'not included', '.env': 'TOKEN=secret' },
      { createdBy: 'ci', version: '2.0.0' },
    );
    const packed = await packRelease({ dir: src, version: '2.0.0', out: join(dir, 'only.tar.gz') });
    const paths = (await listing(packed.file)).map((e) => e.path);
    expect(paths).not.toContain('notes.txt');
    expect(paths).not.toContain('.env');
    const info = await readReleaseFile(packed.file, packed.sha256);
    expect(info.manifest).toEqual({
      version: '2.0.0',
      start: { command: 'node', args: ['${release}/bin/corral.js', 'agent', 'serve'] },
      include: ['bin', 'lib'],
      createdBy: 'ci',
    });
    await expect(
      packRelease({ dir: src, version: '2.0.1', out: join(dir, 'x.tar.gz') }),
    ).rejects.toMatchObject({
      code: 'CORRAL_ERR_VALIDATION',
    });
  });

  it('never packs secrets by accident: key files and private keys inside included dirs are refused', async () => {
    const ca = await createCa();
    const env = await source({ 'bin/corral.js': 'x', 'lib/.env': 'TOKEN=1' });
    await expect(
      packRelease({ dir: env, version: '1.0.0', out: join(dir, 's1.tar.gz') }),
    ).rejects.toMatchObject({
      code: 'CORRAL_ERR_RELEASE_REFUSED',
      message: expect.stringContaining('lib/.env'),
    });
    const pem = await source({ 'bin/corral.js': 'x', 'lib/fixture.txt': ca.keyPem });
    await expect(
      packRelease({ dir: pem, version: '1.0.0', out: join(dir, 's2.tar.gz') }),
    ).rejects.toMatchObject({
      code: 'CORRAL_ERR_RELEASE_REFUSED',
      message: expect.stringContaining('private key'),
    });
    // Listed under exclude, it stays out and the pack goes on.
    const excluded = await source(
      { 'bin/corral.js': 'x', 'lib/.env': 'TOKEN=1', 'lib/ok.js': 'ok' },
      { exclude: ['**/.env'] },
    );
    const packed = await packRelease({ dir: excluded, version: '1.0.0', out: join(dir, 's3.tar.gz') });
    expect((await listing(packed.file)).map((e) => e.path)).toEqual([
      'bin/',
      'bin/corral.js',
      'lib/',
      'lib/ok.js',
      'manifest.json',
    ]);
  });

  it('keeps links inside the tree and refuses links leaving it', async () => {
    const inside = await source({ 'bin/corral.js': 'x', 'lib/a.js': 'y' });
    await symlink('../bin/corral.js', join(inside, 'lib', 'corral'));
    const packed = await packRelease({ dir: inside, version: '1.0.0', out: join(dir, 'l1.tar.gz') });
    expect((await listing(packed.file)).find((e) => e.path === 'lib/corral')?.type).toBe('SymbolicLink');

    const out = await source({ 'bin/corral.js': 'x', 'lib/a.js': 'y' });
    await symlink('/etc/passwd', join(out, 'lib', 'passwd'));
    await expect(
      packRelease({ dir: out, version: '1.0.0', out: join(dir, 'l2.tar.gz') }),
    ).rejects.toMatchObject({
      code: 'CORRAL_ERR_UNSAFE_ARCHIVE',
    });
  });

  it('runs as a CLI command and prints the SHA-256', async () => {
    const src = await source({ 'bin/corral.js': 'x', 'lib/a.js': 'y' });
    const run = promisify(execFile);
    const args = ['controller', 'release', 'pack', src, '--version', '3.1.4', '--json'];
    const first = JSON.parse(
      (await run(process.execPath, [CORRAL_BIN, ...args, '--out', join(dir, 'cli1.tar.gz')])).stdout,
    );
    const second = JSON.parse(
      (await run(process.execPath, [CORRAL_BIN, ...args, '--out', join(dir, 'cli2.tar.gz')])).stdout,
    );
    expect(first).toMatchObject({ version: '3.1.4', sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(second.sha256).toBe(first.sha256);
    const bad = await run(process.execPath, [
      CORRAL_BIN,
      'controller',
      'release',
      'pack',
      src,
      '--version',
      '../x',
      '--out',
      join(dir, 'cli3.tar.gz'),
    ]).catch((e: unknown) => e as { code: number; stderr: string });
    expect((bad as { code: number }).code).toBe(1);
    expect((bad as { stderr: string }).stderr).toContain('CORRAL_ERR_VALIDATION');
  });
});
