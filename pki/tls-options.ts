import { checkServerIdentity, type PeerCertificate, type SecureContextOptions } from 'node:tls';
import { PkiError, PkiErrorCode } from './errors.js';
import { identityFromDer } from './identity.js';
import type { Role } from './roles.js';

export const MIN_TLS_VERSION = 'TLSv1.2';

export interface TlsMaterial {
  readonly caPem: string;
  readonly certPem: string;
  readonly keyPem: string;
}

export interface ServerTlsOptions extends SecureContextOptions {
  readonly requestCert: true;
  readonly rejectUnauthorized: true;
  readonly minVersion: 'TLSv1.2';
}

/**
 * Options for a mutual-TLS server: a client certificate is required and must chain to our CA
 * (and only our CA). Role and pin checks happen per request with `requirePeer`.
 */
export function serverTlsOptions(material: TlsMaterial): ServerTlsOptions {
  return {
    ca: material.caPem,
    cert: material.certPem,
    key: material.keyPem,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: MIN_TLS_VERSION,
  };
}

export interface ServerPin {
  /** Roles the server's certificate may carry. */
  readonly roles: readonly Role[];
  /** Accepted fingerprints; when absent the hostname is checked instead. */
  readonly fingerprints?: readonly string[];
}

export interface ClientTlsOptions extends SecureContextOptions {
  readonly rejectUnauthorized: true;
  readonly minVersion: 'TLSv1.2';
  checkServerIdentity(host: string, cert: PeerCertificate): Error | undefined;
}

/**
 * Options for a client of a Corral server: trusts only our CA, presents our certificate,
 * and checks the server's role (and pinned fingerprint, when given) during the handshake,
 * so a mismatch fails the very connection that would carry the request.
 * With a pin, the pin replaces the hostname check: it is the stronger statement.
 */
export function clientTlsOptions(material: TlsMaterial, pin: ServerPin): ClientTlsOptions {
  return {
    ca: material.caPem,
    cert: material.certPem,
    key: material.keyPem,
    rejectUnauthorized: true,
    minVersion: MIN_TLS_VERSION,
    checkServerIdentity(host: string, cert: PeerCertificate): Error | undefined {
      const identity = identityFromDer(cert.raw);
      if (identity.role === undefined || !pin.roles.includes(identity.role)) {
        return new PkiError(PkiErrorCode.PEER_ROLE, `server role ${identity.role ?? 'none'} is not accepted`);
      }
      if (pin.fingerprints) {
        return pin.fingerprints.includes(identity.fingerprint)
          ? undefined
          : new PkiError(PkiErrorCode.PIN_MISMATCH, 'server certificate is not the pinned one');
      }
      return checkServerIdentity(host, cert);
    },
  };
}
