import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { AGENT_NODE_FLAGS } from '../agent/node-flags.js';
import { controllerUnit, workerUnits } from '../cli/install/systemd-units.js';

const execFileAsync = promisify(execFile);
const ANALYZE = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => existsSync(p));
const dirs: string[] = [];

afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/**
 * `systemd-analyze verify` on unit files in `dir`: what it says about them (lines naming a file
 * of `dir`; it exits 0 for many unit errors, so its words are what counts), and its exit code.
 */
async function verify(dir: string, files: string[]): Promise<{ code: number; complaints: string[] }> {
  try {
    const r = await execFileAsync(ANALYZE!, ['verify', '--man=no', ...files.map((f) => join(dir, f))], {
      timeout: 120_000,
    });
    return { code: 0, complaints: `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => l.includes(dir)) };
  } catch (e: unknown) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    const text = `${err.stdout ?? ''}\n${err.stderr ?? ''}`;
    return {
      code: typeof err.code === 'number' ? err.code : 1,
      complaints: text.split('\n').filter(Boolean),
    };
  }
}

async function writeUnits(units: Record<string, string>): Promise<{ dir: string; files: string[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'corral-units-'));
  dirs.push(dir);
  const files: string[] = [];
  for (const [name, text] of Object.entries(units)) {
    await writeFile(join(dir, `${name}.service`), text);
    files.push(`${name}.service`);
  }
  return { dir, files };
}

describe('systemd units that install writes', () => {
  const o = { node: process.execPath, prefix: '/opt/corral', configFile: '/etc/corral/worker.yaml' };

  it.skipIf(!ANALYZE)(
    'corral-updater, corral-agent, corral-forwarder and corral-controller pass systemd-analyze verify',
    async () => {
      const { dir, files } = await writeUnits({
        ...workerUnits(o),
        'corral-controller': controllerUnit({ ...o, configFile: '/etc/corral/controller.yaml' }),
      });
      expect(files).toHaveLength(4);
      const r = await verify(dir, files);
      expect(r).toEqual({ code: 0, complaints: [] });
    },
  );

  it.skipIf(!ANALYZE)('the check does fail on a unit systemd would not take as written', async () => {
    const agent = workerUnits(o)['corral-agent']!.replace('KillMode=process', 'KillMode=sometimes');
    const { dir, files } = await writeUnits({ 'corral-agent': agent });
    const r = await verify(dir, files);
    expect(r.complaints.join('\n')).toMatch(/kill mode/i);
  });

  it('the agent unit stops only the agent, so its services outlive a restart of it', () => {
    const units = workerUnits(o);
    expect(units['corral-agent']).toContain('KillMode=process');
    expect(units['corral-agent']).toContain(
      'ExecStart=' +
        `${process.execPath} ${AGENT_NODE_FLAGS.join(' ')} /opt/corral/current/bin/corral.js agent serve --config /etc/corral/worker.yaml`,
    );
    expect(units['corral-updater']).toContain('/opt/corral/self/current/bin/corral.js updater serve');
  });
});
