import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTROLLER_SUBCOMMANDS } from '../cli/commands/controller.js';
import { buildProgram } from '../cli/program.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import { makePki, makeWorker } from './agent-fixture.js';
import { startController, type TestController } from './controller-fixture.js';
import { moduleTraceArgs, tracedModules } from './module-trace.js';

/**
 * What a `corral` process loads, seen through module hooks in the real binary: each command
 * loads its own code, so the quick ones (`--version`, `controller hosts`) never pay for the
 * controller's module graph, and the agent daemon never loads what only a join needs.
 */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const execFileAsync = promisify(execFile);
const DIST = `file://${ROOT}/dist/`;
/** Packages only the controller (or a join) needs. */
const CONTROLLER_PACKAGES = ['fastify', 'kysely', 'sqlite3', 'pino', '@peculiar', 'undici', 'tar'];

let t: TestController;
let work: string;
let traces = 0;
beforeAll(async () => {
  t = await startController();
  work = await mkdtemp(join(tmpdir(), 'corral-module-graph-'));
});
afterAll(async () => {
  await t.close();
  await rm(work, { recursive: true, force: true });
});

async function traced(
  args: string[],
): Promise<{ ours: string[]; packages: string[]; builtins: string[]; stdout: string }> {
  const file = join(work, `trace-${traces++}.txt`);
  const { stdout } = await execFileAsync(process.execPath, [
    ...moduleTraceArgs(ROOT, file),
    join(ROOT, 'bin', 'corral.js'),
    ...args,
  ]);
  return { ...split(await tracedModules(file)), stdout };
}

function split(urls: string[]): { ours: string[]; packages: string[]; builtins: string[] } {
  const ours = urls.filter((u) => u.startsWith(DIST)).map((u) => u.slice(DIST.length));
  const packages = [
    ...new Set(
      urls
        .map((u) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(u)?.[1])
        .filter((p): p is string => p !== undefined),
    ),
  ];
  return { ours, packages, builtins: urls.filter((u) => u.startsWith('node:')) };
}

const controllerPackagesIn = (packages: string[]): string[] =>
  packages.filter((p) => CONTROLLER_PACKAGES.some((c) => p === c || p.startsWith(`${c}/`)));

describe('module graph of a corral command', () => {
  it('--version loads the CLI entry and nothing of the daemons', async () => {
    const { ours, packages, stdout } = await traced(['--version']);
    expect(stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    expect(ours.filter((f) => !f.startsWith('cli/'))).toEqual([]);
    expect(packages).toEqual(['commander']);
  });

  it('controller hosts --json answers without loading controller/ or its packages', async () => {
    await t.enroll('graph-1');
    const { ours, packages, builtins, stdout } = await traced([
      'controller',
      'hosts',
      '--json',
      '--url',
      t.endpoints.admin,
      '--token',
      t.adminToken,
    ]);
    expect((JSON.parse(stdout) as { name: string }[]).map((h) => h.name)).toContain('graph-1');
    expect(ours).toContain('cli/commands/controller-hosts.js');
    expect(ours.filter((f) => f.startsWith('controller/'))).toEqual([]);
    expect(ours.filter((f) => /^cli\/commands\/controller-(serve|release|deploy|enroll)/.test(f))).toEqual(
      [],
    );
    expect(controllerPackagesIn(packages)).toEqual([]);
    // Nor the schema library, nor pki/: the page bounds and statuses are plain constants.
    expect(packages).toEqual(['commander']);
    expect(ours.filter((f) => f.startsWith('pki/'))).toEqual([]);
    // A plain-HTTP (loopback) admin target needs node:http alone, not the TLS stack.
    expect(builtins).toContain('node:http');
    expect(builtins.filter((b) => b === 'node:https' || b === 'node:tls')).toEqual([]);
  });

  it('a refused admin call loads the error registry then, and still names the code', async () => {
    const failed = await execFileAsync(process.execPath, [
      join(ROOT, 'bin', 'corral.js'),
      'controller',
      'host',
      'no-such-host',
      '--url',
      t.endpoints.admin,
      '--token',
      t.adminToken,
    ]).then(
      () => undefined,
      (e: unknown) => e as { code?: number; stderr?: string },
    );
    expect(failed?.code).toBe(1);
    expect(failed?.stderr).toContain('(CORRAL_ERR_NOT_FOUND)');
  });

  it('controller serve --help does load the controller (the trace sees it when it is there)', async () => {
    const { ours, packages } = await traced(['controller', 'serve', '--help']);
    expect(ours.some((f) => f.startsWith('controller/'))).toBe(true);
    expect(packages).toContain('fastify');
  });

  it('agent serve runs without the join client, undici, @peculiar/x509 or fastify', async () => {
    const stateDir = join(work, 'agent');
    // An enrolled bundle whose controller nothing answers (heartbeats back off, quietly).
    await makeWorker(await makePki(), '127.0.0.1:9', { stateDir, hostId: 'graph' });
    const file = join(work, 'trace-agent.txt');
    const child = spawn(
      process.execPath,
      [
        ...moduleTraceArgs(ROOT, file),
        join(ROOT, 'bin', 'corral.js'),
        'agent',
        'serve',
        '--state-dir',
        stateDir,
        '--listen',
        '127.0.0.1:0',
        '--log-level',
        'error',
        '--heartbeat-interval',
        '1h',
      ],
      { stdio: 'ignore' },
    );
    try {
      for (let i = 0; i < 600 && !(await readEndpointsFile(stateDir).catch(() => undefined))?.agent; i++) {
        await sleep(100);
      }
      const { ours, packages } = split(await tracedModules(file));
      expect(ours).toContain('agent/agent.js');
      expect(ours).toContain('agent/link/renewal.js');
      expect(ours).not.toContain('agent/link/join.js');
      // The trace sees the packages the agent does load (its logger), and none of the others:
      // its API is on node:https (kit/https-json-api.ts), not fastify.
      expect(packages).toContain('pino');
      expect(
        packages.filter((p) => p === 'undici' || p.startsWith('@peculiar/') || p.includes('fastify')),
      ).toEqual([]);
    } finally {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  });
});

describe('the controller group table', () => {
  it('names every controller subcommand once, in the order the full tree has them', async () => {
    const program = await buildProgram({ version: '0', io: { out: () => {}, err: () => {} } }, [], 'all');
    const controller = program.commands.find((c) => c.name() === 'controller');
    expect(controller?.commands.map((c) => c.name())).toEqual(CONTROLLER_SUBCOMMANDS);
  });

  it('registers only the named subcommand’s module, and everything for a name it does not know', async () => {
    const io = { out: () => {}, err: () => {} };
    const names = async (args: string[]) =>
      (await buildProgram({ version: '0', io }, args)).commands
        .find((c) => c.name() === 'controller')
        ?.commands.map((c) => c.name());
    expect(await names(['controller', 'hosts', '--json'])).toEqual([
      'hosts',
      'host',
      'decommission',
      'check',
    ]);
    expect(await names(['help', 'controller', 'token'])).toEqual(['enroll', 'token']);
    expect(await names(['controller', 'no-such'])).toEqual(CONTROLLER_SUBCOMMANDS);
    expect(await names(['controller', '--help'])).toEqual(CONTROLLER_SUBCOMMANDS);
  });
});
