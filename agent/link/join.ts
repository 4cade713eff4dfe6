import { BUNDLE_DIR } from '../agent-identity.js';
import { createPublicKey, X509Certificate } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import type { PeerCertificate } from 'node:tls';
import { Agent, request } from 'undici';
import {
  BUNDLE_MANIFEST_FILE,
  caFromChain,
  createCsr,
  fetchPresentedChain,
  fingerprintPem,
  identityFromDer,
  identityFromPem,
  loadBundle,
  normalizeFingerprint,
  PkiError,
  PkiErrorCode,
  writeBundle,
  controllerAddresses,
  type BundleManifest,
} from '../../pki/index.js';
import { parseHostPort } from '../../kit/host-port.js';
import { JoinResponse, type JoinRequest } from '../../protocol/enrollment.js';
import { CorralError, envelopeOf, RemoteError } from '../../protocol/errors.js';
import { parseJsonWith } from '../../protocol/validate.js';
import { createControllerClient } from './controller-client.js';

/** Where `agent join` writes the worker's bundle, under the agent state dir. */
export const JOIN_TIMEOUT_MS = 30_000;
/** How long the controller gets to acknowledge a written bundle before the join gives up asking, in ms. */
const CONFIRM_TIMEOUT_MS = 10_000;
const MAX_JOIN_RESPONSE_BYTES = 256 * 1024;

export const JoinErrorCode = {
  ALREADY_ENROLLED: 'CORRAL_ERR_ALREADY_ENROLLED',
  BAD_PIN: 'CORRAL_ERR_BAD_PIN',
  REFUSED: 'CORRAL_ERR_JOIN_REFUSED',
  BAD_RESPONSE: 'CORRAL_ERR_JOIN_BAD_RESPONSE',
} as const;

export type JoinErrorCode = (typeof JoinErrorCode)[keyof typeof JoinErrorCode];

/** A join that did not complete on this side; a refusal by the controller is a RemoteError with its code. */
export class JoinError extends CorralError<JoinErrorCode> {
  override readonly name: string = 'JoinError';
}

export interface JoinOptions {
  /** The controller's join listener, HOST:PORT (as `controller token create` prints it). */
  readonly controller: string;
  readonly token: string;
  /** `sha256:HEX` of the controller's CA. */
  readonly caPin: string;
  /** Agent state dir; the bundle goes to `<stateDir>/bundle`. */
  readonly stateDir: string;
  /** Address the controller reaches this worker at (default: our address toward the controller). */
  readonly address?: string;
  readonly agentPort?: number;
  readonly updaterPort?: number;
  readonly sans?: readonly string[];
  /** Labels for the host, besides those of the token (the controller refuses a clash). */
  readonly labels?: Readonly<Record<string, string>>;
  readonly timeoutMs?: number;
}

export interface JoinResult {
  readonly bundleDir: string;
  readonly manifest: BundleManifest;
  /**
   * Whether the controller recorded that the bundle is written. Until it has (or until the
   * agent's first heartbeat), `controller enroll --replace` may take the host's name over.
   */
  readonly confirmed:
    { readonly ok: true; readonly at: string } | { readonly ok: false; readonly reason: string };
}

/** The local address a connection to the controller leaves from: reachable from it, most likely. */
function localAddressToward(host: string, port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host, port, timeout: timeoutMs });
    socket.once('connect', () => {
      const local = (socket.localAddress ?? '').replace(/^::ffff:/, '');
      socket.destroy();
      resolve(local);
    });
    socket.once('timeout', () => {
      socket.destroy();
      reject(new JoinError(JoinErrorCode.REFUSED, `no connection to ${host}:${port} in time`));
    });
    socket.once('error', reject);
  });
}

function sameKey(certPem: string, keyPem: string): boolean {
  const fromCert = new X509Certificate(certPem).publicKey.export({ format: 'der', type: 'spki' });
  const fromKey = createPublicKey(keyPem).export({ format: 'der', type: 'spki' });
  return fromCert.equals(fromKey);
}

/**
 * Joins a fleet with a single-use token; the worker's keys are made here and never leave it.
 * Trust is bootstrapped from the CA pin: the chain the controller presents must contain the
 * pinned CA, which must have signed the server's certificate; the token is then sent only on
 * a fully verified TLS connection to a certificate of the controller role from that CA.
 * The certificates that come back are checked against our keys before the bundle is written.
 */
export async function joinFleet(options: JoinOptions): Promise<JoinResult> {
  const pin = normalizeFingerprint(options.caPin);
  if (!pin) throw new JoinError(JoinErrorCode.BAD_PIN, 'the CA pin must be sha256:<64 hex digits>');
  const bundleDir = join(options.stateDir, BUNDLE_DIR);
  const exists = await access(join(bundleDir, BUNDLE_MANIFEST_FILE)).then(
    () => true,
    () => false,
  );
  if (exists) {
    throw new JoinError(
      JoinErrorCode.ALREADY_ENROLLED,
      `${bundleDir} already holds an enrolled identity; remove it to join again`,
    );
  }
  const timeoutMs = options.timeoutMs ?? JOIN_TIMEOUT_MS;
  const { host, port } = parseHostPort(options.controller);
  const caPem = caFromChain(await fetchPresentedChain(host, port, { timeoutMs }), pin);
  const address = options.address ?? (await localAddressToward(host, port, timeoutMs));
  const [agent, updater] = await Promise.all([createCsr('corral-agent'), createCsr('corral-updater')]);
  const body: JoinRequest = {
    token: options.token,
    address,
    agentCsrPem: agent.csrPem,
    updaterCsrPem: updater.csrPem,
    ...(options.agentPort !== undefined ? { agentPort: options.agentPort } : {}),
    ...(options.updaterPort !== undefined ? { updaterPort: options.updaterPort } : {}),
    ...(options.sans && options.sans.length > 0 ? { sans: [...options.sans] } : {}),
    ...(options.labels && Object.keys(options.labels).length > 0 ? { labels: { ...options.labels } } : {}),
  };

  // Verified TLS to our pinned CA only. The role (in a CA-signed SAN URI) is what proves the
  // controller; the host name is not checked, since workers may dial any of its addresses.
  const dispatcher = new Agent({
    connect: {
      ca: caPem,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
      checkServerIdentity: (_host: string, cert: PeerCertificate) =>
        identityFromDer(cert.raw).role === 'controller'
          ? undefined
          : new PkiError(PkiErrorCode.PEER_ROLE, 'the join server is not the controller'),
    },
  });
  let text: string;
  let status: number;
  try {
    const url = `https://${host.includes(':') ? `[${host}]` : host}:${port}/v1/join`;
    const res = await request(url, {
      method: 'POST',
      dispatcher,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    status = res.statusCode;
    text = await res.body.text();
  } finally {
    await dispatcher.close();
  }
  if (text.length > MAX_JOIN_RESPONSE_BYTES) {
    throw new JoinError(JoinErrorCode.BAD_RESPONSE, 'join response is too large');
  }
  if (status !== 200) {
    const envelope = envelopeOf(text);
    if (envelope) throw new RemoteError(envelope.error.code, envelope.error.message, status);
    throw new JoinError(JoinErrorCode.REFUSED, `the controller answered ${status}`);
  }
  const answer = parseJsonWith(JoinResponse, text, 'join response', MAX_JOIN_RESPONSE_BYTES);
  if (fingerprintPem(answer.caPem) !== pin || answer.manifest.caFingerprint !== pin) {
    throw new JoinError(JoinErrorCode.BAD_RESPONSE, 'the join response names another CA');
  }
  for (const [role, certPem, keyPem] of [
    ['agent', answer.agentCertPem, agent.keyPem],
    ['updater', answer.updaterCertPem, updater.keyPem],
  ] as const) {
    const id = identityFromPem(certPem);
    if (id.role !== role || id.hostId !== answer.manifest.hostId || !sameKey(certPem, keyPem)) {
      throw new JoinError(
        JoinErrorCode.BAD_RESPONSE,
        `the ${role} certificate returned does not match this worker`,
      );
    }
  }
  await writeBundle(bundleDir, {
    caPem: answer.caPem,
    manifest: answer.manifest,
    identities: {
      agent: { certPem: answer.agentCertPem, keyPem: agent.keyPem },
      updater: { certPem: answer.updaterCertPem, keyPem: updater.keyPem },
    },
  });
  const loaded = await loadBundle(bundleDir);
  return {
    bundleDir,
    manifest: loaded.manifest,
    confirmed: await confirmWritten(loaded, Math.min(timeoutMs, CONFIRM_TIMEOUT_MS)),
  };
}

/**
 * Tells the controller the bundle is on disk, over its worker API with the agent identity just
 * loaded back from disk. Best effort: a join whose confirmation is lost still succeeded.
 */
async function confirmWritten(
  bundle: Awaited<ReturnType<typeof loadBundle>>,
  timeoutMs: number,
): Promise<JoinResult['confirmed']> {
  const agent = bundle.identities.agent;
  if (!agent) return { ok: false, reason: 'the bundle holds no agent identity' };
  const client = createControllerClient(controllerAddresses(bundle.manifest), {
    caPem: bundle.caPem,
    certPem: agent.certPem,
    keyPem: agent.keyPem,
  });
  try {
    const res = await client.bundleWritten(
      { hostId: bundle.manifest.hostId },
      AbortSignal.timeout(timeoutMs),
    );
    return { ok: true, at: res.bundleWrittenAt };
  } catch (e: unknown) {
    return { ok: false, reason: e instanceof Error ? e.message : String(e) };
  } finally {
    await client.close();
  }
}
