import { X509Certificate as NodeX509 } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { PkiError, PkiErrorCode } from './errors.js';
import { fingerprintDer } from './fingerprint.js';
import { HOST_URI_PREFIX, ROLE_URI_PREFIX, isRole, type Role } from './roles.js';

/** Who is on the other end, as read from a certificate our CA signed. */
export interface PeerIdentity {
  /** Undefined when the certificate carries no (or an unknown) Corral role. */
  readonly role: Role | undefined;
  readonly hostId: string | undefined;
  readonly fingerprint: string;
  readonly notAfter: Date;
  readonly subject: string;
}

function uriSans(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  return subjectAltName
    .split(/,\s*/)
    .filter((entry) => entry.startsWith('URI:'))
    .map((entry) => entry.slice(4));
}

/** Reads role, host id, fingerprint and expiry from a DER certificate. */
export function identityFromDer(der: Uint8Array): PeerIdentity {
  return identityFromCertificate(new NodeX509(der));
}

/** The same from a parsed certificate (parsing one costs about 0.2 ms: done once per connection). */
export function identityFromCertificate(cert: NodeX509): PeerIdentity {
  const der = cert.raw;
  const roles: string[] = [];
  const hostIds: string[] = [];
  for (const uri of uriSans(cert.subjectAltName)) {
    if (uri.startsWith(ROLE_URI_PREFIX)) roles.push(uri.slice(ROLE_URI_PREFIX.length));
    else if (uri.startsWith(HOST_URI_PREFIX)) hostIds.push(uri.slice(HOST_URI_PREFIX.length));
  }
  // More than one role or host URI makes the certificate ambiguous: it gets neither.
  const only = roles.length === 1 ? roles[0] : undefined;
  const role: Role | undefined = only !== undefined && isRole(only) ? only : undefined;
  const hostId = hostIds.length === 1 ? hostIds[0] : undefined;
  return {
    role,
    hostId,
    fingerprint: fingerprintDer(der),
    notAfter: new Date(cert.validTo),
    subject: cert.subject,
  };
}

export function identityFromPem(pem: string): PeerIdentity {
  return identityFromDer(new NodeX509(pem).raw);
}

const socketIdentities = new WeakMap<TLSSocket, PeerIdentity>();
const presentedCertificates = new WeakMap<TLSSocket, NodeX509>();

/**
 * Keeps the certificate a TLS peer presented, read from `socket` itself before Node's
 * verification (a refusal watcher needs it then), so `peerIdentity` does not parse it again.
 * It counts only once the handshake has authorized the socket.
 */
export function rememberPeerCertificate(socket: TLSSocket, certificate: NodeX509): void {
  presentedCertificates.set(socket, certificate);
}

/**
 * The verified peer's identity on a TLS socket, or undefined when the peer presented no
 * certificate or the handshake did not authorize it. Cached per socket, so a keep-alive
 * connection pays for the parse once.
 */
export function peerIdentity(socket: TLSSocket): PeerIdentity | undefined {
  const cached = socketIdentities.get(socket);
  if (cached) return cached;
  if (!socket.authorized) return undefined;
  const cert = presentedCertificates.get(socket) ?? socket.getPeerX509Certificate();
  if (!cert) return undefined;
  const identity = identityFromCertificate(cert);
  socketIdentities.set(socket, identity);
  return identity;
}

export interface PeerRequirement {
  /** Roles accepted; any other role (or none) fails with CORRAL_ERR_PEER_ROLE. */
  readonly roles: readonly Role[];
  /** When given, the peer's fingerprint must be one of these (CORRAL_ERR_PIN_MISMATCH). */
  readonly fingerprints?: readonly string[];
}

/** Checks an identity against a requirement; returns it, or throws a coded PkiError. */
export function requirePeer(identity: PeerIdentity | undefined, need: PeerRequirement): PeerIdentity {
  if (!identity) throw new PkiError(PkiErrorCode.PEER_NO_CERT, 'peer presented no verified certificate');
  if (identity.role === undefined || !need.roles.includes(identity.role)) {
    throw new PkiError(PkiErrorCode.PEER_ROLE, `peer role ${identity.role ?? 'none'} is not accepted here`);
  }
  if (need.fingerprints && !need.fingerprints.includes(identity.fingerprint)) {
    throw new PkiError(PkiErrorCode.PIN_MISMATCH, 'peer certificate is not the pinned one');
  }
  return identity;
}
