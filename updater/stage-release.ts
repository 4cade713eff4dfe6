import { lstat, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  CorralError,
  ErrorCode,
  MAX_RELEASE_MANIFEST_BYTES,
  parseJsonWith,
  RELEASE_MANIFEST_FILE,
  ReleaseManifest,
} from '../protocol/index.js';
import type { ArchiveLimits } from './archive-rules.js';
import { receiveUpload } from './receive-upload.js';
import { extractArchive, validateArchive } from './safe-extract.js';
import { expandStart } from './start-spec.js';

export interface StageOptions {
  readonly body: Readable;
  /** `ROOT/.staging-<id>/`: created here; everything this function writes stays inside it. */
  readonly stagingDir: string;
  readonly version: string;
  readonly sha256: string;
  readonly maxReleaseBytes: number;
  readonly limits: ArchiveLimits;
}

export interface StagedRelease {
  /** The unpacked release, inside the staging dir. */
  readonly treeDir: string;
  /** The received tarball, inside the staging dir (no longer needed once unpacked). */
  readonly uploadFile: string;
  readonly manifest: ReleaseManifest;
  readonly bytes: number;
}

const DUMMY_VARS = { release: '/r', version: 'v', root: '/', stateDir: '/', agentStateDir: '/' } as const;

/**
 * Receives a release into a fresh staging dir and proves it sound before anything else sees
 * it: the upload is capped while streaming, its SHA-256 must match before anything is
 * unpacked, every archive header is checked before the first byte is written, the unpacked
 * tree is verified, and its manifest must name the version the caller announced.
 * Throws CorralError: PAYLOAD_TOO_LARGE, DIGEST_MISMATCH, UNSAFE_ARCHIVE, VALIDATION or
 * RELEASE_REFUSED.
 */
export async function stageRelease(options: StageOptions): Promise<StagedRelease> {
  await mkdir(options.stagingDir, { mode: 0o700 });
  const upload = join(options.stagingDir, 'release.tar.gz');
  const received = await receiveUpload(options.body, upload, options.maxReleaseBytes);
  if (received.sha256 !== options.sha256) {
    throw new CorralError(
      ErrorCode.DIGEST_MISMATCH,
      `upload has SHA-256 ${received.sha256}, not the announced ${options.sha256}`,
    );
  }
  await validateArchive(upload, options.limits);
  const treeDir = join(options.stagingDir, 'tree');
  await mkdir(treeDir, { mode: 0o755 });
  await extractArchive(upload, treeDir, options.limits);

  const manifestPath = join(treeDir, RELEASE_MANIFEST_FILE);
  const st = await lstat(manifestPath).catch(() => undefined);
  if (!st?.isFile() || st.size > MAX_RELEASE_MANIFEST_BYTES) {
    throw new CorralError(ErrorCode.VALIDATION, `release has no usable ${RELEASE_MANIFEST_FILE} at its root`);
  }
  const manifest = parseJsonWith(
    ReleaseManifest,
    await readFile(manifestPath, 'utf8'),
    RELEASE_MANIFEST_FILE,
    MAX_RELEASE_MANIFEST_BYTES,
  );
  if (manifest.version !== options.version) {
    throw new CorralError(
      ErrorCode.RELEASE_REFUSED,
      `archive holds release ${manifest.version}, not the announced ${options.version}`,
    );
  }
  expandStart(manifest.start, DUMMY_VARS);
  if (manifest.updater) expandStart(manifest.updater, DUMMY_VARS);
  if (manifest.forwarder) expandStart(manifest.forwarder, DUMMY_VARS);
  return { treeDir, uploadFile: upload, manifest, bytes: received.bytes };
}
