import { Value } from '@sinclair/typebox/value';
import {
  CLUSTER_CHANGE_KINDS,
  ClusterChangeEnvelope,
  MAX_CLUSTER_CHANGE_CHARS,
  type ClusterChange,
  type ClusterChangeKind,
} from '../../protocol/cluster.js';

/** Why a notification was dropped: not ours at all, or a kind this controller does not know. */
export type IgnoredReason = 'malformed' | 'unknown-kind';
export const IGNORED_REASONS: readonly IgnoredReason[] = ['malformed', 'unknown-kind'];

export type DecodedChange =
  { readonly change: ClusterChange } | { readonly own: true } | { readonly ignored: IgnoredReason };

const isKind = (k: string): k is ClusterChangeKind => (CLUSTER_CHANGE_KINDS as readonly string[]).includes(k);

/** The payload announcing `change` from controller `from` (at most MAX_CLUSTER_CHANGE_CHARS). */
export function encodeChange(change: ClusterChange, from: string): string {
  return JSON.stringify({ kind: change.kind, id: change.id, from });
}

/**
 * Reads a `corral_changes` payload: a change from another controller, this controller's own
 * (`self`), or why it is ignored. Never throws: a payload too long, not JSON, or off the
 * envelope is `malformed`; a well-formed one of a kind added by a newer release is
 * `unknown-kind` (so controllers of two releases can share a database while one upgrades).
 */
export function decodeChange(payload: string | undefined, self: string): DecodedChange {
  if (payload === undefined || payload.length > MAX_CLUSTER_CHANGE_CHARS) return { ignored: 'malformed' };
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    // Not JSON: nothing of ours.
    return { ignored: 'malformed' };
  }
  if (!Value.Check(ClusterChangeEnvelope, value)) return { ignored: 'malformed' };
  if (value.from === self) return { own: true };
  if (!isKind(value.kind)) return { ignored: 'unknown-kind' };
  return { change: { kind: value.kind, id: value.id } };
}
