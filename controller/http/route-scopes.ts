import type { Scope } from '../../protocol/operators.js';

/** A route any client may call, with no credential at all. */
export const PUBLIC = 'public';
export type RouteAccess = Scope | typeof PUBLIC;

/**
 * Every admin route and the scope it needs, keyed `METHOD URL` as fastify registers it. The
 * admin app refuses to register a route missing from this table (so a new route without a
 * scope cannot start), and the auth hook reads the scope of the matched route from here.
 * `admin` implies every scope.
 */
export const ADMIN_ROUTE_SCOPES: Readonly<Record<string, RouteAccess>> = {
  'GET /health': PUBLIC,
  // The dashboard's page and files, and its login (which takes the credential itself).
  'GET /': PUBLIC,
  'GET /ui/:file': PUBLIC,
  'POST /v1/session': PUBLIC,
  'GET /v1/session': 'read',
  'DELETE /v1/session': 'read',
  'GET /metrics': 'metrics',
  'GET /metrics/hosts': 'metrics',
  'GET /v1/hosts': 'read',
  'GET /v1/hosts/:name': 'read',
  'POST /v1/hosts/:name/decommission': 'decommission',
  'POST /v1/hosts/:name/drain': 'deploy',
  'POST /v1/hosts/:name/eligibility': 'deploy',
  'POST /v1/hosts/:name/labels': 'deploy',
  'POST /v1/check': 'read',
  'POST /v1/hosts/:name/diagnose': 'deploy',
  'POST /v1/enroll': 'enroll',
  'POST /v1/hosts/:name/bundle-written': 'enroll',
  'POST /v1/tokens': 'enroll',
  'GET /v1/tokens': 'enroll',
  'POST /v1/tokens/:id/revoke': 'enroll',
  'GET /v1/audit': 'read',
  'GET /v1/audit/verify': 'read',
  'POST /v1/deploy': 'deploy',
  'GET /v1/services': 'read',
  'POST /v1/teardown': 'deploy',
  'POST /v1/restart': 'deploy',
  'GET /v1/ops': 'read',
  'GET /v1/ops/:id': 'read',
  // And `update` for an update's rollout (checked by the route).
  'POST /v1/ops/:id/resume': 'deploy',
  'POST /v1/ops/:id/cancel': 'deploy',
  'POST /v1/update': 'update',
  'GET /v1/releases': 'read',
  'POST /v1/hosts/:name/rollback': 'update',
  'GET /v1/events': 'read',
  'GET /v1/logs': 'read',
  'POST /v1/webhooks': 'admin',
  'GET /v1/webhooks': 'admin',
  'DELETE /v1/webhooks/:name': 'admin',
  'GET /v1/webhooks/:name/deliveries': 'admin',
  'GET /v1/operators': 'admin',
  'POST /v1/operators': 'admin',
  'POST /v1/operators/:name/revoke': 'admin',
  'POST /v1/operators/:name/rotate': 'admin',
  'GET /v1/approvals': 'read',
  'GET /v1/approvals/:id': 'read',
  'POST /v1/approvals/:id/approve': 'approve',
  'POST /v1/approvals/:id/reject': 'approve',
  // Only the requester may cancel (checked by the store); any operator may try.
  'POST /v1/approvals/:id/cancel': 'read',
  // The CA key and every credential's hash leave in it (encrypted): admin only.
  'POST /v1/backup': 'admin',
};

/** The access a route needs; HEAD is answered by its GET route. Undefined for a route not listed. */
export function routeAccess(method: string, url: string): RouteAccess | undefined {
  const m = method === 'HEAD' ? 'GET' : method;
  return ADMIN_ROUTE_SCOPES[`${m} ${url}`];
}
