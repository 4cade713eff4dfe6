import { rm } from 'node:fs/promises';
import { describe } from 'vitest';
import { startLocalFleet } from '../cli/up/local-fleet.js';
import { CLI, tempDir } from './fleet-fixture.js';
import { fleetScenario } from './fleet-scenario.js';

/** Heartbeats every 3 s: a host is stale 6 s after its last one and offline after 9 s. */
const HEARTBEAT_INTERVAL_MS = 3_000;

describe('a fleet of real corral processes on loopback (controller and 3 workers)', () => {
  let dir: string | undefined;
  fleetScenario({
    tag: 'e2e-loopback',
    services: 6,
    async start() {
      dir = await tempDir('e2e-fleet');
      return startLocalFleet({
        dir,
        cli: CLI,
        workers: ['worker-1', 'worker-2', 'worker-3'].map((name) => ({ name, address: '127.0.0.1' })),
        heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
      });
    },
    async cleanup() {
      if (dir) await rm(dir, { recursive: true, force: true });
    },
  });
});
