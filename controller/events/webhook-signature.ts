import { createHmac } from 'node:crypto';
import { WEBHOOK_SIGNATURE_VERSION } from '../../protocol/admin-notify.js';

/**
 * The `Corral-Signature` value of a delivery: `v1=` and the lowercase hex HMAC-SHA256 of
 * `TIMESTAMP.BODY` keyed with the webhook's secret (UTF-8). Receivers compute the same and
 * compare in constant time (README, "Webhooks").
 */
export function signDelivery(secret: string, timestampSeconds: number, body: string): string {
  const mac = createHmac('sha256', secret).update(`${timestampSeconds}.`).update(body).digest('hex');
  return `${WEBHOOK_SIGNATURE_VERSION}=${mac}`;
}
