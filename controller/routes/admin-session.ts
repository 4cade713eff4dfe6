import type { Server as HttpServer } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { peerOfRequest } from '../../pki/index.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { scopeAllows } from '../../protocol/operators.js';
import {
  SESSION_COOKIE,
  SessionLoginRequest,
  SessionLogoutResponse,
  SessionView,
} from '../../protocol/web-session.js';
import { adminActor, refused, sessionCookie, type AdminAuthMode } from '../http/admin-auth.js';
import type { AuthenticatedOperator, OperatorStore } from '../operators/operator-store.js';
import type { WebSessions } from '../operators/web-sessions.js';

export interface SessionRouteOptions {
  readonly operators: Pick<OperatorStore, 'byToken' | 'byFingerprint'>;
  readonly webSessions: WebSessions;
  readonly mode: AdminAuthMode;
  /** TLS: the cookie gets `Secure`. */
  readonly secure: boolean;
}

function setCookie(reply: FastifyReply, value: string, maxAgeSeconds: number, secure: boolean): void {
  reply.header(
    'set-cookie',
    `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}${secure ? '; Secure' : ''}`,
  );
}

/**
 * Dashboard login (`POST /v1/session`, public: it takes the credential itself), the session's
 * own view with a fresh anti-CSRF token (`GET`, for a reloaded page) and logout (`DELETE`).
 * A login needs the `read` scope: the dashboard shows nothing to an operator without it.
 */
export const adminSessionRoutes: FastifyPluginAsyncTypebox<SessionRouteOptions, HttpServer> = async (
  app,
  { operators, webSessions, mode, secure },
) => {
  app.post(
    '/v1/session',
    { schema: { body: SessionLoginRequest, response: { 200: SessionView } } },
    async (request, reply) => {
      let who: AuthenticatedOperator | undefined;
      if (request.body.token !== undefined && mode === 'token')
        who = await operators.byToken(request.body.token);
      else if (mode === 'cert') {
        const peer = peerOfRequest(request.raw);
        if (peer?.role === 'operator') who = await operators.byFingerprint(peer.fingerprint);
      }
      if (!who) throw refused(mode);
      if (!scopeAllows(who.scopes, 'read'))
        throw new CorralError(
          ErrorCode.SCOPE,
          `the dashboard needs the read scope; operator ${who.name} has ${who.scopes.join(', ')}`,
        );
      const login = await webSessions.login(who);
      setCookie(reply, login.cookie, login.maxAgeSeconds, secure);
      return {
        operator: who.name,
        kind: who.kind,
        scopes: [...who.scopes],
        csrf: login.csrf,
        expiresAt: login.expiresAt,
      };
    },
  );

  app.get('/v1/session', { schema: { response: { 200: SessionView } } }, async (request) => {
    const session = request.webSession;
    if (!session)
      throw new CorralError(
        ErrorCode.NOT_FOUND,
        'this request came with no dashboard session (a bearer token has none)',
      );
    const who = session.operator;
    return {
      operator: who.name,
      kind: who.kind,
      scopes: [...who.scopes],
      csrf: session.csrf,
      expiresAt: session.expiresAt,
    };
  });

  app.delete(
    '/v1/session',
    { schema: { response: { 200: SessionLogoutResponse } } },
    async (request, reply) => {
      const cookie = sessionCookie(request);
      const loggedOut = cookie !== undefined && (await webSessions.logout(cookie, adminActor(request)));
      setCookie(reply, '', 0, secure);
      return { loggedOut };
    },
  );
};
