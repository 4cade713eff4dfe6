import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCorral, type CliResult } from '../cli/up/corral-cli.js';
import { spawnDaemon, type Daemon } from '../cli/up/daemon.js';
import { isolatedEnv, startLocalController, type LocalController } from '../cli/up/local-controller.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import { ErrorCode } from '../protocol/errors.js';
import { CLI, tempDir } from './fleet-fixture.js';

/**
 * Backup and restore under SIGKILL at random points, with real processes (SQLite):
 * `controller backup` killed leaves FILE absent or the previous complete backup (never a
 * partial file) and the next backup removes the temp a killed one left; `controller restore`
 * killed leaves D absent (restore runs again without --force) or a whole state `serve` starts
 * on; the controller killed while it streams a backup leaves no FILE and no temp.
 */
const PASSPHRASE = 'a passphrase for the kill-point test';
const TRIES = 8;
const CONTROLLER_KILLS = 3;

/** Try `i` of `n` lands at random in the i-th of n equal slices of [0, 1.1 × fullMs]: early and late points both. */
const killPoint = (i: number, n: number, fullMs: number): number =>
  Math.floor(((i + Math.random()) / n) * fullMs * 1.1);

const sha256 = async (file: string): Promise<string> =>
  createHash('sha256')
    .update(await readFile(file))
    .digest('hex');
const exists = (p: string): Promise<boolean> =>
  stat(p).then(
    () => true,
    () => false,
  );

/** Starts `corral ARGS`, SIGKILLs it after `delayMs` (if still running); resolves how it ended. */
async function killAfter(args: readonly string[], delayMs: number): Promise<string> {
  const child = spawn(process.execPath, [CLI.bin, ...args], { env: isolatedEnv(), stdio: 'ignore' });
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const raced = await Promise.race([exited.then(() => 'exited' as const), sleep(delayMs, 'due' as const)]);
  if (raced === 'due') child.kill('SIGKILL');
  const [code, signal] = await exited;
  return signal ? `killed (${signal})` : `exited ${code}`;
}

/** The pid of a process that has exited (a stale temp names one like it). */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
  await once(child, 'exit');
  return child.pid ?? 0;
}

describe('backup and restore killed at random points (real processes, SQLite)', () => {
  let work = '';
  let passFile = '';
  let controller: LocalController | undefined;
  let goodBackup = '';
  let backupFullMs = 0;
  let stateDir = '';
  const cli = (args: readonly string[]): Promise<CliResult> => runCorral(CLI, args, { env: isolatedEnv() });
  const ctl = (): LocalController => {
    if (!controller) throw new Error('the controller did not start');
    return controller;
  };
  const backupArgs = (out: string): string[] => [
    'controller',
    'backup',
    '--state-dir',
    stateDir,
    '--out',
    out,
    '--passphrase-file',
    passFile,
    '--json',
  ];
  const restoreArgs = (file: string, dir: string): string[] => [
    'controller',
    'restore',
    file,
    '--state-dir',
    dir,
    '--passphrase-file',
    passFile,
    '--json',
  ];
  /** The `node` arguments of `controller serve` on `dir`, every listener on a port of the system's choosing. */
  const serveArgs = (dir: string): string[] => [
    CLI.bin,
    'controller',
    'serve',
    '--state-dir',
    dir,
    '--admin-listen',
    '127.0.0.1:0',
    '--worker-listen',
    '127.0.0.1:0',
    '--syslog-listen',
    '127.0.0.1:0',
    '--log-level',
    'warn',
  ];
  const tempsOf = async (dir: string, name: string): Promise<string[]> =>
    (await readdir(dir)).filter((n) => n.startsWith(`.${name}.`)).sort();

  /** `serve` on `dir` comes up (endpoints file written) or exits; returns which, then stops it. */
  const serveOutcome = async (dir: string, tag: string): Promise<string> => {
    const log = join(work, `serve-${tag}.log`);
    const d = await spawnDaemon({
      name: `serve-${tag}`,
      command: process.execPath,
      args: serveArgs(dir),
      logFile: log,
      env: isolatedEnv(),
    });
    try {
      for (let i = 0; i < 300; i += 1) {
        if ((await readEndpointsFile(dir).catch(() => undefined))?.admin) return 'serving';
        if (!d.running()) {
          const text = await readFile(log, 'utf8');
          const codes = [...new Set(text.match(/CORRAL_ERR_[A-Z_]+/g) ?? [])];
          return `exited ${(await d.exited).code} [${codes.join(', ')}]: ${text.trim().split('\n')[0] ?? ''}`;
        }
        await sleep(100);
      }
      return 'neither serving nor exited in 30 s';
    } finally {
      await d.stop(5_000);
    }
  };

  beforeAll(async () => {
    work = await tempDir('killpts');
    passFile = join(work, 'passphrase');
    await writeFile(passFile, `${PASSPHRASE}\n`, { mode: 0o600 });
    stateDir = join(work, 'controller');
    controller = await startLocalController({
      cli: CLI,
      stateDir,
      logFile: join(work, 'controller.log'),
      heartbeatIntervalMs: 1_000,
    });
  }, 60_000);

  afterAll(async () => {
    try {
      await controller?.daemon.stop(); // no-op when the last test killed it
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }, 60_000);

  it('a backup killed at any point leaves FILE absent or the previous whole backup; temps are cleaned up', async () => {
    const file = join(work, 'fleet.corral-backup');
    const t0 = Date.now();
    const first = await cli(backupArgs(file));
    const fullMs = Date.now() - t0;
    backupFullMs = fullMs;
    expect(first.code, first.stderr).toBe(0);
    goodBackup = file;
    let good = await sha256(file);
    console.log(`backup: a full run takes ${fullMs} ms`);
    const leftOver = new Set<string>();
    for (let i = 0; i < TRIES; i += 1) {
      // Even tries aim at a new FILE (nothing there before), odd ones over the good backup.
      const fresh = i % 2 === 0;
      const out = fresh ? join(work, `fresh-${i}.corral-backup`) : file;
      const delay = killPoint(i, TRIES, fullMs);
      const ended = await killAfter(backupArgs(out), delay);
      let found: string;
      if (!(await exists(out))) {
        expect(fresh, `${out} vanished`).toBe(true);
        found = 'FILE absent';
      } else if (!fresh && (await sha256(out)) === good) {
        found = 'FILE is the previous backup';
      } else {
        // The kill came after the rename: FILE must be a whole new backup that restores.
        const into = join(work, `verify-${i}`);
        const r = await cli(restoreArgs(out, into));
        expect(r.code, `${out} after a kill at ${delay} ms: ${r.stderr}`).toBe(0);
        await rm(into, { recursive: true, force: true });
        if (!fresh) good = await sha256(out);
        found = 'FILE is a new whole backup (restores)';
      }
      const temps = await tempsOf(work, basename(out));
      for (const t of temps) leftOver.add(t);
      console.log(`backup kill ${i}: at ${delay} ms, ${ended}; ${found}; temps: [${temps.join(', ')}]`);
      if (!fresh) {
        // What is at FILE is still the good backup, whole: it restores.
        expect(await sha256(file)).toBe(good);
      }
    }
    // A temp left is never named like a backup, and the next backup to FILE removes its own.
    for (const t of leftOver) expect(t.endsWith('.tmp')).toBe(true);
    // Planted besides whatever the kills left: one of a dead process (removed), one of a live one (kept).
    const stale = `.${basename(file)}.${await deadPid()}-${'a'.repeat(12)}.tmp`;
    const live = `.${basename(file)}.${process.pid}-${'b'.repeat(12)}.tmp`;
    await writeFile(join(work, stale), 'half a backup');
    await writeFile(join(work, live), 'a backup being written');
    const again = await cli(backupArgs(file));
    expect(again.code, again.stderr).toBe(0);
    const still = await tempsOf(work, basename(file));
    console.log(
      `backup: temps for FILE left by kills ${[...leftOver].filter((t) => t.startsWith(`.${basename(file)}.`)).length}, plus 2 planted (dead and live pid); after the next backup: [${still.join(', ')}]`,
    );
    expect(still).toEqual([live]);
    await rm(join(work, live));
  }, 120_000);

  it('a restore killed at any point leaves D absent (rerun works without --force) or a whole state serve starts on', async () => {
    const t0 = Date.now();
    const whole = join(work, 'restored-whole');
    const r0 = await cli(restoreArgs(goodBackup, whole));
    const fullMs = Date.now() - t0;
    expect(r0.code, r0.stderr).toBe(0);
    console.log(`restore: a full run takes ${fullMs} ms`);
    let servedAfterKill = false;
    for (let i = 0; i < TRIES; i += 1) {
      const d = join(work, `r-${i}`);
      const delay = killPoint(i, TRIES, fullMs);
      const ended = await killAfter(restoreArgs(goodBackup, d), delay);
      const staged = await tempsOf(work, basename(d));
      let found: string;
      if (!(await exists(d)) || (await readdir(d)).length === 0) {
        found = 'D absent or empty';
        // Run again, no --force: it finishes, and removes the staging dir the kill left.
        const rerun = await cli(restoreArgs(goodBackup, d));
        expect(rerun.code, rerun.stderr).toBe(0);
        expect(await tempsOf(work, basename(d))).toEqual([]);
        found += '; rerun restored it';
      } else {
        found = 'D whole';
        if (!servedAfterKill) {
          // Serve starts on what the killed restore left (once: it takes a few seconds).
          expect(await serveOutcome(d, `kill-${i}`)).toBe('serving');
          servedAfterKill = true;
          found += '; serve starts on it';
        }
      }
      console.log(
        `restore kill ${i}: at ${delay} ms, ${ended}; ${found}; staging left: [${staged.join(', ')}]`,
      );
      // Either way D is now a whole state: the CA key and the database are there.
      expect(await exists(join(d, 'ca', 'ca.key'))).toBe(true);
      expect(await exists(join(d, 'corral.db'))).toBe(true);
    }
    // A staging dir of a dead process is removed by the next restore beside it.
    const staleStaging = join(work, `.r-x.restore-${await deadPid()}-${'c'.repeat(12)}`);
    await mkdir(join(staleStaging, 'ca'), { recursive: true });
    const rx = await cli(restoreArgs(goodBackup, join(work, 'r-x')));
    expect(rx.code, rx.stderr).toBe(0);
    expect(await exists(staleStaging)).toBe(false);
    // One restored by a rerun after a kill, and serve starts on it.
    expect(await serveOutcome(join(work, 'r-0'), 'r-0')).toBe('serving');
    // A half state (what a restore without its staging rename could leave) is refused by serve.
    const half = join(work, 'r-1');
    await rm(join(half, 'tls'), { recursive: true, force: true });
    const refused = await serveOutcome(half, 'half');
    console.log(`restore: serve on a state dir missing tls/: ${refused.slice(0, 160)}`);
    expect(refused).toContain(ErrorCode.STATE_DAMAGED);
  }, 120_000);

  it('the controller killed -9 at random points of a backup leaves no partial FILE and no temp', async () => {
    let serving: Daemon = ctl().daemon;
    let adminUrl = ctl().adminUrl;
    try {
      for (let i = 0; i < CONTROLLER_KILLS; i += 1) {
        const out = join(work, `during-crash-${i}.corral-backup`);
        const child = spawn(process.execPath, [CLI.bin, ...backupArgs(out)], {
          env: isolatedEnv(),
          stdio: ['ignore', 'pipe', 'ignore'],
        });
        let stdout = '';
        child.stdout.on('data', (b: Buffer) => (stdout += b.toString('utf8')));
        const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
        const delay = killPoint(i, CONTROLLER_KILLS, backupFullMs);
        await sleep(delay);
        const tempsAtKill = await tempsOf(work, basename(out));
        serving.signal('SIGKILL');
        const [code] = await exited;
        await serving.exited;
        const left = await tempsOf(work, basename(out));
        const present = await exists(out);
        console.log(
          `controller kill ${i}: at ${delay} ms (temp ${tempsAtKill.length > 0 ? 'being written' : 'not there'}); CLI exited ${code}; FILE ${present ? 'present' : 'absent'}; temps [${left.join(', ')}]`,
        );
        if (present) {
          // The backup was whole before the kill landed: the CLI said so, with this hash.
          expect(code).toBe(0);
          expect((JSON.parse(stdout) as { sha256: string }).sha256).toBe(await sha256(out));
        } else {
          expect(code).not.toBe(0);
        }
        expect(left).toEqual([]);
        // Serve again on the same state dir (a new admin port) for the next kill.
        serving = await spawnDaemon({
          name: `controller-${i}`,
          command: process.execPath,
          args: serveArgs(stateDir),
          logFile: join(work, `controller-${i}.log`),
          env: isolatedEnv(),
        });
        const before = adminUrl;
        for (let t = 0; t < 300 && adminUrl === before; t += 1) {
          expect(serving.running(), `the controller did not start again after kill ${i}`).toBe(true);
          await sleep(100);
          adminUrl = (await readEndpointsFile(stateDir).catch(() => undefined))?.admin ?? before;
        }
        expect(adminUrl).not.toBe(before);
      }
    } finally {
      await serving.stop(5_000);
    }
  }, 90_000);
});
