export { createAgent, type Agent, type AgentOptions } from './agent.js';
export { DEFAULT_STOP_GRACE_MS, WORKER_LOG_FILE } from './agent-options.js';
export { runReaper, type ReaperReport } from './reaper.js';
export { ReaperPlan, type SelfDestructConfig } from './self-destruct-plan.js';
export { planFromDisk } from './self-destruct.js';
export { serviceDirs } from './service-record.js';
export type { Reinitialized } from './state-check.js';
export type { SystemdMode } from './reaper-launch.js';
export { findCorralDaemons, type CorralDaemon } from './corral-daemons.js';
