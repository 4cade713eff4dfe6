import { spawn } from 'node:child_process';
import { cp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { corralJson, runCorral, type CliResult } from '../cli/up/corral-cli.js';
import type { HostView } from '../protocol/host.js';
import { CLI, loggingSpec, poll, tempDir } from './fleet-fixture.js';
import { createWorkerNamespaces, NETNS_SUBNETS, netnsUnavailable, type Namespaces } from './netns-fixture.js';

const unavailable = await netnsUnavailable(NETNS_SUBNETS.e2eInstall);
const BOXES = 3;
const KILL_ENV = 'CORRAL_TEST_INSTALL_KILL_AT';

interface Box {
  readonly name: string;
  readonly ns: string;
  readonly dir: string;
  readonly prefix: string;
  readonly stateDir: string;
  readonly configDir: string;
}

/** Runs `corral ARGS` inside a namespace with `stdin` written to it; resolves code and signal. */
function inNamespace(
  ns: string,
  args: readonly string[],
  stdin: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<CliResult & { signal: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, CLI.bin, ...args], {
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.once('error', reject);
    // ip netns exec passes the signal on as its own exit status 128+N; both are accepted.
    child.once('close', (code, signal) =>
      resolve({ code: code ?? 1, signal: signal ?? (code === 137 ? 'SIGKILL' : null), stdout, stderr }),
    );
    child.stdin.end(stdin);
  });
}

/** Pids of live processes whose command line mentions `needle`. */
async function processesWith(needle: string): Promise<number[]> {
  const found: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const cmdline = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '' /* gone meanwhile */);
    if (cmdline.includes(needle)) found.push(Number(name));
  }
  return found;
}

/**
 * A controller and three fresh boxes installed the way docs/operations.md says, each box in its
 * own network namespace (the controller on the root side of the first veth pair): the install
 * line `token create` prints, some installs SIGKILLed at several points and run again, all three
 * online, a deploy, and the first `controller update` live everywhere with no rollback.
 */
if (unavailable !== undefined) {
  describe('install a controller and workers from nothing', () => {
    it.skip(`skipped: ${unavailable}`, () => undefined);
  });
} else {
  describe('install a controller and workers from nothing', () => {
    let dir: string;
    let nets: Namespaces;
    let ctlState: string;
    const boxes: Box[] = [];
    const ctl = (args: string[]): Promise<CliResult> =>
      runCorral(CLI, [...args, '--state-dir', ctlState], { timeoutMs: 600_000 });
    const ctlJson = <T>(args: string[]): Promise<T> =>
      corralJson<T>(CLI, [...args, '--state-dir', ctlState, '--json'], { timeoutMs: 600_000 });

    beforeAll(async () => {
      dir = await tempDir('e2e-install');
      nets = await createWorkerNamespaces(BOXES, NETNS_SUBNETS.e2eInstall);
      ctlState = join(dir, 'control', 'state');
      for (const [i, ns] of nets.namespaces.entries()) {
        const boxDir = join(dir, `box-${i + 1}`);
        boxes.push({
          name: `box-${i + 1}`,
          ns: ns.name,
          dir: boxDir,
          prefix: join(boxDir, 'opt', 'corral'),
          stateDir: join(boxDir, 'var', 'lib', 'corral'),
          configDir: join(boxDir, 'etc', 'corral'),
        });
      }
    }, 60_000);

    afterAll(async () => {
      for (const b of boxes) {
        await runCorral(CLI, [
          'worker',
          'uninstall',
          '--yes',
          '--prefix',
          b.prefix,
          '--state-dir',
          b.stateDir,
          '--config-dir',
          b.configDir,
        ]);
      }
      const pidText = await readFile(join(ctlState, 'run', 'controller.json'), 'utf8').catch(() => undefined);
      if (pidText) {
        try {
          process.kill((JSON.parse(pidText) as { pid: number }).pid, 'SIGTERM');
        } catch (e: unknown) {
          void e; // already gone
        }
      }
      const left = await nets.cleanup();
      await rm(dir, { recursive: true, force: true });
      expect(left).toEqual([]);
    }, 300_000);

    it('installs, survives killed installs, deploys, and takes its first update live', async () => {
      const gateway = nets.namespaces[0]!.gateway;
      const control = await corralJson<{ caPin: string; join: string; version: string; changed: boolean }>(
        CLI,
        [
          'controller',
          'install',
          '--no-systemd',
          '--prefix',
          join(dir, 'control', 'opt', 'corral'),
          '--state-dir',
          ctlState,
          '--config-dir',
          join(dir, 'control', 'etc', 'corral'),
          '--address',
          gateway,
          '--admin-listen',
          '127.0.0.1:0',
          '--worker-listen',
          `${gateway}:8771`,
          '--json',
        ],
        { timeoutMs: 600_000 },
      );
      expect(control.changed).toBe(true);
      expect(control.join).toBe(`${gateway}:8772`);

      // Each box is installed from the line `token create` printed; box-2 and box-3 are killed
      // part way (SIGKILL, no cleanup) at the points listed, then run again until they finish.
      const kills: Record<string, string[]> = {
        'box-1': [],
        'box-2': ['copying', 'journal', 'started'],
        'box-3': ['joined', 'config'],
      };
      for (const b of boxes) {
        const token = await ctlJson<{ token: string; installCommand: string }>([
          'controller',
          'token',
          'create',
          '--name',
          b.name,
        ]);
        const line = token.installCommand.split(' ');
        expect(line.slice(0, 3)).toEqual(['corral', 'worker', 'install']);
        expect(line).toContain('--token-file');
        expect(token.installCommand).not.toContain(token.token);
        const args = [
          ...line.slice(1),
          '--prefix',
          b.prefix,
          '--state-dir',
          b.stateDir,
          '--config-dir',
          b.configDir,
          '--no-systemd',
          '--json',
        ];
        for (const point of kills[b.name] ?? []) {
          const cut = await inNamespace(b.ns, args, `${token.token}\n`, {
            ...process.env,
            [KILL_ENV]: point,
          });
          expect(cut.signal, `${b.name} at ${point}: ${cut.stderr}`).toBe('SIGKILL');
        }
        const r = await inNamespace(b.ns, args, `${token.token}\n`);
        expect(r.code, r.stderr).toBe(0);
        const view = JSON.parse(r.stdout) as { name: string; version: string; changed: boolean };
        expect(view).toMatchObject({ name: b.name, version: control.version });
        // Once more: nothing to do, and it says so.
        const again = await inNamespace(b.ns, args, '');
        expect(again.code, again.stderr).toBe(0);
        expect((JSON.parse(again.stdout) as { changed: boolean }).changed).toBe(false);
        expect(await readlink(join(b.prefix, 'current'))).toBe(`releases/${control.version}`);
      }

      const online = await poll(
        'all boxes online',
        async () => {
          const hosts = await ctlJson<HostView[]>(['controller', 'hosts']);
          return hosts.filter((h) => h.status === 'online').length === BOXES ? hosts : undefined;
        },
        120_000,
        1000,
      );
      expect(online.map((h) => h.name).sort()).toEqual(boxes.map((b) => b.name));

      const specFile = join(dir, 'spec.json');
      await writeFile(specFile, JSON.stringify(loggingSpec(3, 'inst')));
      const deployed = await ctl(['controller', 'deploy', specFile, '--json']);
      expect(deployed.code, deployed.stderr).toBe(0);

      // The next release: the installed tree of box-1 packed as the update tests do.
      const next = `${control.version}-e2e.1`;
      const src = join(dir, 'release-src');
      await cp(join(boxes[0]!.prefix, 'releases', control.version), src, {
        recursive: true,
        verbatimSymlinks: true,
      });
      const manifest = JSON.parse(await readFile(join(src, 'manifest.json'), 'utf8')) as Record<
        string,
        unknown
      >;
      await rm(join(src, 'manifest.json'));
      await writeFile(
        join(src, 'corral-release.json'),
        JSON.stringify({
          start: manifest.start,
          updater: manifest.updater,
          forwarder: manifest.forwarder,
          include: manifest.include,
          exclude: ['**/test/fixtures'],
        }),
      );
      const tarball = join(dir, `corral-${next}.tar.gz`);
      const packed = await runCorral(CLI, [
        'controller',
        'release',
        'pack',
        src,
        '--version',
        next,
        '--out',
        tarball,
      ]);
      expect(packed.code, packed.stderr).toBe(0);

      const update = await ctl(['controller', 'update', '--release', tarball, '--all', '--json']);
      expect(update.code, update.stderr).toBe(0);
      const results = (JSON.parse(update.stdout) as { hosts: { host: string; outcome: string }[] }).hosts;
      expect(results.map((r) => [r.host, r.outcome]).sort()).toEqual(boxes.map((b) => [b.name, 'updated']));

      const hosts = await poll(
        'every agent reports the new version',
        async () => {
          const list = await ctlJson<HostView[]>(['controller', 'hosts']);
          return list.every((h) => h.agentVersion === next && h.status === 'online') ? list : undefined;
        },
        120_000,
        1000,
      );
      expect(hosts).toHaveLength(BOXES);
      for (const b of boxes) {
        expect(await readlink(join(b.prefix, 'current'))).toBe(`releases/${next}`);
        // One supervision tree per box: an updater, and the agent and forwarder of the new release.
        const agents = await processesWith(`${b.prefix}/releases/${next}/bin/corral.js\0agent\0serve`);
        const forwarders = await processesWith(`${b.prefix}/releases/${next}/bin/corral.js\0forwarder\0run`);
        const updaters = await processesWith(`${b.prefix}/self/current/bin/corral.js\0updater\0serve`);
        expect([agents.length, forwarders.length, updaters.length], b.name).toEqual([1, 1, 1]);
      }
    }, 1_500_000);
  });
}
