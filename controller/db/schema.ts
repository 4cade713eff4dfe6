import type { Generated } from 'kysely';
import type {
  DeploymentServicesTable,
  DesiredServicesTable,
  HostDesiredTable,
  HaltedRolloutsTable,
  OperationLogTable,
  OperationStepsTable,
  OperationsTable,
  PendingInstancesTable,
  ServiceDispatchTable,
} from './deploy-schema.js';
import type {
  FleetEventsTable,
  FleetHostStatusTable,
  WebhookDeliveriesTable,
  WebhooksTable,
} from '../events/event-tables.js';

/**
 * The controller's tables as kysely sees them. Times are ISO-8601 UTC text, JSON is text,
 * flags are integers 0/1: all of it means the same on SQLite and PostgreSQL.
 */
export interface HostsTable {
  id: string;
  name: string;
  address: string;
  agent_port: number;
  updater_port: number;
  /** JSON array of extra SANs (DNS names or IPs) for the worker's certificates. */
  sans: string;
  /** JSON object of labels. */
  labels: string;
  enrolled_at: string;
  /** 'bundle' (keys made on the controller) or 'join' (CSR with a join token). */
  enrolled_via: string;
  last_seen: string | null;
  agent_version: string | null;
  generation: number;
  /** JSON HostMetrics from the last heartbeat. */
  metrics: string | null;
  decommissioned_at: string | null;
  /** The peer address a join came from (null for `enroll`); `address` is what the worker claimed. */
  join_source: string | null;
  /** When the worker's bundle was confirmed written (null: never confirmed). */
  bundle_written_at: string | null;
  /** When the worker reported that it wiped itself (self-destruct finished). */
  wiped_at: string | null;
  /** JSON WipeReport the worker sent. */
  wipe_report: string | null;
  /** 0: takes no new instances (migration-eligibility.ts). */
  eligible: Generated<number>;
  /** Set while the host drains: when its instances are stopped whether or not replaced. */
  drain_deadline: string | null;
}

export interface PinsTable {
  fingerprint: string;
  host_id: string;
  role: string;
  not_after: string;
  active: number;
  created_at: string;
  /** Set when a renewal replaced this pin; it stays valid until the new one is seen. */
  superseded_at: string | null;
  retired_at: string | null;
  /** 1: active when its host was decommissioned; only that host is told it is decommissioned. */
  decommissioned: Generated<number>;
}

export interface JoinTokensTable {
  id: string;
  name: string;
  hash: string;
  labels: string;
  created_at: string;
  expires_at: string;
  used_at: string | null;
  revoked_at: string | null;
  host_id: string | null;
}

export interface ServiceObservedTable {
  host_id: string;
  service: string;
  state: string;
  restarts: number;
  last_error: string | null;
  pid: number | null;
  since: string | null;
  updated_at: string;
  /** Added by 0017-service-runtime: the reported runtime kind, image and container id. */
  runtime: string | null;
  image: string | null;
  container_id: string | null;
}

export interface EventsTable {
  host_id: string;
  event_id: string;
  type: string;
  time: string;
  service: string | null;
  generation: number | null;
  /** The agent operation (apply, teardown) the event closes, when there is one. */
  operation_id: string | null;
  detail: string | null;
  received_at: string;
}

export interface AuditTable {
  seq: number;
  time: string;
  actor: string;
  action: string;
  target: string;
  details: string;
  prev_hash: string;
  hash: string;
}

/** One operator credential: a bearer token (`hash`) or a pinned client certificate (`fingerprint`). */
export interface OperatorsTable {
  id: string;
  name: string;
  kind: 'token' | 'cert';
  hash: string | null;
  fingerprint: string | null;
  /** JSON array of scopes. */
  scopes: string;
  created_at: string;
  created_by: string;
  expires_at: string | null;
  revoked_at: string | null;
}

/** Where a running controller is reached (migration 0021); see migration-controller-addresses. */
export interface ControllerAddressesTable {
  controller_id: string;
  /** Its worker API, host:port, as workers dial it. */
  worker: string;
  /** Its syslog listener, host:port, when it runs one. */
  syslog: string | null;
  started_at: string;
}

export interface WebSessionsTable {
  /** SHA-256 hex of the session cookie. */
  id: string;
  operator_id: string;
  created_at: string;
  expires_at: string;
  revoked_at: string | null;
}

export interface ApprovalsTable {
  id: string;
  action: string;
  target: string;
  /** JSON: what the action runs with once approved. */
  request: string;
  requester: string;
  required: number;
  /** JSON array of operator names. */
  approvers: string;
  state: string;
  reason: string | null;
  /** JSON: the action's answer. */
  result: string | null;
  created_at: string;
  expires_at: string;
  decided_at: string | null;
}

/** The controller's retries of a service its agent gave up on, per host (migration-eligibility.ts). */
export interface ServiceRetriesTable {
  host_id: string;
  service: string;
  attempts: number;
  /** When the agent last reported it failed. */
  failed_at: string;
  escalated_at: string | null;
  reason: string | null;
}

export interface SettingsTable {
  key: string;
  value: string;
}

export interface ControllerDatabase {
  hosts: HostsTable;
  pins: PinsTable;
  join_tokens: JoinTokensTable;
  service_observed: ServiceObservedTable;
  events: EventsTable;
  audit: AuditTable;
  operators: OperatorsTable;
  web_sessions: WebSessionsTable;
  controller_addresses: ControllerAddressesTable;
  approvals: ApprovalsTable;
  settings: SettingsTable;
  service_retries: ServiceRetriesTable;
  desired_services: DesiredServicesTable;
  host_desired: HostDesiredTable;
  service_dispatch: ServiceDispatchTable;
  deployment_services: DeploymentServicesTable;
  pending_instances: PendingInstancesTable;
  operations: OperationsTable;
  operation_steps: OperationStepsTable;
  operation_log: OperationLogTable;
  halted_rollouts: HaltedRolloutsTable;
  fleet_events: FleetEventsTable;
  fleet_host_status: FleetHostStatusTable;
  webhooks: WebhooksTable;
  webhook_deliveries: WebhookDeliveriesTable;
}
