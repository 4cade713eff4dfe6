import { createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { access, open } from 'node:fs/promises';
import { join } from 'node:path';
import { identityFromPem } from '../../pki/index.js';
import type { ControllerStateManifest } from '../../protocol/state-manifest.js';
import { describeDatabaseTarget, type DatabaseTarget } from '../db/database-target.js';
import { openDatabase, type ControllerDb } from '../db/open-database.js';
import { ControllerError, ControllerErrorCode, isControllerError } from '../errors.js';
import { secretHash } from '../secrets.js';
import { ADMIN_TOKEN_RE } from './admin-token.js';
import { getSetting, SETTING_STATE_ID } from './settings.js';
import { STATE_FILES, type StateGroup, type StateProblem } from './state-files.js';
import type { StatePaths } from './state-paths.js';

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/** True when any state file exists: the state dir was initialized (maybe before manifests). */
export async function anyStateFilePresent(paths: StatePaths): Promise<boolean> {
  for (const f of STATE_FILES) if (await exists(join(paths.root, f.rel))) return true;
  return false;
}

/** Larger than any PEM or token init writes; a bigger file is damaged, and never read whole. */
const MAX_PEM_BYTES = 64 * 1024;

export interface Inspection {
  readonly problems: StateProblem[];
  /** The database, opened and checked but not migrated; set only when it has no problem. */
  readonly db: ControllerDb | undefined;
  /** Which of the state files exist (whatever their condition). */
  readonly present: ReadonlySet<string>;
  /** Of the CA certificate, when it could be read. */
  readonly caFingerprint: string | undefined;
}

export interface InspectOptions {
  /** The manifest, when the state dir has a valid one: its CA and state id must match. */
  readonly manifest: ControllerStateManifest | undefined;
  /** True while init is still creating files: a missing one is not a problem. */
  readonly missingOk: boolean;
  /** The database, when it is not the state dir's own `corral.db` (see stateDatabase). */
  readonly database?: DatabaseTarget | undefined;
}

/**
 * The database of a state dir: `given` (`--database`), else the SQLite file `corral.db` in
 * it. Throws CORRAL_ERR_STATE_INVALID when the manifest says the database is PostgreSQL and
 * none was given, or when `given` is of the other kind than the one init recorded.
 */
export function stateDatabase(
  paths: StatePaths,
  manifest: ControllerStateManifest | undefined,
  given: DatabaseTarget | undefined,
): DatabaseTarget {
  const recorded = manifest?.database ?? 'sqlite';
  if (given === undefined && recorded === 'postgres') {
    throw new ControllerError(
      ControllerErrorCode.STATE_INVALID,
      `the database of ${paths.root} is PostgreSQL: pass --database postgres://… (or set database in the controller config)`,
    );
  }
  const target = given ?? { kind: 'sqlite' as const, path: paths.database };
  if (manifest !== undefined && target.kind !== recorded) {
    throw new ControllerError(
      ControllerErrorCode.STATE_INVALID,
      `${paths.root} was initialized with a${recorded === 'sqlite' ? 'n SQLite' : ' PostgreSQL'} database, and --database names a${target.kind === 'sqlite' ? 'n SQLite' : ' PostgreSQL'} one; move between them with controller backup and restore`,
    );
  }
  return target;
}

type Read =
  { readonly kind: 'missing' } | { readonly kind: 'empty' } | { readonly kind: 'text'; text: string };

async function readBounded(path: string): Promise<Read> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
    throw e;
  }
  try {
    const { size } = await fh.stat();
    if (size === 0) return { kind: 'empty' };
    const buf = Buffer.alloc(Math.min(size, MAX_PEM_BYTES + 1));
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return { kind: 'text', text: buf.subarray(0, bytesRead).toString('utf8') };
  } finally {
    await fh.close();
  }
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** `PATH is missing` or `PATH: SQLITE_…` → `is missing`, `SQLITE_…`. */
function withoutPath(text: string, path: string): string {
  return text.startsWith(path) ? text.slice(path.length).replace(/^:?\s*/, '') : text;
}

function spki(key: KeyObject): Buffer {
  return key.export({ type: 'spki', format: 'der' });
}

/** Parses what each PEM or token file holds and says what is wrong with it, if anything. */
class FileChecks {
  caCert: X509Certificate | undefined;
  caFingerprint: string | undefined;
  readonly certs = new Map<string, X509Certificate>();

  constructor(private readonly manifest: ControllerStateManifest | undefined) {}

  check(rel: string, text: string): string | undefined {
    if (text.length > MAX_PEM_BYTES) return `is damaged: larger than ${MAX_PEM_BYTES} bytes`;
    if (rel === 'admin-token') {
      return ADMIN_TOKEN_RE.test(text.trim()) ? undefined : 'is damaged: it does not hold an admin token';
    }
    if (rel.endsWith('.crt')) return this.#cert(rel, text);
    return this.#key(rel, text);
  }

  #cert(rel: string, text: string): string | undefined {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(text);
    } catch (e: unknown) {
      return `is damaged: not a certificate (${message(e)})`;
    }
    this.certs.set(rel, cert);
    if (rel === 'ca/ca.crt') {
      if (!cert.ca) return 'is damaged: not a CA certificate';
      const fingerprint = identityFromPem(text).fingerprint;
      this.caFingerprint = fingerprint;
      const expected = this.manifest?.caFingerprint;
      if (expected && fingerprint !== expected) {
        return `is not the CA this state dir was initialized with (sha256:${fingerprint}, expected sha256:${expected})`;
      }
      this.caCert = cert;
      return undefined;
    }
    const role = rel === 'tls/controller.crt' ? 'controller' : 'controller-client';
    if (identityFromPem(text).role !== role) return `is damaged: it is not a ${role} certificate`;
    if (this.caCert && !(cert.checkIssued(this.caCert) && cert.verify(this.caCert.publicKey))) {
      return "is not signed by this state dir's CA";
    }
    return undefined;
  }

  #key(rel: string, text: string): string | undefined {
    let key: KeyObject;
    try {
      key = createPrivateKey(text);
    } catch (e: unknown) {
      return `is damaged: not a private key (${message(e)})`;
    }
    const cert = this.certs.get(rel.replace(/\.key$/, '.crt'));
    if (cert && !spki(createPublicKey(key)).equals(spki(cert.publicKey))) {
      return 'does not match its certificate';
    }
    return undefined;
  }
}

/**
 * Checks every state file without changing any: each must exist (unless `missingOk`), be
 * non-empty and hold what init wrote (certificates of the right role from this CA, keys that
 * match them, an admin token the database knows); the database must pass SQLite's
 * quick_check and carry this state dir's id. Certificates are read before their keys, the
 * CA before the leaves (STATE_FILES order).
 */
export async function inspectControllerState(paths: StatePaths, o: InspectOptions): Promise<Inspection> {
  const problems: StateProblem[] = [];
  const present = new Set<string>();
  const checks = new FileChecks(o.manifest);
  const add = (rel: string, group: StateGroup, problem: string): void => {
    problems.push({ file: join(paths.root, rel), group, problem });
  };
  let token: string | undefined;
  const ordered = [...STATE_FILES].sort(
    (a, b) => Number(a.rel.endsWith('.key')) - Number(b.rel.endsWith('.key')),
  );
  for (const f of ordered) {
    if (f.group === 'database') continue;
    const read = await readBounded(join(paths.root, f.rel));
    if (read.kind === 'missing') {
      if (!o.missingOk) add(f.rel, f.group, 'is missing');
      continue;
    }
    present.add(f.rel);
    if (read.kind === 'empty') {
      add(f.rel, f.group, 'is empty (0 bytes)');
      continue;
    }
    const problem = checks.check(f.rel, read.text);
    if (problem) add(f.rel, f.group, problem);
    else if (f.rel === 'admin-token') token = read.text.trim();
  }

  let db: ControllerDb | undefined;
  const target = o.database ?? { kind: 'sqlite' as const, path: paths.database };
  const where = describeDatabaseTarget(target);
  try {
    db = await openDatabase(target, {
      create: false,
      migrate: false,
      verify: async (opened) => {
        const id = await getSetting(opened, SETTING_STATE_ID);
        const expected = o.manifest?.stateId;
        if (expected === undefined || id === expected) return;
        throw new ControllerError(
          ControllerErrorCode.STATE_DAMAGED,
          id === undefined
            ? `${where} is not the database this state dir was initialized with (it has no state id)`
            : `${where} is not the database this state dir was initialized with (state id ${id}, expected ${expected})`,
          { file: where },
        );
      },
    });
    present.add('corral.db');
  } catch (e: unknown) {
    if (!isControllerError(e, ControllerErrorCode.STATE_DAMAGED)) throw e;
    const problem = withoutPath(e.message, where);
    const missing = problem === 'is missing';
    if (!missing) present.add('corral.db');
    if (!(missing && o.missingOk)) problems.push({ file: where, group: 'database', problem });
  }
  // While init is still running, the token file is written before its hash is stored.
  if (db && token !== undefined && !o.missingOk) {
    const row = await db
      .selectFrom('operators')
      .select('id')
      .where('hash', '=', secretHash(token))
      .executeTakeFirst();
    if (!row) add('admin-token', 'token', 'holds a token the database does not know');
  }
  if (db && problems.length > 0) {
    await db.destroy();
    db = undefined;
  }
  return { problems, db, present, caFingerprint: checks.caFingerprint };
}
