import type { FastifyPluginCallback, FastifyRequest } from 'fastify';
import { peerOfRequest } from '../../pki/index.js';
import { AUTHORIZATION_SCHEME } from '../../protocol/constants.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { scopeAllows } from '../../protocol/operators.js';
import { CSRF_HEADER, SESSION_COOKIE } from '../../protocol/web-session.js';
import type { OperatorSessions } from '../operators/operator-sessions.js';
import type { AuthenticatedOperator, OperatorStore } from '../operators/operator-store.js';
import type { WebSession, WebSessions } from '../operators/web-sessions.js';
import { PUBLIC, routeAccess } from './route-scopes.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The name of the operator that authenticated this request; null before auth ran. */
    adminActor: string | null;
    /** The credential that authenticated this request; null before auth ran (or on /health). */
    operator: AuthenticatedOperator | null;
    /** The dashboard session this request came with, if it authenticated by its cookie. */
    webSession: WebSession | null;
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
export const refused = (mode: AdminAuthMode): CorralError =>
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
  readonly webSessions?: Pick<WebSessions, 'byCookie'> | undefined;
}> = (app, { mode, operators, sessions, webSessions }, done) => {
  app.decorateRequest('adminActor', null);
  app.decorateRequest('operator', null);
  app.decorateRequest('webSession', null);
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
    const found = await authenticate(request, mode, operators, webSessions);
    if (!found) throw refused(mode);
    const { who, session } = found;
    if (needsCsrf(request, found.via)) {
      const presented = request.headers[CSRF_HEADER];
      if (!session || typeof presented !== 'string' || !session.csrfMatches(presented)) {
        throw new CorralError(
          ErrorCode.CSRF,
          `a browser's change needs its session's ${CSRF_HEADER} header; log in to the dashboard again`,
        );
      }
    }
    if (access !== undefined && !scopeAllows(who.scopes, access)) {
      throw new CorralError(
        ErrorCode.SCOPE,
        `this needs the ${access} scope; operator ${who.name} has ${who.scopes.join(', ')}`,
      );
    }
    sessions.track(who.id, request.raw.socket);
    request.operator = who;
    request.adminActor = who.name;
    request.webSession = session ?? null;
  });
  done();
};
Object.assign(adminAuth, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'corral-admin-auth',
});

type Via = 'bearer' | 'cert' | 'session';

/** The session cookie's value, if the request carries one. */
export function sessionCookie(request: FastifyRequest): string | undefined {
  const header = request.headers.cookie;
  if (typeof header !== 'string' || header.length > 8192) return undefined;
  for (const part of header.split(';')) {
    const [name, ...value] = part.trim().split('=');
    if (name === SESSION_COOKIE) return value.join('=');
  }
  return undefined;
}

/**
 * A change a browser could have been tricked into sending: one authenticated by the session
 * cookie, or by a client certificate from a page (browsers send both on their own, bearer
 * tokens they do not). It must carry the session's anti-CSRF header, which a cross-site form
 * cannot set and a cross-site script cannot read.
 */
function needsCsrf(request: FastifyRequest, via: Via): boolean {
  if (request.method === 'GET' || request.method === 'HEAD' || request.method === 'OPTIONS') return false;
  if (via === 'session') return true;
  if (via === 'bearer') return false;
  return request.headers.origin !== undefined || request.headers['sec-fetch-site'] !== undefined;
}

async function authenticate(
  request: FastifyRequest,
  mode: AdminAuthMode,
  operators: Pick<OperatorStore, 'byToken' | 'byFingerprint'>,
  webSessions: Pick<WebSessions, 'byCookie'> | undefined,
): Promise<{ who: AuthenticatedOperator; via: Via; session?: WebSession | undefined } | undefined> {
  const cookie = webSessions ? sessionCookie(request) : undefined;
  const session = cookie !== undefined ? await webSessions?.byCookie(cookie) : undefined;
  if (mode === 'cert') {
    const peer = peerOfRequest(request.raw);
    // The role is checked too: only certificates issued as `operator` can be operator pins.
    if (!peer || peer.role !== 'operator') return undefined;
    const who = await operators.byFingerprint(peer.fingerprint);
    if (!who) return undefined;
    // A session counts with the certificate it was made with, never with another's.
    return { who, via: 'cert', session: session?.operator.id === who.id ? session : undefined };
  }
  const header = request.headers.authorization;
  if (header !== undefined) {
    const match = typeof header === 'string' ? BEARER_RE.exec(header) : null;
    const who = match?.[1] ? await operators.byToken(match[1]) : undefined;
    return who ? { who, via: 'bearer' } : undefined;
  }
  return session ? { who: session.operator, via: 'session', session } : undefined;
}

/** Who made an admin request, for the audit log: the operator's name. */
export function adminActor(request: FastifyRequest): string {
  return request.adminActor ?? 'unknown';
}
