import { createReadStream } from 'node:fs';
import { Transform } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TlsMaterial } from '../../pki/index.js';
import {
  CorralError,
  ErrorCode,
  isCorralError,
  type ReleasesResponse,
  type UpdateResponse,
} from '../../protocol/index.js';
import { readReleaseFile, type ReleaseFileInfo } from './read-release.js';
import {
  DEFAULT_UPDATE_TIMEOUT_MS,
  getReleases,
  postUpdate,
  postUpdateSelf,
  updaterDispatcher,
  type UpdaterTarget,
} from './updater-client.js';
import { mapConcurrent } from '../../kit/concurrency.js';

export type { UpdaterTarget } from './updater-client.js';

export type PushOutcome = 'updated' | 'rolled-back' | 'failed' | 'self-updated' | 'dry-run';

export interface HostPushResult {
  readonly hostName: string;
  readonly outcome: PushOutcome;
  /** The agent release the host ended on (null: none, or unknown after a failure). */
  readonly current: string | null;
  readonly reason: string | null;
  /** Tail of the agent's output when the new release failed its health check. */
  readonly agentOutput: string | null;
  /** The error code when the push failed with one. */
  readonly code: string | null;
  readonly durationMs: number;
}

export type PushPhase = 'queued' | 'waiting' | 'uploading' | 'installing' | 'self-updating' | 'done';

export interface PushProgress {
  readonly hostName: string;
  readonly phase: PushPhase;
  readonly sentBytes?: number;
  readonly totalBytes?: number;
  readonly result?: HostPushResult;
}

export interface PushOptions {
  readonly file: string;
  /** Expected SHA-256 of the file; checked before anything is sent. Computed when absent. */
  readonly sha256?: string;
  readonly targets: readonly UpdaterTarget[];
  /** The controller-client identity and the CA. */
  readonly tls: TlsMaterial;
  /** Hosts updated at the same time. */
  readonly concurrency?: number | undefined;
  /** Push even a version that rolled back on a host before. */
  readonly force?: boolean;
  /** After the agent release is live, also replace each host's updater with this release. */
  readonly includeSelf?: boolean;
  /** Only contact each updater and say what would happen. */
  readonly dryRun?: boolean;
  readonly onProgress?: (progress: PushProgress) => void;
  readonly signal?: AbortSignal;
  /** Per host, for the update itself (upload to confirmed health or rollback), in ms. */
  readonly timeoutMs?: number | undefined;
  /** How long a self-updated updater has to answer with its new version, in ms. */
  readonly selfConfirmTimeoutMs?: number;
}

export interface PushReport {
  readonly version: string;
  readonly sha256: string;
  readonly bytes: number;
  readonly results: readonly HostPushResult[];
  /** Every host ended on the new version. */
  readonly ok: boolean;
}

export const DEFAULT_PUSH_CONCURRENCY = 8;
const PROGRESS_STEP_BYTES = 1024 * 1024;
const SELF_CONFIRM_INTERVAL_MS = 250;
/** How often a busy updater is asked again whether its operation is over, in ms. */
const BUSY_POLL_MS = 500;
/** Pushes that found the updater busy after all (it started something in between) are retried this often. */
const BUSY_RETRIES = 3;
/** Added to an updater's own health timeout and watch for the upload and the swap, in ms. */
const UPDATE_MARGIN_MS = 2 * 60_000;

function describe(e: unknown): { reason: string; code: string | null } {
  const code = (e as { code?: unknown }).code;
  const message = e instanceof Error ? e.message : String(e);
  const cause = e instanceof Error && e.cause instanceof Error ? `: ${e.cause.message}` : '';
  return { reason: `${message}${cause}`, code: typeof code === 'string' ? code : null };
}

/**
 * Pushes a release file to many updaters, at most `concurrency` at a time, each over a
 * connection pinned to that host's updater fingerprint. Never throws for a host: every target
 * gets a result (`updated`, `rolled-back`, `failed`, `self-updated`, or `dry-run`). Throws only
 * when the file itself is unusable (not a release, or not the announced digest), before
 * contacting anyone.
 */
export async function pushRelease(o: PushOptions): Promise<PushReport> {
  const info = await readReleaseFile(o.file, o.sha256);
  for (const t of o.targets) o.onProgress?.({ hostName: t.hostName, phase: 'queued' });
  const results = await mapConcurrent(
    o.targets,
    o.concurrency ?? DEFAULT_PUSH_CONCURRENCY,
    async (target) => {
      const result = await pushOne(o, info, target);
      o.onProgress?.({ hostName: target.hostName, phase: 'done', result });
      return result;
    },
  );
  const version = info.manifest.version;
  return {
    version,
    sha256: info.sha256,
    bytes: info.bytes,
    results,
    ok: results.every(
      (r) => r.current === version && (r.outcome === 'updated' || r.outcome === 'self-updated'),
    ),
  };
}

/**
 * Asks the updater what it runs, waiting (bounded by `deadline`) while it is busy: an update
 * that outlived the controller which started it (killed mid-update) ends on its own, and the
 * push goes on from what it left.
 */
async function settled(
  o: PushOptions,
  target: UpdaterTarget,
  d: ReturnType<typeof updaterDispatcher>,
  deadline: number,
): Promise<ReleasesResponse> {
  let waited = false;
  for (;;) {
    const rel = await getReleases(d, target, o.signal);
    if (!rel.busy) return rel;
    if (performance.now() >= deadline) {
      throw new CorralError(
        ErrorCode.UPDATER_BUSY,
        `${target.hostName}: the updater stayed busy with another operation for the whole timeout`,
      );
    }
    if (!waited) o.onProgress?.({ hostName: target.hostName, phase: 'waiting' });
    waited = true;
    await sleep(BUSY_POLL_MS, undefined, { signal: o.signal });
  }
}

async function pushOne(
  o: PushOptions,
  info: ReleaseFileInfo,
  target: UpdaterTarget,
): Promise<HostPushResult> {
  const started = performance.now();
  const version = info.manifest.version;
  const timeoutMs = o.timeoutMs ?? DEFAULT_UPDATE_TIMEOUT_MS;
  const deadline = started + timeoutMs;
  const d = updaterDispatcher(target, o.tls, timeoutMs);
  const result = (
    r: Omit<HostPushResult, 'hostName' | 'durationMs' | 'agentOutput' | 'code'> &
      Partial<Pick<HostPushResult, 'agentOutput' | 'code'>>,
  ): HostPushResult => ({
    hostName: target.hostName,
    agentOutput: null,
    code: null,
    ...r,
    durationMs: Math.round(performance.now() - started),
  });
  const upload = (): { body: Transform; bytes: number } => {
    let sent = 0;
    let reported = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        sent += chunk.length;
        if (sent - reported >= PROGRESS_STEP_BYTES || sent === info.bytes) {
          reported = sent;
          o.onProgress?.({
            hostName: target.hostName,
            phase: 'uploading',
            sentBytes: sent,
            totalBytes: info.bytes,
          });
        }
        done(null, chunk);
      },
    });
    return { body: createReadStream(info.file).pipe(meter), bytes: info.bytes };
  };
  const request = { version, sha256: info.sha256, force: o.force ?? false, signal: o.signal };
  let uploader: ReturnType<typeof updaterDispatcher> | undefined;
  try {
    if (o.dryRun) {
      const rel = await getReleases(d, target, o.signal);
      const blocked = [...rel.history]
        .reverse()
        .find((h) => h.version === version && ['updated', 'rolled-back', 'failed'].includes(h.outcome));
      const reason =
        rel.current === version
          ? `already on ${version}`
          : blocked && blocked.outcome !== 'updated' && !o.force
            ? `would be refused: ${version} rolled back here before (push with force)`
            : `would update ${rel.current ?? '(none)'} -> ${version}${o.includeSelf ? ` and the updater ${rel.updater.version} -> ${version}` : ''}`;
      return result({ outcome: 'dry-run', current: rel.current, reason });
    }
    // Ask first: a version already active is not uploaded again.
    let answer: UpdateResponse | undefined;
    let uploaded = false;
    for (let attempt = 0; answer === undefined; attempt++) {
      const rel = await settled(o, target, d, deadline);
      if (rel.current === version) {
        const active = rel.releases.find((r) => r.version === version);
        if (active?.sha256 && active.sha256 !== info.sha256) {
          return result({
            outcome: 'failed',
            current: rel.current,
            reason: `release ${version} is already active with different content (sha256 ${active.sha256.slice(0, 12)}); give the new build a new version`,
            code: ErrorCode.CONFLICT,
          });
        }
        answer = {
          outcome: 'updated',
          version,
          current: version,
          previous: rel.previous,
          reason: 'already active',
          agentOutput: null,
          durationMs: 0,
        };
        break;
      }
      // The answer comes after the updater's health check and watch: wait at least that long.
      const answerMs = rel.timing
        ? Math.max(timeoutMs, rel.timing.healthTimeoutMs + rel.timing.watchMs + UPDATE_MARGIN_MS)
        : timeoutMs;
      uploader ??= updaterDispatcher(target, o.tls, answerMs);
      const { body, bytes } = upload();
      try {
        answer = await postUpdate(uploader, target, { ...request, body, bytes });
        uploaded = true;
      } catch (e: unknown) {
        if (!isCorralError(e, ErrorCode.UPDATER_BUSY) || attempt >= BUSY_RETRIES) throw e;
      }
    }
    if (uploaded) o.onProgress?.({ hostName: target.hostName, phase: 'installing' });
    if (answer.outcome !== 'updated') {
      return result({
        outcome: answer.outcome,
        current: answer.current,
        reason: answer.reason,
        agentOutput: answer.agentOutput,
      });
    }
    if (!o.includeSelf) return result({ outcome: 'updated', current: answer.current, reason: answer.reason });

    o.onProgress?.({ hostName: target.hostName, phase: 'self-updating' });
    const self = upload();
    await postUpdateSelf(d, target, { ...request, body: self.body, bytes: self.bytes });
    const confirmed = await confirmUpdater(o, target, version);
    return confirmed === undefined
      ? result({ outcome: 'self-updated', current: answer.current, reason: null })
      : result({ outcome: 'failed', current: answer.current, reason: `agent updated, but ${confirmed}` });
  } catch (e: unknown) {
    if (o.signal?.aborted) {
      return result({
        outcome: 'failed',
        current: null,
        reason: 'the push was stopped before this host finished',
        code: ErrorCode.UNAVAILABLE,
      });
    }
    const { reason, code } = describe(e);
    return result({ outcome: 'failed', current: null, reason, code: isCorralError(e) ? e.code : code });
  } finally {
    await d.destroy().catch(() => undefined /* already closed */);
    await uploader?.destroy().catch(() => undefined /* already closed */);
  }
}

/** Polls the (restarting) updater until it reports `version`; returns why not, or undefined. */
async function confirmUpdater(
  o: PushOptions,
  target: UpdaterTarget,
  version: string,
): Promise<string | undefined> {
  const timeoutMs = o.selfConfirmTimeoutMs ?? 60_000;
  const deadline = performance.now() + timeoutMs;
  let last = 'no answer';
  while (performance.now() < deadline) {
    const d = updaterDispatcher(target, o.tls, 5000);
    try {
      const rel = await getReleases(d, target, o.signal);
      if (rel.updater.version === version) return undefined;
      last = `it still reports ${rel.updater.version}`;
    } catch (e: unknown) {
      if (o.signal?.aborted) throw e;
      last = describe(e).reason;
    } finally {
      await d.destroy().catch(() => undefined /* already closed */);
    }
    await sleep(SELF_CONFIRM_INTERVAL_MS, undefined, { signal: o.signal });
  }
  return `the updater did not answer as ${version} within ${timeoutMs} ms (${last})`;
}
