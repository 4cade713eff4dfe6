export * from './errors.js';
export * from './forwarder.js';
export * from './position-store.js';
export * from './position-report.js';
