import type { Kysely } from 'kysely';
import {
  DEFAULT_DRAIN_DEADLINE_MS,
  type EligibilityResponse,
  type LabelRequest,
} from '../../protocol/admin-eligibility.js';
import { Labels } from '../../protocol/common.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import type { AuditLog } from '../audit/audit-log.js';
import { isoAt, type Clock } from '../clock.js';
import { decodeJsonColumn } from '../db/json-column.js';
import type { ControllerDatabase } from '../db/schema.js';
import { eligibilityOf } from '../fleet/host-store.js';
import type { Deployer, HostChange } from './deployer.js';

/** Labels a host may carry at most (the Labels schema's bound). */
const MAX_HOST_LABELS = 64;

export interface EligibilityDeps {
  readonly db: Kysely<ControllerDatabase>;
  readonly audit: AuditLog;
  readonly clock: Clock;
  readonly deployer: Pick<Deployer, 'preview'>;
}

interface ActiveHost {
  readonly id: string;
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly eligible: number;
  readonly drain_deadline: string | null;
}

async function activeHost(db: Kysely<ControllerDatabase>, name: string): Promise<ActiveHost> {
  const row = await db
    .selectFrom('hosts')
    .select(['id', 'name', 'labels', 'eligible', 'drain_deadline'])
    .where('name', '=', name)
    .where('decommissioned_at', 'is', null)
    .executeTakeFirst();
  if (!row) throw new CorralError(ErrorCode.NOT_FOUND, `no host named ${name}`);
  return {
    ...row,
    labels: decodeJsonColumn(Labels, row.labels, { table: 'hosts', column: 'labels', row: row.id }),
  };
}

/**
 * Writes the host's new eligibility and labels and its audit entry in one transaction, and
 * answers with what the scheduler's next pass moves (it runs within its tick).
 */
async function apply(
  deps: EligibilityDeps,
  host: ActiveHost,
  next: { eligible: number; drainDeadline: string | null; labels: Record<string, string> },
  audit: { actor: string; action: string; details: Record<string, unknown> },
  dryRun: boolean,
): Promise<EligibilityResponse> {
  const change: HostChange = {
    labels: next.labels,
    eligible: next.eligible !== 0 && next.drainDeadline === null,
    drainDeadlineMs: next.drainDeadline === null ? null : Date.parse(next.drainDeadline),
  };
  const changes = await deps.deployer.preview(host.name, change);
  if (!dryRun) {
    await deps.db.transaction().execute(async (trx) => {
      await trx
        .updateTable('hosts')
        .set({
          eligible: next.eligible,
          drain_deadline: next.drainDeadline,
          labels: JSON.stringify(next.labels),
        })
        .where('id', '=', host.id)
        .execute();
      await deps.audit.append(
        {
          actor: audit.actor,
          action: audit.action,
          target: host.name,
          details: { ...audit.details, moves: changes.plan.map((p) => `${p.service}@${p.host}`) },
        },
        trx,
      );
    });
  }
  return {
    host: host.name,
    eligibility: eligibilityOf({ eligible: next.eligible, drain_deadline: next.drainDeadline }),
    drainDeadline: next.drainDeadline,
    labels: next.labels,
    dryRun,
    changes,
  };
}

/**
 * Drains a host: it takes no new instances, and each of its instances is placed elsewhere
 * and stopped on it once the new one runs, or at the deadline whether or not it does. The
 * host stays ineligible once empty. A host already draining gets the new deadline.
 */
export async function drainHost(
  deps: EligibilityDeps,
  name: string,
  deadlineMs: number | undefined,
  actor: string,
): Promise<EligibilityResponse> {
  const host = await activeHost(deps.db, name);
  const ms = deadlineMs ?? DEFAULT_DRAIN_DEADLINE_MS;
  const drainDeadline = isoAt(deps.clock.now() + ms);
  return apply(
    deps,
    host,
    { eligible: 0, drainDeadline, labels: host.labels },
    { actor, action: 'drain', details: { deadline: drainDeadline } },
    false,
  );
}

/** On: eligible again (a drain ends). Off: takes no new instances and keeps what it runs. */
export async function setEligibility(
  deps: EligibilityDeps,
  name: string,
  eligible: boolean,
  actor: string,
): Promise<EligibilityResponse> {
  const host = await activeHost(deps.db, name);
  return apply(
    deps,
    host,
    { eligible: eligible ? 1 : 0, drainDeadline: null, labels: host.labels },
    { actor, action: 'eligibility', details: { eligible, wasDraining: host.drain_deadline !== null } },
    false,
  );
}

/**
 * Sets and removes labels (removals after sets) and answers what moves; with `dryRun` only
 * the answer. Instances whose constraint the host no longer satisfies move make-before-break.
 */
export async function relabelHost(
  deps: EligibilityDeps,
  name: string,
  request: LabelRequest,
  actor: string,
): Promise<EligibilityResponse> {
  const host = await activeHost(deps.db, name);
  const labels: Record<string, string> = { ...host.labels, ...(request.set ?? {}) };
  for (const k of request.remove ?? []) delete labels[k];
  if (Object.keys(labels).length > MAX_HOST_LABELS) {
    throw new CorralError(ErrorCode.VALIDATION, `a host carries at most ${MAX_HOST_LABELS} labels`);
  }
  return apply(
    deps,
    host,
    { eligible: host.eligible, drainDeadline: host.drain_deadline, labels },
    { actor, action: 'label', details: { set: request.set ?? {}, remove: request.remove ?? [] } },
    request.dryRun ?? false,
  );
}
