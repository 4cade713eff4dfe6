import type { Socket } from 'node:net';
import type { Kysely, Selectable } from 'kysely';
import type { CertificateAuthority } from '../../pki/index.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import {
  Scopes,
  type OperatorCertificate,
  type OperatorCreateRequest,
  type OperatorView,
  type Scope,
} from '../../protocol/operators.js';
import type { AuditLog } from '../audit/audit-log.js';
import { isoAt, type Clock } from '../clock.js';
import { decodeJsonColumn } from '../db/json-column.js';
import type { ControllerDatabase, OperatorsTable } from '../db/schema.js';
import { hashesEqual, newId, newSecret, secretHash } from '../secrets.js';
import type { OperatorSessions } from './operator-sessions.js';

/** The prefix of the tokens `operators create` and `rotate` make. */
export const OPERATOR_TOKEN_PREFIX = 'corral_op';
const DAY_MS = 24 * 3600 * 1000;

type Row = Selectable<OperatorsTable>;

/** Who a request authenticated as: one credential of an operator. */
export interface AuthenticatedOperator {
  readonly id: string;
  readonly name: string;
  readonly kind: 'token' | 'cert';
  readonly scopes: readonly Scope[];
}

export interface OperatorSecret {
  readonly operator: OperatorView;
  readonly token?: string;
  readonly certificate?: OperatorCertificate;
}

export interface OperatorStore {
  /**
   * Whether this credential counts no more (revoked, or expired; an unknown id too), read
   * from the database: for a revocation another controller announced.
   */
  isInactive(credentialId: string): Promise<boolean>;
  /** The active, unexpired token credential whose hash matches (constant-time compare), if any. */
  byToken(token: string): Promise<AuthenticatedOperator | undefined>;
  /** The active, unexpired certificate credential pinned to this fingerprint, if any. */
  byFingerprint(fingerprint: string): Promise<AuthenticatedOperator | undefined>;
  /** A new operator; its token or certificate key is returned this once and never stored. */
  create(request: OperatorCreateRequest, actor: string): Promise<OperatorSecret>;
  list(): Promise<OperatorView[]>;
  /** Revokes every active credential of `name` and closes their connections but `except`. */
  revoke(name: string, actor: string, except?: Socket): Promise<OperatorView[]>;
  /** A fresh credential with the same scopes and lifetime; the old one is revoked at once. */
  rotate(name: string, actor: string, except?: Socket): Promise<OperatorSecret>;
}

/** Whether a credential counts now: not revoked and not past its end. */
export const isActive = (row: Row, nowIso: string): boolean =>
  row.revoked_at === null && (row.expires_at === null || row.expires_at > nowIso);

function scopesOf(row: Row): Scope[] {
  return decodeJsonColumn(Scopes, row.scopes, { table: 'operators', row: row.id, column: 'scopes' });
}

function view(row: Row, nowIso: string): OperatorView {
  return {
    name: row.name,
    kind: row.kind,
    scopes: scopesOf(row),
    state: row.revoked_at !== null ? 'revoked' : isActive(row, nowIso) ? 'active' : 'expired',
    createdAt: row.created_at,
    createdBy: row.created_by,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    fingerprint: row.fingerprint,
  };
}

export const authenticated = (row: Row): AuthenticatedOperator => ({
  id: row.id,
  name: row.name,
  kind: row.kind,
  scopes: scopesOf(row),
});

export function createOperatorStore(deps: {
  readonly db: Kysely<ControllerDatabase>;
  /** Credentials are looked up here on every request (the read-only connection, or `db`). */
  readonly readDb: Kysely<ControllerDatabase>;
  readonly audit: AuditLog;
  readonly clock: Clock;
  readonly ca: Pick<CertificateAuthority, 'issue' | 'certPem' | 'fingerprint'>;
  readonly sessions: OperatorSessions;
  /** Told the credential ids revoked (revoke, rotate) after the change committed (to tell the others). */
  readonly onRevoked?: (credentialIds: readonly string[]) => void;
}): OperatorStore {
  const { db, readDb, audit, clock, ca, sessions } = deps;
  const nowIso = (): string => isoAt(clock.now());

  async function activeRows(executor: Kysely<ControllerDatabase>, name: string): Promise<Row[]> {
    const now = nowIso();
    const rows = await executor
      .selectFrom('operators')
      .selectAll()
      .where('name', '=', name)
      .where('revoked_at', 'is', null)
      .execute();
    return rows.filter((r) => isActive(r, now));
  }

  /** Makes the credential row and its secret; the caller inserts the row in its transaction. */
  async function mint(
    name: string,
    kind: 'token' | 'cert',
    scopes: readonly Scope[],
    lifetimeMs: number | undefined,
    actor: string,
  ): Promise<{ row: Row; token?: string; certificate?: OperatorCertificate }> {
    const now = clock.now();
    let expiresAt = lifetimeMs === undefined ? null : isoAt(now + lifetimeMs);
    const base = { id: newId('op'), name, kind, scopes: JSON.stringify(scopes), created_at: isoAt(now) };
    if (kind === 'token') {
      const token = newSecret(OPERATOR_TOKEN_PREFIX);
      const row: Row = {
        ...base,
        hash: secretHash(token),
        fingerprint: null,
        created_by: actor,
        expires_at: expiresAt,
        revoked_at: null,
      };
      return { row, token };
    }
    const issued = await ca.issue({
      role: 'operator',
      commonName: name,
      ...(lifetimeMs !== undefined && { validityDays: Math.max(1, Math.ceil(lifetimeMs / DAY_MS)) }),
    });
    // The certificate's own end bounds the credential too; whichever comes first counts.
    const certEnd = isoAt(issued.notAfter.getTime());
    if (expiresAt === null || certEnd < expiresAt) expiresAt = certEnd;
    const row: Row = {
      ...base,
      hash: null,
      fingerprint: issued.fingerprint,
      created_by: actor,
      expires_at: expiresAt,
      revoked_at: null,
    };
    const certificate: OperatorCertificate = {
      caPem: ca.certPem,
      certPem: issued.certPem,
      keyPem: issued.keyPem,
      fingerprint: issued.fingerprint,
      caFingerprint: ca.fingerprint,
    };
    return { row, certificate };
  }

  const secretOf = (m: { row: Row; token?: string; certificate?: OperatorCertificate }): OperatorSecret => ({
    operator: view(m.row, nowIso()),
    ...(m.token !== undefined && { token: m.token }),
    ...(m.certificate !== undefined && { certificate: m.certificate }),
  });

  return {
    async isInactive(credentialId) {
      const row = await db
        .selectFrom('operators')
        .selectAll()
        .where('id', '=', credentialId)
        .executeTakeFirst();
      return !row || !isActive(row, nowIso());
    },

    async byToken(token) {
      const presented = secretHash(token);
      const now = nowIso();
      const rows = await readDb
        .selectFrom('operators')
        .selectAll()
        .where('kind', '=', 'token')
        .where('revoked_at', 'is', null)
        .execute();
      let found: Row | undefined;
      for (const row of rows) {
        if (row.hash !== null && hashesEqual(presented, row.hash) && found === undefined) found = row;
      }
      return found && isActive(found, now) ? authenticated(found) : undefined;
    },

    async byFingerprint(fingerprint) {
      const row = await readDb
        .selectFrom('operators')
        .selectAll()
        .where('kind', '=', 'cert')
        .where('fingerprint', '=', fingerprint)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      return row && isActive(row, nowIso()) ? authenticated(row) : undefined;
    },

    async create(request, actor) {
      const kind = request.cert === true ? 'cert' : 'token';
      const lifetimeMs = request.expiresInSeconds === undefined ? undefined : request.expiresInSeconds * 1000;
      const minted = await mint(request.name, kind, request.scopes, lifetimeMs, actor);
      await db.transaction().execute(async (trx) => {
        if ((await activeRows(trx, request.name)).length > 0) {
          throw new CorralError(ErrorCode.NAME_TAKEN, `an operator named ${request.name} already exists`);
        }
        await trx.insertInto('operators').values(minted.row).execute();
        await audit.append(
          {
            actor,
            action: 'operator-create',
            target: request.name,
            details: {
              kind,
              scopes: request.scopes,
              expiresAt: minted.row.expires_at,
              ...(minted.row.fingerprint !== null && { fingerprint: minted.row.fingerprint }),
            },
          },
          trx,
        );
      });
      return secretOf(minted);
    },

    async list() {
      const now = nowIso();
      const rows = await readDb
        .selectFrom('operators')
        .selectAll()
        .orderBy('name')
        .orderBy('created_at')
        .execute();
      return rows.map((r) => view(r, now));
    },

    async revoke(name, actor, except) {
      const now = nowIso();
      const revoked = await db.transaction().execute(async (trx) => {
        const rows = await activeRows(trx, name);
        if (rows.length === 0) throw new CorralError(ErrorCode.NOT_FOUND, `no active operator named ${name}`);
        await trx
          .updateTable('operators')
          .set({ revoked_at: now })
          .where(
            'id',
            'in',
            rows.map((r) => r.id),
          )
          .execute();
        await audit.append(
          { actor, action: 'operator-revoke', target: name, details: { credentials: rows.length } },
          trx,
        );
        return rows.map((r) => ({ ...r, revoked_at: now }));
      });
      sessions.close(
        revoked.map((r) => r.id),
        except,
      );
      deps.onRevoked?.(revoked.map((r) => r.id));
      return revoked.map((r) => view(r, now));
    },

    async rotate(name, actor, except) {
      const current = await activeRows(db, name);
      const old = current[0];
      if (!old) throw new CorralError(ErrorCode.NOT_FOUND, `no active operator named ${name}`);
      if (current.length > 1) {
        throw new CorralError(
          ErrorCode.CONFLICT,
          `operator ${name} has ${current.length} active credentials; revoke it and create it afresh`,
        );
      }
      const lifetimeMs =
        old.expires_at === null ? undefined : Date.parse(old.expires_at) - Date.parse(old.created_at);
      const minted = await mint(name, old.kind, scopesOf(old), lifetimeMs, actor);
      const now = nowIso();
      await db.transaction().execute(async (trx) => {
        const changed = await trx
          .updateTable('operators')
          .set({ revoked_at: now })
          .where('id', '=', old.id)
          .where('revoked_at', 'is', null)
          .executeTakeFirst();
        if (changed.numUpdatedRows !== 1n) {
          throw new CorralError(
            ErrorCode.CONFLICT,
            `operator ${name} changed while it was rotated; try again`,
          );
        }
        await trx.insertInto('operators').values(minted.row).execute();
        await audit.append(
          {
            actor,
            action: 'operator-rotate',
            target: name,
            details: {
              kind: old.kind,
              ...(minted.row.fingerprint !== null && { fingerprint: minted.row.fingerprint }),
            },
          },
          trx,
        );
      });
      sessions.close([old.id], except);
      deps.onRevoked?.([old.id]);
      return secretOf(minted);
    },
  };
}
