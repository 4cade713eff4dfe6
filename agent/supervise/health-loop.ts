import { setTimeout as sleep } from 'node:timers/promises';
import type { HealthCheck } from '../../protocol/service-spec.js';
import {
  DEFAULT_FAILURE_THRESHOLD,
  DEFAULT_PROBE_INTERVAL_MS,
  runProbe,
  type ProbeContext,
} from './health-probe.js';

/** The first probe comes this soon after a start (or sooner, with a shorter interval), in ms. */
const FIRST_PROBE_MS = 1000;

export interface HealthLoopOptions {
  readonly check: HealthCheck;
  readonly probe: ProbeContext;
  /** False once the process this loop watches is gone or replaced: the loop ends. */
  alive(): boolean;
  onHealthy(): void;
  /** Called after `failureThreshold` consecutive failures (and on each failure after that). */
  onUnhealthy(reason: string): void;
}

/** Probes a service's health until it is no longer alive or the signal aborts. */
export async function healthLoop(o: HealthLoopOptions): Promise<void> {
  const interval = o.check.intervalMs ?? DEFAULT_PROBE_INTERVAL_MS;
  const threshold = o.check.failureThreshold ?? DEFAULT_FAILURE_THRESHOLD;
  let wait = Math.min(interval, FIRST_PROBE_MS);
  let failures = 0;
  while (o.alive()) {
    try {
      await sleep(wait, undefined, { signal: o.probe.signal });
    } catch {
      return; // AbortError: the service is stopping
    }
    wait = interval;
    if (!o.alive()) return;
    const reason = await runProbe(o.check, o.probe);
    if (!o.alive()) return;
    if (reason === undefined) {
      failures = 0;
      o.onHealthy();
    } else if (++failures >= threshold) {
      o.onUnhealthy(reason);
    }
  }
}
