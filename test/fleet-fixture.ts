import { mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { corralJson, runCorral, type CliResult, type CorralCommand } from '../cli/up/corral-cli.js';
import type { LocalFleet } from '../cli/up/local-fleet.js';
import type { LocalWorker } from '../cli/up/local-worker.js';
import type { DeployResponse, DeploymentSpec, ServiceView } from '../protocol/deployment.js';
import type { HostView } from '../protocol/host.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The real CLI, as a user runs it (`npx corral` runs this file). */
export const CLI: CorralCommand = { bin: join(ROOT, 'bin', 'corral.js') };

export const tempDir = (prefix: string): Promise<string> => mkdtemp(join(tmpdir(), `corral-${prefix}-`));

/** Polls `check` until it returns a value (not undefined); throws naming `what` after `timeoutMs`. */
export async function poll<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 60_000,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (e: unknown) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `${what}: not reached in ${timeoutMs} ms${last instanceof Error ? ` (last error: ${last.message})` : ''}`,
      );
    }
    await sleep(intervalMs);
  }
}

/** `corral ARGS` aimed at the fleet's controller (by `--state-dir`). */
export function fleetCli(fleet: LocalFleet, args: readonly string[]): Promise<CliResult> {
  return runCorral(CLI, [...args, '--state-dir', fleet.controller.stateDir], { env: fleet.controller.env });
}

async function fleetJson<T>(fleet: LocalFleet, args: readonly string[]): Promise<T> {
  return corralJson<T>(CLI, [...args, '--state-dir', fleet.controller.stateDir, '--json'], {
    env: fleet.controller.env,
  });
}

export const hostsJson = (fleet: LocalFleet): Promise<HostView[]> =>
  fleetJson(fleet, ['controller', 'hosts']);
export const servicesJson = (fleet: LocalFleet): Promise<ServiceView[]> =>
  fleetJson(fleet, ['controller', 'services']);

/**
 * Writes `spec` next to the fleet and runs `corral controller deploy FILE --json`. The command
 * exits 1 when a host failed, still printing the response; `exitCode` says which it was.
 */
export async function deploy(
  fleet: LocalFleet,
  spec: DeploymentSpec,
  name = 'spec',
): Promise<DeployResponse & { exitCode: number }> {
  const file = join(fleet.dir, `${name}.json`);
  await writeFile(file, JSON.stringify(spec));
  const r = await fleetCli(fleet, ['controller', 'deploy', file, '--json']);
  if (r.code !== 0 && !r.stdout.startsWith('{')) throw new Error(`deploy exited ${r.code}: ${r.stderr}`);
  return { ...(JSON.parse(r.stdout) as DeployResponse), exitCode: r.code };
}

/** service → host, from a deploy plan or the services list. */
export const placementOf = (rows: readonly { service: string; host: string }[]): Record<string, string> =>
  Object.fromEntries(
    [...rows].sort((a, b) => a.service.localeCompare(b.service)).map((r) => [r.service, r.host]),
  );

/**
 * A spec of `count` services that each print a line every second. Each command line carries a
 * marker (`MARK-<service>`) so the test can count the processes of one service in /proc.
 */
export function loggingSpec(count: number, tag: string): DeploymentSpec {
  return {
    services: Array.from({ length: count }, (_, i) => {
      const name = `svc-${i + 1}`;
      return {
        name,
        command: 'sh',
        args: [
          '-c',
          `while true; do echo "${tag} ${name} on \${host.name}"; sleep 1; done # MARK-${tag}-${name}`,
        ],
        restart: 'always' as const,
      };
    }),
  };
}

/** Paths of files named `name` under `root` (at most `depth` levels down). */
export async function findFiles(root: string, name: string, depth = 4): Promise<string[]> {
  const found: string[] = [];
  const entries = await readdir(root, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const path = join(root, e.name);
    if (e.isFile() && e.name === name) found.push(path);
    else if (e.isDirectory() && depth > 0) found.push(...(await findFiles(path, name, depth - 1)));
  }
  return found;
}

/** Pids of the services a worker's agent recorded (`services/<name>/state.json`). */
export async function recordedPids(worker: LocalWorker): Promise<Record<string, number>> {
  const root = join(worker.stateDir, 'services');
  const out: Record<string, number> = {};
  for (const name of await readdir(root).catch(() => [] as string[])) {
    const record = JSON.parse(await readFile(join(root, name, 'state.json'), 'utf8')) as {
      ref: { kind: string; pid?: number } | null;
    };
    if (record.ref?.pid !== undefined) out[name] = record.ref.pid;
  }
  return out;
}

/** True while `pid` runs (not a zombie). */
export async function isAlive(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z /.test(stat);
  } catch {
    return false; // ENOENT: the process is gone
  }
}

/** Pids of every live process whose NUL-separated command line passes `match`. */
export async function pidsWhere(match: (cmdline: string) => boolean): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '' /* exited meanwhile */);
    if (match(cmdline) && (await isAlive(Number(entry)))) pids.push(Number(entry));
  }
  return pids;
}

/** Pids of every live process with an argument that ends with `marker`. */
export const pidsWithMarker = (marker: string): Promise<number[]> =>
  pidsWhere((cmdline) => cmdline.includes(`${marker}\0`));
