import { createHash, timingSafeEqual } from 'node:crypto';
import type { Kysely } from 'kysely';
import { MAX_SESSION_SECONDS } from '../../protocol/web-session.js';
import type { AuditLog } from '../audit/audit-log.js';
import { isoAt, type Clock } from '../clock.js';
import type { ControllerDatabase } from '../db/schema.js';
import { newSecret, secretHash } from '../secrets.js';
import { authenticated, isActive, type AuthenticatedOperator } from './operator-store.js';

const SESSION_PREFIX = 'corral_ws';
/** Longest cookie value looked up; ours are about 53 characters. */
const MAX_COOKIE_CHARS = 128;

/**
 * A session's anti-CSRF token, derived from its cookie: the page gets it in the login answer
 * (and again from `GET /v1/session` after a reload), a cross-site page can read neither the
 * cookie nor that answer, and the server recomputes it from the cookie it is sent.
 */
export function csrfTokenOf(cookie: string): string {
  return createHash('sha256').update(`corral-csrf\0${cookie}`, 'utf8').digest('base64url');
}

/** A browser session that counts now, with the operator credential it is bound to. */
export interface WebSession {
  readonly operator: AuthenticatedOperator;
  readonly expiresAt: string;
  readonly csrf: string;
  /** Whether `presented` is this session's anti-CSRF token (constant-time). */
  csrfMatches(presented: string): boolean;
}

export interface WebSessionLogin {
  readonly cookie: string;
  readonly csrf: string;
  readonly expiresAt: string;
  readonly maxAgeSeconds: number;
}

/**
 * Dashboard sessions. A login makes a cookie secret (kept only as its SHA-256); the session
 * ends at logout, after MAX_SESSION_SECONDS, or when its credential expires, and counts only
 * while that credential is active, so revoking an operator ends its sessions from the next
 * request (its live connections are closed by the operator store).
 */
export interface WebSessions {
  login(operator: AuthenticatedOperator): Promise<WebSessionLogin>;
  /** The session this cookie stands for, if it counts now. */
  byCookie(cookie: string): Promise<WebSession | undefined>;
  /** Ends the session; true if it was live. */
  logout(cookie: string, actor: string): Promise<boolean>;
}

export function createWebSessions(deps: {
  readonly db: Kysely<ControllerDatabase>;
  readonly readDb: Kysely<ControllerDatabase>;
  readonly audit: AuditLog;
  readonly clock: Clock;
}): WebSessions {
  const { db, readDb, audit, clock } = deps;

  async function live(cookie: string): Promise<{ id: string; session: WebSession } | undefined> {
    if (!cookie.startsWith(`${SESSION_PREFIX}_`) || cookie.length > MAX_COOKIE_CHARS) return undefined;
    const id = secretHash(cookie);
    const now = isoAt(clock.now());
    const row = await readDb
      .selectFrom('web_sessions')
      .innerJoin('operators', 'operators.id', 'web_sessions.operator_id')
      .selectAll('operators')
      .select('web_sessions.expires_at as session_expires_at')
      .where('web_sessions.id', '=', id)
      .where('web_sessions.revoked_at', 'is', null)
      .executeTakeFirst();
    if (!row || row.session_expires_at <= now) return undefined;
    const { session_expires_at: expiresAt, ...operator } = row;
    if (!isActive(operator, now)) return undefined;
    const csrf = csrfTokenOf(cookie);
    const expected = Buffer.from(csrf);
    return {
      id,
      session: {
        operator: authenticated(operator),
        expiresAt,
        csrf,
        csrfMatches: (presented) => {
          const got = Buffer.from(presented);
          return got.length === expected.length && timingSafeEqual(got, expected);
        },
      },
    };
  }

  return {
    async login(operator) {
      const now = clock.now();
      const credential = await readDb
        .selectFrom('operators')
        .select('expires_at')
        .where('id', '=', operator.id)
        .executeTakeFirstOrThrow();
      let end = now + MAX_SESSION_SECONDS * 1000;
      if (credential.expires_at !== null) end = Math.min(end, Date.parse(credential.expires_at));
      const cookie = newSecret(SESSION_PREFIX);
      await db.transaction().execute(async (trx) => {
        await trx
          .insertInto('web_sessions')
          .values({
            id: secretHash(cookie),
            operator_id: operator.id,
            created_at: isoAt(now),
            expires_at: isoAt(end),
            revoked_at: null,
          })
          .execute();
        await audit.append({ actor: operator.name, action: 'session-login', target: operator.name }, trx);
      });
      return {
        cookie,
        csrf: csrfTokenOf(cookie),
        expiresAt: isoAt(end),
        maxAgeSeconds: Math.max(1, Math.floor((end - now) / 1000)),
      };
    },
    async byCookie(cookie) {
      return (await live(cookie))?.session;
    },
    async logout(cookie, actor) {
      const found = await live(cookie);
      if (!found) return false;
      await db.transaction().execute(async (trx) => {
        await trx
          .updateTable('web_sessions')
          .set({ revoked_at: isoAt(clock.now()) })
          .where('id', '=', found.id)
          .execute();
        await audit.append({ actor, action: 'session-logout', target: found.session.operator.name }, trx);
      });
      return true;
    },
  };
}
