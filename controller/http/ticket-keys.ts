import { randomBytes } from 'node:crypto';
import { readFile, rm, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { PRIVATE_FILE_MODE, writeFileAtomic } from '../../pki/index.js';
import { MAX_TLS_TICKET_KEY_FILE_BYTES, TlsTicketKeyFile } from '../../protocol/tls-ticket-key.js';
import { parseJsonWith } from '../../protocol/validate.js';
import { isoAt, type Clock } from '../clock.js';

/**
 * How long one ticket key is used, in ms: it is replaced this long after it was made, while
 * running or at the next start, so a key (and every ticket it sealed) stops being accepted
 * after this plus WORKER_TLS_SESSION_TIMEOUT_S at the latest (docs/fleet-scale.md, "Session
 * tickets across a restart"). Each replacement costs every worker one full handshake, spread
 * over a heartbeat interval.
 */
export const TICKET_KEY_LIFETIME_MS = 12 * 60 * 60 * 1000;
/**
 * How long a session ticket of the worker listener may be resumed, in s (Node's default,
 * written down): ten heartbeat intervals, so a restart that takes minutes still resumes.
 */
export const WORKER_TLS_SESSION_TIMEOUT_S = 300;
/**
 * The worker listener's TLS session id context. OpenSSL resumes a session only in the context
 * it was made in, and Node's default for a server that asks for client certificates is a hash
 * of the process's argv: a restart with other flags would silently resume nothing.
 */
export const WORKER_TLS_SESSION_ID_CONTEXT = 'corral-worker-api-v1';
/** Node's ticket key: 16 bytes name, 16 bytes HMAC secret, 16 bytes AES key. */
const TICKET_KEY_BYTES = 48;
/** setTimeout's longest delay, in ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Why a start made a new key instead of taking the stored one. */
export type TicketKeyRenewal =
  'absent' | 'expired' | 'future' | 'other-ca' | 'damaged' | 'permissions' | 'not-stored';

export interface TicketKeys extends AsyncDisposable {
  /** The key in force (48 bytes), for a listener's `ticketKeys`. */
  current(): Buffer;
  /** What the start did: `kept` the stored key, or why it made a new one. */
  readonly loaded: 'kept' | TicketKeyRenewal;
  /** Told every new key once it is stored (or failed to be: then the file is removed). */
  onRotate(listener: (key: Buffer) => void): void;
  /** Stops the rotation; idempotent. */
  close(): Promise<void>;
}

export interface TicketKeyOptions {
  /** The key file (`run/tls-ticket-key.json`); without one the key lives in memory only. */
  readonly path?: string | undefined;
  /** The controller's CA: a stored key made under another CA is not taken. */
  readonly caFingerprint: string;
  readonly clock: Clock;
  readonly log: Logger;
  /** Default TICKET_KEY_LIFETIME_MS. */
  readonly lifetimeMs?: number;
}

interface Held {
  readonly key: Buffer;
  readonly createdAtMs: number;
}

/** The stored key if it may still be used, or why not. Never throws: a bad file is replaced. */
async function readStored(o: TicketKeyOptions, lifetimeMs: number): Promise<Held | TicketKeyRenewal> {
  if (o.path === undefined) return 'not-stored';
  let text: string;
  try {
    const st = await stat(o.path);
    if (!st.isFile() || st.size > MAX_TLS_TICKET_KEY_FILE_BYTES) return 'damaged';
    // A key anyone else could have read is no longer a secret.
    if ((st.mode & 0o077) !== 0) return 'permissions';
    text = await readFile(o.path, 'utf8');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
    o.log.warn({ err: e }, 'cannot read the TLS ticket key file; making a new key');
    return 'damaged';
  }
  let stored: TlsTicketKeyFile;
  try {
    stored = parseJsonWith(TlsTicketKeyFile, text, 'TLS ticket key file', MAX_TLS_TICKET_KEY_FILE_BYTES);
  } catch (e: unknown) {
    // CORRAL_ERR_VALIDATION or PAYLOAD_TOO_LARGE: a damaged file is replaced, never trusted.
    o.log.warn({ err: e }, 'the TLS ticket key file is damaged; making a new key');
    return 'damaged';
  }
  const key = Buffer.from(stored.key, 'base64');
  if (key.length !== TICKET_KEY_BYTES) return 'damaged';
  if (stored.caFingerprint !== o.caFingerprint) return 'other-ca';
  const createdAtMs = Date.parse(stored.createdAt);
  const ageMs = o.clock.now() - createdAtMs;
  if (ageMs < 0) return 'future';
  if (ageMs >= lifetimeMs) return 'expired';
  return { key, createdAtMs };
}

/**
 * The worker listener's TLS session ticket key: the stored one when it is still young enough
 * and made under this CA, else a new one, stored 0600 (temp file + rename). A running
 * controller replaces its key once it is `lifetimeMs` old, stores it, and tells `onRotate`.
 * Any failure to read or write the file costs resumption, never the start: the key is then
 * kept in memory only, and a file that could not be replaced is removed so a restart cannot
 * take an expired key.
 */
export async function openTicketKeys(o: TicketKeyOptions): Promise<TicketKeys> {
  const lifetimeMs = o.lifetimeMs ?? TICKET_KEY_LIFETIME_MS;
  const log = o.log;
  const stored = await readStored(o, lifetimeMs);
  const listeners: ((key: Buffer) => void)[] = [];
  const aborter = new AbortController();

  async function store(held: Held): Promise<void> {
    if (o.path === undefined) return;
    const file: TlsTicketKeyFile = {
      version: 1,
      createdAt: isoAt(held.createdAtMs),
      caFingerprint: o.caFingerprint,
      key: held.key.toString('base64'),
    };
    try {
      // Not fsynced: losing the file in a crash costs one full handshake per worker, nothing else.
      await writeFileAtomic(o.path, `${JSON.stringify(file)}\n`, PRIVATE_FILE_MODE, { durable: false });
    } catch (e: unknown) {
      log.warn({ err: e }, 'cannot store the TLS ticket key; a restart will not resume TLS sessions');
      await rm(o.path, { force: true }).catch((err: unknown) => {
        log.error({ err }, 'cannot remove the old TLS ticket key file');
      });
    }
  }

  const fresh = (): Held => ({ key: randomBytes(TICKET_KEY_BYTES), createdAtMs: o.clock.now() });
  let held: Held;
  if (typeof stored === 'string') {
    held = fresh();
    await store(held);
    log.info({ reason: stored }, 'new TLS ticket key');
  } else {
    held = stored;
    log.info({ createdAt: isoAt(held.createdAtMs) }, 'TLS ticket key kept from the last run');
  }

  const rotation = (async () => {
    const signal = aborter.signal;
    while (!signal.aborted) {
      const dueInMs = held.createdAtMs + lifetimeMs - o.clock.now();
      if (dueInMs > 0) {
        try {
          await sleep(Math.min(dueInMs, MAX_TIMER_MS), undefined, { signal });
        } catch (e: unknown) {
          // AbortError from close(): the rotation ends.
          if (signal.aborted) return;
          throw e;
        }
        continue;
      }
      held = fresh();
      await store(held);
      log.info({}, 'TLS ticket key rotated');
      for (const listener of listeners) listener(held.key);
    }
  })();

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      aborter.abort();
      await rotation;
    })());
  return {
    current: () => held.key,
    loaded: typeof stored === 'string' ? stored : 'kept',
    onRotate(listener) {
      listeners.push(listener);
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
