import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server, type ServerOptions } from 'node:https';
import type { Logger } from 'pino';
import { CorralError, ErrorCode, errorEnvelope, ERROR_STATUS, isCorralError } from '../protocol/errors.js';

/**
 * A small JSON API over node:https for a daemon whose memory matters more than its routing (the
 * agent on every worker). It answers exactly like the fastify apps (kit/fastify/create-app.ts):
 * the one error envelope, the same codes for an unknown route, an oversize, empty or malformed
 * body and a refused caller, 503 while closing; without loading a router, a JSON-schema compiler
 * and a serializer compiler (about 10 MiB of resident memory on an idle agent, measured by
 * `npm run bench -- agent`). Bodies are checked by the route's own parse function (a protocol
 * schema through parseWith), so the schema still is the type.
 */
export interface JsonAnswer {
  readonly status: number;
  readonly body: unknown;
  /** Runs once the answer has been written out (a reaper that must start after the 202 is sent). */
  readonly afterSend?: () => void;
}

export interface JsonCall<B> {
  readonly body: B;
  readonly raw: IncomingMessage;
  readonly log: Logger;
}

export interface JsonRoute<B = unknown> {
  readonly method: 'GET' | 'POST';
  readonly path: string;
  /** Largest body, in bytes; default the server's. */
  readonly bodyLimit?: number;
  /** Checks the parsed body (undefined when none was sent); throws a CorralError to refuse it. */
  readonly parse?: (body: unknown) => B;
  readonly handle: (call: JsonCall<B>) => Promise<JsonAnswer>;
}

export interface HttpsJsonApiOptions {
  readonly https: ServerOptions;
  readonly log: Logger;
  /** Largest body of any route without its own limit, in bytes. */
  readonly bodyLimit: number;
  /** Runs on every request before routing and before its body is read; throws a CorralError to refuse. */
  readonly guard?: (req: IncomingMessage) => void;
  /** Idle keep-alive connections are kept this long, in ms (fastify's default, 72 s). */
  readonly keepAliveTimeoutMs?: number;
}

export interface HttpsJsonApi {
  readonly server: Server;
  route<B>(route: JsonRoute<B>): void;
  listen(host: string, port: number): Promise<void>;
  /** Stops accepting, answers 503 to anything new, closes idle connections and waits for the rest. Idempotent. */
  close(): Promise<void>;
}

const DEFAULT_KEEP_ALIVE_MS = 72_000;
const JSON_TYPE = 'application/json; charset=utf-8';

/** A route's refusal or failure as the wire sees it; anything but a CorralError is a generic 500. */
function classify(e: unknown): { status: number; code: string; message: string } {
  // A package's own family (no status) is not for a client: its message may name files.
  if (isCorralError(e) && e.statusCode !== undefined)
    return { status: e.statusCode, code: e.code, message: e.message };
  return { status: ERROR_STATUS[ErrorCode.INTERNAL], code: ErrorCode.INTERNAL, message: 'internal error' };
}

const refuse = (code: ErrorCode, message: string): CorralError => new CorralError(code, message);

/** JSON.parse refusing `__proto__` keys (as fastify's secure-json-parse does). */
function parseJson(text: string): unknown {
  return JSON.parse(text, (key, value: unknown) => {
    if (key === '__proto__') throw refuse(ErrorCode.BAD_REQUEST, 'body has a forbidden __proto__ key');
    return value;
  });
}

/** The request's body as text, refused past `limit` bytes (by its declared length before reading any). */
function readBody(req: IncomingMessage, limit: number): Promise<string | undefined> {
  const declared = Number(req.headers['content-length'] ?? Number.NaN);
  if (declared > limit) return Promise.reject(refuse(ErrorCode.PAYLOAD_TOO_LARGE, 'request body too large'));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        reject(refuse(ErrorCode.PAYLOAD_TOO_LARGE, 'request body too large'));
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () => resolve(size === 0 ? undefined : Buffer.concat(chunks).toString('utf8')));
    req.once('error', reject);
  });
}

async function bodyOf(req: IncomingMessage, limit: number): Promise<unknown> {
  const text = await readBody(req, limit);
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  if (text === undefined) {
    if (type === 'application/json' && req.headers['content-length'] !== undefined) {
      throw refuse(
        ErrorCode.BAD_REQUEST,
        "Body cannot be empty when content-type is set to 'application/json'",
      );
    }
    return undefined;
  }
  if (type !== 'application/json')
    throw refuse(ErrorCode.BAD_REQUEST, `Unsupported Media Type: ${type || 'none'}`);
  try {
    return parseJson(text);
  } catch (e: unknown) {
    if (isCorralError(e)) throw e;
    throw refuse(ErrorCode.BAD_REQUEST, 'Body is not valid JSON');
  }
}

function send(res: ServerResponse, status: number, body: unknown, close: boolean): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': JSON_TYPE,
    'content-length': Buffer.byteLength(text),
    ...(close && { connection: 'close' }),
  });
  res.end(text);
}

export function createHttpsJsonApi(o: HttpsJsonApiOptions): HttpsJsonApi {
  const routes = new Map<string, JsonRoute<unknown>>();
  let closing: Promise<void> | undefined;

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (closing) {
      send(res, 503, errorEnvelope(ErrorCode.UNAVAILABLE, 'server is closing'), true);
      return;
    }
    try {
      o.guard?.(req);
    } catch (e: unknown) {
      const { status, code, message } = classify(e);
      o.log.warn({ code }, 'caller refused');
      send(res, status, errorEnvelope(code, message), true);
      req.resume();
      return;
    }
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const route = routes.get(`${req.method ?? ''} ${path}`);
    if (!route) {
      req.resume();
      send(res, 404, errorEnvelope(ErrorCode.NOT_FOUND, 'no such route'), closing !== undefined);
      return;
    }
    try {
      const raw = await bodyOf(req, route.bodyLimit ?? o.bodyLimit);
      const body = route.parse ? route.parse(raw) : raw;
      const answer = await route.handle({ body, raw: req, log: o.log });
      if (answer.afterSend) res.once('finish', answer.afterSend);
      // An answer finished while closing ends its connection, so close() is not kept waiting.
      send(res, answer.status, answer.body, closing !== undefined);
    } catch (e: unknown) {
      const { status, code, message } = classify(e);
      if (status >= 500) o.log.error({ err: e }, 'request failed');
      else o.log.debug({ code, message }, 'request refused');
      if (!res.headersSent) send(res, status, errorEnvelope(code, message), closing !== undefined);
      else res.destroy();
    }
  }

  const server = createServer(o.https, (req, res) => {
    serve(req, res).catch((err: unknown) => {
      o.log.error({ err }, 'request failed');
      res.destroy();
    });
  });
  server.keepAliveTimeout = o.keepAliveTimeoutMs ?? DEFAULT_KEEP_ALIVE_MS;

  return {
    server,
    route<B>(r: JsonRoute<B>): void {
      const key = `${r.method} ${r.path}`;
      if (routes.has(key)) throw new CorralError(ErrorCode.INTERNAL, `route ${key} registered twice`);
      routes.set(key, r as JsonRoute<unknown>);
    },
    listen(host, port) {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        if (!server.listening) return resolve();
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}
