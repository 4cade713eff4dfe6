import { open, readFile, unlink } from 'node:fs/promises';
import { Type } from '@sinclair/typebox';
import { CorralError, ErrorCode } from '../protocol/errors.js';
import { parseJsonWith } from '../protocol/validate.js';
import { identityOf, isSameProcess, type ProcessIdentity } from '../kit/proc.js';

const LockFile = Type.Object({
  pid: Type.Integer({ minimum: 1 }),
  startTime: Type.String({ maxLength: 32 }),
  bootId: Type.String({ maxLength: 64 }),
});

export interface InstanceLock {
  readonly owner: ProcessIdentity;
  release(): Promise<void>;
}

/**
 * One agent per state dir: `run/agent.pid` names the owner by pid + start time + boot id.
 * A live owner makes this throw CORRAL_ERR_CONFLICT; a dead one's file is taken over.
 */
export async function acquireInstanceLock(path: string): Promise<InstanceLock> {
  const me = await identityOf(process.pid);
  if (!me) throw new CorralError(ErrorCode.PROCESS_FAILED, 'cannot read this process in /proc');
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(path, 'wx', 0o644);
      try {
        await fh.writeFile(`${JSON.stringify(me)}\n`);
        await fh.sync();
      } finally {
        await fh.close();
      }
      let released = false;
      return {
        owner: me,
        async release() {
          if (released) return;
          released = true;
          await unlink(path).catch(() => undefined /* ENOENT: already gone (self-destruct) */);
        },
      };
    } catch (e: unknown) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let holder: ProcessIdentity | undefined;
    try {
      holder = parseJsonWith(LockFile, await readFile(path, 'utf8'), 'agent lock', 4096);
    } catch {
      holder = undefined; // ENOENT or garbage: a half-written lock from a crash; take it over
    }
    if (holder && (await isSameProcess(holder))) {
      throw new CorralError(
        ErrorCode.CONFLICT,
        `another agent (pid ${holder.pid}) is running on this state dir`,
      );
    }
    await unlink(path).catch(() => undefined /* ENOENT: a racer removed it first */);
  }
  throw new CorralError(ErrorCode.CONFLICT, 'could not take the agent lock');
}
