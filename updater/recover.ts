import type { Logger } from 'pino';
import type { HistoryEntry } from '../protocol/index.js';
import type { Activator } from './activator.js';
import type { AgentRunner } from './agent-runner.js';
import { probeOnce } from './health-probe.js';
import type { ReleaseManager } from './release-manager.js';
import { restoreReplaced } from './replaced-copy.js';
import { readLinkVersion, removeStagingDirs, removeTree, type ReleaseLayout } from './release-layout.js';
import type { StateStore } from './state-store.js';

export interface RecoverOptions {
  readonly layout: ReleaseLayout;
  readonly store: StateStore;
  readonly runner: AgentRunner;
  readonly activator: Activator;
  readonly manager: ReleaseManager;
  readonly healthSocket: string;
  readonly log: Logger;
  readonly clock: () => Date;
}

export interface RecoveryReport {
  /** What the journal said was in flight, if anything. */
  readonly interrupted: 'staging' | 'activating' | 'watching' | null;
  /** The release `current` points at once recovery is done. */
  readonly current: string | null;
  readonly stagingDirsRemoved: number;
  /** How the agent was found: kept running, restarted, or none (no release yet). */
  readonly agent: 'adopted' | 'restarted' | 'none' | 'unhealthy';
}

/**
 * Brings the root back to a consistent state at startup, whatever step a previous updater
 * process died at: a swap whose health was never confirmed, or whose watch period never ended,
 * is undone (`current` back to where it was, the previous agent restarted and probed); a
 * release that was staged but never activated is removed, and an installed copy it was to
 * replace is put back; then staging dirs are removed, orphaned release dirs are pruned, and
 * the agent of `current` is found running (adopted) or restarted. Runs before the API listens,
 * after open-state.ts has vouched for the journal.
 */
export async function recover(o: RecoverOptions): Promise<RecoveryReport> {
  const { layout, store, log } = o;
  await o.runner.adopt();
  const intent = store.state.intent;
  let current = await readLinkVersion(layout.currentLink);
  let agent: RecoveryReport['agent'] | undefined;
  const record = (e: Omit<HistoryEntry, 'time'>): Promise<void> =>
    store.record({ time: o.clock().toISOString(), ...e });

  if (intent) {
    log.warn({ intent, current }, 'recovering from an interrupted update');
    const unconfirmed = intent.phase === 'activating' || intent.phase === 'watching';
    if (unconfirmed && current === intent.to && intent.from !== intent.to) {
      const back = await o.activator
        .switchTo(intent.from)
        .catch((e: unknown) => ({ ok: false as const, reason: e instanceof Error ? e.message : String(e) }));
      current = intent.from;
      agent = back.ok ? 'restarted' : 'unhealthy';
      const when = intent.phase === 'watching' ? 'during the watch period of' : 'before it confirmed';
      await record({
        version: intent.to,
        from: intent.from,
        outcome: 'recovered',
        reason: `updater stopped ${when} ${intent.to}; rolled back to ${intent.from ?? '(none)'}${back.ok ? '' : ` (which is unhealthy: ${back.reason})`}`,
      });
    } else {
      await record({
        version: intent.to,
        from: intent.from,
        outcome: 'interrupted',
        reason: `updater stopped while ${intent.phase === 'staging' ? 'receiving' : 'activating'} the release; nothing was activated`,
      });
    }
    if (intent.kind === 'update' && current !== intent.to) {
      if (intent.replaced) {
        // The copy this update replaced comes back (from the staging dir, or it never left).
        await restoreReplaced(layout, store, intent.to, layout.stagingDir(intent.id), intent.replaced);
      } else if (!store.state.installed.some((r) => r.version === intent.to)) {
        await removeTree(layout.releaseDir(intent.to));
      }
    }
    const restored = store.state.installed.some((r) => r.version === intent.to);
    await store.update((s) => ({
      ...s,
      previous: s.previous === intent.to && intent.kind === 'update' && !restored ? null : s.previous,
      intent: null,
    }));
  }
  const stagingDirsRemoved = await removeStagingDirs(layout);
  await o.manager.prune();

  agent ??= await ensureAgent(o, current);
  await o.manager.resumeSupervision();
  log.info(
    { current, agent, stagingDirsRemoved, interrupted: intent?.phase ?? null },
    'updater state recovered',
  );
  return { interrupted: intent?.phase ?? null, current, stagingDirsRemoved, agent };
}

async function ensureAgent(o: RecoverOptions, current: string | null): Promise<RecoveryReport['agent']> {
  if (current === null) {
    await o.runner.stop();
    return 'none';
  }
  const probe = await probeOnce(o.healthSocket);
  if (probe.ok && probe.health.version === current && o.runner.exitReason() === undefined) return 'adopted';
  try {
    const result = await o.activator.start(await o.activator.loadRelease(current));
    if (!result.ok)
      o.log.error({ current, reason: result.reason }, 'current release is unhealthy at startup');
    return result.ok ? 'restarted' : 'unhealthy';
  } catch (e: unknown) {
    // The updater still starts, so the controller can push a release that works.
    o.log.error({ current, err: e }, 'current release could not be started');
    return 'unhealthy';
  }
}
