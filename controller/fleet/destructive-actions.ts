import type { DecommissionResponse } from '../../protocol/admin-hosts.js';
import type { ServiceTeardownRequest, ServiceTeardownResponse } from '../../protocol/deployment.js';
import type { Deployer } from '../deploy/deployer.js';
import { decommissionHost, type DecommissionDeps } from './decommission.js';
import { findHostByName } from './host-store.js';

/** Takes a backup before a destructive action, or throws CORRAL_ERR_BACKUP_FIRST_FAILED. */
export type BackupFirst = (action: string, target: string, actor: string) => Promise<void>;

/**
 * The operator actions that destroy state, as every caller runs them (the admin routes when
 * no approval is needed, the approval executors once approved): the one place where, with
 * backups configured, a backup is taken first. A decommission (of a host that exists and is
 * not decommissioned yet) and a teardown of everything (no service, no host) wait for it; if
 * it fails they throw CORRAL_ERR_BACKUP_FIRST_FAILED and change nothing.
 */
export interface DestructiveActions {
  decommission(name: string, actor: string): Promise<DecommissionResponse>;
  teardown(filter: ServiceTeardownRequest, actor: string): Promise<ServiceTeardownResponse>;
}

export function createDestructiveActions(d: {
  readonly decommission: DecommissionDeps & { readonly waitMs: number };
  readonly deployer: Pick<Deployer, 'teardown'>;
  /** Undefined: backups are not configured, the actions run at once. */
  readonly backupFirst?: BackupFirst | undefined;
}): DestructiveActions {
  const { backupFirst } = d;
  return {
    async decommission(name, actor) {
      if (backupFirst) {
        // A request decommissionHost refuses anyway (no such host, already gone) needs no backup.
        const host = await findHostByName(d.decommission.db, name);
        if (host && host.decommissioned_at === null) await backupFirst('decommission', name, actor);
      }
      return decommissionHost(d.decommission, name, actor, d.decommission.waitMs);
    },
    async teardown(filter, actor) {
      if (backupFirst && filter.service === undefined && filter.host === undefined)
        await backupFirst('teardown', 'all', actor);
      return d.deployer.teardown(filter, actor);
    },
  };
}
