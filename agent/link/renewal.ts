import type { Logger } from 'pino';
import { BUNDLE_ROLES, createCsr } from '../../pki/index.js';
import type { AgentIdentity } from '../agent-identity.js';
import type { ControllerClient } from './controller-client.js';

/** Renew when a certificate has less than this left, in ms (leaves are issued for 90 days). */
export const DEFAULT_RENEW_BEFORE_MS = 30 * 86_400_000;

export interface RenewalOptions {
  readonly identity: AgentIdentity;
  readonly client: () => ControllerClient;
  readonly renewBeforeMs: number;
  readonly now: () => number;
  readonly log: Logger;
}

/**
 * Renews the worker's certificates through the controller when they near expiry: the agent's,
 * and the updater's (serverAuth-only, so it cannot call the controller itself). Each gets a
 * fresh key made here (it never leaves the worker) and a CSR sent over the agent's current
 * mTLS identity; the answer is checked against our CA, role and host id, then installed
 * crash-safely in the bundle. Resolves with the roles renewed. Safe to call again after a
 * failure at any point (a lost answer included): the controller keeps the held certificate
 * pinned and answers the next request with a new successor.
 */
export async function renewIfDue(o: RenewalOptions, signal?: AbortSignal): Promise<string[]> {
  const renewed: string[] = [];
  for (const role of BUNDLE_ROLES) {
    const notAfter = o.identity.notAfter(role);
    if (!notAfter || notAfter.getTime() - o.now() > o.renewBeforeMs) continue;
    o.log.info({ role, notAfter: notAfter.toISOString() }, 'renewing certificate');
    const { csrPem, keyPem } = await createCsr(o.identity.manifest.hostName);
    // Naming the certificate held keeps it pinned if this answer is lost and we ask again.
    const replaces = o.identity.fingerprint(role);
    const res = await o.client().renew({ role, csrPem, ...(replaces ? { replaces } : {}) }, signal);
    await o.identity.replace(role, res.certPem, keyPem);
    o.log.info({ role, fingerprint: res.fingerprint, notAfter: res.notAfter }, 'certificate renewed');
    renewed.push(role);
  }
  return renewed;
}
