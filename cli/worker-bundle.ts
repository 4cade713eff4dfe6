import { join, resolve } from 'node:path';
import {
  isPkiError,
  loadBundle,
  PkiErrorCode,
  type LoadedBundle,
  type LoadedIdentity,
} from '../pki/index.js';
import { parseHostPort } from '../kit/host-port.js';
import { CliExit, EXIT_USAGE } from './exit.js';

/** Where a worker daemon keeps its enrolled identity, under its state dir. */
export const WORKER_BUNDLE_DIR = 'bundle';

/**
 * Loads the worker's bundle from `STATE/bundle` for a daemon that needs `role`'s identity.
 * A missing, broken or group-readable bundle, or one without that identity, ends the command
 * with exit 2 and says how to enroll: a worker daemon never starts without its identity.
 */
export async function loadWorkerIdentity(
  stateDir: string,
  role: 'agent' | 'updater',
): Promise<{ bundle: LoadedBundle; identity: LoadedIdentity }> {
  const dir = join(resolve(stateDir), WORKER_BUNDLE_DIR);
  let bundle: LoadedBundle;
  try {
    bundle = await loadBundle(dir);
  } catch (e: unknown) {
    if (
      isPkiError(e, PkiErrorCode.BUNDLE_MISSING) ||
      isPkiError(e, PkiErrorCode.BUNDLE_INVALID) ||
      isPkiError(e, PkiErrorCode.KEY_PERMISSIONS)
    ) {
      throw new CliExit(
        EXIT_USAGE,
        `${e.message} (${e.code}); enroll this worker first: corral agent join, or copy a bundle from corral controller enroll into ${dir}`,
      );
    }
    throw e;
  }
  const identity = bundle.identities[role];
  if (!identity)
    throw new CliExit(EXIT_USAGE, `${dir} holds no ${role} identity (CORRAL_ERR_BUNDLE_INVALID)`);
  return { bundle, identity };
}

/** Parses a HOST:PORT option value; a bad one is a usage error naming the flag. */
export function hostPortOption(flag: string, value: string): { host: string; port: number } {
  try {
    return parseHostPort(value);
  } catch (e: unknown) {
    throw new CliExit(EXIT_USAGE, `${flag}: ${e instanceof Error ? e.message : String(e)}`);
  }
}
