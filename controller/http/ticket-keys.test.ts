import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../clock.js';
import { openTicketKeys, type TicketKeyOptions } from './ticket-keys.js';

const log = pino({ level: 'silent' });
const CA = 'a'.repeat(64);
const OTHER_CA = 'b'.repeat(64);
const HOUR_MS = 3_600_000;

let dir: string;
let path: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'corral-tk-'));
  path = join(dir, 'tls-ticket-key.json');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const at = (ms: number) => ({ now: () => ms });
const opts = (o: Partial<TicketKeyOptions> = {}): TicketKeyOptions => ({
  path,
  caFingerprint: CA,
  clock: systemClock,
  log,
  lifetimeMs: HOUR_MS,
  ...o,
});

async function keyOf(o: TicketKeyOptions): Promise<{ key: Buffer; loaded: string }> {
  await using keys = await openTicketKeys(o);
  return { key: keys.current(), loaded: keys.loaded };
}

describe('openTicketKeys', () => {
  it('stores a new key 0600 and takes it back at the next start while it is young', async () => {
    const t0 = Date.parse('2026-01-01T00:00:00.000Z');
    const made = await keyOf(opts({ clock: at(t0) }));
    expect(made.loaded).toBe('absent');
    expect(made.key.length).toBe(48);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const again = await keyOf(opts({ clock: at(t0 + HOUR_MS - 1) }));
    expect(again).toEqual({ key: made.key, loaded: 'kept' });
  });

  it('never takes a key past its lifetime, from the future, of another CA, or readable by others', async () => {
    const t0 = Date.parse('2026-01-01T00:00:00.000Z');
    const cases: [Partial<TicketKeyOptions>, string, (() => Promise<void>)?][] = [
      [{ clock: at(t0 + HOUR_MS) }, 'expired'],
      [{ clock: at(t0 - 1) }, 'future'],
      [{ clock: at(t0), caFingerprint: OTHER_CA }, 'other-ca'],
      [{ clock: at(t0) }, 'permissions', () => chmod(path, 0o644)],
    ];
    for (const [o, reason, damage] of cases) {
      await rm(path, { force: true });
      const made = await keyOf(opts({ clock: at(t0) }));
      await damage?.();
      const next = await keyOf(opts(o));
      expect(next.loaded, reason).toBe(reason);
      expect(next.key.equals(made.key), reason).toBe(false);
      // The replacement is what is stored now, 0600.
      expect((await stat(path)).mode & 0o777, reason).toBe(0o600);
      expect(JSON.parse(await readFile(path, 'utf8')).key, reason).toBe(next.key.toString('base64'));
    }
  });

  it('replaces a damaged file whatever the damage, and starts', async () => {
    await keyOf(opts());
    const valid = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    const damages: string[] = [
      '',
      '{',
      'null',
      JSON.stringify({ ...valid, version: 2 }),
      JSON.stringify({ ...valid, key: Buffer.alloc(32).toString('base64') }),
      JSON.stringify({ ...valid, extra: 1 }),
      JSON.stringify({ ...valid, createdAt: 'yesterday' }),
      `${JSON.stringify(valid)}${' '.repeat(8 * 1024)}`,
    ];
    for (const text of damages) {
      await writeFile(path, text, { mode: 0o600 });
      const next = await keyOf(opts());
      expect(next.loaded, text.slice(0, 40)).toBe('damaged');
      expect(JSON.parse(await readFile(path, 'utf8')).key).toBe(next.key.toString('base64'));
    }
  });

  it('keeps the key in memory when the file cannot be written, and without a path', async () => {
    const nowhere = join(dir, 'missing-dir', 'tls-ticket-key.json');
    const keys = await keyOf(opts({ path: nowhere }));
    expect(keys.loaded).toBe('absent');
    expect(keys.key.length).toBe(48);
    const memory = await keyOf(opts({ path: undefined }));
    expect(memory.loaded).toBe('not-stored');
  });

  it('rotates a running key once it is as old as its lifetime, stores it, and tells the listeners', async () => {
    const lifetimeMs = 150;
    await using keys = await openTicketKeys(opts({ lifetimeMs }));
    const first = keys.current();
    const told: Buffer[] = [];
    keys.onRotate((k) => told.push(k));
    for (let i = 0; i < 100 && told.length < 2; i++) await sleep(20);
    expect(told.length).toBeGreaterThanOrEqual(2);
    expect(told[0]!.equals(first)).toBe(false);
    expect(told[1]!.equals(told[0]!)).toBe(false);
    await keys.close();
    const stored = JSON.parse(await readFile(path, 'utf8')) as { key: string };
    expect(stored.key).toBe(keys.current().toString('base64'));
    expect(told.at(-1)!.equals(keys.current())).toBe(true);
    // Idempotent; no rotation after close.
    await keys.close();
    const after = told.length;
    await sleep(lifetimeMs * 2);
    expect(told.length).toBe(after);
  });
});
