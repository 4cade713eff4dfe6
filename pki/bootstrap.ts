import { X509Certificate as NodeX509 } from 'node:crypto';
import { connect, type PeerCertificate, type TLSSocket } from 'node:tls';
import { PkiError, PkiErrorCode } from './errors.js';
import { fingerprintDer } from './fingerprint.js';
import { pemText } from './keys.js';

/** How long the chain fetch may take, in ms. */
export const CHAIN_FETCH_TIMEOUT_MS = 10_000;
/** Longest chain we look at. */
const MAX_CHAIN_LENGTH = 8;

/**
 * Joining a fleet: the worker knows only the controller's address and a pin of its CA. This
 * reads the certificate chain the controller presents during a TLS handshake, without trusting
 * it and without sending a byte of application data: verification stays on (with no trusted
 * CA the handshake is refused), and the chain is captured as the handshake completes. The
 * caller must then find the pinned CA in it (`caFromChain`) and make a fully verified
 * connection with that CA before anything secret is sent.
 */
export function fetchPresentedChain(
  host: string,
  port: number,
  options: { servername?: string; timeoutMs?: number } = {},
): Promise<Uint8Array[]> {
  return new Promise((resolve, reject) => {
    let chain: Uint8Array[] | undefined;
    const socket: TLSSocket = connect({
      host,
      port,
      servername: options.servername ?? (/^[\d.]+$|:/.test(host) ? undefined : host),
      ca: [],
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new PkiError(PkiErrorCode.BAD_PARAMETER, `no TLS handshake with ${host}:${port} in time`));
    }, options.timeoutMs ?? CHAIN_FETCH_TIMEOUT_MS);
    // 'secure' fires when the handshake completes, just before Node applies
    // rejectUnauthorized and refuses the connection (there is no trusted CA).
    socket.prependListener('secure', () => {
      chain = chainOf(socket.getPeerCertificate(true));
    });
    socket.once('secureConnect', () => socket.destroy());
    const finish = (err?: Error): void => {
      clearTimeout(timer);
      if (chain && chain.length > 0) resolve(chain);
      else
        reject(err ?? new PkiError(PkiErrorCode.BAD_PARAMETER, `no certificate chain from ${host}:${port}`));
    };
    socket.once('error', finish);
    socket.once('close', () => finish());
  });
}

function chainOf(leaf: PeerCertificate | undefined): Uint8Array[] {
  const out: Uint8Array[] = [];
  let cert: PeerCertificate | undefined = leaf;
  while (cert?.raw && out.length < MAX_CHAIN_LENGTH) {
    out.push(new Uint8Array(cert.raw));
    const next = (cert as PeerCertificate & { issuerCertificate?: PeerCertificate }).issuerCertificate;
    if (!next || next === cert || next.raw.equals(cert.raw)) break;
    cert = next;
  }
  return out;
}

/**
 * Finds the CA whose SHA-256 equals `pin` in a presented chain and checks that it really
 * signed the leaf. Returns its PEM; throws CORRAL_ERR_PIN_MISMATCH otherwise.
 */
export function caFromChain(chain: readonly Uint8Array[], pin: string): string {
  const der = chain.find((c) => fingerprintDer(c) === pin);
  const leaf = chain[0];
  if (!der || !leaf) {
    throw new PkiError(PkiErrorCode.PIN_MISMATCH, 'the server did not present a CA matching the pin');
  }
  const ca = new NodeX509(der);
  if (!ca.ca) throw new PkiError(PkiErrorCode.PIN_MISMATCH, 'the pinned certificate is not a CA');
  if (!new NodeX509(leaf).verify(ca.publicKey)) {
    throw new PkiError(PkiErrorCode.PIN_MISMATCH, "the server's certificate is not signed by the pinned CA");
  }
  return pemText(ca.toString());
}
