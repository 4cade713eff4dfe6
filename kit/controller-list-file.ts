import { join } from 'node:path';
import {
  CONTROLLER_LIST_FILE,
  ControllerListFile,
  MAX_CONTROLLER_LIST_FILE_BYTES,
  type ControllerList,
} from '../protocol/controller-list.js';
import { readJsonFile, writeJsonAtomic } from './json-file.js';

/**
 * Reads and validates `stateDir/controllers.json`; undefined when absent. Throws
 * CORRAL_ERR_VALIDATION / CORRAL_ERR_PAYLOAD_TOO_LARGE for a damaged or oversized one.
 */
export async function readControllerList(stateDir: string): Promise<ControllerListFile | undefined> {
  return readJsonFile(
    join(stateDir, CONTROLLER_LIST_FILE),
    ControllerListFile,
    'controller list',
    MAX_CONTROLLER_LIST_FILE_BYTES,
  );
}

/**
 * Replaces `stateDir/controllers.json` (0600, temp file + rename + fsync): a reader sees the
 * old list or the whole new one, and a crash leaves one of the two.
 */
export async function writeControllerList(
  stateDir: string,
  controllers: ControllerList,
  receivedAt: Date,
): Promise<void> {
  const file: ControllerListFile = { version: 1, receivedAt: receivedAt.toISOString(), controllers };
  await writeJsonAtomic(join(stateDir, CONTROLLER_LIST_FILE), file, true);
}
