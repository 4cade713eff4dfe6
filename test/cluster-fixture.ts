import { cp } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'vitest';
import { runCorral } from '../cli/up/corral-cli.js';
import { isolatedEnv } from '../cli/up/local-controller.js';
import { CLI } from './fleet-fixture.js';

/**
 * Two state dirs for controllers sharing the PostgreSQL database `url`, made as
 * docs/operations.md has an operator make them: `DIR/a` by `controller init`, `DIR/b` a copy
 * of it (same CA, identities and admin token).
 */
export async function sharedControllerStates(dir: string, url: string): Promise<{ a: string; b: string }> {
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  const init = await runCorral(CLI, ['controller', 'init', '--state-dir', a, '--database', url], {
    env: isolatedEnv(),
  });
  expect(init.code, init.stderr).toBe(0);
  await cp(a, b, { recursive: true });
  return { a, b };
}

/**
 * The `node` arguments of `corral controller serve` for `stateDir` on `url`, its admin and
 * worker listeners on loopback with ports of the system's choosing, then `extra`.
 */
export const clusterServeArgs = (stateDir: string, url: string, extra: readonly string[] = []): string[] => [
  CLI.bin,
  'controller',
  'serve',
  '--state-dir',
  stateDir,
  '--database',
  url,
  '--admin-listen',
  '127.0.0.1:0',
  '--worker-listen',
  '127.0.0.1:0',
  ...extra,
];
