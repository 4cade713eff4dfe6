import { isIP } from 'node:net';
import { Agent, request, type Dispatcher } from 'undici';
import { clientTlsOptions, type Role, type TlsMaterial } from '../pki/index.js';
import { CorralError, ErrorCode } from '../protocol/errors.js';

/** Largest response body read from a worker daemon, in bytes. */
export const MAX_WORKER_RESPONSE_BYTES = 1024 * 1024;
export const DEFAULT_WORKER_CALL_TIMEOUT_MS = 10_000;
/** Dispatchers kept for reuse at most (one per host and pin set). */
const MAX_CACHED_DISPATCHERS = 512;

/** A worker daemon to call: where it listens and which certificates it may present. */
export interface WorkerTarget {
  readonly hostId: string;
  readonly address: string;
  readonly port: number;
  /** Pinned fingerprints; the connection fails during the handshake for any other. */
  readonly fingerprints: readonly string[];
  /** Role its certificate must carry: `agent` (default) or `updater`. */
  readonly role?: Extract<Role, 'agent' | 'updater'>;
}

export interface WorkerCall {
  readonly method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  readonly path: string;
  readonly body?: unknown;
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

export interface WorkerReply {
  readonly statusCode: number;
  /** Parsed JSON, or undefined for an empty or non-JSON body. */
  readonly json: unknown;
}

/**
 * The controller's client for agents and updaters: mutual TLS with the controller-client
 * identity, and the server's role and pinned fingerprint checked during the handshake of
 * the connection that carries the request. Throws the coded TLS error
 * (CORRAL_ERR_PIN_MISMATCH, CORRAL_ERR_PEER_ROLE) or undici's (timeouts, refused).
 */
export interface WorkerClient {
  /** Throws CORRAL_ERR_CLOSED once `close()` began. */
  call(target: WorkerTarget, call: WorkerCall): Promise<WorkerReply>;
  /** Waits for the calls in flight, then closes every connection; every call waits for the same drain. */
  close(): Promise<void>;
}

export function originOf(address: string, port: number): string {
  const host = address.replace(/^\[(.*)\]$/, '$1');
  return `https://${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
}

async function readBounded(body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_WORKER_RESPONSE_BYTES) {
      body.destroy();
      throw new CorralError(
        ErrorCode.PAYLOAD_TOO_LARGE,
        `worker response larger than ${MAX_WORKER_RESPONSE_BYTES} bytes`,
      );
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export function createWorkerClient(material: TlsMaterial): WorkerClient {
  const dispatchers = new Map<string, Agent>();
  let closing: Promise<void> | undefined;

  function dispatcherFor(target: WorkerTarget): Agent {
    const role = target.role ?? 'agent';
    const key = `${target.hostId}|${role}|${[...target.fingerprints].sort().join(',')}`;
    const cached = dispatchers.get(key);
    if (cached) return cached;
    for (const [k, old] of dispatchers) {
      if (k.startsWith(`${target.hostId}|${role}|`) || dispatchers.size >= MAX_CACHED_DISPATCHERS) {
        dispatchers.delete(k);
        void old.close();
      }
    }
    const tls = clientTlsOptions(material, { roles: [role], fingerprints: [...target.fingerprints] });
    const agent = new Agent({
      connect: tls,
      connections: 4,
      keepAliveTimeout: 30_000,
    });
    dispatchers.set(key, agent);
    return agent;
  }

  return {
    async call(target, call) {
      if (closing) throw new CorralError(ErrorCode.CLOSED, 'worker client is closed');
      const timeoutMs = call.timeoutMs ?? DEFAULT_WORKER_CALL_TIMEOUT_MS;
      const signal = call.signal
        ? AbortSignal.any([call.signal, AbortSignal.timeout(timeoutMs)])
        : AbortSignal.timeout(timeoutMs);
      const hasBody = call.body !== undefined;
      const res = await request(`${originOf(target.address, target.port)}${call.path}`, {
        method: call.method,
        dispatcher: dispatcherFor(target),
        signal,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        headers: hasBody ? { 'content-type': 'application/json' } : {},
        body: hasBody ? JSON.stringify(call.body) : null,
      });
      const text = await readBounded(res.body);
      let json: unknown;
      try {
        json = text.length > 0 ? JSON.parse(text) : undefined;
      } catch {
        // A non-JSON body: callers see `json: undefined` and judge by the status code.
        json = undefined;
      }
      return { statusCode: res.statusCode, json };
    },
    close() {
      closing ??= (async () => {
        const all = [...dispatchers.values()];
        dispatchers.clear();
        await Promise.all(all.map((d) => d.close()));
      })();
      return closing;
    },
  };
}
