import { createHash, randomBytes } from 'node:crypto';
import { access, lstat, readdir, rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { Header, type HeaderData } from 'tar';
import { Agent, request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pushRelease } from '../controller/release/push.js';
import { fetchReleases } from '../controller/release/updater-client.js';
import { clientTlsOptions } from '../pki/index.js';
import type { Updater } from '../updater/index.js';
import {
  agentVersion,
  buildRelease,
  createFleet,
  createWorker,
  STAND_IN_AGENT,
  startUpdater,
  target,
  tempDir,
  type BuiltRelease,
  type Fleet,
  type Worker,
} from './updater-harness.js';

interface RawEntry extends HeaderData {
  readonly body?: string | Buffer;
}

/** Writes a tar by hand (headers via node-tar's Header), so any entry can be made. */
function tarGz(entries: readonly RawEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const { body, ...data } of entries) {
    const content = Buffer.isBuffer(body) ? body : Buffer.from(body ?? '');
    const block = Buffer.alloc(512);
    new Header({
      mode: 0o644,
      uid: 0,
      gid: 0,
      mtime: new Date(0),
      type: 'File',
      ...data,
      size: content.length,
    }).encode(block);
    parts.push(block, content, Buffer.alloc((512 - (content.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(parts));
}

const VERSION = '6.6.6';
/** A valid release around the malicious entries: it would install if they were not there. */
function release(...evil: RawEntry[]): Buffer {
  const manifest = {
    version: VERSION,
    start: { command: process.execPath, args: ['${release}/bin/stand-in-agent.mjs', '${agentStateDir}'] },
    include: ['bin'],
  };
  return tarGz([
    { path: 'bin/', type: 'Directory', mode: 0o755 },
    { path: 'bin/stand-in-agent.mjs', body: STAND_IN_AGENT },
    { path: 'manifest.json', body: JSON.stringify(manifest) },
    ...evil,
  ]);
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

let fleet: Fleet;
let dir: string;
let v1: BuiltRelease;
let w: Worker;
let u: Updater;
const outside = `/tmp/corral-evil-${randomBytes(6).toString('hex')}`;

beforeAll(async () => {
  fleet = await createFleet();
  dir = await tempDir('updater-archive');
  v1 = await buildRelease(dir, '1.0.0');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await rm(outside, { recursive: true, force: true });
});

let n = 0;
async function liveWorker(options: Parameters<typeof startUpdater>[1] = {}): Promise<void> {
  w = await createWorker(fleet, join(dir, `w${++n}`), `w-${n}`);
  u = await startUpdater(w, options);
  const r = await pushRelease({ file: v1.file, targets: [target(w, u.port)], tls: fleet.controllerClient });
  expect(r.results[0]?.outcome).toBe('updated');
}

afterEach(async () => {
  await u.close();
});

/** Every path under the test's temp dir (sizes and link targets included), minus the journal. */
async function snapshot(): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  const out: string[] = [];
  for (const e of entries) {
    const path = relative(dir, join(e.parentPath, e.name));
    if (path.includes('/root/.updater')) continue;
    const st = await lstat(join(dir, path));
    out.push(`${path} ${st.isDirectory() ? 'dir' : st.size} ${(st.mode & 0o7777).toString(8)}`);
  }
  return out.sort();
}

async function post(body: Buffer | Readable, sha: string, headers: Record<string, string> = {}) {
  const dispatcher = new Agent({ connect: clientTlsOptions(fleet.controllerClient, { roles: ['updater'] }) });
  try {
    const res = await request(`https://localhost:${u.port}/v1/update?version=${VERSION}&sha256=${sha}`, {
      method: 'POST',
      dispatcher,
      body,
      headers: { 'content-type': 'application/octet-stream', ...headers },
    });
    return {
      status: res.statusCode,
      body: (await res.body.json()) as { error?: { code: string; message: string } },
    };
  } finally {
    await dispatcher.destroy();
  }
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** Pushes `tarball`, expects the refusal, and checks that nothing changed outside staging. */
async function expectRefused(tarball: Buffer, code: string, message: RegExp, sha = sha256(tarball)) {
  const before = await snapshot();
  const res = await post(tarball, sha);
  expect(res.body.error?.code).toBe(code);
  expect(res.body.error?.message).toMatch(message);
  expect(await snapshot()).toEqual(before);
  expect((await readdir(w.root)).filter((f) => f.startsWith('.staging-'))).toEqual([]);
  expect(await exists(outside)).toBe(false);
  expect(await agentVersion(w)).toBe('1.0.0');
  const history = (await fetchReleases(target(w, u.port), fleet.controllerClient)).history;
  expect(history.at(-1)).toMatchObject({ version: VERSION, outcome: 'refused' });
}

describe('malicious releases are refused, with nothing written outside staging', () => {
  it('an entry climbing out with ../', async () => {
    await liveWorker();
    await expectRefused(
      release({ path: '../../../../escape.txt', body: 'x' }),
      'CORRAL_ERR_UNSAFE_ARCHIVE',
      /climbs out/,
    );
    expect(await exists(join(dir, '..', 'escape.txt'))).toBe(false);
  });

  it('an entry with an absolute path', async () => {
    await liveWorker();
    await expectRefused(
      release({ path: `${outside}/pwned`, body: 'x' }),
      'CORRAL_ERR_UNSAFE_ARCHIVE',
      /absolute path/,
    );
  });

  it('a symbolic link pointing out of the tree (absolute or relative), and a file written through it', async () => {
    await liveWorker();
    await expectRefused(
      release({ path: 'evil', type: 'SymbolicLink', linkpath: outside }, { path: 'evil/pwned', body: 'x' }),
      'CORRAL_ERR_UNSAFE_ARCHIVE',
      /link pointing out/,
    );
    await expectRefused(
      release({ path: 'bin/up', type: 'SymbolicLink', linkpath: '../../..' }),
      'CORRAL_ERR_UNSAFE_ARCHIVE',
      /link pointing out/,
    );
  });

  it('a device node (and a hard link)', async () => {
    await liveWorker();
    await expectRefused(
      release({ path: 'bin/null', type: 'CharacterDevice', devmaj: 1, devmin: 3 }),
      'CORRAL_ERR_UNSAFE_ARCHIVE',
      /character device/,
    );
    await expectRefused(
      release({ path: 'bin/passwd', type: 'Link', linkpath: '/etc/passwd' }),
      'CORRAL_ERR_UNSAFE_ARCHIVE',
      /hard link/,
    );
  });

  it('a setuid (or setgid) file', async () => {
    await liveWorker();
    await expectRefused(
      release({ path: 'bin/su', mode: 0o4755, body: 'x' }),
      'CORRAL_ERR_UNSAFE_ARCHIVE',
      /setuid/,
    );
    await expectRefused(
      release({ path: 'bin/sg', mode: 0o2755, body: 'x' }),
      'CORRAL_ERR_UNSAFE_ARCHIVE',
      /setgid/,
    );
  });

  it('a release whose SHA-256 is not the announced one', async () => {
    await liveWorker();
    const good = release();
    await expectRefused(
      good,
      'CORRAL_ERR_DIGEST_MISMATCH',
      /not the announced/,
      sha256(Buffer.from('something else')),
    );
  });

  it('a release over the size cap, declared or streamed', async () => {
    await liveWorker({ maxReleaseBytes: 64 * 1024 });
    const big = release({ path: 'payload.bin', body: randomBytes(200 * 1024) });
    await expectRefused(big, 'CORRAL_ERR_PAYLOAD_TOO_LARGE', /larger than 65536 bytes/);

    // No Content-Length: the cap is enforced while the upload streams in.
    const before = await snapshot();
    const chunks = Array.from({ length: 50 }, (_, i) => big.subarray(i * 4096, (i + 1) * 4096));
    const streamed = await post(Readable.from(chunks), sha256(big));
    expect(streamed.status).toBe(413);
    expect(streamed.body.error?.code).toBe('CORRAL_ERR_PAYLOAD_TOO_LARGE');
    expect(await snapshot()).toEqual(before);
    const history = (await fetchReleases(target(w, u.port), fleet.controllerClient)).history;
    expect(history.at(-1)).toMatchObject({
      outcome: 'refused',
      reason: expect.stringContaining('larger than'),
    });
    expect(await agentVersion(w)).toBe('1.0.0');
  });

  it('a release that unpacks past the extraction cap (gzip bomb)', async () => {
    await liveWorker({ maxExtractedBytes: 1024 * 1024 });
    const bomb = release({ path: 'zeros.bin', body: Buffer.alloc(8 * 1024 * 1024) });
    expect(bomb.length).toBeLessThan(64 * 1024);
    await expectRefused(bomb, 'CORRAL_ERR_UNSAFE_ARCHIVE', /more than 1048576 bytes/);
  });

  it('still accepts the same release without the malicious entry', async () => {
    await liveWorker();
    const good = release();
    const res = await post(good, sha256(good));
    expect(res.status).toBe(200);
    expect(await agentVersion(w)).toBe(VERSION);
  });
});
