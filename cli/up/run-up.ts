import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DeployResponse } from '../../protocol/deployment.js';
import { inline, type Output } from '../output.js';
import { runCorral, type CorralCommand } from './corral-cli.js';
import { runLiveView } from './live-view.js';
import { startLocalFleet, type LocalFleet } from './local-fleet.js';
import { freePort } from './free-port.js';
import { sampleDeployment } from './sample-spec.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';

export interface UpOptions {
  readonly workers: number;
  readonly heartbeatIntervalMs: number;
  readonly refreshMs: number;
  /** Stop on its own after this long (ms); undefined: until a signal. */
  readonly forMs: number | undefined;
  /** Skip the sample deployment. */
  readonly deploy: boolean;
}

export interface UpDeps {
  readonly cli: CorralCommand;
  readonly io: Output;
  readonly tty: boolean;
  /** Aborted by SIGINT/SIGTERM: `up` then stops everything it started. */
  readonly stop: AbortSignal;
}

async function deploySample(fleet: LocalFleet, deps: UpDeps): Promise<void> {
  const spec = sampleDeployment({ node: process.execPath, webPort: await freePort('127.0.0.1') });
  const file = join(fleet.dir, 'sample-deployment.json');
  await writeFile(file, `${JSON.stringify(spec, null, 2)}\n`, { mode: 0o600 });
  // Exit 1 with the response printed means some host failed: shown below, and `up` goes on.
  const r = await runCorral(
    deps.cli,
    ['controller', 'deploy', file, '--state-dir', fleet.controller.stateDir, '--json'],
    { env: fleet.controller.env },
  );
  if (r.code !== 0 && !r.stdout.startsWith('{'))
    throw new CorralError(ErrorCode.COMMAND_FAILED, `the sample deployment failed: ${r.stderr.trim()}`);
  const res = JSON.parse(r.stdout) as DeployResponse;
  const placed = res.plan.map((p) => `${p.service}→${p.host}`).join(', ');
  deps.io.out(`  deployed ${res.plan.length} sample services (${file}): ${placed}\n`);
  const failed = res.hosts.filter((h) => h.outcome === 'failed');
  for (const h of failed)
    deps.io.out(`  dispatch to ${inline(h.host)} failed: ${inline(h.reason ?? 'unknown reason')}\n`);
}

const firstLine = (e: unknown): string => (e instanceof Error ? e.message : String(e)).split('\n')[0] ?? '';

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

function hint(fleet: LocalFleet): string {
  const c = fleet.controller;
  return [
    `controller state dir: ${c.stateDir}`,
    `admin API: ${c.adminUrl} (token in ${join(c.stateDir, 'admin-token')})`,
    `in another shell:  CORRAL_HOME=${c.stateDir} npx corral controller services`,
    ...(fleet.syslog
      ? [
          `worker logs, shipped home:  CORRAL_HOME=${c.stateDir} npx corral controller logs [HOST] [-f]`,
          `  (stored in ${join(c.stateDir, 'logs', 'hosts')}/<host name>.<host id>.log)`,
        ]
      : []),
    '',
  ].join('\n');
}

/**
 * `corral up`: a temporary dir, a controller and N workers (agent, updater, forwarder) as
 * separate processes on loopback, a sample
 * deployment, and a live view until `stop` aborts or `forMs` passes. Then everything it
 * started is stopped, services included, and only its own temporary dir is removed.
 */
export async function runUp(o: UpOptions, deps: UpDeps): Promise<void> {
  const { io } = deps;
  const dir = await mkdtemp(join(tmpdir(), 'corral-up-'));
  io.out(`corral up: ${plural(o.workers, 'worker')} in ${dir}\n`);
  const progress = (line: string): void => io.out(`  ${line}\n`);
  let fleet: LocalFleet | undefined;
  try {
    fleet = await startLocalFleet({
      dir,
      cli: deps.cli,
      workers: Array.from({ length: o.workers }, (_, i) => ({
        name: `worker-${i + 1}`,
        address: '127.0.0.1',
      })),
      heartbeatIntervalMs: o.heartbeatIntervalMs,
      install: true,
      progress,
      signal: deps.stop,
    });
    if (o.deploy && !deps.stop.aborted) await deploySample(fleet, deps);
    const viewing = new AbortController();
    const onStop = (): void => viewing.abort();
    deps.stop.addEventListener('abort', onStop, { once: true });
    if (deps.stop.aborted) viewing.abort();
    const timer =
      o.forMs === undefined
        ? undefined
        : sleep(o.forMs, undefined, { signal: viewing.signal }).then(
            () => viewing.abort(),
            () => undefined /* AbortError: stopped first */,
          );
    const running = fleet;
    await runLiveView({
      snapshot: async () => {
        const [hosts, services] = await Promise.all([
          running.controller.hosts(),
          running.controller.services().catch((e: unknown) => firstLine(e)),
        ]);
        return typeof services === 'string'
          ? { at: new Date(), hosts, services: [], servicesError: services }
          : { at: new Date(), hosts, services };
      },
      write: (text) => io.out(text),
      clear: () => io.clearScreen?.(),
      tty: deps.tty,
      intervalMs: o.refreshMs,
      header: `\ncorral up: ${plural(o.workers, 'worker')}; Ctrl-C stops everything\n${hint(fleet)}`,
      signal: viewing.signal,
    });
    deps.stop.removeEventListener('abort', onStop);
    await timer;
  } catch (e: unknown) {
    // A Ctrl-C during start-up fails the start on purpose; anything else is reported.
    if (!(deps.stop.aborted && fleet === undefined)) throw e;
  } finally {
    io.out('\nstopping…\n');
    if (fleet) {
      const report = await fleet.close();
      for (const e of report.errors) io.err(`corral up: ${inline(e)}\n`);
    }
    await rm(dir, { recursive: true, force: true });
    io.out(`removed ${dir}\n`);
  }
}
