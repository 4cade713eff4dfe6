export * from './errors.js';
export * from './clock.js';
export * from './controller.js';
export * from './serve.js';
export * from './agent-client.js';
export type { AuditLog, AuditInput } from './audit/audit-log.js';
export type { PinRegistry, PinMatch, PinRevocation, PinRole } from './pins/pin-registry.js';
export type { PinKeeper } from './pins/pin-keeper.js';
export { openDatabase, openReadConnection, type ControllerDb } from './db/open-database.js';
export {
  describeDatabaseTarget,
  parseDatabaseTarget,
  toDatabaseTarget,
  type DatabaseTarget,
} from './db/database-target.js';
export { initControllerState, type InitResult } from './state/init-state.js';
export { loadControllerIdentity, type ControllerIdentity } from './state/load-state.js';
export { statePaths, type StatePaths } from './state/state-paths.js';
export { DEFAULT_JOIN_TOKEN_TTL_SECONDS } from './fleet/token-store.js';
export { DEFAULT_JOIN_POLICY, parseCidr, type JoinPolicyOptions } from './fleet/join-policy.js';
export {
  checkHeartbeatBudget,
  DEFAULT_HEARTBEAT_BUDGET,
  type HeartbeatBudgetLimits,
} from './fleet/heartbeat-budget.js';
export { DEFAULT_EVENT_RETENTION, type EventRetention } from './fleet/event-retention.js';
export { DEFAULT_FLEET_EVENT_RETENTION, type FleetEventRetention } from './events/fleet-retention.js';
export { restoreControllerState, type RestoreOptions, type RestoreResult } from './state/restore-state.js';
export { DEFAULT_BACKUP_KEEP, type BackupConfig } from './state/backup-schedule.js';
export { DEFAULT_RESYNC_MS } from './cluster/cluster-link.js';
export { BACKUP_NAME_RE, listBackupFiles } from './state/backup-files.js';
