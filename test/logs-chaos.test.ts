import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import {
  appendLines,
  exactlyOnceProblem,
  killHard,
  makePki,
  missingSummary,
  rotate,
  seededRandom,
  sequencesIn,
  spawnForwarder,
  spawnListener,
  tempDir,
  waitFor,
  waitForLines,
  workerStateDir,
  writeLines,
  type Child,
  type Cleanups,
} from './logs-fixtures.js';

const cleanups: Cleanups = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

const FORWARDER_KILLS = 10;
const LISTENER_KILLS = 10;
const ROTATIONS = 12;

describe('chaos: kill -9 of both log sides with rotations in between', () => {
  it(`${FORWARDER_KILLS} forwarder kills, ${LISTENER_KILLS} listener kills, ${ROTATIONS}+ rotations: every line once, in order`, async () => {
    const seed = Number(process.env.LOGS_CHAOS_SEED ?? Date.now() % 1_000_000);
    const random = seededRandom(seed);
    const pki = await makePki();
    const host = await pki.host('web-1');
    const dir = await tempDir('logs-chaos');
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const logDir = join(dir, 'ingest');
    const ingest = join(logDir, 'web-1.log');
    const first = await spawnListener(cleanups, pki, host, logDir, dir, 0);
    const port = first.port;
    let listener: Promise<Child> = Promise.resolve(first);
    const listeners: Promise<Child>[] = [listener];
    const stateDir = await workerStateDir(pki, host, port);
    cleanups.push(() => rm(stateDir, { recursive: true, force: true }));
    const file = join(stateDir, 'logs', 'app.log');

    let next = 0;
    /** Writes lines for `ms`, a few at a time, as a service does. */
    const writeFor = async (ms: number): Promise<void> => {
      const until = Date.now() + ms;
      do {
        const n = 5 + Math.floor(random() * 40);
        await appendLines(file, next, next + n);
        next += n;
        await sleep(5 + random() * 15);
      } while (Date.now() < until);
    };
    let rotations = 0;
    const rotateOnce = async (): Promise<void> => {
      rotations++;
      const late = Math.floor(random() * 3) === 0 ? Math.floor(random() * 30) : 0;
      const fresh = Math.floor(random() * 60);
      await rotate(
        file,
        next + late,
        next + late + fresh,
        late > 0 ? { from: next, to: next + late } : undefined,
      );
      next += late + fresh;
    };

    await writeLines(file, 0, 500);
    next = 500;
    const forwarders: Child[] = [];
    let forwarder = spawnForwarder(cleanups, stateDir, [file]);
    forwarders.push(forwarder);
    // The promise starts with the forwarder's first look: files rotated before it ever ran are not its to ship.
    await waitForLines(ingest, 500);
    let shippedAtForwarder = 500;
    let shippedAtListener = 500;
    /**
     * Kill points mid-stream: once lines flow again since the side was last restarted (both
     * sides up), then after a random few ms; bounded, so a slow start is killed where it is.
     */
    const midStream = async (since: number): Promise<void> => {
      await waitFor('lines flowing', async () => (await sequencesIn(ingest)).length > since + 50, 2500).catch(
        () => undefined /* still starting: it is killed wherever it is */,
      );
      await sleep(random() * 100);
    };
    const events = [
      ...Array<string>(FORWARDER_KILLS).fill('kill-forwarder'),
      ...Array<string>(LISTENER_KILLS).fill('kill-listener'),
      ...Array<string>(ROTATIONS).fill('rotate'),
    ];
    for (let i = events.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [events[i], events[j]] = [events[j] as string, events[i] as string];
    }
    let forwarderKills = 0;
    const log: string[] = [];
    for (const event of events) {
      await writeFor(50 + random() * 250);
      if (event === 'rotate') {
        await rotateOnce();
      } else if (event === 'kill-forwarder') {
        await midStream(shippedAtForwarder);
        await killHard(forwarder);
        // Every third time two or three rotations happen before it is back: between two looks.
        const down = forwarderKills++ % 3 === 0 ? 2 + Math.floor(random() * 2) : Math.floor(random() * 2);
        for (let r = 0; r < down; r++) {
          await writeFor(random() * 60);
          await rotateOnce();
        }
        shippedAtForwarder = (await sequencesIn(ingest)).length;
        forwarder = spawnForwarder(cleanups, stateDir, [file]);
        forwarders.push(forwarder);
      } else {
        await midStream(shippedAtListener);
        await killHard(await listener);
        await writeFor(random() * 200);
        // It starts while the service writes on; the next kill waits until it listens.
        shippedAtListener = (await sequencesIn(ingest)).length;
        listener = spawnListener(cleanups, pki, host, logDir, dir, port);
        listeners.push(listener);
      }
      log.push(`${event}@${next}/${(await sequencesIn(ingest)).length}`);
    }
    await writeFor(200);
    await listener;
    const total = next;

    let seqs: number[];
    try {
      seqs = await waitForLines(ingest, total, 50_000);
    } catch (e: unknown) {
      const said = (await Promise.all(listeners)).map((l, i) => `listener ${i}: ${l.output()}`);
      throw new Error(
        `seed ${seed} (LOGS_CHAOS_SEED=${seed} to repeat); ${log.join(' ')}: ${String(e)}\n${said.join('\n')}`,
      );
    }
    expect(exactlyOnceProblem(seqs, total), `seed ${seed}: ${missingSummary(seqs, total)}`).toBeUndefined();
    expect(rotations).toBeGreaterThanOrEqual(ROTATIONS);
    // Nothing was deleted, so nothing may have been reported vanished.
    for (const f of forwarders) expect(f.output()).not.toContain('vanished');
  }, 150_000);
});
