import { createPrivateKey, createPublicKey, X509Certificate as NodeX509 } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { PkiError, PkiErrorCode } from './errors.js';
import { fingerprintPem } from './fingerprint.js';
import { assertPrivateFile, ensurePrivateDir, PRIVATE_FILE_MODE, writeFileAtomic } from './fs-secure.js';
import { identityFromPem } from './identity.js';
import { HOST_ID_RE } from './roles.js';

export const BUNDLE_MANIFEST_FILE = 'manifest.json';
export const BUNDLE_CA_FILE = 'ca.crt';
/** Largest file a bundle may hold, in bytes: certificates and keys are a few KiB. */
export const MAX_BUNDLE_FILE_BYTES = 64 * 1024;

const Fingerprint = Type.String({ pattern: '^[0-9a-f]{64}$' });
const HostPort = Type.String({ minLength: 3, maxLength: 300, pattern: '^[^\\s/]+:[0-9]{1,5}$' });
/** Most controller addresses a bundle lists (`controllers`). */
export const MAX_BUNDLE_CONTROLLERS = 16;

/** The manifest a worker bundle carries. */
export const BundleManifest = Type.Object(
  {
    version: Type.Literal(1),
    hostId: Type.String({ pattern: HOST_ID_RE.source }),
    hostName: Type.String({ minLength: 1, maxLength: 63 }),
    /** Address the worker is reached at, as enrolled. */
    address: Type.String({ minLength: 1, maxLength: 253 }),
    agentPort: Type.Integer({ minimum: 0, maximum: 65535 }),
    updaterPort: Type.Integer({ minimum: 0, maximum: 65535 }),
    /** The controller's worker API, host:port: the controller that wrote the bundle. */
    controller: HostPort,
    /**
     * Every controller's worker API when several share one database, `controller` first: the
     * agent fails over along it. Written only when there is more than one, so a bundle from a
     * single controller stays loadable by agents that predate the field.
     */
    controllers: Type.Optional(
      Type.Array(HostPort, { minItems: 1, maxItems: MAX_BUNDLE_CONTROLLERS, uniqueItems: true }),
    ),
    /** The controller's syslog listener, host:port. */
    syslog: Type.Optional(HostPort),
    /** Only this controller-client certificate may call the worker's daemons. */
    controllerClientFingerprint: Fingerprint,
    caFingerprint: Fingerprint,
  },
  { additionalProperties: false },
);
export type BundleManifest = Static<typeof BundleManifest>;

/** The worker API addresses to dial, in order: `controller`, then the others `controllers` lists. */
export function controllerAddresses(manifest: Pick<BundleManifest, 'controller' | 'controllers'>): string[] {
  return [...new Set([manifest.controller, ...(manifest.controllers ?? [])])];
}

export const BUNDLE_ROLES = ['agent', 'updater'] as const;
export type BundleRole = (typeof BUNDLE_ROLES)[number];

export interface BundleIdentity {
  readonly certPem: string;
  readonly keyPem: string;
}

export interface Bundle {
  readonly caPem: string;
  readonly manifest: BundleManifest;
  readonly identities: Partial<Record<BundleRole, BundleIdentity>>;
}

export interface LoadedIdentity extends BundleIdentity {
  readonly fingerprint: string;
  readonly notAfter: Date;
}

export interface LoadedBundle {
  readonly dir: string;
  readonly caPem: string;
  readonly manifest: BundleManifest;
  readonly identities: Partial<Record<BundleRole, LoadedIdentity>>;
}

const certFile = (role: BundleRole): string => `${role}.crt`;
const keyFile = (role: BundleRole): string => `${role}.key`;

/**
 * Writes a bundle into `dir` (0700). Each file is replaced atomically and keys are 0600 from
 * their first byte; the manifest goes last, so a reader that finds it finds the rest.
 */
export async function writeBundle(dir: string, bundle: Bundle): Promise<void> {
  if (!Value.Check(BundleManifest, bundle.manifest)) {
    throw new PkiError(PkiErrorCode.BUNDLE_INVALID, 'bundle manifest does not match its schema');
  }
  await ensurePrivateDir(dir);
  await writeFileAtomic(join(dir, BUNDLE_CA_FILE), bundle.caPem, 0o644);
  for (const role of BUNDLE_ROLES) {
    const identity = bundle.identities[role];
    if (!identity) continue;
    await writeFileAtomic(join(dir, keyFile(role)), identity.keyPem, PRIVATE_FILE_MODE);
    await writeFileAtomic(join(dir, certFile(role)), identity.certPem, 0o644);
  }
  await writeFileAtomic(
    join(dir, BUNDLE_MANIFEST_FILE),
    `${JSON.stringify(bundle.manifest, null, 2)}\n`,
    0o644,
  );
}

async function readBounded(path: string): Promise<string | undefined> {
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  if (data.length > MAX_BUNDLE_FILE_BYTES) {
    throw new PkiError(PkiErrorCode.BUNDLE_INVALID, `${path} is larger than ${MAX_BUNDLE_FILE_BYTES} bytes`);
  }
  return data.toString('utf8');
}

function invalid(message: string, cause?: unknown): PkiError {
  return new PkiError(PkiErrorCode.BUNDLE_INVALID, message, cause === undefined ? undefined : { cause });
}

/**
 * Loads and checks the bundle in `dir`: manifest schema, key permissions (0600), each
 * certificate signed by the bundle's CA, matching its key, carrying the right role and the
 * manifest's host id. Throws CORRAL_ERR_BUNDLE_MISSING when there is no bundle at all.
 */
export async function loadBundle(dir: string): Promise<LoadedBundle> {
  const manifestText = await readBounded(join(dir, BUNDLE_MANIFEST_FILE));
  if (manifestText === undefined) {
    throw new PkiError(
      PkiErrorCode.BUNDLE_MISSING,
      `no enrolled identity in ${dir} (missing ${BUNDLE_MANIFEST_FILE})`,
    );
  }
  let manifest: unknown;
  try {
    manifest = JSON.parse(manifestText);
  } catch (e: unknown) {
    throw invalid(`${join(dir, BUNDLE_MANIFEST_FILE)} is not JSON`, e);
  }
  if (!Value.Check(BundleManifest, manifest)) {
    const first = [...Value.Errors(BundleManifest, manifest)][0];
    throw invalid(
      `${join(dir, BUNDLE_MANIFEST_FILE)}: ${first ? `${first.path || '/'} ${first.message}` : 'invalid'}`,
    );
  }
  const caPem = await readBounded(join(dir, BUNDLE_CA_FILE));
  if (caPem === undefined) throw invalid(`${join(dir, BUNDLE_CA_FILE)} is missing`);
  let ca: NodeX509;
  try {
    ca = new NodeX509(caPem);
  } catch (e: unknown) {
    throw invalid(`${join(dir, BUNDLE_CA_FILE)} is not a certificate`, e);
  }
  if (fingerprintPem(caPem) !== manifest.caFingerprint) {
    throw invalid(`${join(dir, BUNDLE_CA_FILE)} does not match the manifest's CA fingerprint`);
  }

  const identities: Partial<Record<BundleRole, LoadedIdentity>> = {};
  for (const role of BUNDLE_ROLES) {
    const certPath = join(dir, certFile(role));
    const keyPath = join(dir, keyFile(role));
    const certPem = await readBounded(certPath);
    if (certPem === undefined) continue;
    const keyPem = await readBounded(keyPath);
    if (keyPem === undefined) throw invalid(`${keyPath} is missing`);
    await assertPrivateFile(keyPath);
    identities[role] = checkIdentity(role, certPem, keyPem, ca, manifest);
  }
  return { dir, caPem, manifest, identities };
}

function checkIdentity(
  role: BundleRole,
  certPem: string,
  keyPem: string,
  ca: NodeX509,
  manifest: BundleManifest,
): LoadedIdentity {
  let cert: NodeX509;
  try {
    cert = new NodeX509(certPem);
  } catch (e: unknown) {
    throw invalid(`${role}.crt is not a certificate`, e);
  }
  if (!cert.verify(ca.publicKey)) throw invalid(`${role}.crt is not signed by the bundle's CA`);
  let publicFromKey: string;
  try {
    publicFromKey = createPublicKey(createPrivateKey(keyPem))
      .export({ format: 'pem', type: 'spki' })
      .toString();
  } catch (e: unknown) {
    throw invalid(`${role}.key is not a valid private key`, e);
  }
  if (cert.publicKey.export({ format: 'pem', type: 'spki' }).toString() !== publicFromKey) {
    throw invalid(`${role}.key does not belong to ${role}.crt`);
  }
  const identity = identityFromPem(certPem);
  if (identity.role !== role) throw invalid(`${role}.crt carries role ${identity.role ?? 'none'}`);
  if (identity.hostId !== manifest.hostId) throw invalid(`${role}.crt is for another host`);
  return { certPem, keyPem, fingerprint: identity.fingerprint, notAfter: identity.notAfter };
}
