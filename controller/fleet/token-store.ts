import type { Kysely, Selectable } from 'kysely';
import type { TokenCreateRequest, TokenView } from '../../protocol/enrollment.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import type { AuditLog } from '../audit/audit-log.js';
import { isoAt, type Clock } from '../clock.js';
import type { ControllerDatabase, JoinTokensTable } from '../db/schema.js';
import { newId, newSecret, secretHash } from '../secrets.js';
import { isNameActive } from './host-store.js';
import { assertNameAllowed } from './worker-identity.js';
import { Labels } from '../../protocol/common.js';
import { decodeJsonColumn } from '../db/json-column.js';

/** Default lifetime of a join token, in seconds (15 minutes). */
export const DEFAULT_JOIN_TOKEN_TTL_SECONDS = 15 * 60;
export const JOIN_TOKEN_PREFIX = 'corral_join';

type Row = Selectable<JoinTokensTable>;

export interface RedeemableToken {
  readonly id: string;
  readonly name: string;
  readonly labels: Record<string, string>;
}

export interface TokenStore {
  /** Makes a token for a host name; the secret is returned once and stored only as a hash. */
  create(request: TokenCreateRequest, actor: string): Promise<{ token: string; view: TokenView }>;
  list(): Promise<TokenView[]>;
  revoke(id: string, actor: string): Promise<TokenView>;
  /** The token's grant if it is known, unused, unrevoked and unexpired; else the one 401. */
  findRedeemable(secret: string): Promise<RedeemableToken>;
  /** Marks the token used inside `trx`; exactly one concurrent caller succeeds, others get the 401. */
  claim(trx: Kysely<ControllerDatabase>, id: string): Promise<void>;
  /** Records which host a claimed token made (after that host's row exists). */
  attach(trx: Kysely<ControllerDatabase>, id: string, hostId: string): Promise<void>;
}

/** The one answer for an unknown, expired, used or revoked join token: no detail on purpose. */
export function joinRefused(): CorralError {
  return new CorralError(ErrorCode.UNAUTHENTICATED, 'join token refused');
}

function stateOf(row: Row, nowIso: string): TokenView['state'] {
  if (row.revoked_at !== null) return 'revoked';
  if (row.used_at !== null) return 'used';
  if (row.expires_at <= nowIso) return 'expired';
  return 'active';
}

function view(row: Row, nowIso: string): TokenView {
  return {
    id: row.id,
    name: row.name,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    usedAt: row.used_at,
    revokedAt: row.revoked_at,
    state: stateOf(row, nowIso),
  };
}

export function createTokenStore(deps: {
  db: Kysely<ControllerDatabase>;
  audit: AuditLog;
  clock: Clock;
}): TokenStore {
  const { db, audit, clock } = deps;

  return {
    async create(request, actor) {
      assertNameAllowed(request.name);
      if (await isNameActive(db, request.name)) {
        throw new CorralError(ErrorCode.NAME_TAKEN, `a host named ${request.name} is already enrolled`);
      }
      const now = clock.now();
      const token = newSecret(JOIN_TOKEN_PREFIX);
      const row: Row = {
        id: newId('tok'),
        name: request.name,
        hash: secretHash(token),
        labels: JSON.stringify(request.labels ?? {}),
        created_at: isoAt(now),
        expires_at: isoAt(now + (request.ttlSeconds ?? DEFAULT_JOIN_TOKEN_TTL_SECONDS) * 1000),
        used_at: null,
        revoked_at: null,
        host_id: null,
      };
      await db.transaction().execute(async (trx) => {
        await trx.insertInto('join_tokens').values(row).execute();
        await audit.append(
          {
            actor,
            action: 'token-create',
            target: request.name,
            details: { tokenId: row.id, expiresAt: row.expires_at },
          },
          trx,
        );
      });
      return { token, view: view(row, isoAt(now)) };
    },

    async list() {
      const rows = await db.selectFrom('join_tokens').selectAll().orderBy('created_at', 'desc').execute();
      const nowIso = isoAt(clock.now());
      return rows.map((r) => view(r, nowIso));
    },

    async revoke(id, actor) {
      const nowIso = isoAt(clock.now());
      const row = await db.transaction().execute(async (trx) => {
        const current = await trx
          .selectFrom('join_tokens')
          .selectAll()
          .where('id', '=', id)
          .executeTakeFirst();
        if (!current) throw new CorralError(ErrorCode.NOT_FOUND, `no join token ${id}`);
        if (current.used_at !== null)
          throw new CorralError(ErrorCode.CONFLICT, `join token ${id} was already used`);
        if (current.revoked_at !== null) return current;
        await trx.updateTable('join_tokens').set({ revoked_at: nowIso }).where('id', '=', id).execute();
        await audit.append(
          { actor, action: 'token-revoke', target: current.name, details: { tokenId: id } },
          trx,
        );
        return { ...current, revoked_at: nowIso };
      });
      return view(row, nowIso);
    },

    async findRedeemable(secret) {
      const row = await db
        .selectFrom('join_tokens')
        .selectAll()
        .where('hash', '=', secretHash(secret))
        .executeTakeFirst();
      if (!row || stateOf(row, isoAt(clock.now())) !== 'active') throw joinRefused();
      const labels = decodeJsonColumn(Labels, row.labels, {
        table: 'join_tokens',
        column: 'labels',
        row: row.id,
      });
      return { id: row.id, name: row.name, labels };
    },

    async claim(trx, id) {
      const nowIso = isoAt(clock.now());
      const result = await trx
        .updateTable('join_tokens')
        .set({ used_at: nowIso })
        .where('id', '=', id)
        .where('used_at', 'is', null)
        .where('revoked_at', 'is', null)
        .where('expires_at', '>', nowIso)
        .executeTakeFirst();
      if (result.numUpdatedRows !== 1n) throw joinRefused();
    },

    async attach(trx, id, hostId) {
      await trx.updateTable('join_tokens').set({ host_id: hostId }).where('id', '=', id).execute();
    },
  };
}
