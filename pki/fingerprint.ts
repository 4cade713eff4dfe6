import { createHash, X509Certificate as NodeX509 } from 'node:crypto';

/** SHA-256 of the certificate's DER, lowercase hex: the form every pin in Corral takes. */
export function fingerprintDer(der: Uint8Array): string {
  return createHash('sha256').update(der).digest('hex');
}

export function fingerprintPem(pem: string): string {
  return fingerprintDer(new NodeX509(pem).raw);
}

const PIN_RE = /^[0-9a-f]{64}$/;

/** Accepts `sha256:HEX`, bare hex, or OpenSSL's colon form; returns lowercase hex or undefined. */
export function normalizeFingerprint(input: string): string | undefined {
  const hex = input
    .trim()
    .replace(/^sha256:/i, '')
    .replace(/:/g, '')
    .toLowerCase();
  return PIN_RE.test(hex) ? hex : undefined;
}
