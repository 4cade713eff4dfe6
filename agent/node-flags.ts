/**
 * Node flags in the agent's start command (the release manifest's `start`, which the updater
 * runs, and the systemd unit). The agent is a small, long-lived daemon on every worker, so its
 * heap is tuned for size: V8's young generation of 1 MB semi-spaces instead of 16 MB (an idle
 * agent uses a few hundred KB of it; the default reserves and touches far more), and V8's
 * optimizations that favour memory over speed. `npm run bench -- agent` measures both against
 * node's defaults in one run.
 */
export const AGENT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--optimize-for-size'];
