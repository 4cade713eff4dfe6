import type { FastifyPluginCallback, FastifyRequest } from 'fastify';
import { AUTHORIZATION_SCHEME } from '../../protocol/constants.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { hashesEqual, secretHash } from '../secrets.js';

/** An operator token the admin API accepts (the database keeps only its hash). */
export interface AdminCredential {
  readonly name: string;
  readonly hash: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The name of the admin token that authenticated this request; null before auth ran. */
    adminActor: string | null;
  }
}

/** Routes that answer without a token. */
const PUBLIC_ROUTES = new Set(['/health']);
const BEARER_RE = new RegExp(`^${AUTHORIZATION_SCHEME}\\s+(\\S{1,512})$`, 'i');

/**
 * The admin API's auth plugin (an onRequest hook): every route but `/health` needs
 * `Authorization: Bearer <token>` whose SHA-256 matches a stored hash (compared in constant
 * time, against every credential). The credentials are asked for on every request, so a
 * token replaced or revoked while the controller runs counts from the next request. A missing
 * or wrong token is the same 401. Decorates the request with `adminActor`; registered on the
 * app itself (no encapsulation).
 */
export const adminAuth: FastifyPluginCallback<{
  readonly credentials: () => Promise<readonly AdminCredential[]>;
}> = (app, { credentials }, done) => {
  app.decorateRequest('adminActor', null);
  app.addHook('onRequest', async (request) => {
    if (PUBLIC_ROUTES.has(request.routeOptions.url ?? '')) return;
    const header = request.headers.authorization;
    const match = typeof header === 'string' ? BEARER_RE.exec(header) : null;
    let who: string | undefined;
    if (match?.[1]) {
      const presented = secretHash(match[1]);
      for (const c of await credentials()) {
        if (hashesEqual(presented, c.hash) && who === undefined) who = c.name;
      }
    }
    if (who === undefined) throw new CorralError(ErrorCode.UNAUTHENTICATED, 'missing or invalid admin token');
    request.adminActor = who;
  });
  done();
};
Object.assign(adminAuth, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'corral-admin-auth',
});

/** Who made an admin request, for the audit log. */
export function adminActor(request: FastifyRequest): string {
  return request.adminActor ?? 'unknown';
}
