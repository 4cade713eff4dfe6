import type { FastifyPluginCallback, FastifyRequest } from 'fastify';
import { peerOfRequest } from '../../pki/index.js';
import { AUTHORIZATION_SCHEME } from '../../protocol/constants.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { scopeAllows } from '../../protocol/operators.js';
import type { OperatorSessions } from '../operators/operator-sessions.js';
import type { AuthenticatedOperator, OperatorStore } from '../operators/operator-store.js';
import { PUBLIC, routeAccess } from './route-scopes.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The name of the operator that authenticated this request; null before auth ran. */
    adminActor: string | null;
    /** The credential that authenticated this request; null before auth ran (or on /health). */
    operator: AuthenticatedOperator | null;
  }
}

/**
 * How the admin API authenticates: `token` a bearer token (plain HTTP on loopback, or TLS
 * with `--admin-tls=token`); `cert` a pinned operator client certificate (TLS, the handshake
 * already required a certificate of our CA).
 */
export type AdminAuthMode = 'token' | 'cert';

const BEARER_RE = new RegExp(`^${AUTHORIZATION_SCHEME}\\s+(\\S{1,512})$`, 'i');

/** The one 401 for a missing, unknown, revoked or expired credential: no detail on purpose. */
const refused = (mode: AdminAuthMode): CorralError =>
  new CorralError(
    ErrorCode.UNAUTHENTICATED,
    mode === 'cert' ? 'missing or invalid operator certificate' : 'missing or invalid admin token',
  );

/**
 * The admin API's auth plugin, registered on the app itself (no encapsulation):
 *  - `onRoute` refuses to register a route that ADMIN_ROUTE_SCOPES does not list;
 *  - `onRequest` authenticates every request but the public ones, looking the credential up
 *    on every request (a revoked or expired one counts from the next request), then checks
 *    the matched route's scope: a missing one is 403 CORRAL_ERR_SCOPE naming it. A request
 *    that matched no route only needs a valid credential (then it is the 404).
 * Decorates the request with `operator` and `adminActor` (the operator's name, for the audit).
 */
export const adminAuth: FastifyPluginCallback<{
  readonly mode: AdminAuthMode;
  readonly operators: Pick<OperatorStore, 'byToken' | 'byFingerprint'>;
  readonly sessions: OperatorSessions;
}> = (app, { mode, operators, sessions }, done) => {
  app.decorateRequest('adminActor', null);
  app.decorateRequest('operator', null);
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      if (routeAccess(method, route.url) === undefined) {
        throw new CorralError(
          ErrorCode.INTERNAL,
          `admin route ${method} ${route.url} declares no scope in ADMIN_ROUTE_SCOPES`,
        );
      }
    }
  });
  app.addHook('onRequest', async (request) => {
    const url = request.routeOptions.url;
    const access = url === undefined ? undefined : routeAccess(request.method, url);
    if (access === PUBLIC) return;
    const who = await authenticate(request, mode, operators);
    if (!who) throw refused(mode);
    if (access !== undefined && !scopeAllows(who.scopes, access)) {
      throw new CorralError(
        ErrorCode.SCOPE,
        `this needs the ${access} scope; operator ${who.name} has ${who.scopes.join(', ')}`,
      );
    }
    sessions.track(who.id, request.raw.socket);
    request.operator = who;
    request.adminActor = who.name;
  });
  done();
};
Object.assign(adminAuth, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'corral-admin-auth',
});

async function authenticate(
  request: FastifyRequest,
  mode: AdminAuthMode,
  operators: Pick<OperatorStore, 'byToken' | 'byFingerprint'>,
): Promise<AuthenticatedOperator | undefined> {
  if (mode === 'cert') {
    const peer = peerOfRequest(request.raw);
    // The role is checked too: only certificates issued as `operator` can be operator pins.
    if (!peer || peer.role !== 'operator') return undefined;
    return operators.byFingerprint(peer.fingerprint);
  }
  const header = request.headers.authorization;
  const match = typeof header === 'string' ? BEARER_RE.exec(header) : null;
  return match?.[1] ? operators.byToken(match[1]) : undefined;
}

/** Who made an admin request, for the audit log: the operator's name. */
export function adminActor(request: FastifyRequest): string {
  return request.adminActor ?? 'unknown';
}
