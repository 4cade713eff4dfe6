import { request } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { clientTlsOptions } from '../../pki/index.js';
import { HEADER_PROTOCOL_VERSION, PROTOCOL_VERSION } from '../../protocol/constants.js';
import { parseHostPort } from '../../kit/host-port.js';
import { WIPE_REPORT_PATH, type WipeReport } from '../../protocol/wipe.js';
import type { ReaperReportTarget } from './self-destruct-plan.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';

const ATTEMPTS = 4;
const ATTEMPT_TIMEOUT_MS = 10_000;
const FIRST_RETRY_MS = 1_000;

/**
 * One POST with node's own https (no module is loaded lazily, so it works after the reaper has
 * deleted the install dir it runs from) to `controller`. Resolves with the status code.
 */
function post(target: ReaperReportTarget, controller: string, body: string): Promise<number> {
  const { host, port } = parseHostPort(controller);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        ...clientTlsOptions(
          { caPem: target.caPem, certPem: target.certPem, keyPem: target.keyPem },
          { roles: ['controller'] },
        ),
        host,
        port,
        method: 'POST',
        path: WIPE_REPORT_PATH,
        agent: false,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          [HEADER_PROTOCOL_VERSION]: String(PROTOCOL_VERSION),
        },
        timeout: ATTEMPT_TIMEOUT_MS,
      },
      (res) => {
        res.resume();
        res.once('end', () => resolve(res.statusCode ?? 0));
        res.once('error', reject);
      },
    );
    req.once('timeout', () => req.destroy(new CorralError(ErrorCode.UNAVAILABLE, 'wipe report timed out')));
    req.once('error', reject);
    req.end(body);
  });
}

/** The addresses to try, in order: `controller`, then the others of `controllers`, each once. */
export function reportAddresses(target: Pick<ReaperReportTarget, 'controller' | 'controllers'>): string[] {
  return [...new Set([target.controller, ...(target.controllers ?? [])])];
}

/**
 * Sends the reaper's wipe report to the controller over mutual TLS with the (decommissioned)
 * agent identity, trusting only the bundle's CA and the `controller` role, like the agent.
 * Each attempt goes along the controllers like the heartbeat: one whose connection fails
 * (refused, unreachable, TLS refused, timed out) is followed by the next at once; an HTTP answer
 * is from a live controller and ends the attempt. A few attempts with doubling waits; returns
 * what the last one ended with and never throws (there is nobody left to tell).
 */
export async function sendWipeReport(target: ReaperReportTarget, report: WipeReport): Promise<string> {
  const body = JSON.stringify(report);
  const addresses = reportAddresses(target);
  let outcome = 'not sent';
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    if (attempt > 0) await sleep(FIRST_RETRY_MS * 2 ** (attempt - 1));
    for (const controller of addresses) {
      try {
        const status = await post(target, controller, body);
        outcome = `controller ${controller} answered ${status}`;
        // 4xx other than 429: asking again changes nothing.
        if (status < 500 && status !== 429) return outcome;
        break;
      } catch (e: unknown) {
        outcome = `${controller}: ${e instanceof Error ? e.message : String(e)}`;
      }
    }
  }
  return outcome;
}
