/** The deploy tables as kysely sees them (see migration-deploy.ts). */

/** One service placed on one host: what the host must run. */
export interface DesiredServicesTable {
  host_id: string;
  service: string;
  /** JSON ServiceSpec, exactly as sent to the agent. */
  spec: string;
  spec_hash: string;
  updated_at: string;
}

/** A host's desired set as a whole. */
export interface HostDesiredTable {
  host_id: string;
  /** Bumped only when the set changes, so a resend of the same set is a no-op for the agent. */
  generation: number;
  set_hash: string;
  /** The last generation the agent accepted (0: none yet). */
  acked_generation: number;
  updated_at: string;
}

/** What the last dispatch did for one service on one host. */
export interface ServiceDispatchTable {
  host_id: string;
  service: string;
  /** 'running', or 'removed' until the host has accepted a set without it. */
  desired: string;
  /** 'pending' | 'applied' | 'failed' */
  state: string;
  reason: string | null;
  generation: number;
  updated_at: string;
}

export interface OperationsTable {
  id: string;
  /** 'deploy' | 'teardown' | 'update' */
  kind: string;
  /** 'running' | 'succeeded' | 'failed' | 'partial' | 'halted' | 'cancelled' */
  state: string;
  actor: string;
  target: string;
  created_at: string;
  finished_at: string | null;
  reason: string | null;
  /** JSON OperationSummary. */
  summary: string;
  /** The id of the controller process running it (ClusterLink.id); null from before 0020. */
  controller: string | null;
}

export interface OperationStepsTable {
  operation_id: string;
  host_id: string;
  host_name: string;
  /** 'pending' | 'running' | 'succeeded' | 'failed' | 'skipped' */
  state: string;
  generation: number | null;
  services: number;
  detail: string | null;
  started_at: string | null;
  finished_at: string | null;
}

/** A halted rollout's resume data (migration-rollouts.ts). */
export interface HaltedRolloutsTable {
  operation_id: string;
  /** 'deploy' | 'update' */
  kind: string;
  /** JSON HaltedRollout. */
  rollout: string;
  halted_at: string;
}

/** Append-only (triggers refuse UPDATE and DELETE). */
export interface OperationLogTable {
  operation_id: string;
  seq: number;
  time: string;
  /** 'info' | 'warn' | 'error' */
  level: string;
  host: string | null;
  message: string;
}

/** The spec of the last deploy, one row per deployment service (migration-scheduling.ts). */
export interface DeploymentServicesTable {
  name: string;
  /** Order in the spec. */
  position: number;
  /** JSON DeploymentService. */
  spec: string;
  updated_at: string;
}

/** An instance no host could take at the last placement. */
export interface PendingInstancesTable {
  instance: string;
  service: string;
  reason: string;
  since: string;
}
