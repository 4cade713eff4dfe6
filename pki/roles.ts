/** The identities Corral issues certificates for. */
export const ROLES = ['controller', 'controller-client', 'agent', 'updater', 'operator'] as const;
export type Role = (typeof ROLES)[number];

/** Roles that belong to a worker and therefore carry a host id. */
export const WORKER_ROLES: readonly Role[] = ['agent', 'updater'];

export const ROLE_URI_PREFIX = 'urn:corral:role:';
export const HOST_URI_PREFIX = 'urn:corral:host:';

/** Extended key usages per role, by OID. */
export const SERVER_AUTH_OID = '1.3.6.1.5.5.7.3.1';
export const CLIENT_AUTH_OID = '1.3.6.1.5.5.7.3.2';

export const ROLE_EKUS: Record<Role, readonly string[]> = {
  controller: [SERVER_AUTH_OID],
  'controller-client': [CLIENT_AUTH_OID],
  agent: [SERVER_AUTH_OID, CLIENT_AUTH_OID],
  updater: [SERVER_AUTH_OID],
  operator: [CLIENT_AUTH_OID],
};

export function isRole(value: string): value is Role {
  return (ROLES as readonly string[]).includes(value);
}

/** Host ids are opaque tokens the controller assigns; this keeps them safe inside a URI. */
export const HOST_ID_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
