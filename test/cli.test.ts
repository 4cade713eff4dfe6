import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const run = promisify(execFile);

/** Runs the built `corral` binary as a user would; never throws, returns code and output. */
export async function corral(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [join(ROOT, 'bin', 'corral.js'), ...args]);
    return { code: 0, stdout, stderr };
  } catch (e: unknown) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: err.code ?? 1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

describe('corral executable', () => {
  it('prints help listing every command group', async () => {
    const { code, stdout } = await corral(['--help']);
    expect(code).toBe(0);
    for (const group of ['controller', 'agent', 'updater', 'forwarder', 'up', 'pki']) {
      expect(stdout).toMatch(new RegExp(`^\\s+${group}\\b`, 'm'));
    }
  });

  it('prints the package version', async () => {
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const { code, stdout } = await corral(['--version']);
    expect(code).toBe(0);
    expect(stdout.trim()).toBe(pkg.version);
  });

  it('loads a group only when named, and then shows its subcommands', async () => {
    const expected: [string, string][] = [
      ['controller', 'init'],
      ['agent', 'serve'],
      ['updater', 'serve'],
      ['forwarder', 'run'],
      ['pki', 'inspect'],
    ];
    for (const [group, sub] of expected) {
      const { code, stdout } = await corral([group, '--help']);
      expect(code).toBe(0);
      expect(stdout).toMatch(new RegExp(`^\\s+${sub}\\b`, 'm'));
      const viaHelp = await corral(['help', group]);
      expect(viaHelp.stdout).toMatch(new RegExp(`^\\s+${sub}\\b`, 'm'));
    }
  });

  it('exits 2 on a bad retry or rollout flag, before anything starts', async () => {
    const serve = await corral([
      'controller',
      'serve',
      '--state-dir',
      '/nonexistent/corral',
      '--retry-max',
      '-1',
    ]);
    expect(serve.code).toBe(2);
    expect(serve.stderr).toContain('--retry-max must be an integer from 0 to 1000');
    const cooldown = await corral([
      'controller',
      'serve',
      '--state-dir',
      '/nonexistent/corral',
      '--retry-cooldown',
      'soon',
    ]);
    expect(cooldown.code).toBe(2);
    expect(cooldown.stderr).toContain('--retry-cooldown');
    const deploy = await corral(['controller', 'deploy', '/nonexistent/spec.yaml', '--max-parallel', '0']);
    expect(deploy.code).toBe(2);
    expect(deploy.stderr).toContain('--max-parallel must be an integer from 1 to 10000');
  });

  it('exits 2 on an unknown command', async () => {
    const { code, stderr } = await corral(['no-such-command']);
    expect(code).toBe(2);
    expect(stderr).toContain('unknown command');
  });
});
