import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import type { PeerCertificate } from 'node:tls';
import type { Readable } from 'node:stream';
import { AUTHORIZATION_SCHEME, SSE_CONTENT_TYPE } from '../protocol/constants.js';
import type { RemoteError } from '../protocol/errors.js';
import { CliExit, EXIT_FAILURE } from './exit.js';
import { resolveAdminTarget, type AdminTargetOptions } from './controller-home.js';
import type { AdminTarget } from './profiles.js';

/** Largest admin API answer the CLI reads, in bytes. */
const MAX_ADMIN_RESPONSE_BYTES = 64 * 1024 * 1024;
const ADMIN_TIMEOUT_MS = 120_000;

export interface AdminClient {
  readonly url: string;
  get<T>(path: string): Promise<T>;
  /** POSTs `body` as JSON; `timeoutMs` for an answer that comes once long work is done. */
  post<T>(path: string, body?: unknown, timeoutMs?: number): Promise<T>;
  delete<T>(path: string): Promise<T>;
  /** Raw text (for /metrics). */
  text(path: string): Promise<string>;
  /** POSTs a raw body (`application/octet-stream`, streamed) and waits up to `timeoutMs`. */
  postStream<T>(path: string, body: Readable, bytes: number, timeoutMs: number): Promise<T>;
  /**
   * Opens a server-sent event stream (GET, same connection settings and credentials as every
   * other call): resolves with the answer once its status is 200, rejects with the envelope's
   * RemoteError otherwise. `idleMs`: the stream ends with an error after that long silent.
   */
  events(path: string, headers?: Readonly<Record<string, string>>, idleMs?: number): Promise<IncomingMessage>;
  /**
   * POSTs `body` as JSON and resolves with the answer, unread, once its status is 200 (a
   * download: the caller streams it); rejects with the envelope's RemoteError otherwise.
   * `idleMs`: the answer ends with an error after that long silent.
   */
  download(path: string, body: unknown, idleMs?: number): Promise<IncomingMessage>;
}

interface RawBody {
  readonly stream: Readable;
  readonly bytes: number;
  readonly timeoutMs: number;
}

const tooLarge = (): CliExit => new CliExit(EXIT_FAILURE, 'admin API answer is too large');

/** The whole body of an answer as text, refused past MAX_ADMIN_RESPONSE_BYTES. */
function readAll(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_ADMIN_RESPONSE_BYTES) {
        res.destroy(tooLarge());
        return;
      }
      chunks.push(chunk);
    });
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
  });
}

/**
 * An answer of 400 or more: the envelope's code and message, or the bare status. The error
 * registry (and its schema library) loads only here, when an answer is a refusal.
 */
async function refusal(status: number, text: string): Promise<RemoteError> {
  const { envelopeOf, ErrorCode, RemoteError } = await import('../protocol/errors.js');
  const envelope = envelopeOf(text);
  return envelope
    ? new RemoteError(envelope.error.code, envelope.error.message, status)
    : new RemoteError(ErrorCode.INTERNAL, `the controller answered ${status}`, status);
}

/** How the calls of one client are made: node's request function and the agent it reuses. */
interface Transport {
  readonly request: typeof httpRequest;
  readonly agent: HttpAgent;
}

/**
 * The admin API over node's own HTTP client (nothing to load beyond node itself; node:https
 * and node:tls only for a TLS target, pki/ only for one with a CA, on the first call), one
 * keep-alive connection reused across a command's calls (a paged list makes many); an idle
 * connection does not hold the process open.
 */
export function createAdminClient(target: AdminTarget): AdminClient {
  const tls = target.url.startsWith('https:');
  let transportP: Promise<Transport> | undefined;
  const transport = (): Promise<Transport> =>
    (transportP ??= tls
      ? httpsTransport(target)
      : Promise.resolve({ request: httpRequest, agent: new HttpAgent({ keepAlive: true }) }));

  /** A request that got no answer: the error code, or the timeout it ran out of. */
  function unreachable(e: unknown, timeoutMs?: number): CliExit {
    const code = (e as { code?: unknown }).code;
    const why =
      timeoutMs !== undefined && (e as { name?: unknown }).name === 'AbortError'
        ? `no answer within ${timeoutMs / 1000} s`
        : typeof code === 'string'
          ? code
          : String(e);
    return new CliExit(EXIT_FAILURE, `cannot reach the controller at ${target.url}: ${why}`);
  }

  function exchange(
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    headers: Record<string, string>,
    timeoutMs: number,
    write: (req: ReturnType<typeof httpRequest>) => void,
  ): Promise<{ status: number; text: string }> {
    return transport().then(
      ({ request, agent }) =>
        new Promise((resolve, reject) => {
          const req = request(
            `${target.url}${path}`,
            { method, headers, signal: AbortSignal.timeout(timeoutMs), agent },
            (res) => {
              readAll(res).then((text) => resolve({ status: res.statusCode ?? 0, text }), reject);
            },
          );
          req.on('error', (e: unknown) => reject(unreachable(e, timeoutMs)));
          write(req);
        }),
    );
  }

  function authorization(): Record<string, string> {
    return target.token !== undefined ? { authorization: `${AUTHORIZATION_SCHEME} ${target.token}` } : {};
  }

  async function events(path: string, extra: Readonly<Record<string, string>> = {}, idleMs = 60_000) {
    const { request, agent } = await transport();
    return new Promise<IncomingMessage>((resolve, reject) => {
      const headers = { ...authorization(), accept: SSE_CONTENT_TYPE, ...extra };
      const req = request(`${target.url}${path}`, { method: 'GET', headers, agent }, (res) => {
        res.setTimeout(idleMs, () => res.destroy(new CliExit(EXIT_FAILURE, 'the event stream went silent')));
        if (res.statusCode === 200) return resolve(res);
        const status = res.statusCode ?? 0;
        readAll(res)
          .then(async (text) => reject(await refusal(status, text)))
          .catch(reject);
      });
      req.on('error', (e: unknown) => reject(unreachable(e)));
      req.end();
    });
  }

  async function download(path: string, body: unknown, idleMs = ADMIN_TIMEOUT_MS) {
    const { request, agent } = await transport();
    return new Promise<IncomingMessage>((resolve, reject) => {
      const payload = JSON.stringify(body);
      const headers = {
        ...authorization(),
        'content-type': 'application/json',
        'content-length': String(Buffer.byteLength(payload)),
      };
      const req = request(`${target.url}${path}`, { method: 'POST', headers, agent }, (res) => {
        res.setTimeout(idleMs, () => res.destroy(new CliExit(EXIT_FAILURE, 'the download went silent')));
        if (res.statusCode === 200) return resolve(res);
        const status = res.statusCode ?? 0;
        readAll(res)
          .then(async (text) => reject(await refusal(status, text)))
          .catch(reject);
      });
      req.on('error', (e: unknown) => reject(unreachable(e)));
      req.end(payload);
    });
  }

  async function send(
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    body?: unknown,
    raw?: RawBody,
    timeoutMs?: number,
  ): Promise<{ status: number; text: string }> {
    const headers: Record<string, string> = authorization();
    const payload = body === undefined ? undefined : JSON.stringify(body);
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    if (raw) {
      headers['content-type'] = 'application/octet-stream';
      headers['content-length'] = String(raw.bytes);
    }
    const { status, text } = await exchange(
      method,
      path,
      headers,
      raw?.timeoutMs ?? timeoutMs ?? ADMIN_TIMEOUT_MS,
      (req) => {
        if (raw) {
          raw.stream.once('error', (e: Error) => req.destroy(e));
          raw.stream.pipe(req);
        } else {
          req.end(payload);
        }
      },
    );
    if (status >= 400) throw await refusal(status, text);
    return { status, text };
  }
  return {
    url: target.url,
    async get<T>(path: string) {
      return JSON.parse((await send('GET', path)).text) as T;
    },
    async post<T>(path: string, body: unknown = {}, timeoutMs?: number) {
      return JSON.parse((await send('POST', path, body, undefined, timeoutMs)).text) as T;
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
    events,
    download,
  };
}

/**
 * node:https and its agent for an admin API over TLS: with a profile's CA, only that CA is
 * trusted and the controller must present a certificate with the `controller` role for the
 * URL's host; the operator certificate, when there is one, is presented. pki/ (to read the
 * role) loads only then.
 */
async function httpsTransport(target: AdminTarget): Promise<Transport> {
  const { Agent, request } = await import('node:https');
  const tls = target.tls;
  if (!tls) return { request, agent: new Agent({ keepAlive: true }) };
  const [{ checkServerIdentity }, { identityFromDer }] = await Promise.all([
    import('node:tls'),
    import('../pki/index.js'),
  ]);
  const agent = new Agent({
    keepAlive: true,
    ca: tls.caPem,
    ...(tls.certPem !== undefined && { cert: tls.certPem, key: tls.keyPem }),
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
    checkServerIdentity(host: string, cert: PeerCertificate): Error | undefined {
      const role = identityFromDer(cert.raw).role;
      if (role !== 'controller') {
        return new CliExit(
          EXIT_FAILURE,
          `the server at ${target.url} is not the controller (role ${role ?? 'none'})`,
        );
      }
      return checkServerIdentity(host, cert);
    },
  });
  return { request, agent };
}

/** The admin client for a command's `--state-dir`/`--url`/`--token` options. */
export async function adminClientFor(opts: AdminTargetOptions): Promise<AdminClient> {
  return createAdminClient(await resolveAdminTarget(opts));
}
