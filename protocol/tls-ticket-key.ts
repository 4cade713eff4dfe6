import { Type, type Static } from '@sinclair/typebox';

/**
 * `run/tls-ticket-key.json` in the controller's state dir (0600): the key the worker listener
 * encrypts its TLS session tickets with, kept so that a restarted controller resumes the
 * sessions its workers hold instead of paying a full handshake per worker
 * (docs/fleet-scale.md, "Session tickets across a restart"). Never part of a backup.
 */
export const TLS_TICKET_KEY_FILE = 'tls-ticket-key.json';
export const MAX_TLS_TICKET_KEY_FILE_BYTES = 4 * 1024;

export const TlsTicketKeyFile = Type.Object(
  {
    version: Type.Literal(1),
    /** When the key was made (ISO 8601); a key older than its lifetime is never used again. */
    createdAt: Type.String({ format: 'date-time', maxLength: 40 }),
    /** The CA the key was made under: a state dir with another CA starts with a new key. */
    caFingerprint: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    /** 48 random bytes, base64 (Node's ticket key: name, HMAC secret, AES key). */
    key: Type.String({ pattern: '^[A-Za-z0-9+/]{64}$' }),
  },
  { additionalProperties: false },
);
export type TlsTicketKeyFile = Static<typeof TlsTicketKeyFile>;
