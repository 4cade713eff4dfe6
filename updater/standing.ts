import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { Agent, request } from 'undici';
import { clientTlsOptions, type TlsMaterial } from '../pki/index.js';
import { HEADER_PROTOCOL_VERSION, PROTOCOL_VERSION } from '../protocol/constants.js';
import { ErrorCode, ErrorEnvelope } from '../protocol/errors.js';
import { STANDING_PATH } from '../protocol/wipe.js';
import { Value } from '@sinclair/typebox/value';

/** What the controller says of this certificate's host. */
export type Standing = 'enrolled' | 'decommissioned' | 'unknown';

const CHECK_TIMEOUT_MS = 10_000;
const MAX_ANSWER_BYTES = 16 * 1024;

/**
 * Asks the controller's worker API (`GET /v1/standing`) with the worker's agent identity (the
 * updater's own certificate is for serving only: it carries no client-auth usage), trusting
 * only the bundle's CA and the `controller` role. `decommissioned` only for a 410 carrying
 * CORRAL_ERR_DECOMMISSIONED (told only to this host's own last-pinned certificate); anything
 * else that is not a 200 (unreachable, refused, a 403) is `unknown`, and changes nothing.
 */
export async function checkStanding(
  controller: string,
  tls: TlsMaterial,
  signal?: AbortSignal,
): Promise<Standing> {
  const dispatcher = new Agent({ connect: clientTlsOptions(tls, { roles: ['controller'] }) });
  try {
    const timeout = AbortSignal.timeout(CHECK_TIMEOUT_MS);
    const res = await request(`https://${controller}${STANDING_PATH}`, {
      dispatcher,
      headers: { [HEADER_PROTOCOL_VERSION]: String(PROTOCOL_VERSION) },
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_ANSWER_BYTES) return 'unknown';
      chunks.push(chunk);
    }
    if (res.statusCode === 200) return 'enrolled';
    if (res.statusCode !== 410) return 'unknown';
    let envelope: unknown;
    try {
      envelope = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return 'unknown'; // SyntaxError: not an envelope, so not the controller's answer
    }
    return Value.Check(ErrorEnvelope, envelope) && envelope.error.code === ErrorCode.DECOMMISSIONED
      ? 'decommissioned'
      : 'unknown';
  } catch {
    return 'unknown'; // unreachable, TLS refused, timed out or aborted: nothing learned
  } finally {
    await dispatcher.destroy().catch(() => undefined /* already closed */);
  }
}

/**
 * Checks the host's standing now and then every `intervalMs` (±20 % jitter) until the signal
 * aborts; resolves `decommissioned` the first time a controller says so, `stopped` when the
 * signal ended it. Unknown answers are logged at debug and waited out. With several
 * controllers (the bundle's `controllers`) it asks one at a time and, after an unknown answer,
 * the next one at the following check.
 */
export async function watchStanding(o: {
  controllers: readonly string[];
  tls: () => TlsMaterial;
  intervalMs: number;
  log: Logger;
  signal: AbortSignal;
  random?: () => number;
}): Promise<'decommissioned' | 'stopped'> {
  const random = o.random ?? Math.random;
  let at = 0;
  while (!o.signal.aborted) {
    const controller = o.controllers[at % o.controllers.length] ?? '';
    const standing = await checkStanding(controller, o.tls(), o.signal);
    if (standing === 'decommissioned') return 'decommissioned';
    if (standing === 'unknown') at = (at + 1) % Math.max(1, o.controllers.length);
    o.log.debug({ standing, controller }, 'standing checked');
    try {
      await sleep(Math.round(o.intervalMs * (0.8 + 0.4 * random())), undefined, { signal: o.signal });
    } catch {
      return 'stopped'; // AbortError: shutting down
    }
  }
  return 'stopped';
}
