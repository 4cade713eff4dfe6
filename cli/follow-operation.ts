import { setTimeout as sleep } from 'node:timers/promises';
import type { OperationDetail, OperationListResponse } from '../protocol/operations.js';
import type { AdminClient } from './admin-client.js';
import { inline, type Output } from './output.js';

/** A long request (a deploy, an update) may take this long: many hosts, each up to minutes. */
export const LONG_REQUEST_TIMEOUT_MS = 6 * 60 * 60_000;
const PROGRESS_POLL_MS = 500;

/** Where a follower is: the operation once found, and the last log line printed. */
export interface Follow {
  id: string | undefined;
  afterSeq: number;
}

/** Prints the operation's log lines after `f.afterSeq` (to stderr) and moves `f` on. */
export async function printNewLines(admin: AdminClient, io: Output, f: Follow, id: string): Promise<void> {
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
export async function followProgress(
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
