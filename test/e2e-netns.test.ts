import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { startLocalFleet, type LocalFleet } from '../cli/up/local-fleet.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import { CLI, fleetCli, hostsJson, tempDir } from './fleet-fixture.js';
import { fleetScenario } from './fleet-scenario.js';
import { createWorkerNamespaces, NETNS_SUBNETS, netnsUnavailable, type Namespaces } from './netns-fixture.js';

const execFileAsync = promisify(execFile);
const HEARTBEAT_INTERVAL_MS = 3_000;
const WORKERS = 3;
const unavailable = await netnsUnavailable(NETNS_SUBNETS.e2eNetns);

/**
 * The same scenario as e2e-fleet, with each worker's daemons in a network namespace of its
 * own (10.231.N.2 behind a veth pair). The controller listens on the root side of the first
 * pair (10.231.1.1), which every namespace reaches through its default route, and it reaches
 * each worker only at the worker's address inside its namespace.
 */
if (unavailable !== undefined) {
  describe('a fleet with every worker in its own network namespace', () => {
    it.skip(`skipped: ${unavailable}`, () => undefined);
  });
} else {
  describe('a fleet with every worker in its own network namespace', () => {
    let dir: string | undefined;
    let nets: Namespaces | undefined;
    let fleet: LocalFleet | undefined;
    // Runs first (before the scenario stops an agent); the scenario's beforeAll starts the fleet.
    it('the controller knows each worker by its namespace address, and reaches every agent there', async () => {
      const f = fleet!;
      const hosts = await hostsJson(f);
      expect(hosts.map((h) => [h.name, h.address]).sort()).toEqual(
        nets!.namespaces.map((ns, i) => [`worker-${i + 1}`, ns.address]),
      );
      for (const [i, ns] of nets!.namespaces.entries()) {
        const w = f.workers[i]!;
        expect((await readEndpointsFile(w.stateDir))?.agent).toBe(`${ns.address}:${w.agentPort}`);
        const { stdout } = await execFileAsync('ip', ['netns', 'exec', ns.name, 'ss', '-Hltn']);
        expect(stdout).toContain(`${ns.address}:${w.agentPort}`);
      }
      const check = await fleetCli(f, ['controller', 'check', '--json']);
      const results = JSON.parse(check.stdout) as { name: string; address: string; reachable: boolean }[];
      expect(check.code).toBe(0);
      expect(
        results
          .filter((r) => r.reachable)
          .map((r) => r.address)
          .sort(),
      ).toEqual(f.workers.map((w) => `${w.address}:${w.agentPort}`));
    }, 60_000);

    fleetScenario({
      tag: 'e2e-netns',
      services: 6,
      async start() {
        nets = await createWorkerNamespaces(WORKERS, NETNS_SUBNETS.e2eNetns);
        dir = await tempDir('e2e-netns');
        const gateway = nets.namespaces[0]!.gateway;
        fleet = await startLocalFleet({
          dir,
          cli: CLI,
          workers: nets.namespaces.map((ns, i) => ({
            name: `worker-${i + 1}`,
            address: ns.address,
            prefix: ns.prefix,
          })),
          heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
          controllerAddress: gateway,
        });
        return fleet;
      },
      async cleanup() {
        const left = (await nets?.cleanup()) ?? [];
        if (dir) await rm(dir, { recursive: true, force: true });
        expect(left).toEqual([]);
      },
    });
  });
}
