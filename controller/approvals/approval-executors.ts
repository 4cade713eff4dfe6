import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ApprovedDecommission,
  ApprovedOperatorChange,
  ApprovedRollback,
  ApprovedTeardown,
  ApprovedUpdate,
  type ApprovedUpdate as KeptUpdateBody,
} from '../../protocol/approvals.js';
import type { ServiceTeardownRequest } from '../../protocol/deployment.js';
import { parseWith } from '../../protocol/validate.js';
import type { DestructiveActions } from '../fleet/destructive-actions.js';
import type { OperatorSecret, OperatorStore } from '../operators/operator-store.js';
import type { ReleaseUpdater } from '../release/update-operation.js';
import type { ApprovalStore } from './approval-store.js';

export type KeptUpdate = KeptUpdateBody;

/** Where release uploads waiting for approval are kept: under the upload dir, one file each. */
export const keptUploadDir = (uploadDir: string): string => join(uploadDir, 'approvals');

/** Targets longer than this are shortened (the approvals column holds 300 characters). */
const MAX_TARGET_CHARS = 200;

/** What an update request is about: the release and where it goes (same target: same request). */
export function updateApprovalTarget(push: {
  readonly sha256: string;
  readonly hosts: readonly string[];
  readonly all: boolean;
}): string {
  const where = push.all ? 'all hosts' : [...push.hosts].sort().join(',');
  const hosts = where.length <= MAX_TARGET_CHARS ? where : `${push.hosts.length} hosts`;
  return `sha256:${push.sha256.slice(0, 16)} to ${hosts}`;
}

/** What a rollback request is about (an `update` request; a push's target never starts so). */
export const rollbackApprovalTarget = (host: string): string => `rollback ${host}`;

/** What a teardown request is about, as the teardown's own operation names it. */
export function teardownApprovalTarget(filter: ServiceTeardownRequest): string {
  const parts = [
    filter.service !== undefined ? `service ${filter.service}` : '',
    filter.host !== undefined ? `host ${filter.host}` : '',
  ].filter(Boolean);
  return parts.length > 0 ? parts.join(' on ') : 'all';
}

/** What an operator change is about: `create NAME`, `revoke NAME`, `rotate NAME`. */
export function operatorApprovalTarget(change: ApprovedOperatorChange): string {
  return change.change === 'create' ? `create ${change.create.name}` : `${change.change} ${change.name}`;
}

/** The secret of a new credential is shown to its requester only, never kept with the approval. */
function withoutSecret(result: unknown): unknown {
  const secret = result as OperatorSecret;
  return { operator: secret.operator };
}

/**
 * Registers what runs each approved operator action, as its requester: decommission,
 * teardown, update (a push of the kept upload, removed once the request ends either way, or
 * a host's rollback), and operator
 * changes (revoke runs at approval; create and rotate when the requester asks again, so the
 * new secret reaches only them).
 */
export function registerAdminExecutors(
  store: ApprovalStore,
  d: {
    /** Decommission and teardown, with the backup taken first when backups are configured. */
    readonly destructive: DestructiveActions;
    readonly updater: Pick<ReleaseUpdater, 'update' | 'rollback'>;
    readonly operators: OperatorStore;
  },
): void {
  store.register('decommission', {
    run: async (body, actor) =>
      d.destructive.decommission(parseWith(ApprovedDecommission, body, 'approved decommission').name, actor),
  });
  store.register('teardown', {
    run: async (body, actor) =>
      d.destructive.teardown(parseWith(ApprovedTeardown, body, 'approved teardown'), actor),
  });
  const keptFile = (body: unknown): string | undefined =>
    typeof (body as { file?: unknown } | null)?.file === 'string'
      ? (body as { file: string }).file
      : undefined;
  store.register('update', {
    async run(body, actor) {
      if (typeof body === 'object' && body !== null && 'rollback' in body)
        return d.updater.rollback(parseWith(ApprovedRollback, body, 'approved rollback').rollback, actor);
      const push = parseWith(ApprovedUpdate, body, 'approved update');
      try {
        return await d.updater.update({ ...push, dryRun: false, actor });
      } finally {
        await rm(push.file, { force: true });
      }
    },
    async discard(body) {
      const file = keptFile(body);
      if (file !== undefined) await rm(file, { force: true });
    },
  });
  store.register('operators', {
    async run(body, actor, { socket }) {
      const change = parseWith(ApprovedOperatorChange, body, 'approved operator change');
      if (change.change === 'create') return d.operators.create(change.create, actor);
      if (change.change === 'rotate') return d.operators.rotate(change.name, actor, socket);
      return { operators: await d.operators.revoke(change.name, actor, socket) };
    },
    // A revoke's answer holds no secret: it runs at approval like any other action.
    byRequester: {
      redact: withoutSecret,
      applies: (body) => (body as { change?: unknown } | null)?.change !== 'revoke',
    },
  });
}
