/**
 * The ingest files' sizes over time, for `npm run bench -- logs --senders N`, sampled by a
 * process that does nothing else: the bench's own process also runs the N forwarders, and its
 * event loop and I/O threads are too busy for a size read to say when it was true. Run as
 * `node dist/bench/lib/logs-sampler-child.js PATHS.json` (a JSON array of file paths); every
 * SAMPLE_MS it stats each path (a missing file is 0 bytes) and keeps `{ at, sizes }` (`at`:
 * epoch ms, read before the stats). A `series` line on stdin is answered with one line of JSON,
 * every sample since the previous `series` (the first: since the start).
 */
import { readFile, stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';

const SAMPLE_MS = 100;
/** Samples kept at most (about 17 minutes): older ones are dropped first. */
const MAX_SAMPLES = 10_000;

const paths = JSON.parse(await readFile(process.argv[2] ?? '', 'utf8')) as string[];
let samples: { at: number; sizes: number[] }[] = [];
let running = true;

const sampling = (async () => {
  while (running) {
    const at = performance.timeOrigin + performance.now();
    const sizes: number[] = [];
    for (const path of paths) {
      sizes.push(
        await stat(path).then(
          (s) => s.size,
          () => 0,
        ),
      );
    }
    samples.push({ at, sizes });
    if (samples.length > MAX_SAMPLES) samples.shift();
    await sleep(SAMPLE_MS);
  }
})();

process.stdout.write('sampling\n');
for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() !== 'series') continue;
  process.stdout.write(`${JSON.stringify(samples)}\n`);
  samples = [];
}
running = false;
await sampling;
