import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { list, type ReadEntry } from 'tar';
import {
  CorralError,
  ErrorCode,
  MAX_RELEASE_MANIFEST_BYTES,
  parseJsonWith,
  RELEASE_MANIFEST_FILE,
  ReleaseManifest,
} from '../../protocol/index.js';

export interface ReleaseFileInfo {
  readonly file: string;
  readonly sha256: string;
  readonly bytes: number;
  readonly manifest: ReleaseManifest;
}

/** SHA-256 of a file, lowercase hex. */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Reads a release tarball's `manifest.json` (validated) and its digest. Throws
 * CORRAL_ERR_VALIDATION when the file is not a release, and CORRAL_ERR_DIGEST_MISMATCH when
 * `expectSha256` is given and differs.
 */
export async function readReleaseFile(file: string, expectSha256?: string): Promise<ReleaseFileInfo> {
  const { size } = await stat(file);
  const sha256 = await sha256File(file);
  if (expectSha256 !== undefined && expectSha256.toLowerCase() !== sha256) {
    throw new CorralError(
      ErrorCode.DIGEST_MISMATCH,
      `${file} has SHA-256 ${sha256}, not the expected ${expectSha256}`,
    );
  }
  let text: string | undefined;
  let tooBig = false;
  await list({
    file,
    strict: true,
    onReadEntry: (entry: ReadEntry) => {
      if (entry.path !== RELEASE_MANIFEST_FILE || entry.type !== 'File') return;
      if (entry.size > MAX_RELEASE_MANIFEST_BYTES) {
        tooBig = true;
        return;
      }
      const chunks: Buffer[] = [];
      entry.on('data', (c: Buffer) => chunks.push(c));
      entry.on('end', () => {
        text = Buffer.concat(chunks).toString('utf8');
      });
    },
  });
  if (tooBig || text === undefined) {
    throw new CorralError(
      ErrorCode.VALIDATION,
      `${file} is not a Corral release: no usable ${RELEASE_MANIFEST_FILE}`,
    );
  }
  const manifest = parseJsonWith(ReleaseManifest, text, RELEASE_MANIFEST_FILE, MAX_RELEASE_MANIFEST_BYTES);
  return { file, sha256, bytes: size, manifest };
}
