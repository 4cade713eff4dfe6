export * from './listener.js';
export * from './pin-lookup.js';
export * from './reasons.js';
export { DEFAULT_INGEST_MAX_FILE_BYTES, DEFAULT_INGEST_RETENTION } from './ingest-store.js';
export type { RetentionPolicy } from './host-files.js';
export { listHostFiles, stemFor, type HostFile } from './host-files.js';
export { syslogMetricLines } from './syslog-metrics.js';
