import type { Logger } from 'pino';
import type { TlsMaterial } from '../../pki/index.js';
import type { OperationRecorder } from '../deploy/operations.js';
import { executeRollout, type HostStepOutcome } from '../deploy/rollout-executor.js';
import { planRollout, type RolloutPolicy } from '../deploy/rollout-plan.js';
import type { FleetEventSink, NewFleetEvent } from '../events/event-log.js';
import { pushRelease, type HostPushResult, type PushProgress, type UpdaterTarget } from './push.js';
import { progressLine } from './update-progress.js';
import { fetchReleases } from './updater-client.js';

/** How long the canary check may take per host, in ms. */
const CANARY_CHECK_TIMEOUT_MS = 10_000;

export interface UpdateHost {
  readonly id: string;
  readonly target: UpdaterTarget;
}

export interface UpdateRolloutInput {
  readonly op: OperationRecorder;
  /** In the order the rollout sends them. */
  readonly hosts: readonly UpdateHost[];
  readonly policy: RolloutPolicy;
  readonly file: string;
  readonly sha256: string;
  readonly version: string;
  readonly tls: TlsMaterial;
  readonly force: boolean;
  readonly includeSelf: boolean;
  readonly timeoutMs?: number | undefined;
  readonly signal: AbortSignal;
  readonly log: Logger;
  readonly events?: FleetEventSink | undefined;
  /** The fleet event a finished host's push tells (update-operation.ts). */
  releaseEvent(r: HostPushResult | undefined, host: { id: string; name: string }): NewFleetEvent | undefined;
}

export interface UpdateRolloutResult {
  /** Every host sent, in the order they finished their batches. */
  readonly results: readonly HostPushResult[];
  readonly halted: { readonly host: string; readonly reason: string } | null;
  /** Hosts not sent because the rollout halted, by name. */
  readonly untouched: readonly string[];
  /** Hosts that failed (their push, or the canary check after it), by name. */
  readonly failed: readonly string[];
}

/** A push that left the host on `version`. */
export const pushSucceeded = (r: HostPushResult, version: string): boolean =>
  (r.outcome === 'updated' || r.outcome === 'self-updated') && r.current === version;

/**
 * Pushes a release to `hosts` batch by batch as the policy plans it (rollout-plan.ts), each
 * host's progress recorded in the operation as it comes. A canary passes its wait when its
 * updater still reports `version` current afterwards (an agent that crashed after its health
 * check was rolled back by then). Throws only when `signal` aborts or the file is unusable.
 */
export async function pushInSteps(x: UpdateRolloutInput): Promise<UpdateRolloutResult> {
  const byName = new Map(x.hosts.map((h) => [h.target.hostName, h]));
  const results: HostPushResult[] = [];
  const pending: Promise<void>[] = [];
  const onProgress = (p: PushProgress): void => {
    const hostId = byName.get(p.hostName)?.id;
    if (hostId === undefined) return;
    const write = progressLine(p, hostId);
    if (!write) return;
    const event = x.releaseEvent(p.result, { id: hostId, name: p.hostName });
    const events = x.events;
    pending.push(
      x.op
        .record(write.lines, write.step, event && events ? (trx) => events.append(trx, [event]) : undefined)
        .catch((err: unknown) => x.log.error({ err, operationId: x.op.id }, 'update progress not recorded')),
    );
  };
  const record = async (lines: Parameters<OperationRecorder['record']>[0]): Promise<void> => {
    await Promise.all(pending);
    await x.op.record(lines);
  };
  try {
    const out = await executeRollout<UpdateHost>({
      steps: planRollout(x.hosts, x.policy),
      haltOnFailure: x.policy.haltOnFailure,
      signal: x.signal,
      async sendBatch(batch, canary) {
        const names = batch.map((h) => h.target.hostName);
        await record([
          { level: 'info', message: `${canary ? 'canary batch' : 'batch'}: ${names.join(', ')}` },
        ]);
        const report = await pushRelease({
          file: x.file,
          sha256: x.sha256,
          tls: x.tls,
          force: x.force,
          includeSelf: x.includeSelf,
          targets: batch.map((h) => h.target),
          concurrency: batch.length,
          timeoutMs: x.timeoutMs,
          onProgress,
          signal: x.signal,
        });
        await Promise.all(pending);
        results.push(...report.results);
        return batch.map((h): HostStepOutcome => {
          const r = report.results.find((res) => res.hostName === h.target.hostName);
          if (!r) return { ok: false, reason: 'no answer' };
          if (pushSucceeded(r, x.version)) return { ok: true, reason: null };
          return { ok: false, reason: `${r.outcome}${r.reason ? `: ${r.reason}` : ''}` };
        });
      },
      async onCanaryWait(ms, canaries) {
        await record([
          {
            level: 'info',
            message: `waiting ${Math.round(ms / 1000)} s for the canaries (${canaries.map((h) => h.target.hostName).join(', ')}) to stay healthy`,
          },
        ]);
      },
      async checkCanaries(canaries) {
        const sick = new Map<UpdateHost, string>();
        for (const h of canaries) {
          try {
            const rel = await fetchReleases(h.target, x.tls, {
              timeoutMs: CANARY_CHECK_TIMEOUT_MS,
              signal: AbortSignal.any([x.signal, AbortSignal.timeout(CANARY_CHECK_TIMEOUT_MS)]),
            });
            if (rel.current !== x.version) sick.set(h, `the host is on ${rel.current ?? 'no release'} now`);
          } catch (e: unknown) {
            sick.set(h, `its updater could not be asked: ${e instanceof Error ? e.message : String(e)}`);
          }
        }
        for (const [h, why] of sick) {
          await x.op.record(
            [{ level: 'error', host: h.target.hostName, message: `canary unhealthy: ${why}` }],
            {
              hostId: h.id,
              state: 'failed',
              detail: `canary unhealthy: ${why}`.slice(0, 2000),
            },
          );
        }
        return sick;
      },
    });
    return {
      results,
      halted: out.halted && { host: out.halted.host.target.hostName, reason: out.halted.reason },
      untouched: out.untouched.map((h) => h.target.hostName),
      failed: out.failed.map((f) => f.host.target.hostName),
    };
  } finally {
    await Promise.all(pending);
  }
}
