import { cpus } from 'node:os';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { installRoot } from '../cli/commands/release.js';
import { buildCorralRelease } from '../cli/release-build.js';
import { pushRelease, type PushReport } from '../controller/release/push.js';
import {
  buildRelease,
  createFleet,
  createWorker,
  killRecordedAgent,
  spawnUpdater,
  target,
  tempDir,
  type UpdaterProcess,
  type Worker,
} from '../test/updater-harness.js';
import { fmt, median } from './lib/stats.js';

/**
 * `npm run bench -- update [--hosts 10] [--mb 20] [--rounds 3] [--watch-ms 300]`: a release of `--mb` MB pushed
 * to `--hosts` real `corral updater serve` processes on this machine (each with its own bundle
 * and its stand-in agent), all at once: time until every host runs it (health confirmed); then
 * a bad release of the same size (its agent exits): time from push until every host has rolled
 * back and confirmed the old agent healthy again. Each updater watches a new release for
 * `--watch-ms` after its health check (the default of a real updater is 30 s, which would
 * dominate every figure), and a push is answered after it. Last, the size and entry count of
 * a release of this Corral installation (`corral release build`).
 */
function arg(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  const value = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a positive integer`);
  return value;
}

function check(report: PushReport, want: string): void {
  const off = report.results.filter((r) => r.outcome !== want);
  if (off.length > 0) throw new Error(`expected ${want} everywhere: ${JSON.stringify(off)}`);
}

export async function run(args: string[]): Promise<void> {
  const hosts = arg(args, 'hosts', 10);
  const mb = arg(args, 'mb', 20);
  const roundCount = arg(args, 'rounds', 3);
  const watchMs = arg(args, 'watch-ms', 300);
  const dir = await tempDir('bench-update');
  const procs: UpdaterProcess[] = [];
  const workers: Worker[] = [];
  try {
    const fleet = await createFleet();
    for (let i = 0; i < hosts; i++) workers.push(await createWorker(fleet, join(dir, `w${i}`), `w-${i}`));
    for (const w of workers) procs.push(await spawnUpdater(w, { extraArgs: ['--watch', `${watchMs}ms`] }));
    const targets = workers.map((w, i) => target(w, procs[i]!.port));
    const tls = fleet.controllerClient;
    const padBytes = mb * 1024 * 1024;

    check(
      await pushRelease({ file: (await buildRelease(dir, '1.0.0')).file, targets, tls, concurrency: hosts }),
      'updated',
    );
    console.log(`update: a ${mb} MB release pushed to ${hosts} updaters on this machine, all at once`);
    console.log(
      `node ${process.version}, ${cpus().length} cores; each host: mTLS upload, SHA-256, two-pass safe extract, swap, agent restart, health, ${watchMs} ms watch`,
    );
    console.log('');

    const good: number[] = [];
    const bad: number[] = [];
    const perHostGood: number[] = [];
    const perHostBad: number[] = [];
    let live = '1.0.0';
    for (let round = 0; round < roundCount; round++) {
      const version = `2.${round}.0`;
      const release = await buildRelease(dir, version, 'good', { padBytes });
      const t0 = performance.now();
      const report = await pushRelease({
        file: release.file,
        sha256: release.sha256,
        targets,
        tls,
        concurrency: hosts,
      });
      good.push((performance.now() - t0) / 1000);
      check(report, 'updated');
      perHostGood.push(...report.results.map((r) => r.durationMs / 1000));
      live = version;

      const broken = await buildRelease(dir, `3.${round}.0`, 'crash', { padBytes });
      const t1 = performance.now();
      const rolled = await pushRelease({
        file: broken.file,
        sha256: broken.sha256,
        targets,
        tls,
        concurrency: hosts,
      });
      bad.push((performance.now() - t1) / 1000);
      check(rolled, 'rolled-back');
      perHostBad.push(...rolled.results.map((r) => r.durationMs / 1000));
      if (rolled.results.some((r) => r.current !== live))
        throw new Error('a host did not return to the live release');
      await rm(release.file);
      await rm(broken.file);
      console.log(
        `round ${round + 1}: all on ${version} after ${fmt(good.at(-1)!, 2)} s; bad release rolled back everywhere after ${fmt(bad.at(-1)!, 2)} s`,
      );
    }
    console.log('');
    console.log(`release size               ${mb} MB (incompressible payload)`);
    console.log(`hosts                      ${hosts}`);
    console.log(
      `all on the new release     median ${fmt(median(good), 2)} s  (min ${fmt(Math.min(...good), 2)}, max ${fmt(Math.max(...good), 2)}) over ${roundCount} rounds`,
    );
    console.log(
      `bad release rolled back    median ${fmt(median(bad), 2)} s  (min ${fmt(Math.min(...bad), 2)}, max ${fmt(Math.max(...bad), 2)}) over ${roundCount} rounds`,
    );
    console.log(
      `per host, push to result   updated: median ${fmt(median(perHostGood), 2)} s; rolled back: median ${fmt(median(perHostBad), 2)} s`,
    );
    const started = performance.now();
    const corral = await buildCorralRelease({ installRoot: installRoot(), out: join(dir, 'corral.tar.gz') });
    const builtS = (performance.now() - started) / 1000;
    console.log(
      `corral release build       ${fmt(corral.bytes / 1e6, 2)} MB compressed, ${corral.entries} entries (this installation, node ${corral.node.version}; built in ${fmt(builtS, 1)} s)`,
    );
  } finally {
    for (const p of procs) await p.stop();
    for (const w of workers) await killRecordedAgent(w);
    await rm(dir, { recursive: true, force: true });
  }
}
