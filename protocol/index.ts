export * from './errors.js';
export * from './constants.js';
export * from './common.js';
export * from './heartbeat.js';
export * from './enrollment.js';
export * from './host.js';
export * from './endpoints.js';
export * from './validate.js';
