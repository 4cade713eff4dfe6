export * from './create-updater.js';
export { PAUSE_PHASES, type PausePhase } from './activator.js';
export type { AgentRelease, AgentRunner } from './agent-runner.js';
export { ProcessAgentRunner, AGENT_INSTANCE_ENV, FORWARDER_INSTANCE_ENV } from './process-agent-runner.js';
export { CommandAgentRunner } from './command-agent-runner.js';
export { expandStart } from './start-spec.js';
export { releaseLayout, type ReleaseLayout } from './release-layout.js';
export type { RecoveryReport } from './recover.js';
export { REINITIALIZE_DESTROYS, type StateOpening } from './open-state.js';
