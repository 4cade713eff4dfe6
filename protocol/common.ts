import { Type, type Static } from '@sinclair/typebox';

export const Fingerprint = Type.String({
  pattern: '^[0-9a-f]{64}$',
  description: 'SHA-256 of DER, lowercase hex',
});
export const HostId = Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' });
/** Host and service names: DNS-label-like. */
export const NAME_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
export const Name = Type.String({ pattern: NAME_RE.source, minLength: 1, maxLength: 63 });
/**
 * A service instance as an agent runs and reports it: a service's name, or `name#k` for
 * instance k of a deployment service with a `count` (k from 1 to 999).
 */
export const SERVICE_INSTANCE_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:#[1-9][0-9]{0,2})?$/;
export const InstanceName = Type.String({ pattern: SERVICE_INSTANCE_RE.source, minLength: 1, maxLength: 63 });
/** Names that belong to Corral's own roles and can never be a host. */
export const RESERVED_NAMES: readonly string[] = [
  'controller',
  'controller-client',
  'agent',
  'updater',
  'operator',
  'forwarder',
  'corral',
  'localhost',
];
export const Address = Type.String({ minLength: 1, maxLength: 253, pattern: '^[A-Za-z0-9.:_\\-\\[\\]%]+$' });
export const Port = Type.Integer({ minimum: 0, maximum: 65535 });
export const Timestamp = Type.String({ format: 'date-time', maxLength: 40 });
export const LABEL_KEY_RE = /^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$/;
export const Labels = Type.Record(
  Type.String({ pattern: LABEL_KEY_RE.source, maxLength: 63 }),
  Type.String({ maxLength: 253 }),
  { maxProperties: 64 },
);
export type Labels = Static<typeof Labels>;
export const Pem = Type.String({ minLength: 1, maxLength: 16_384 });
/** Short human text that crosses the wire (errors, reasons). */
export const Reason = Type.String({ maxLength: 2048 });
