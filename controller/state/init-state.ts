import { access } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
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
import type { ControllerStateManifest } from '../../protocol/state-manifest.js';
import { parseWith } from '../../protocol/validate.js';
import { createAuditLog } from '../audit/audit-log.js';
import { systemClock, type Clock } from '../clock.js';
import { openDatabase, type ControllerDb } from '../db/open-database.js';
import { ensureAdminToken } from './admin-token.js';
import { anyStateFilePresent, inspectControllerState, stateDatabase } from './check-state.js';
import type { DatabaseTarget } from '../db/database-target.js';
import { ControllerError, ControllerErrorCode } from '../errors.js';
import {
  newManifest,
  newStateId,
  readControllerManifest,
  writeControllerManifest,
} from './controller-manifest.js';
import { moveAside, type Reinitialized } from './reinitialize.js';
import { getSetting, SETTING_ADDRESSES, SETTING_STATE_ID } from './settings.js';
import { describeDestruction, groupsToReplace, stateDamagedError, type StateGroup } from './state-files.js';
import { statePaths, type StatePaths } from './state-paths.js';
import { decodeJsonColumn, StoredNames } from '../db/json-column.js';

export { ADMIN_TOKEN_PREFIX } from './admin-token.js';
export type { Reinitialized } from './reinitialize.js';

/** The controller's own certificates live as long as its CA: workers pin the client one. */
export const CONTROLLER_CERT_VALIDITY_DAYS = 3650;

export interface InitOptions {
  readonly stateDir: string;
  /** Names and IPs workers reach the controller at; they go into its server certificate. */
  readonly addresses?: readonly string[];
  readonly clock?: Clock;
  /**
   * Replace the state files that are missing or damaged (moved aside, not deleted) instead
   * of refusing. What that destroys is in state-files.ts and in the result.
   */
  readonly reinitialize?: boolean;
  /** The database (default: the SQLite file `corral.db` in the state dir). */
  readonly database?: DatabaseTarget;
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
  /** What `reinitialize` replaced: each file, why, and where the old one went. */
  readonly reinitialized: readonly Reinitialized[];
  /** In words, what `reinitialize` destroyed (empty when it replaced nothing). */
  readonly destroyed: readonly string[];
}

/** Splits addresses into certificate SANs, always including localhost and loopback. */
export function sansFor(addresses: readonly string[]): { dnsNames: string[]; ipAddresses: string[] } {
  const dnsNames = new Set(['localhost']);
  const ipAddresses = new Set(['127.0.0.1', '::1']);
  for (const a of addresses) (isIP(a) === 0 ? dnsNames : ipAddresses).add(a);
  return { dnsNames: [...dnsNames], ipAddresses: [...ipAddresses] };
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

async function ensureLeaf(
  ca: CertificateAuthority,
  certPath: string,
  keyPath: string,
  profile: LeafProfile,
): Promise<boolean> {
  if ((await exists(certPath)) && (await exists(keyPath))) {
    await assertPrivateFile(keyPath);
    return false;
  }
  const issued = await ca.issue(profile);
  await writeFileAtomic(keyPath, issued.keyPem, PRIVATE_FILE_MODE);
  await writeFileAtomic(certPath, issued.certPem, 0o644);
  return true;
}

interface Plan {
  /** The manifest to write before anything is created (undefined: keep the one on disk). */
  readonly manifest: ControllerStateManifest | undefined;
  readonly reinitialized: Reinitialized[];
  readonly groups: StateGroup[];
}

/**
 * Decides what this init does, changing nothing unless `reinitialize` must move damaged
 * files aside. Throws CORRAL_ERR_STATE_DAMAGED (nothing changed) for a state dir whose files
 * existed and are now missing, empty or damaged.
 */
async function plan(
  paths: StatePaths,
  requested: readonly string[],
  o: InitOptions,
  clock: Clock,
): Promise<Plan> {
  const read = await readControllerManifest(paths);
  const kind = o.database?.kind ?? 'sqlite';
  if (read.kind === 'absent' && !(await anyStateFilePresent(paths))) {
    return { manifest: newManifest(newStateId(), requested, kind), reinitialized: [], groups: [] };
  }
  const manifest = read.kind === 'ok' ? read.manifest : undefined;
  const inspection = await inspectControllerState(paths, {
    manifest,
    missingOk: manifest?.complete === false,
    database: stateDatabase(paths, manifest, o.database),
  });
  let stateId = manifest?.stateId;
  if (inspection.db) {
    stateId ??= await getSetting(inspection.db, SETTING_STATE_ID);
    await inspection.db.destroy();
  }
  const problems = [...(read.kind === 'damaged' ? [read.problem] : []), ...inspection.problems];
  if (problems.length === 0) {
    // A state dir from before manifests, whole: adopt it as it is.
    const adopt = manifest ? undefined : newManifest(stateId ?? newStateId(), requested, kind);
    return { manifest: adopt, reinitialized: [], groups: [] };
  }
  if (!o.reinitialize) throw stateDamagedError(paths.root, problems);
  const groups = groupsToReplace(problems);
  if (kind === 'postgres' && groups.includes('database')) {
    throw new ControllerError(
      ControllerErrorCode.STATE_INVALID,
      `--reinitialize does not replace a PostgreSQL database (nothing can be moved aside): restore it from a backup, or create an empty database and init again\n${stateDamagedError(paths.root, problems).message}`,
    );
  }
  const reinitialized = await moveAside(paths, groups, problems, clock);
  const next = newManifest(stateId ?? newStateId(), manifest?.addresses ?? requested, kind);
  return { manifest: next, reinitialized, groups };
}

/**
 * Creates the controller's state: CA, server and controller-client certificates, the admin
 * token (0600; the database keeps only its hash), the database, and `state-manifest.json`
 * naming them. Idempotent: on a whole state dir it changes nothing. A state dir whose files
 * existed and are now missing or damaged is refused with CORRAL_ERR_STATE_DAMAGED (naming
 * each file), unless `reinitialize` asks to replace them.
 */
export async function initControllerState(options: InitOptions): Promise<InitResult> {
  const clock = options.clock ?? systemClock;
  const requested = [...new Set(options.addresses ?? [])];
  for (const a of requested) parseWith(Address, a, '--address');
  const paths = statePaths(options.stateDir);
  const decided = await plan(paths, requested, options, clock);
  await ensurePrivateDir(paths.root);
  await ensurePrivateDir(paths.tlsDir);
  await ensurePrivateDir(paths.runDir);
  const started = decided.manifest ?? (await readManifestOrThrow(paths));
  if (decided.manifest) await writeControllerManifest(paths, decided.manifest);

  const created: string[] = [];
  const caExisted = await exists(join(paths.caDir, 'ca.key'));
  const ca = await loadOrCreateCa(paths.caDir);
  if (!caExisted) created.push('ca');

  // plan() has checked an existing database (and its state id); this creates or migrates it.
  const db = await openDatabase(stateDatabase(paths, started, options.database));
  try {
    const { addresses, fresh } = await ensureSettings(db, started, requested, ca, clock);
    if (fresh) created.push('database');
    if (decided.groups.length > 0) {
      await createAuditLog({ db, clock }).append({
        actor: 'local',
        action: 'reinitialize',
        target: 'controller',
        details: { replaced: decided.groups, files: decided.reinitialized.map((r) => r.file) },
      });
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
    const revokeOthers = decided.groups.includes('token');
    if (await ensureAdminToken(db, paths.adminToken, clock, { revokeOthers })) created.push('admin-token');
    const finished = { ...started, complete: true, caFingerprint: ca.fingerprint, addresses: [...addresses] };
    if (JSON.stringify(finished) !== JSON.stringify(started)) await writeControllerManifest(paths, finished);
    return {
      stateDir: paths.root,
      caFingerprint: ca.fingerprint,
      created,
      addresses,
      addressesIgnored: requested.length > 0 && JSON.stringify(requested) !== JSON.stringify(addresses),
      adminTokenFile: paths.adminToken,
      reinitialized: decided.reinitialized,
      destroyed: describeDestruction(decided.groups),
    };
  } finally {
    await db.destroy();
  }
}

async function readManifestOrThrow(paths: StatePaths): Promise<ControllerStateManifest> {
  const read = await readControllerManifest(paths);
  if (read.kind === 'ok') return read.manifest;
  throw stateDamagedError(paths.root, read.kind === 'damaged' ? [read.problem] : []);
}

/**
 * The settings a new database gets (addresses, state id, and the `init` audit entry) in one
 * transaction; on an existing one only a missing state id is filled in.
 */
async function ensureSettings(
  db: ControllerDb,
  manifest: ControllerStateManifest,
  requested: readonly string[],
  ca: CertificateAuthority,
  clock: Clock,
): Promise<{ addresses: readonly string[]; fresh: boolean }> {
  const stored = await getSetting(db, SETTING_ADDRESSES);
  const hasId = (await getSetting(db, SETTING_STATE_ID)) !== undefined;
  if (!hasId) {
    await db.insertInto('settings').values({ key: SETTING_STATE_ID, value: manifest.stateId }).execute();
  }
  if (stored !== undefined) {
    const at = { table: 'settings', column: 'value', row: SETTING_ADDRESSES };
    return { addresses: decodeJsonColumn(StoredNames, stored, at), fresh: false };
  }
  const addresses = manifest.addresses.length > 0 ? manifest.addresses : requested;
  await db.transaction().execute(async (trx) => {
    await trx
      .insertInto('settings')
      .values({ key: SETTING_ADDRESSES, value: JSON.stringify(addresses) })
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
  return { addresses, fresh: true };
}
