import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BUNDLE_ROLES,
  identityFromPem,
  loadBundle,
  PkiError,
  PkiErrorCode,
  PRIVATE_FILE_MODE,
  syncDir,
  writeFileAtomic,
  type BundleManifest,
  type BundleRole,
  type TlsMaterial,
} from '../pki/index.js';

/** The enrolled identity's directory under the agent's state dir. */
export const BUNDLE_DIR = 'bundle';

const NEXT = '.next';

/**
 * The worker's enrolled identities (the bundle), which renewal replaces while the agent runs:
 * the agent's own, and the updater's (whose certificate is serverAuth-only, so the agent
 * renews it on its behalf). Listeners hear about every agent replacement so TLS contexts are
 * rebuilt for new connections; the updater picks its new files up from the bundle.
 */
export interface AgentIdentity {
  readonly bundleDir: string;
  readonly manifest: BundleManifest;
  material(): TlsMaterial;
  /** Fingerprint of the agent's certificate, or of another role's present in the bundle. */
  fingerprint(role?: BundleRole): string | undefined;
  /** Expiry per role present in the bundle. */
  notAfter(role?: BundleRole): Date | undefined;
  /** Checks and installs a renewed certificate with its key (crash-safe), then notifies. */
  replace(role: BundleRole, certPem: string, keyPem: string): Promise<void>;
  onChange(listener: (material: TlsMaterial) => void): void;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/**
 * Finishes or discards renewals a crash interrupted. A renewal writes `<role>.key.next`, then
 * `<role>.crt.next`, then renames the key, then the certificate; so a `.crt.next` means the
 * pair is complete (finish the renames), and a lone `.key.next` means no certificate came
 * back (discard it).
 */
export async function recoverPendingRenewal(dir: string): Promise<void> {
  for (const role of BUNDLE_ROLES) {
    const key = join(dir, `${role}.key`);
    const cert = join(dir, `${role}.crt`);
    if (await exists(cert + NEXT)) {
      if (await exists(key + NEXT)) await rename(key + NEXT, key);
      await rename(cert + NEXT, cert);
      await syncDir(dir);
    } else if (await exists(key + NEXT)) {
      await unlink(key + NEXT);
    }
  }
}

/** Loads the bundle at `dir`; throws a PkiError when there is no usable agent identity. */
export async function loadAgentIdentity(dir: string): Promise<AgentIdentity> {
  await recoverPendingRenewal(dir);
  const bundle = await loadBundle(dir);
  const agent = bundle.identities.agent;
  if (!agent) {
    throw new PkiError(PkiErrorCode.BUNDLE_INVALID, `the bundle in ${dir} holds no agent identity`);
  }
  let current = { certPem: agent.certPem, keyPem: agent.keyPem, fingerprint: agent.fingerprint };
  const expiry = new Map<BundleRole, Date>();
  const fingerprints = new Map<BundleRole, string>();
  for (const role of BUNDLE_ROLES) {
    const loaded = bundle.identities[role];
    if (loaded) {
      expiry.set(role, loaded.notAfter);
      fingerprints.set(role, loaded.fingerprint);
    }
  }
  const listeners: ((m: TlsMaterial) => void)[] = [];
  const ca = new X509Certificate(bundle.caPem);

  const identity: AgentIdentity = {
    bundleDir: dir,
    manifest: bundle.manifest,
    material: () => ({ caPem: bundle.caPem, certPem: current.certPem, keyPem: current.keyPem }),
    fingerprint: (role = 'agent') => (role === 'agent' ? current.fingerprint : fingerprints.get(role)),
    notAfter: (role = 'agent') => expiry.get(role),
    onChange: (listener) => void listeners.push(listener),
    async replace(role, certPem, keyPem) {
      const cert = new X509Certificate(certPem);
      const id = identityFromPem(certPem);
      const keySpki = createPublicKey(createPrivateKey(keyPem)).export({ format: 'pem', type: 'spki' });
      if (
        !cert.verify(ca.publicKey) ||
        id.role !== role ||
        id.hostId !== bundle.manifest.hostId ||
        cert.publicKey.export({ format: 'pem', type: 'spki' }) !== keySpki
      ) {
        throw new PkiError(
          PkiErrorCode.BUNDLE_INVALID,
          `renewed ${role} certificate does not fit this worker`,
        );
      }
      await writeFileAtomic(join(dir, `${role}.key${NEXT}`), keyPem, PRIVATE_FILE_MODE);
      await writeFileAtomic(join(dir, `${role}.crt${NEXT}`), certPem, 0o644);
      await recoverPendingRenewal(dir);
      expiry.set(role, id.notAfter);
      fingerprints.set(role, id.fingerprint);
      if (role !== 'agent') return;
      current = { certPem, keyPem, fingerprint: id.fingerprint };
      for (const listener of listeners) listener(identity.material());
    },
  };
  return identity;
}
