import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { readEndpointsFile } from '../../kit/endpoints-file.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** A real `corral controller serve` child process on loopback. */
export interface ControllerProcess {
  readonly child: ChildProcess;
  readonly endpoints: Record<string, string>;
  readonly token: string;
  admin<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T>;
  /** A sample's value from the controller's /metrics, e.g. `corral_heartbeat_batches_total`. */
  metric(name: string): Promise<number>;
  stop(): Promise<number | null>;
}

export async function startControllerProcess(
  stateDir: string,
  extraArgs: string[] = [],
  nodeArgs: string[] = [],
): Promise<ControllerProcess> {
  const child = spawn(
    process.execPath,
    [
      ...nodeArgs,
      join(ROOT, 'bin', 'corral.js'),
      'controller',
      'serve',
      '--state-dir',
      stateDir,
      '--admin-listen',
      '127.0.0.1:0',
      '--worker-listen',
      '127.0.0.1:0',
      '--log-level',
      'warn',
      ...extraArgs,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  let endpoints: Record<string, string> | undefined;
  for (let i = 0; i < 600 && !endpoints; i++) {
    if (child.exitCode !== null) throw new Error('controller exited during start');
    endpoints = await readEndpointsFile(stateDir).catch(() => undefined);
    if (!endpoints) await sleep(50);
  }
  if (!endpoints) throw new Error('controller did not start in time');
  const token = (await readFile(join(stateDir, 'admin-token'), 'utf8')).trim();
  const adminUrl = endpoints.admin ?? '';
  return {
    child,
    endpoints,
    token,
    async admin<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
      const res = await request(`${adminUrl}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: body === undefined ? null : JSON.stringify(body),
      });
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`${method} ${path}: ${res.statusCode} ${text}`);
      return JSON.parse(text) as T;
    },
    async metric(name: string) {
      const res = await request(`${adminUrl}/metrics`, { headers: { authorization: `Bearer ${token}` } });
      const text = await res.body.text();
      const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      const m = new RegExp(`^${escaped} (\\S+)$`, 'm').exec(text);
      return m ? Number(m[1]) : Number.NaN;
    },
    async stop() {
      child.kill('SIGTERM');
      return exited;
    },
  };
}
