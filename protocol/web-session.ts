import { Type, type Static } from '@sinclair/typebox';
import { Name, Timestamp } from './common.js';
import { OPERATOR_KINDS, Scopes } from './operators.js';

/** The dashboard's session cookie: HttpOnly, SameSite=Strict, Secure on TLS. */
export const SESSION_COOKIE = 'corral_session';
/** The header every mutating request of a browser session carries: a cross-site form cannot set it. */
export const CSRF_HEADER = 'x-corral-csrf';
/** Longest a dashboard session lasts, in seconds, however long its credential still has. */
export const MAX_SESSION_SECONDS = 12 * 3600;

/**
 * Admin API: `POST /v1/session`. With a token, that token's operator logs in; without one, on
 * an admin listener that takes operator certificates, the certificate the browser presented.
 */
export const SessionLoginRequest = Type.Object(
  { token: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })) },
  { additionalProperties: false },
);
export type SessionLoginRequest = Static<typeof SessionLoginRequest>;

/** Who is logged in, what they may do, and the anti-CSRF token the page sends back. */
export const SessionView = Type.Object(
  {
    operator: Name,
    kind: Type.Union(OPERATOR_KINDS.map((k) => Type.Literal(k))),
    scopes: Scopes,
    csrf: Type.String({ maxLength: 128 }),
    expiresAt: Timestamp,
  },
  { additionalProperties: false },
);
export type SessionView = Static<typeof SessionView>;

export const SessionLogoutResponse = Type.Object(
  { loggedOut: Type.Boolean() },
  { additionalProperties: false },
);
export type SessionLogoutResponse = Static<typeof SessionLogoutResponse>;
