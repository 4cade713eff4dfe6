import { HOST_STATUSES, type HostStatus } from '../../protocol/host.js';

/** Request latency histogram buckets, in seconds. */
const LATENCY_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5] as const;
/** Distinct latency series kept at most (listener × route × status class). */
const MAX_LATENCY_SERIES = 256;

export const HEARTBEAT_REJECT_REASONS = [
  'no-certificate',
  'unknown-certificate',
  'expired-certificate',
  'wrong-role',
  'host-mismatch',
  'decommissioned',
  'validation',
  'too-large',
  'overloaded',
  'rate-limited',
  'other',
] as const;
export type HeartbeatRejectReason = (typeof HEARTBEAT_REJECT_REASONS)[number];

/** Why the worker listener's TLS refused a connection (Node's own verification decides). */
export const TLS_REFUSAL_REASONS = ['expired', 'not-yet-valid', 'untrusted', 'handshake'] as const;
export type TlsRefusalReason = (typeof TLS_REFUSAL_REASONS)[number];
/** Hosts counted by name at most in the expired-certificate series (bounded like any buffer). */
const MAX_EXPIRED_HOST_SERIES = 10_000;

interface Histogram {
  readonly labels: string;
  counts: number[];
  sum: number;
  count: number;
}

export interface ControllerMetrics {
  heartbeatAccepted(): void;
  heartbeatRejected(reason: HeartbeatRejectReason): void;
  /** A worker connection or request was refused because its pinned certificate had expired. */
  certificateExpired(hostName: string): void;
  /** The worker listener's TLS refused a connection before any request. */
  workerTlsRefused(reason: TlsRefusalReason): void;
  /** A worker connection finished its TLS handshake: a resumed session, or a full handshake. */
  workerTlsHandshake(resumed: boolean): void;
  /** A heartbeat of `bytes` refused for its host's budget (it is also counted as `rate-limited`). */
  heartbeatThrottled(bytes: number): void;
  /** Lifecycle events deleted by retention (age or count per host). */
  eventsPruned(count: number): void;
  observeRequest(listener: string, route: string, statusCode: number, seconds: number): void;
  /** Adds lines every render appends (a component's own series, already in exposition format). */
  addSource(lines: () => readonly string[]): void;
  /** Prometheus text exposition; the caller supplies the current host counts. */
  render(hostsByStatus: Readonly<Record<HostStatus, number>>, extra?: readonly string[]): string;
}

/** A label value as the Prometheus text format writes it: backslash, double quote and newline escaped. */
export const escapeLabel = (v: string): string =>
  v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

export function createMetrics(): ControllerMetrics {
  let accepted = 0;
  let throttledBytes = 0;
  let prunedEvents = 0;
  const rejected = new Map<HeartbeatRejectReason, number>(HEARTBEAT_REJECT_REASONS.map((r) => [r, 0]));
  const latency = new Map<string, Histogram>();
  let droppedSeries = 0;
  const expiredByHost = new Map<string, number>();
  const tlsRefused = new Map<TlsRefusalReason, number>(TLS_REFUSAL_REASONS.map((r) => [r, 0]));
  const handshakes = { resumed: 0, full: 0 };
  const sources: (() => readonly string[])[] = [];

  return {
    addSource(lines) {
      sources.push(lines);
    },
    heartbeatAccepted() {
      accepted++;
    },
    heartbeatRejected(reason) {
      rejected.set(reason, (rejected.get(reason) ?? 0) + 1);
    },
    certificateExpired(hostName) {
      const n = expiredByHost.get(hostName);
      if (n === undefined && expiredByHost.size >= MAX_EXPIRED_HOST_SERIES) {
        droppedSeries++;
        return;
      }
      expiredByHost.set(hostName, (n ?? 0) + 1);
    },
    workerTlsRefused(reason) {
      tlsRefused.set(reason, (tlsRefused.get(reason) ?? 0) + 1);
    },
    workerTlsHandshake(resumed) {
      if (resumed) handshakes.resumed++;
      else handshakes.full++;
    },
    heartbeatThrottled(bytes) {
      throttledBytes += bytes;
    },
    eventsPruned(count) {
      prunedEvents += count;
    },
    observeRequest(listener, route, statusCode, seconds) {
      const cacheKey = `${listener} ${route} ${Math.floor(statusCode / 100)}`;
      let h = latency.get(cacheKey);
      if (!h) {
        if (latency.size >= MAX_LATENCY_SERIES) {
          droppedSeries++;
          return;
        }
        h = {
          labels: `listener="${escapeLabel(listener)}",route="${escapeLabel(route)}",status="${Math.floor(statusCode / 100)}xx"`,
          counts: LATENCY_BUCKETS_S.map(() => 0),
          sum: 0,
          count: 0,
        };
        latency.set(cacheKey, h);
      }
      for (let i = 0; i < LATENCY_BUCKETS_S.length; i++) {
        if (seconds <= (LATENCY_BUCKETS_S[i] ?? 0)) h.counts[i] = (h.counts[i] ?? 0) + 1;
      }
      h.sum += seconds;
      h.count++;
    },
    render(hostsByStatus, extra = []) {
      const out: string[] = [
        '# HELP corral_hosts Hosts by status.',
        '# TYPE corral_hosts gauge',
        ...HOST_STATUSES.map((s) => `corral_hosts{status="${s}"} ${hostsByStatus[s]}`),
        '# HELP corral_heartbeats_accepted_total Heartbeats accepted.',
        '# TYPE corral_heartbeats_accepted_total counter',
        `corral_heartbeats_accepted_total ${accepted}`,
        '# HELP corral_heartbeats_rejected_total Heartbeats refused, by reason.',
        '# TYPE corral_heartbeats_rejected_total counter',
        ...[...rejected].map(([r, n]) => `corral_heartbeats_rejected_total{reason="${r}"} ${n}`),
        '# HELP corral_worker_certificates_expired_total Worker connections and requests refused because the pinned certificate had expired, by host.',
        '# TYPE corral_worker_certificates_expired_total counter',
        ...[...expiredByHost].map(
          ([host, n]) => `corral_worker_certificates_expired_total{host="${escapeLabel(host)}"} ${n}`,
        ),
        '# HELP corral_worker_tls_refused_total Worker API connections refused by TLS, by reason.',
        '# TYPE corral_worker_tls_refused_total counter',
        ...[...tlsRefused].map(([r, n]) => `corral_worker_tls_refused_total{reason="${r}"} ${n}`),
        '# HELP corral_worker_tls_handshakes_total Worker API TLS handshakes completed, resumed sessions and full handshakes.',
        '# TYPE corral_worker_tls_handshakes_total counter',
        `corral_worker_tls_handshakes_total{resumed="true"} ${handshakes.resumed}`,
        `corral_worker_tls_handshakes_total{resumed="false"} ${handshakes.full}`,
        "# HELP corral_heartbeat_throttled_bytes_total Request bytes of heartbeats refused for their host's budget.",
        '# TYPE corral_heartbeat_throttled_bytes_total counter',
        `corral_heartbeat_throttled_bytes_total ${throttledBytes}`,
        '# HELP corral_events_pruned_total Lifecycle events deleted by retention (age or count per host).',
        '# TYPE corral_events_pruned_total counter',
        `corral_events_pruned_total ${prunedEvents}`,
        '# HELP corral_http_request_duration_seconds Request latency by listener, route and status class.',
        '# TYPE corral_http_request_duration_seconds histogram',
      ];
      for (const h of latency.values()) {
        const labels = h.labels;
        LATENCY_BUCKETS_S.forEach((le, i) => {
          out.push(`corral_http_request_duration_seconds_bucket{${labels},le="${le}"} ${h.counts[i] ?? 0}`);
        });
        out.push(`corral_http_request_duration_seconds_bucket{${labels},le="+Inf"} ${h.count}`);
        out.push(`corral_http_request_duration_seconds_sum{${labels}} ${h.sum}`);
        out.push(`corral_http_request_duration_seconds_count{${labels}} ${h.count}`);
      }
      out.push(
        '# HELP corral_metrics_series_dropped_total Series not kept (cardinality cap): latency, expired certificates by host.',
        '# TYPE corral_metrics_series_dropped_total counter',
        `corral_metrics_series_dropped_total ${droppedSeries}`,
      );
      // Pushed one by one: a spread of a long list into push() overflows the call stack.
      for (const line of extra) out.push(line);
      for (const source of sources) for (const line of source()) out.push(line);
      return `${out.join('\n')}\n`;
    },
  };
}
