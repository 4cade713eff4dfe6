import type { Command } from 'commander';
import { MAX_CANARY_WAIT_MS, MAX_MIN_HEALTHY_MS, type RolloutOptions } from '../protocol/rollout.js';
import { parseDurationOrZeroMs } from './duration.js';
import { CliExit, EXIT_USAGE } from './exit.js';

export interface RolloutFlags {
  maxParallel?: string;
  canary?: string;
  canaryWait?: string;
  haltOnFailure?: boolean;
  minHealthy?: string;
  autoRevert?: boolean;
}

/** `--max-parallel`, `--canary`, `--canary-wait`, `--[no-]halt-on-failure` on a deploy or update. */
export function addRolloutOptions(cmd: Command, defaultParallel: string): Command {
  return cmd
    .option('--max-parallel <n>', `hosts sent at once (default: ${defaultParallel})`)
    .option('--canary <n>', 'send the first N hosts alone, then wait --canary-wait for them to stay healthy')
    .option(
      '--canary-wait <duration>',
      'how long the canaries must stay healthy before the rest (default 30s)',
    )
    .option('--halt-on-failure', 'stop at the first failed host, the rest untouched (the default)')
    .option('--no-halt-on-failure', 'go on past failed hosts');
}

/** `--min-healthy`, `--auto-revert`: a deploy's health gate (an update's updater has its own). */
export function addHealthGateOptions(cmd: Command): Command {
  return cmd
    .option(
      '--min-healthy <duration>',
      "a host succeeds once its services have run this long without a break (default: the controller's, 10s; 0 turns it off)",
    )
    .option('--auto-revert', 'when a host fails, put the previous spec back as a second operation');
}

function duration(flag: string, text: string, max: number, maxText: string): number {
  let ms: number;
  try {
    ms = parseDurationOrZeroMs(text);
  } catch (e: unknown) {
    throw new CliExit(EXIT_USAGE, `${flag}: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (ms > max) throw new CliExit(EXIT_USAGE, `${flag} may be at most ${maxText}`);
  return ms;
}

function count(flag: string, text: string, min: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > 10_000) {
    throw new CliExit(
      EXIT_USAGE,
      `${flag} must be an integer from ${min} to 10000, got ${JSON.stringify(text)}`,
    );
  }
  return n;
}

/** The flags as the admin API's rollout options; a bad value is a usage error (exit 2). */
export function rolloutFromFlags(f: RolloutFlags): RolloutOptions {
  const out: { -readonly [K in keyof RolloutOptions]: RolloutOptions[K] } = {};
  if (f.maxParallel !== undefined) out.maxParallel = count('--max-parallel', f.maxParallel, 1);
  if (f.canary !== undefined) out.canary = count('--canary', f.canary, 0);
  if (f.canaryWait !== undefined) {
    out.canaryWaitMs = duration('--canary-wait', f.canaryWait, MAX_CANARY_WAIT_MS, '24h');
  }
  if (f.haltOnFailure !== undefined) out.haltOnFailure = f.haltOnFailure;
  if (f.minHealthy !== undefined) {
    out.minHealthyMs = duration('--min-healthy', f.minHealthy, MAX_MIN_HEALTHY_MS, '1h');
  }
  if (f.autoRevert !== undefined) out.autoRevert = f.autoRevert;
  return out;
}
