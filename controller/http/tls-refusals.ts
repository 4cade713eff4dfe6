import type { X509Certificate } from 'node:crypto';
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { fingerprintDer, rememberPeerCertificate } from '../../pki/index.js';
import type { Pin, PinRegistry } from '../pins/pin-registry.js';
import type { ControllerMetrics, TlsRefusalReason } from './metrics.js';

/** A connection the server's TLS refused, with the certificate the client presented. */
export interface TlsRefusal {
  readonly reason: TlsRefusalReason;
  /** Undefined when the client presented none or the handshake did not get that far. */
  readonly certificate: X509Certificate | undefined;
  readonly remoteAddress: string | undefined;
}

/**
 * OpenSSL verification codes to a refusal reason. Node sets `authorizationError` to the code
 * as a string (its type says Error); both are read.
 */
function reasonOf(authorizationError: unknown): TlsRefusalReason {
  const code =
    typeof authorizationError === 'string'
      ? authorizationError
      : authorizationError instanceof Error
        ? ((authorizationError as NodeJS.ErrnoException).code ?? authorizationError.message)
        : undefined;
  if (code === undefined) return 'handshake';
  if (code === 'CERT_HAS_EXPIRED') return 'expired';
  if (code === 'CERT_NOT_YET_VALID') return 'not-yet-valid';
  return 'untrusted';
}

/**
 * Reports every connection that `server` refuses during or right after its handshake, with the
 * client certificate that was refused. Verification is untouched: the server keeps
 * `requestCert` and `rejectUnauthorized: true`, and Node alone decides and destroys the socket.
 *
 * Why it is built this way (Node 20): Node verifies a client certificate after the handshake
 * (in its own `secure` listener) and destroys the socket without an error, so the client sees
 * only "other side closed"; `tlsClientError` then fires with `authorizationError` set (e.g.
 * `CERT_HAS_EXPIRED`) but the socket's handle is gone and `getPeerCertificate()` is null.
 * The certificate has to be read on `secure`, ahead of Node's check, and the only server event
 * that hands over the TLSSocket before its handshake completes is `keylog`. Its line (key
 * material) is dropped unread, and the socket's key log forwarding is switched off after the
 * first line, so no key material reaches anything else.
 *
 * Returns the function that stops watching.
 */
export function watchTlsRefusals(server: TlsServer, onRefused: (refusal: TlsRefusal) => void): () => void {
  const presented = new WeakMap<TLSSocket, X509Certificate>();
  const onKeylog = (_line: Buffer, socket: TLSSocket): void => {
    // Node adds its forwarding listener to every socket while the server has `keylog`
    // listeners; after this first line the socket forwards nothing more.
    socket.removeAllListeners('keylog');
    socket.prependOnceListener('secure', () => {
      const certificate = socket.getPeerX509Certificate();
      if (!certificate) return;
      presented.set(socket, certificate);
      // Read once per connection: the identity of an authorized socket is taken from it.
      rememberPeerCertificate(socket, certificate);
    });
  };
  const onClientError = (_err: Error, socket: TLSSocket): void => {
    onRefused({
      reason: reasonOf(socket.authorizationError),
      certificate: presented.get(socket),
      remoteAddress: socket.remoteAddress,
    });
  };
  server.on('keylog', onKeylog);
  server.on('tlsClientError', onClientError);
  return () => {
    server.off('keylog', onKeylog);
    server.off('tlsClientError', onClientError);
  };
}

/**
 * The worker listener's refusals into metrics: every TLS refusal by reason, and an expired
 * certificate under the host it is pinned to (logged too; an agent retries at most about once
 * a minute). A certificate nobody pinned is counted by reason only, so strangers add no series.
 * Returns the reporter for expired pins met later, on a request (the auth hook's `onExpired`).
 */
export function trackWorkerRefusals(o: {
  server: TlsServer;
  pins: PinRegistry;
  metrics: ControllerMetrics;
  log: Logger;
}): (pin: Pin) => void {
  const expired = (pin: Pin): void => {
    o.metrics.certificateExpired(pin.hostName);
    o.log.warn(
      {
        hostId: pin.hostId,
        hostName: pin.hostName,
        fingerprint: pin.fingerprint,
        notAfter: new Date(pin.notAfterMs).toISOString(),
      },
      'refused an expired worker certificate; the host must be enrolled again',
    );
  };
  watchTlsRefusals(o.server, (refusal) => {
    o.metrics.workerTlsRefused(refusal.reason);
    if (refusal.reason !== 'expired' || !refusal.certificate) return;
    const pin = o.pins.lookupExpired(fingerprintDer(new Uint8Array(refusal.certificate.raw)));
    if (pin) expired(pin);
  });
  return expired;
}
