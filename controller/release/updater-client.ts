import type { Readable } from 'node:stream';
import type { TSchema, Static } from '@sinclair/typebox';
import { Agent, type Dispatcher } from 'undici';
import { clientTlsOptions, type TlsMaterial } from '../../pki/index.js';
import {
  CorralError,
  ErrorCode,
  envelopeOf,
  MAX_UPDATER_RESPONSE_BYTES,
  parseJsonWith,
  RELEASE_CONTENT_TYPE,
  ReleasesResponse,
  RemoteError,
  RollbackResponse,
  SelfUpdateResponse,
  UPDATER_RELEASES_PATH,
  UPDATER_ROLLBACK_PATH,
  UPDATER_UPDATE_PATH,
  UPDATER_UPDATE_SELF_PATH,
  UpdateResponse,
} from '../../protocol/index.js';
import { formatHostPort } from '../../kit/host-port.js';

/** One worker's updater, as the controller knows it. */
export interface UpdaterTarget {
  readonly hostName: string;
  readonly address: string;
  readonly updaterPort: number;
  /** The updater certificate's pinned SHA-256 (lowercase hex). */
  readonly updaterFingerprint: string;
}

/** Default time an update may take on a worker (upload, unpack, restart, health), in ms. */
export const DEFAULT_UPDATE_TIMEOUT_MS = 5 * 60_000;

/**
 * An undici client for one updater: our CA only, the controller-client certificate, and the
 * server's role and pinned fingerprint checked during the handshake of every connection.
 */
export function updaterDispatcher(target: UpdaterTarget, tls: TlsMaterial, timeoutMs: number): Agent {
  return new Agent({
    connect: clientTlsOptions(tls, { roles: ['updater'], fingerprints: [target.updaterFingerprint] }),
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    connections: 2,
  });
}

function origin(target: UpdaterTarget): string {
  return `https://${formatHostPort(target.address, target.updaterPort)}`;
}

/** Reads a bounded JSON answer; an error answer becomes a RemoteError with the updater's code and status. */
async function answer<T extends TSchema>(
  res: Dispatcher.ResponseData,
  schema: T,
  what: string,
): Promise<Static<T>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += (chunk as Buffer).length;
    if (size > MAX_UPDATER_RESPONSE_BYTES) {
      res.body.destroy();
      throw new CorralError(
        ErrorCode.PAYLOAD_TOO_LARGE,
        `${what}: answer larger than ${MAX_UPDATER_RESPONSE_BYTES} bytes`,
      );
    }
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (res.statusCode >= 400) {
    const envelope = envelopeOf(text);
    if (envelope) throw new RemoteError(envelope.error.code, envelope.error.message, res.statusCode);
    throw new RemoteError(ErrorCode.UNAVAILABLE, `${what}: HTTP ${res.statusCode}`, res.statusCode);
  }
  return parseJsonWith(schema, text, what, MAX_UPDATER_RESPONSE_BYTES);
}

export interface UploadRequest {
  readonly body: Readable;
  readonly bytes: number;
  readonly version: string;
  readonly sha256: string;
  readonly force: boolean;
  readonly signal?: AbortSignal | undefined;
}

function uploadPath(path: string, r: UploadRequest): string {
  const q = new URLSearchParams({
    version: r.version,
    sha256: r.sha256,
    ...(r.force ? { force: 'true' } : {}),
  });
  return `${path}?${q.toString()}`;
}

export async function postUpdate(d: Agent, target: UpdaterTarget, r: UploadRequest): Promise<UpdateResponse> {
  const res = await d.request({
    origin: origin(target),
    path: uploadPath(UPDATER_UPDATE_PATH, r),
    method: 'POST',
    headers: { 'content-type': RELEASE_CONTENT_TYPE, 'content-length': String(r.bytes) },
    body: r.body,
    signal: r.signal,
  });
  return answer(res, UpdateResponse, `${target.hostName} update`);
}

export async function postUpdateSelf(
  d: Agent,
  target: UpdaterTarget,
  r: UploadRequest,
): Promise<SelfUpdateResponse> {
  const res = await d.request({
    origin: origin(target),
    path: uploadPath(UPDATER_UPDATE_SELF_PATH, r),
    method: 'POST',
    headers: { 'content-type': RELEASE_CONTENT_TYPE, 'content-length': String(r.bytes) },
    body: r.body,
    signal: r.signal,
  });
  return answer(res, SelfUpdateResponse, `${target.hostName} update-self`);
}

export async function getReleases(
  d: Agent,
  target: UpdaterTarget,
  signal?: AbortSignal,
): Promise<ReleasesResponse> {
  const res = await d.request({ origin: origin(target), path: UPDATER_RELEASES_PATH, method: 'GET', signal });
  return answer(res, ReleasesResponse, `${target.hostName} releases`);
}

export async function postRollback(
  d: Agent,
  target: UpdaterTarget,
  signal?: AbortSignal,
): Promise<RollbackResponse> {
  const res = await d.request({
    origin: origin(target),
    path: UPDATER_ROLLBACK_PATH,
    method: 'POST',
    signal,
  });
  return answer(res, RollbackResponse, `${target.hostName} rollback`);
}

/** One-shot: a host's releases and history over a pinned connection (for `controller releases`). */
export async function fetchReleases(
  target: UpdaterTarget,
  tls: TlsMaterial,
  options: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<ReleasesResponse> {
  const d = updaterDispatcher(target, tls, options.timeoutMs ?? 30_000);
  try {
    return await getReleases(d, target, options.signal);
  } finally {
    await d.close();
  }
}

/** One-shot: ask a host's updater to roll back to its previous release. */
export async function requestRollback(
  target: UpdaterTarget,
  tls: TlsMaterial,
  options: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<RollbackResponse> {
  const d = updaterDispatcher(target, tls, options.timeoutMs ?? DEFAULT_UPDATE_TIMEOUT_MS);
  try {
    return await postRollback(d, target, options.signal);
  } finally {
    await d.close();
  }
}
