import { setTimeout as sleep } from 'node:timers/promises';
import type { OperationDetail, OperationListResponse } from '../protocol/operations.js';
import type { AdminClient } from './admin-client.js';
import { inline, type Output } from './output.js';

/** A long request (a deploy, an update) may take this long: many hosts, each up to minutes. */
export const LONG_REQUEST_TIMEOUT_MS = 6 * 60 * 60_000;
const PROGRESS_POLL_MS = 500;

/** Where a follower is: the operation once found, and the last log line printed. */
interface Follow {
  id: string | undefined;
  afterSeq: number;
}

/** Prints the operation's log lines after `f.afterSeq` (to stderr) and moves `f` on. */
async function printNewLines(admin: AdminClient, io: Output, f: Follow, id: string): Promise<void> {
  const d = await admin.get<OperationDetail>(`/v1/ops/${encodeURIComponent(id)}?afterSeq=${f.afterSeq}`);
  for (const l of d.log) {
    io.err(`${l.host ? `[${inline(l.host)}] ` : ''}${inline(l.message)}\n`);
    f.afterSeq = l.seq;
  }
}

/**
 * Follows the newest running operation of `kind` started since `since` until `signal` aborts
 * (the admin API answers a deploy or an update only when it is done; its id is found in the
 * list). Best effort: a failed look is skipped, the request's own answer decides.
 */
async function followProgress(
  admin: AdminClient,
  io: Output,
  kind: 'deploy' | 'update',
  f: Follow,
  since: string,
  signal: AbortSignal,
): Promise<void> {
  for (let i = 0; i < 100_000 && !signal.aborted; i++) {
    try {
      if (f.id === undefined) {
        const { operations } = await admin.get<OperationListResponse>('/v1/ops?limit=5');
        f.id = operations.find(
          (op) => op.kind === kind && op.state === 'running' && op.createdAt >= since,
        )?.id;
      }
      if (f.id !== undefined && !signal.aborted) await printNewLines(admin, io, f, f.id);
    } catch (e: unknown) {
      void e; // progress is best effort
    }
    await sleep(PROGRESS_POLL_MS, undefined, { signal }).catch(() => undefined /* aborted: done */);
  }
}

/**
 * Runs `request` (a deploy or an update the admin API answers once it is done) while its
 * operation's log is followed on stderr when `show`; then prints what is left of the log of the
 * operation the answer names (all of it when the follower never found it).
 */
export async function withProgress<T>(
  admin: AdminClient,
  io: Output,
  kind: 'deploy' | 'update',
  show: boolean,
  request: () => Promise<T>,
): Promise<T> {
  const since = new Date(Date.now() - 5000).toISOString();
  const stop = new AbortController();
  const follow: Follow = { id: undefined, afterSeq: 0 };
  const progress = show ? followProgress(admin, io, kind, follow, since, stop.signal) : undefined;
  let answer: T;
  try {
    answer = await request();
  } finally {
    stop.abort();
    await progress;
  }
  const id = (answer as { operationId?: unknown }).operationId;
  if (show && typeof id === 'string') {
    if (follow.id !== id) follow.afterSeq = 0;
    await printNewLines(admin, io, follow, id).catch(() => undefined /* best effort */);
  }
  return answer;
}
