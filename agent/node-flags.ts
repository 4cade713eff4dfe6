/**
 * Node flags in the agent's start command (the release manifest's `start`, which the updater
 * runs, and the systemd unit). The agent is a small, long-lived daemon on every worker, so its
 * memory is tuned for size over speed: V8's young generation of 1 MB semi-spaces instead of
 * 16 MB (an idle agent uses a few hundred KB of it; the default reserves and touches far more),
 * V8's optimizations that favour memory, and no optimizing compiler (`--no-opt`: its code and
 * feedback cost about 4 MiB of an idle agent, whose work is waiting on timers, sockets and
 * child processes; the interpreter and baseline compiler still run). `npm run bench -- agent`
 * measures these against node's defaults in one run, with the time to start 200 services.
 */
export const AGENT_NODE_FLAGS: readonly string[] = [
  '--max-semi-space-size=1',
  '--optimize-for-size',
  '--no-opt',
];
