import type { Readable } from 'node:stream';
import { request } from 'undici';
import { AUTHORIZATION_SCHEME } from '../protocol/constants.js';
import { envelopeOf, ErrorCode, RemoteError } from '../protocol/errors.js';
import { CliExit, EXIT_FAILURE } from './exit.js';
import { resolveAdminTarget, type AdminTargetOptions } from './controller-home.js';

/** Largest admin API answer the CLI reads, in bytes. */
const MAX_ADMIN_RESPONSE_BYTES = 64 * 1024 * 1024;
const ADMIN_TIMEOUT_MS = 120_000;

export interface AdminClient {
  readonly url: string;
  get<T>(path: string): Promise<T>;
  post<T>(path: string, body?: unknown): Promise<T>;
  delete<T>(path: string): Promise<T>;
  /** Raw text (for /metrics). */
  text(path: string): Promise<string>;
  /** POSTs a raw body (`application/octet-stream`, streamed) and waits up to `timeoutMs`. */
  postStream<T>(path: string, body: Readable, bytes: number, timeoutMs: number): Promise<T>;
}

interface RawBody {
  readonly stream: Readable;
  readonly bytes: number;
  readonly timeoutMs: number;
}

export function createAdminClient(target: { url: string; token: string }): AdminClient {
  async function send(
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    body?: unknown,
    raw?: RawBody,
  ): Promise<{ status: number; text: string }> {
    const headers: Record<string, string> = { authorization: `${AUTHORIZATION_SCHEME} ${target.token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (raw) {
      headers['content-type'] = 'application/octet-stream';
      headers['content-length'] = String(raw.bytes);
    }
    const timeoutMs = raw?.timeoutMs ?? ADMIN_TIMEOUT_MS;
    let res;
    try {
      res = await request(`${target.url}${path}`, {
        method,
        headers,
        body: raw ? raw.stream : body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
        ...(raw && { headersTimeout: timeoutMs, bodyTimeout: timeoutMs }),
      });
    } catch (e: unknown) {
      const code = (e as { code?: unknown }).code;
      throw new CliExit(
        EXIT_FAILURE,
        `cannot reach the controller at ${target.url}: ${typeof code === 'string' ? code : String(e)}`,
      );
    }
    const text = await res.body.text();
    if (text.length > MAX_ADMIN_RESPONSE_BYTES)
      throw new CliExit(EXIT_FAILURE, 'admin API answer is too large');
    if (res.statusCode >= 400) {
      const envelope = envelopeOf(text);
      if (envelope) throw new RemoteError(envelope.error.code, envelope.error.message, res.statusCode);
      throw new RemoteError(ErrorCode.INTERNAL, `the controller answered ${res.statusCode}`, res.statusCode);
    }
    return { status: res.statusCode, text };
  }
  return {
    url: target.url,
    async get<T>(path: string) {
      return JSON.parse((await send('GET', path)).text) as T;
    },
    async post<T>(path: string, body: unknown = {}) {
      return JSON.parse((await send('POST', path, body)).text) as T;
    },
    async delete<T>(path: string) {
      return JSON.parse((await send('DELETE', path)).text) as T;
    },
    async text(path) {
      return (await send('GET', path)).text;
    },
    async postStream<T>(path: string, stream: Readable, bytes: number, timeoutMs: number) {
      return JSON.parse((await send('POST', path, undefined, { stream, bytes, timeoutMs })).text) as T;
    },
  };
}

/** The admin client for a command's `--state-dir`/`--url`/`--token` options. */
export async function adminClientFor(opts: AdminTargetOptions): Promise<AdminClient> {
  return createAdminClient(await resolveAdminTarget(opts));
}
