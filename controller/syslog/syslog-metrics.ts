import type { SyslogListenerStats } from './listener.js';

/**
 * The syslog listener's series: lines and bytes ingested, lines dropped (duplicates a
 * forwarder re-sent) and lost (generations that vanished before they were read), and the
 * connections refused or closed, by reason (a refused or closed connection's lines are not
 * ingested; its forwarder sends them again).
 */
export function syslogMetricLines(stats: SyslogListenerStats): string[] {
  return [
    "# HELP corral_log_lines_ingested_total Log lines written durably to the hosts' ingest files.",
    '# TYPE corral_log_lines_ingested_total counter',
    `corral_log_lines_ingested_total ${stats.linesIngested}`,
    "# HELP corral_log_bytes_ingested_total Log bytes written durably to the hosts' ingest files.",
    '# TYPE corral_log_bytes_ingested_total counter',
    `corral_log_bytes_ingested_total ${stats.bytesIngested}`,
    '# HELP corral_log_lines_dropped_total Log lines not written, by reason (duplicate: already written once).',
    '# TYPE corral_log_lines_dropped_total counter',
    `corral_log_lines_dropped_total{reason="duplicate"} ${stats.linesDuplicate}`,
    '# HELP corral_log_bytes_lost_total Bytes of log file generations that vanished on workers before they were read.',
    '# TYPE corral_log_bytes_lost_total counter',
    `corral_log_bytes_lost_total ${stats.bytesLost}`,
    '# HELP corral_log_connections_refused_total Syslog connections refused before any line was read, by reason.',
    '# TYPE corral_log_connections_refused_total counter',
    ...Object.entries(stats.refused).map(
      ([reason, n]) => `corral_log_connections_refused_total{reason="${reason}"} ${n}`,
    ),
    '# HELP corral_log_connections_closed_total Syslog connections closed, by reason.',
    '# TYPE corral_log_connections_closed_total counter',
    ...Object.entries(stats.closed).map(
      ([reason, n]) => `corral_log_connections_closed_total{reason="${reason}"} ${n}`,
    ),
    '# HELP corral_log_connections_open Syslog connections open now.',
    '# TYPE corral_log_connections_open gauge',
    `corral_log_connections_open ${stats.connectionsOpen}`,
  ];
}
