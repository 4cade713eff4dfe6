import { migrateDatabase, type ControllerDb } from '../db/open-database.js';
import { ControllerError, ControllerErrorCode } from '../errors.js';
import type { DatabaseTarget } from '../db/database-target.js';
import { anyStateFilePresent, inspectControllerState, stateDatabase } from './check-state.js';
import {
  newManifest,
  newStateId,
  readControllerManifest,
  writeControllerManifest,
} from './controller-manifest.js';
import { getSetting, SETTING_ADDRESSES, SETTING_STATE_ID } from './settings.js';
import { stateDamagedError } from './state-files.js';
import { statePaths } from './state-paths.js';
import { decodeJsonColumn, StoredNames } from '../db/json-column.js';

/**
 * For `serve`: checks the whole state dir (see inspectControllerState) and opens its
 * database; nothing is created. Throws CORRAL_ERR_STATE_MISSING when `init` never ran (or
 * did not finish), and CORRAL_ERR_STATE_DAMAGED, naming each file and the way back, when a
 * state file that existed is missing, empty or damaged; the disk is left as it was. A whole
 * state dir from before manifests gets one. `database`: where the database is when it is not
 * the state dir's `corral.db` (see stateDatabase).
 */
export async function openControllerState(
  stateDir: string,
  database?: DatabaseTarget,
): Promise<ControllerDb> {
  const paths = statePaths(stateDir);
  const read = await readControllerManifest(paths);
  if (read.kind === 'absent' && !(await anyStateFilePresent(paths))) {
    throw new ControllerError(
      ControllerErrorCode.STATE_MISSING,
      `${stateDir} is not initialized; run: corral controller init --state-dir ${stateDir}`,
    );
  }
  if (read.kind === 'ok' && !read.manifest.complete) {
    throw new ControllerError(
      ControllerErrorCode.STATE_MISSING,
      `controller init did not finish in ${stateDir}; run it again: corral controller init --state-dir ${stateDir}`,
    );
  }
  const manifest = read.kind === 'ok' ? read.manifest : undefined;
  const target = stateDatabase(paths, manifest, database);
  const inspection = await inspectControllerState(paths, { manifest, missingOk: false, database: target });
  const problems = [...(read.kind === 'damaged' ? [read.problem] : []), ...inspection.problems];
  const db = inspection.db;
  if (problems.length > 0 || !db) {
    await db?.destroy();
    throw stateDamagedError(stateDir, problems);
  }
  try {
    await migrateDatabase(db);
    if (!manifest) {
      let stateId = await getSetting(db, SETTING_STATE_ID);
      if (stateId === undefined) {
        stateId = newStateId();
        await db.insertInto('settings').values({ key: SETTING_STATE_ID, value: stateId }).execute();
      }
      const addresses = decodeJsonColumn(StoredNames, (await getSetting(db, SETTING_ADDRESSES)) ?? '[]', {
        table: 'settings',
        column: 'value',
        row: SETTING_ADDRESSES,
      });
      const ca = inspection.caFingerprint;
      await writeControllerManifest(paths, {
        ...newManifest(stateId, addresses),
        complete: true,
        caFingerprint: ca ?? null,
      });
    }
  } catch (e: unknown) {
    await db.destroy();
    throw e;
  }
  return db;
}
