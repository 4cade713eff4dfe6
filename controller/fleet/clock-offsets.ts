import type { Logger } from 'pino';
import type { AgentClock } from '../../protocol/heartbeat.js';
import { CLOCK_OFFSET_WARN_MS, type HostClock } from '../../protocol/host.js';
import { isoAt } from '../clock.js';

/**
 * The last clock offset of each host (agent clock − controller clock), estimated from the
 * time the agent stamped on a heartbeat, the time it arrived, and half the previous round
 * trip as the one-way delay. Good to a few seconds: enough for a warning, not for ordering.
 * Kept in memory (a fresh estimate arrives with every heartbeat); at most one entry per host.
 */
export interface ClockOffsets {
  /** Records a heartbeat's clock; logs when a host's offset goes past the bound or back. */
  record(
    host: { hostId: string; hostName: string },
    clock: AgentClock | undefined,
    receivedAtMs: number,
  ): void;
  get(hostId: string): HostClock | undefined;
  forget(hostId: string): void;
}

/** The offset estimate, in ms: positive when the agent's clock is ahead. */
export function estimateOffsetMs(clock: AgentClock, receivedAtMs: number): number | undefined {
  const sentMs = Date.parse(clock.sentAt);
  if (!Number.isFinite(sentMs)) return undefined;
  return Math.round(sentMs + (clock.lastRoundTripMs ?? 0) / 2 - receivedAtMs);
}

export function createClockOffsets(log: Logger, warnAfterMs = CLOCK_OFFSET_WARN_MS): ClockOffsets {
  const byHost = new Map<string, HostClock>();
  return {
    record(host, clock, receivedAtMs) {
      if (!clock) return;
      const offsetMs = estimateOffsetMs(clock, receivedAtMs);
      if (offsetMs === undefined) return;
      const warning = Math.abs(offsetMs) > warnAfterMs;
      const before = byHost.get(host.hostId);
      const who = { hostId: host.hostId, hostName: host.hostName };
      byHost.set(host.hostId, { offsetMs, measuredAt: isoAt(receivedAtMs), warning, warnAfterMs });
      if (warning && !before?.warning) {
        log.warn({ ...who, offsetMs, warnAfterMs }, 'host clock is off; fix its time sync');
      } else if (!warning && before?.warning) {
        log.info({ ...who, offsetMs }, 'host clock is back within bounds');
      }
    },
    get: (hostId) => byHost.get(hostId),
    forget(hostId) {
      byHost.delete(hostId);
    },
  };
}
