import type { IncomingHttpHeaders } from 'node:http';
import { Agent, request } from 'node:https';
import type { Socket } from 'node:net';
import type { TSchema, Static } from '@sinclair/typebox';
import { clientTlsOptions, type TlsMaterial } from '../../pki/index.js';
import { parseHostPort } from '../../kit/host-port.js';
import {
  HEADER_CONTROLLER_LIST,
  HEADER_PROTOCOL_VERSION,
  PROTOCOL_VERSION,
} from '../../protocol/constants.js';
import {
  BundleWrittenResponse,
  RenewResponse,
  type BundleWrittenRequest,
  type RenewRequest,
} from '../../protocol/enrollment.js';
import { CorralError, ErrorCode, RemoteError, remoteErrorOf } from '../../protocol/errors.js';
import { HeartbeatResponse, type AgentClock, type HeartbeatRequest } from '../../protocol/heartbeat.js';
import { parseJsonWith } from '../../protocol/validate.js';

/** Largest answer read from the controller, in bytes. */
const MAX_RESPONSE_BYTES = 256 * 1024;
const REQUEST_TIMEOUT_MS = 15_000;
/** An idle keep-alive connection is closed after this long, in ms (the next one resumes its TLS session). */
const IDLE_CONNECTION_MS = 10_000;
/** Largest round trip reported (the schema's bound), in ms. */
const MAX_ROUND_TRIP_MS = 600_000;

/** Longest wait a `Retry-After` may ask for, in ms; a larger one is taken as this. */
const MAX_RETRY_AFTER_MS = 10 * 60_000;

/** `Retry-After` as whole seconds or an HTTP date, in ms from `nowMs`; undefined when absent or unreadable. */
export function retryAfterMs(header: string | string[] | undefined, nowMs: number): number | undefined {
  const text = Array.isArray(header) ? header[0] : header;
  if (text === undefined) return undefined;
  const t = text.trim();
  const ms = /^\d{1,9}$/.test(t)
    ? Number(t) * 1000
    : /^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(t)
      ? Date.parse(t) - nowMs
      : Number.NaN;
  return Number.isFinite(ms) ? Math.min(MAX_RETRY_AFTER_MS, Math.max(0, ms)) : undefined;
}

/**
 * The agent's client of the controller's worker API: mTLS with the agent certificate, trusting
 * only the bundle's CA and a server carrying the `controller` role (hostname checked, since a
 * controller's certificate is not pinned in the bundle). `reload` swaps the certificate for
 * new connections after a renewal.
 *
 * With several controller addresses (a bundle's `controllers`) it talks to one at a time and
 * stays with it while it answers. A request whose connection fails (refused, unreachable, reset,
 * TLS handshake refused, timed out) moves the client to the next address; when the request
 * cannot have reached the controller (no TLS session was up) it is sent there at once, at most
 * once per address, otherwise the failure is the caller's to retry. An HTTP answer, whatever
 * its status, is from a live controller and never moves the client. Every address gets the same
 * TLS checks, so an address that presents another CA's certificate is skipped, never used.
 */
export interface ControllerClient {
  /** Posts a heartbeat stamped with this host's clock (`clock`), so the controller can tell the offset. */
  heartbeat(body: HeartbeatRequest, signal?: AbortSignal): Promise<HeartbeatResponse>;
  renew(body: RenewRequest, signal?: AbortSignal): Promise<RenewResponse>;
  /** Tells the controller a freshly joined worker's bundle is on disk. */
  bundleWritten(body: BundleWrittenRequest, signal?: AbortSignal): Promise<BundleWrittenResponse>;
  reload(material: TlsMaterial): void;
  /** The address requests go to now. */
  current(): string;
  /** The addresses it fails over along, in order. */
  addresses(): readonly string[];
  /**
   * Replaces the addresses (a controller's heartbeat answer listed others). The current one
   * stays current when it is still listed; otherwise the next request goes to the first.
   */
  setAddresses(controllers: readonly string[]): void;
  close(): Promise<void>;
}

export interface ControllerClientOptions {
  /** Called when a connection failure moves the client from `from` to `to`. */
  readonly onFailover?: (from: string, to: string, err: unknown) => void;
}

/** One HTTPS agent and the requests in flight on it, so a swap or close can drain them first. */
class Connections {
  readonly agent: Agent;
  readonly #inFlight = new Set<Promise<unknown>>();

  constructor(material: TlsMaterial) {
    this.agent = new Agent({
      ...clientTlsOptions(material, { roles: ['controller'] }),
      keepAlive: true,
      timeout: IDLE_CONNECTION_MS,
      scheduling: 'lifo',
    });
  }

  track<T>(p: Promise<T>): Promise<T> {
    this.#inFlight.add(p);
    const done = (): void => void this.#inFlight.delete(p);
    p.then(done, done);
    return p;
  }

  /** Waits for the requests in flight (whatever their outcome), then closes every connection. */
  async close(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
    this.agent.destroy();
  }
}

interface Answer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly text: string;
}

/**
 * The client speaks HTTP/1.1 through node:https (keep-alive, TLS session cache): the agent is
 * a long-lived daemon whose memory matters, and node's own client costs nothing to load.
 */
export function createControllerClient(
  controllers: string | readonly string[],
  material: TlsMaterial,
  options: ControllerClientOptions = {},
): ControllerClient {
  let addresses = typeof controllers === 'string' ? [controllers] : [...new Set(controllers)];
  if (addresses.length === 0) throw new CorralError(ErrorCode.VALIDATION, 'no controller address');
  let at = 0;
  let connections = new Connections(material);
  let closing: Promise<void> | undefined;
  /** Failures of requests that never had a TLS session up, so nothing of them reached a controller. */
  const undelivered = new WeakSet<object>();

  function send(
    controller: string,
    path: string,
    payload: string,
    signal: AbortSignal,
    extra: Record<string, string>,
  ): Promise<Answer> {
    return new Promise((resolve, reject) => {
      let host: string;
      let port: number;
      try {
        // Parsed per request, so a bad address fails the request (as a heartbeat failure), not the agent.
        ({ host, port } = parseHostPort(controller));
      } catch (e: unknown) {
        const err = e instanceof Error ? e : new CorralError(ErrorCode.VALIDATION, String(e));
        undelivered.add(err);
        reject(err);
        return;
      }
      let secured = false;
      const req = request(
        {
          host,
          port,
          path,
          method: 'POST',
          agent: connections.agent,
          signal,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(payload),
            [HEADER_PROTOCOL_VERSION]: String(PROTOCOL_VERSION),
            ...extra,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_RESPONSE_BYTES) {
              res.destroy();
              reject(
                new RemoteError(
                  ErrorCode.PAYLOAD_TOO_LARGE,
                  `${path}: answer too large`,
                  res.statusCode ?? 0,
                ),
              );
              return;
            }
            chunks.push(chunk);
          });
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              text: Buffer.concat(chunks).toString('utf8'),
            }),
          );
          res.on('error', reject);
        },
      );
      req.on('socket', (socket: Socket) => {
        if (req.reusedSocket) secured = true;
        else socket.once('secureConnect', () => (secured = true));
      });
      req.on('error', (err: Error) => {
        if (!secured) undelivered.add(err);
        reject(err);
      });
      req.end(payload);
    });
  }

  /**
   * Sends along the addresses from the current one: see ControllerClient for when it moves on.
   * Only the request that saw the failure moves the client, so concurrent failures skip no address.
   */
  async function sendSomewhere(
    path: string,
    payload: string,
    extra: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<Answer> {
    for (let tries = 1; ; tries++) {
      const from = at;
      const address = addresses[from] ?? addresses[0] ?? '';
      const timeout = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
      try {
        return await connections.track(
          send(address, path, payload, signal ? AbortSignal.any([signal, timeout]) : timeout, extra),
        );
      } catch (e: unknown) {
        if (e instanceof RemoteError || signal?.aborted || closing || addresses.length === 1) throw e;
        if (at === from) {
          at = (from + 1) % addresses.length;
          options.onFailover?.(address, addresses[at] ?? '', e);
        }
        const reachedNoOne = typeof e === 'object' && e !== null && undelivered.has(e);
        if (!reachedNoOne || tries >= addresses.length) throw e;
      }
    }
  }

  async function post<T extends TSchema>(
    path: string,
    body: unknown,
    schema: T,
    signal?: AbortSignal,
    extra: Record<string, string> = {},
  ): Promise<Static<T>> {
    if (closing) throw new CorralError(ErrorCode.CLOSED, 'controller client is closed');
    const res = await sendSomewhere(path, JSON.stringify(body), extra, signal);
    if (res.status >= 200 && res.status < 300) {
      return parseJsonWith(schema, res.text, `controller ${path} answer`, MAX_RESPONSE_BYTES);
    }
    throw remoteErrorOf(res.status, res.text, path, {
      retryAfterMs: retryAfterMs(res.headers['retry-after'], Date.now()),
    });
  }

  /** Round trip of the last heartbeat that was answered, in ms (monotonic clock). */
  let lastRoundTripMs: number | undefined;

  return {
    async heartbeat(body, signal) {
      const startedMs = performance.now();
      const clock: AgentClock = {
        sentAt: new Date().toISOString(),
        ...(lastRoundTripMs !== undefined ? { lastRoundTripMs } : {}),
      };
      const res = await post('/v1/heartbeat', { ...body, clock }, HeartbeatResponse, signal, {
        [HEADER_CONTROLLER_LIST]: '1',
      });
      lastRoundTripMs = Math.min(MAX_ROUND_TRIP_MS, Math.round(performance.now() - startedMs));
      return res;
    },
    renew: (body, signal) => post('/v1/renew', body, RenewResponse, signal),
    bundleWritten: (body, signal) => post('/v1/bundle-written', body, BundleWrittenResponse, signal),
    reload(m) {
      const old = connections;
      connections = new Connections(m);
      void old.close();
    },
    current: () => addresses[at] ?? '',
    addresses: () => [...addresses],
    setAddresses(list) {
      const next = [...new Set(list)];
      if (next.length === 0) return;
      const now = addresses[at];
      addresses = next;
      at = Math.max(0, now === undefined ? 0 : next.indexOf(now));
    },
    close() {
      closing ??= connections.close();
      return closing;
    },
  };
}
