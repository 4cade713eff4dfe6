/** Wire protocol version; bumped on incompatible changes. */
export const PROTOCOL_VERSION = 1;

export const DEFAULT_ADMIN_PORT = 8770;
export const DEFAULT_WORKER_PORT = 8771;
export const DEFAULT_AGENT_PORT = 8765;
export const DEFAULT_UPDATER_PORT = 8766;
export const DEFAULT_SYSLOG_PORT = 6514;

export const DEFAULT_ADMIN_LISTEN = `127.0.0.1:${DEFAULT_ADMIN_PORT}`;
export const DEFAULT_WORKER_LISTEN = `0.0.0.0:${DEFAULT_WORKER_PORT}`;
export const DEFAULT_AGENT_LISTEN = `0.0.0.0:${DEFAULT_AGENT_PORT}`;
export const DEFAULT_UPDATER_LISTEN = `0.0.0.0:${DEFAULT_UPDATER_PORT}`;
export const DEFAULT_SYSLOG_LISTEN = `0.0.0.0:${DEFAULT_SYSLOG_PORT}`;

/** Heartbeat cadence; liveness is derived from it. */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 30_000;
/** A host missing this many intervals is `stale`, then `offline`. */
export const STALE_AFTER_INTERVALS = 2;
export const OFFLINE_AFTER_INTERVALS = 3;

export const HEADER_PROTOCOL_VERSION = 'x-corral-protocol';
export const HEADER_OPERATION_ID = 'x-corral-operation';
/**
 * On a heartbeat, value `1`: the agent asks the answer to list every live controller
 * (HeartbeatResponse `controllers`). Without it, the answer has no such field.
 */
export const HEADER_CONTROLLER_LIST = 'x-corral-controllers';
export const AUTHORIZATION_SCHEME = 'Bearer';

/** Largest JSON body the worker API accepts, in bytes. */
export const MAX_WORKER_BODY_BYTES = 256 * 1024;
/** Largest JSON body the admin API accepts, in bytes. */
export const MAX_ADMIN_BODY_BYTES = 1024 * 1024;

/** File, under a daemon's state dir, where it writes the addresses it bound. */
export const ENDPOINTS_FILE = 'run/endpoints.json';

/** The content type of a server-sent event stream. */
export const SSE_CONTENT_TYPE = 'text/event-stream';

/** Host statuses, in the order lists and counts show them. */
export const HOST_STATUSES = ['pending', 'online', 'stale', 'offline', 'decommissioned'] as const;

/** Hosts in one answer of `GET /v1/hosts` when the request names no `limit`. */
export const DEFAULT_HOST_PAGE_LIMIT = 500;
/** Hosts in one answer of `GET /v1/hosts` at most. */
export const MAX_HOST_PAGE_LIMIT = 1000;
