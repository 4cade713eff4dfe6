import { el } from './dom.js';
import { field } from './widgets.js';

/**
 * The rollout options (protocol/rollout.ts) as the deploy and releases pages take them, sent
 * as the CLI sends its `--max-parallel`, `--canary`, `--canary-wait` and
 * `--no-halt-on-failure` (cli/rollout-flags.ts): a field left empty is left out, so the
 * controller's default applies. The page cannot import the protocol module (it carries the
 * schemas); rollout-options.test.ts checks these limits and the CLI's agree.
 */
export interface RolloutOptions {
  maxParallel?: number;
  canary?: number;
  canaryWaitMs?: number;
  haltOnFailure?: boolean;
  minHealthyMs?: number;
  autoRevert?: boolean;
}

/** The largest `maxParallel` and `canary` the API takes. */
export const MAX_ROLLOUT_COUNT = 10_000;
/** The longest canary wait the API takes, in ms (a day). */
export const MAX_CANARY_WAIT_MS = 24 * 60 * 60_000;
/** The longest min healthy the API takes, in ms (an hour). */
export const MAX_MIN_HEALTHY_MS = 60 * 60_000;

/** What the operator typed: counts and the canary wait in seconds as text, as the inputs hold them. */
export interface RolloutFields {
  readonly maxParallel: string;
  readonly canary: string;
  readonly canaryWaitSeconds: string;
  readonly goOnPastFailures: boolean;
  /** Deploys only: `--min-healthy` in seconds, and `--auto-revert`. */
  readonly minHealthySeconds?: string;
  readonly autoRevert?: boolean;
}

function seconds(name: string, text: string, maxMs: number): number {
  const s = Number(text);
  const ms = Math.round(s * 1000);
  if (text === '' || !Number.isFinite(s) || s < 0 || ms > maxMs) {
    throw new Error(`${name} must be from 0 to ${maxMs / 1000} seconds`);
  }
  return ms;
}

function count(name: string, text: string, min: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > MAX_ROLLOUT_COUNT) {
    throw new Error(
      `${name} must be an integer from ${min} to ${MAX_ROLLOUT_COUNT}, got ${JSON.stringify(text)}`,
    );
  }
  return n;
}

/** The fields as the API's rollout options; throws an Error saying which field is wrong. */
export function rolloutFromFields(f: RolloutFields): RolloutOptions {
  const out: RolloutOptions = {};
  if (f.maxParallel.trim() !== '') out.maxParallel = count('Max parallel hosts', f.maxParallel.trim(), 1);
  if (f.canary.trim() !== '') out.canary = count('Canary hosts', f.canary.trim(), 0);
  if (f.canaryWaitSeconds.trim() !== '') {
    out.canaryWaitMs = seconds('Canary wait', f.canaryWaitSeconds.trim(), MAX_CANARY_WAIT_MS);
  }
  if (f.goOnPastFailures) out.haltOnFailure = false;
  const gate = f.minHealthySeconds?.trim() ?? '';
  if (gate !== '') out.minHealthyMs = seconds('Min healthy', gate, MAX_MIN_HEALTHY_MS);
  if (f.autoRevert === true) out.autoRevert = true;
  return out;
}

export interface RolloutControls {
  /** The labelled inputs, to be placed in a form. */
  readonly node: HTMLElement;
  /** The options the inputs hold now; throws an Error when one is not valid. */
  readonly read: () => RolloutOptions;
}

/**
 * Labelled inputs for the rollout options, their ids prefixed by `prefix` (`deploy`, `release`);
 * with `gate`, also a deploy's min healthy and auto-revert.
 */
export function rolloutControls(prefix: string, defaultParallel: string, gate = false): RolloutControls {
  const input = (name: string, inputmode: string, placeholder: string) =>
    el('input', { id: `${prefix}-${name}`, type: 'text', inputmode, autocomplete: 'off', placeholder });
  const maxParallel = input('max-parallel', 'numeric', defaultParallel);
  const canary = input('canary', 'numeric', 'none');
  const canaryWait = input('canary-wait', 'decimal', '30');
  const goOn = el('input', { id: `${prefix}-go-on`, type: 'checkbox' });
  const minHealthy = input('min-healthy', 'decimal', "controller's (10)");
  const autoRevert = el('input', { id: `${prefix}-auto-revert`, type: 'checkbox' });
  return {
    node: el(
      'fieldset',
      { id: `${prefix}-rollout`, class: 'controls' },
      el('legend', {}, 'Rollout'),
      field('Max parallel hosts', maxParallel),
      field('Canary hosts', canary),
      field('Canary wait (seconds)', canaryWait),
      field('Go on past failed hosts', goOn),
      ...(gate
        ? [
            field('Min healthy (seconds)', minHealthy),
            field('Put the previous spec back on failure', autoRevert),
          ]
        : []),
    ),
    read: () =>
      rolloutFromFields({
        maxParallel: maxParallel.value,
        canary: canary.value,
        canaryWaitSeconds: canaryWait.value,
        goOnPastFailures: goOn.checked,
        ...(gate && { minHealthySeconds: minHealthy.value, autoRevert: autoRevert.checked }),
      }),
  };
}
