import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { ENDPOINTS_FILE } from '../protocol/constants.js';
import { CliExit, EXIT_FAILURE, EXIT_USAGE } from './exit.js';
import type { AdminTarget } from './profiles.js';

/** Largest `run/endpoints.json` read, in bytes (a daemon writes a few hundred). */
const MAX_ENDPOINTS_FILE_BYTES = 16 * 1024;

/**
 * The admin address in the state dir's `run/endpoints.json`, undefined when the file or the
 * field is absent. Only that field is read, checked as a URL by the caller, so an admin
 * command loads no schema library for it. Throws CliExit for a file that is not JSON.
 */
async function readAdminEndpoint(stateDir: string): Promise<string | undefined> {
  const path = join(stateDir, ENDPOINTS_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  const foreign = (): CliExit =>
    new CliExit(EXIT_FAILURE, `${path} is not an endpoints file a controller wrote`);
  if (text.length > MAX_ENDPOINTS_FILE_BYTES) throw foreign();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Not JSON: refused like any other file a controller did not write.
    throw foreign();
  }
  const admin =
    typeof parsed === 'object' && parsed !== null ? (parsed as { admin?: unknown }).admin : undefined;
  if (admin !== undefined && typeof admin !== 'string') throw foreign();
  return admin;
}

/** Options every command that talks to the admin API takes. */
export interface AdminTargetOptions {
  stateDir?: string;
  url?: string;
  token?: string;
}

export type Env = Readonly<Record<string, string | undefined>>;

/** `--state-dir`, else `$CORRAL_HOME`, else `~/.corral/controller`. */
export function controllerStateDir(flag: string | undefined, env: Env = process.env): string {
  return flag ?? env.CORRAL_HOME ?? join(homedir(), '.corral', 'controller');
}

export function addStateDirOption(cmd: Command): Command {
  return cmd.option(
    '--state-dir <dir>',
    'controller state dir (default $CORRAL_HOME or ~/.corral/controller)',
  );
}

/** Adds `--state-dir`, `--url` and `--token` to a command that calls the admin API. */
export function addAdminTargetOptions(cmd: Command): Command {
  return addStateDirOption(cmd)
    .option('--url <url>', 'admin API URL (default $CORRAL_URL, or found in the state dir)')
    .option('--token <token>', 'admin token (default $CORRAL_TOKEN, or read from the state dir)');
}

/**
 * Finds the admin API and its credential: a profile (`corral --profile NAME`, or
 * `$CORRAL_PROFILE`) unless `--url` or `--token` is given; then `--url`/`$CORRAL_URL` and
 * `--token`/`$CORRAL_TOKEN`; otherwise the running controller's `run/endpoints.json` and
 * `admin-token` in the state dir.
 */
export async function resolveAdminTarget(
  opts: AdminTargetOptions,
  env: Env = process.env,
): Promise<AdminTarget> {
  if (env.CORRAL_PROFILE !== undefined && opts.url === undefined && opts.token === undefined) {
    // Profiles (their schema and pki/) load only for a command that uses one.
    const { profileTarget } = await import('./profiles.js');
    return profileTarget(env, env.CORRAL_PROFILE);
  }
  const stateDir = controllerStateDir(opts.stateDir, env);
  let url = opts.url ?? env.CORRAL_URL;
  if (url === undefined) {
    url = await readAdminEndpoint(stateDir);
    if (url === undefined) {
      throw new CliExit(
        EXIT_FAILURE,
        `no running controller found in ${stateDir} (no run/endpoints.json); start one with ` +
          `corral controller serve --state-dir ${stateDir}, or pass --url`,
      );
    }
  }
  if (!/^https?:\/\/[^\s/]+$/.test(url.replace(/\/+$/, ''))) {
    throw new CliExit(EXIT_USAGE, `--url must look like http://127.0.0.1:8770, got ${url}`);
  }
  let token = opts.token ?? env.CORRAL_TOKEN;
  if (token === undefined) {
    try {
      token = (await readFile(join(stateDir, 'admin-token'), 'utf8')).trim();
    } catch (e: unknown) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      throw new CliExit(EXIT_FAILURE, `no admin token: pass --token, set CORRAL_TOKEN, or use --state-dir`);
    }
  }
  return { url: url.replace(/\/+$/, ''), token };
}
