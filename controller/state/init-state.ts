import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import {
  assertPrivateFile,
  ensurePrivateDir,
  loadOrCreateCa,
  PRIVATE_FILE_MODE,
  writeFileAtomic,
  type CertificateAuthority,
  type LeafProfile,
} from '../../pki/index.js';
import { Address } from '../../protocol/common.js';
import { parseWith } from '../../protocol/validate.js';
import { createAuditLog } from '../audit/audit-log.js';
import { systemClock, isoAt, type Clock } from '../clock.js';
import { openDatabase, type ControllerDb } from '../db/open-database.js';
import { newId, newSecret, secretHash } from '../secrets.js';
import { getSetting, SETTING_ADDRESSES } from './settings.js';
import { statePaths, type StatePaths } from './state-paths.js';

/** The controller's own certificates live as long as its CA: workers pin the client one. */
export const CONTROLLER_CERT_VALIDITY_DAYS = 3650;
export const ADMIN_TOKEN_PREFIX = 'corral_admin';

export interface InitOptions {
  readonly stateDir: string;
  /** Names and IPs workers reach the controller at; they go into its server certificate. */
  readonly addresses?: readonly string[];
  readonly clock?: Clock;
}

export interface InitResult {
  readonly stateDir: string;
  readonly caFingerprint: string;
  /** What this run created (empty when everything was already there). */
  readonly created: readonly string[];
  /** The addresses in force (those of the first init; a later init never changes them). */
  readonly addresses: readonly string[];
  readonly addressesIgnored: boolean;
  readonly adminTokenFile: string;
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** Splits addresses into certificate SANs, always including localhost and loopback. */
export function sansFor(addresses: readonly string[]): { dnsNames: string[]; ipAddresses: string[] } {
  const dnsNames = new Set(['localhost']);
  const ipAddresses = new Set(['127.0.0.1', '::1']);
  for (const a of addresses) (isIP(a) === 0 ? dnsNames : ipAddresses).add(a);
  return { dnsNames: [...dnsNames], ipAddresses: [...ipAddresses] };
}

async function ensureLeaf(
  ca: CertificateAuthority,
  certPath: string,
  keyPath: string,
  profile: LeafProfile,
): Promise<boolean> {
  const [cert, key] = await Promise.all([readIfExists(certPath), readIfExists(keyPath)]);
  if (cert !== undefined && key !== undefined) {
    await assertPrivateFile(keyPath);
    return false;
  }
  const issued = await ca.issue(profile);
  await writeFileAtomic(keyPath, issued.keyPem, PRIVATE_FILE_MODE);
  await writeFileAtomic(certPath, issued.certPem, 0o644);
  return true;
}

async function ensureAdminToken(db: ControllerDb, paths: StatePaths, clock: Clock): Promise<boolean> {
  const existing = await readIfExists(paths.adminToken);
  const token = existing?.trim() || newSecret(ADMIN_TOKEN_PREFIX);
  if (existing === undefined) await writeFileAtomic(paths.adminToken, `${token}\n`, PRIVATE_FILE_MODE);
  else await assertPrivateFile(paths.adminToken);
  const hash = secretHash(token);
  const row = await db.selectFrom('admin_tokens').select('id').where('hash', '=', hash).executeTakeFirst();
  if (row) return existing === undefined;
  await db
    .insertInto('admin_tokens')
    .values({ id: newId('adm'), name: 'admin', hash, created_at: isoAt(clock.now()), revoked_at: null })
    .execute();
  return true;
}

/**
 * Creates the controller's state: CA, server and controller-client certificates, the admin
 * token (0600; the database keeps only its hash) and the database. Idempotent: whatever
 * exists is kept, so running it again changes nothing.
 */
export async function initControllerState(options: InitOptions): Promise<InitResult> {
  const clock = options.clock ?? systemClock;
  const requested = [...new Set(options.addresses ?? [])];
  for (const a of requested) parseWith(Address, a, '--address');
  const paths = statePaths(options.stateDir);
  await ensurePrivateDir(paths.root);
  await ensurePrivateDir(paths.tlsDir);
  await ensurePrivateDir(paths.runDir);
  const created: string[] = [];
  const caExisted = (await readIfExists(`${paths.caDir}/ca.key`)) !== undefined;
  const ca = await loadOrCreateCa(paths.caDir);
  if (!caExisted) created.push('ca');

  const db = await openDatabase(paths.database);
  try {
    let addresses = requested;
    let addressesIgnored = false;
    const stored = await getSetting(db, SETTING_ADDRESSES);
    if (stored === undefined) {
      await db.transaction().execute(async (trx) => {
        await trx
          .insertInto('settings')
          .values({ key: SETTING_ADDRESSES, value: JSON.stringify(requested) })
          .execute();
        await createAuditLog({ db, clock }).append(
          {
            actor: 'local',
            action: 'init',
            target: 'controller',
            details: { caFingerprint: ca.fingerprint },
          },
          trx,
        );
      });
      created.push('database');
    } else {
      addresses = JSON.parse(stored) as string[];
      addressesIgnored = requested.length > 0 && JSON.stringify(requested) !== JSON.stringify(addresses);
    }
    const server = await ensureLeaf(ca, paths.serverCert, paths.serverKey, {
      role: 'controller',
      commonName: 'corral-controller',
      ...sansFor(addresses),
      validityDays: CONTROLLER_CERT_VALIDITY_DAYS,
    });
    if (server) created.push('server-certificate');
    const client = await ensureLeaf(ca, paths.clientCert, paths.clientKey, {
      role: 'controller-client',
      commonName: 'corral-controller-client',
      validityDays: CONTROLLER_CERT_VALIDITY_DAYS,
    });
    if (client) created.push('client-certificate');
    if (await ensureAdminToken(db, paths, clock)) created.push('admin-token');
    return {
      stateDir: paths.root,
      caFingerprint: ca.fingerprint,
      created,
      addresses,
      addressesIgnored,
      adminTokenFile: paths.adminToken,
    };
  } finally {
    await db.destroy();
  }
}
