import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CorralError, ErrorCode } from '../protocol/index.js';

export interface ReceivedUpload {
  readonly bytes: number;
  readonly sha256: string;
}

/**
 * Streams `body` into `file` (created exclusively, 0600) while hashing it, and aborts with
 * CORRAL_ERR_PAYLOAD_TOO_LARGE the moment more than `maxBytes` arrived: the cap holds while
 * streaming, not after. The caller compares the digest before anything is unpacked.
 */
export async function receiveUpload(body: Readable, file: string, maxBytes: number): Promise<ReceivedUpload> {
  const hash = createHash('sha256');
  let bytes = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      bytes += chunk.length;
      if (bytes > maxBytes) {
        done(new CorralError(ErrorCode.PAYLOAD_TOO_LARGE, `release is larger than ${maxBytes} bytes`));
        return;
      }
      hash.update(chunk);
      done(null, chunk);
    },
  });
  // The request stream is piped, not handed to pipeline(): on a refusal it must stay open so
  // the answer can still be sent on its connection.
  const aborted = new Promise<never>((_resolve, reject) => {
    const cut = (): void =>
      reject(new CorralError(ErrorCode.BAD_REQUEST, 'upload ended before the release was complete'));
    body.once('aborted', cut);
    body.once('close', () => {
      if (!body.readableEnded) cut();
    });
    body.once('error', (e: unknown) =>
      reject(
        new CorralError(ErrorCode.BAD_REQUEST, 'upload ended before the release was complete', { cause: e }),
      ),
    );
  });
  aborted.catch(() => undefined /* observed through the race below */);
  const written = pipeline(meter, createWriteStream(file, { flags: 'wx', mode: 0o600 }));
  body.pipe(meter);
  try {
    await Promise.race([written, aborted]);
  } catch (e: unknown) {
    body.unpipe(meter);
    meter.destroy();
    throw e;
  }
  return { bytes, sha256: hash.digest('hex') };
}

/**
 * Reads and discards what is left of an upload the updater answers without using (the version
 * is already active, or the update was refused before it read the body), so the answer goes
 * out after the whole request and the sender never sees its connection cut mid-body. Reads at
 * most `maxBytes`; resolves false when there was more (or the stream broke), and the caller
 * closes the connection instead.
 */
export async function discardUpload(body: Readable, maxBytes: number): Promise<boolean> {
  if (body.readableEnded) return true;
  let bytes = 0;
  try {
    for await (const chunk of body) {
      bytes += (chunk as Buffer).length;
      if (bytes > maxBytes) return false;
    }
    return true;
  } catch (e: unknown) {
    void e; // the sender went away or the stream was destroyed: nothing left to drain
    return false;
  }
}
