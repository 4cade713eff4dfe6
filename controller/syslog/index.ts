export * from './listener.js';
export * from './pin-lookup.js';
export * from './reasons.js';
