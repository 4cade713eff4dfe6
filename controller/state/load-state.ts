import { readFile } from 'node:fs/promises';
import {
  assertPrivateFile,
  fingerprintPem,
  identityFromPem,
  isPkiError,
  loadCa,
  PkiErrorCode,
  type CertificateAuthority,
  type TlsMaterial,
} from '../../pki/index.js';
import { ControllerError, ControllerErrorCode } from '../errors.js';
import { statePaths, type StatePaths } from './state-paths.js';

/** The controller's identity material, as `serve` needs it. */
export interface ControllerIdentity {
  readonly paths: StatePaths;
  readonly ca: CertificateAuthority;
  /** Server side of the worker and join listeners; `certPem` is the leaf followed by the CA. */
  readonly server: TlsMaterial;
  /** Presented on calls to agents and updaters; workers pin its fingerprint. */
  readonly client: TlsMaterial & { readonly fingerprint: string };
}

const notInitialized = (root: string, what: string): ControllerError =>
  new ControllerError(
    ControllerErrorCode.STATE_MISSING,
    `${root} has no ${what}; run: corral controller init --state-dir ${root}`,
  );

async function readRequired(path: string, root: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw notInitialized(root, what);
    throw e;
  }
}

/**
 * Loads the CA and the controller's certificates from a state dir made by
 * `initControllerState`. Throws CORRAL_ERR_STATE_MISSING (naming the fix) when it was never
 * initialized, CORRAL_ERR_KEY_PERMISSIONS when a key is readable by others, and
 * CORRAL_ERR_STATE_INVALID when a certificate has the wrong role.
 */
export async function loadControllerIdentity(stateDir: string): Promise<ControllerIdentity> {
  const paths = statePaths(stateDir);
  let ca: CertificateAuthority;
  try {
    ca = await loadCa(paths.caDir);
  } catch (e: unknown) {
    if (isPkiError(e, PkiErrorCode.CA_INCOMPLETE)) throw notInitialized(stateDir, 'CA');
    throw e;
  }
  const [serverCert, serverKey, clientCert, clientKey] = await Promise.all([
    readRequired(paths.serverCert, stateDir, 'server certificate'),
    readRequired(paths.serverKey, stateDir, 'server key'),
    readRequired(paths.clientCert, stateDir, 'client certificate'),
    readRequired(paths.clientKey, stateDir, 'client key'),
  ]);
  await assertPrivateFile(paths.serverKey);
  await assertPrivateFile(paths.clientKey);
  for (const [pem, role] of [
    [serverCert, 'controller'],
    [clientCert, 'controller-client'],
  ] as const) {
    if (identityFromPem(pem).role !== role) {
      throw new ControllerError(
        ControllerErrorCode.STATE_INVALID,
        `the ${role} certificate carries another role`,
      );
    }
  }
  return {
    paths,
    ca,
    server: { caPem: ca.certPem, certPem: serverCert + ca.certPem, keyPem: serverKey },
    client: {
      caPem: ca.certPem,
      certPem: clientCert,
      keyPem: clientKey,
      fingerprint: fingerprintPem(clientCert),
    },
  };
}
