import { stat } from 'node:fs/promises';
import type { Agent, Dispatcher } from 'undici';
import { CorralError, ErrorCode } from '../../protocol/errors.js';

/** The Engine API version Corral speaks: dockerd and podman's compatibility API both serve it. */
export const ENGINE_API_VERSION = 'v1.41';
/** Where the engine listens when neither the agent's config nor DOCKER_HOST says. */
export const DEFAULT_ENGINE_SOCKET = '/var/run/docker.sock';
/** Largest JSON answer read from the engine, in bytes (a listing of many containers). */
const MAX_ENGINE_JSON_BYTES = 8 * 1024 * 1024;
/** An ordinary call (inspect, create, list) that takes longer than this has failed, in ms. */
const ENGINE_CALL_TIMEOUT_MS = 30_000;
/** Connections at once for calls that end; more wait their turn (long-lived streams are apart). */
const ENGINE_CALL_CONNECTIONS = 16;

/**
 * The engine's socket: `configured` (the agent's config) when given, else DOCKER_HOST when it is
 * a `unix://` address, else /var/run/docker.sock. A DOCKER_HOST that is not a Unix socket is
 * refused: Corral never talks to an engine over TCP.
 */
export function engineSocket(
  configured: string | null | undefined,
  env: NodeJS.ProcessEnv = process.env,
): string {
  if (configured) return configured;
  const host = env.DOCKER_HOST;
  if (host === undefined || host === '') return DEFAULT_ENGINE_SOCKET;
  if (host.startsWith('unix://')) return host.slice('unix://'.length);
  throw new CorralError(
    ErrorCode.VALIDATION,
    `DOCKER_HOST=${host} is not a unix:// socket; Corral talks to the container engine over its Unix socket only`,
  );
}

export interface EngineCall {
  readonly method?: Dispatcher.HttpMethod;
  readonly query?: Record<string, string | number | boolean | undefined>;
  readonly body?: unknown;
  readonly signal?: AbortSignal;
  /** 0: no limit (waits and followed logs). */
  readonly timeoutMs?: number;
}

export interface EngineResponse {
  readonly status: number;
  readonly body: Dispatcher.ResponseData['body'];
}

/** The engine's answer when it is not the one a call expects. */
export class EngineError extends CorralError {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(ErrorCode.CONTAINER_ENGINE, message);
  }
}

export interface EngineClient {
  readonly socket: string;
  /** A call whose answer is streamed (logs, waits, pulls); the caller reads or dumps the body. */
  stream(path: string, call?: EngineCall): Promise<EngineResponse>;
  /** A call answered with JSON (or nothing); `ok` lists the statuses that are not errors. */
  json<T>(
    path: string,
    call?: EngineCall & { readonly ok?: readonly number[] },
  ): Promise<{ status: number; value: T | undefined }>;
  /** Whether a Unix socket is there to call (without loading the HTTP client). */
  present(): Promise<boolean>;
  close(): Promise<void>;
}

function unreachable(socket: string, e: unknown): CorralError {
  const code = (e as NodeJS.ErrnoException).code;
  const why =
    code === 'ENOENT'
      ? 'no socket there'
      : code === 'ECONNREFUSED'
        ? 'nothing listens on it'
        : e instanceof Error
          ? e.message
          : String(e);
  return new CorralError(ErrorCode.CONTAINER_ENGINE, `container engine at ${socket} is unreachable: ${why}`, {
    cause: e,
  });
}

/** True for an error that says the engine is not there at all (no socket, nothing listening). */
export function engineAbsent(e: unknown): boolean {
  const cause = (e as { cause?: unknown }).cause;
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ECONNREFUSED';
}

/** An Engine API client over the engine's Unix socket (undici; no TCP, no TLS). */
export function createEngineClient(socket: string): EngineClient {
  // undici is loaded at the first call: an agent with no container service never pays for it
  // (about 20 MiB of an idle agent's memory; cli-module-graph checks `agent serve` without it).
  // Two pools: calls that end (create, start, inspect, …) share a bounded one; a call without a
  // timeout (a container's wait, its log follow) holds its connection for the container's life,
  // so those get a pool of their own without a cap (two per running container service). In
  // one shared pool they took every connection once there were enough containers, and the
  // next create waited for ever.
  let client: Promise<{ calls: Agent; streams: Agent; request: typeof import('undici').request }> | undefined;
  const connect = () =>
    (client ??= import('undici').then((u) => ({
      calls: new u.Agent({
        connect: { socketPath: socket },
        connections: ENGINE_CALL_CONNECTIONS,
        pipelining: 0,
      }),
      streams: new u.Agent({ connect: { socketPath: socket }, pipelining: 0 }),
      request: u.request,
    })));

  function url(path: string, query: EngineCall['query']): string {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) params.set(k, String(v));
    const q = params.toString();
    return `http://engine/${ENGINE_API_VERSION}${path}${q ? `?${q}` : ''}`;
  }

  async function send(path: string, call: EngineCall = {}): Promise<EngineResponse> {
    const timeoutMs = call.timeoutMs ?? ENGINE_CALL_TIMEOUT_MS;
    try {
      const { calls, streams, request } = await connect();
      const res = await request(url(path, call.query), {
        dispatcher: timeoutMs === 0 ? streams : calls,
        method: call.method ?? 'GET',
        ...(call.body !== undefined && {
          body: JSON.stringify(call.body),
          headers: { 'content-type': 'application/json' },
        }),
        ...(call.signal && { signal: call.signal }),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      return { status: res.statusCode, body: res.body };
    } catch (e: unknown) {
      if (call.signal?.aborted) throw e;
      throw unreachable(socket, e);
    }
  }

  async function readJson(res: EngineResponse): Promise<unknown> {
    let size = 0;
    const chunks: Buffer[] = [];
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_ENGINE_JSON_BYTES) {
        res.body.destroy();
        throw new EngineError(
          res.status,
          `container engine answer larger than ${MAX_ENGINE_JSON_BYTES} bytes`,
        );
      }
      chunks.push(chunk);
    }
    const text = Buffer.concat(chunks).toString('utf8');
    if (text.trim() === '') return undefined;
    try {
      return JSON.parse(text);
    } catch {
      // SyntaxError: not JSON, said so with the start of what it was
      throw new EngineError(
        res.status,
        `container engine answered with something other than JSON: ${text.slice(0, 200)}`,
      );
    }
  }

  return {
    socket,
    stream: send,
    async json<T>(path: string, call: EngineCall & { readonly ok?: readonly number[] } = {}) {
      const res = await send(path, call);
      const value = await readJson(res);
      const ok = call.ok ?? [200, 201, 204];
      if (!ok.includes(res.status)) {
        const message = (value as { message?: unknown } | undefined)?.message;
        throw new EngineError(
          res.status,
          `container engine: ${call.method ?? 'GET'} ${path}: ${res.status}${typeof message === 'string' ? ` ${message.slice(0, 500)}` : ''}`,
        );
      }
      return { status: res.status, value: value as T | undefined };
    },
    async present() {
      // ENOENT, EACCES on a parent, …: nothing to call there.
      return stat(socket).then(
        (st) => st.isSocket(),
        () => false,
      );
    },
    close: async () => {
      if (!client) return;
      const { calls, streams } = await client;
      await Promise.all([calls.close(), streams.close()]);
    },
  };
}
