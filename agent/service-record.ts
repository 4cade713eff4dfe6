import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { Reason, Timestamp } from '../protocol/common.js';
import { ServiceState } from '../protocol/heartbeat.js';
import { SERVICE_INSTANCE_RE, ServiceSpec } from '../protocol/service-spec.js';
import { CorralError, ErrorCode } from '../protocol/errors.js';
import { readJsonFile, writeJsonAtomic } from '../kit/json-file.js';
import { UNTRACKED, type StateFiles } from './state-manifest.js';

/** Restart times kept per service: enough for any sane crash-loop window. */
export const MAX_RESTART_HISTORY = 100;
export const MAX_RECORD_BYTES = 1024 * 1024;
export const RECORD_FILE = 'state.json';

export const ProcessRecordSchema = Type.Object(
  {
    pid: Type.Integer({ minimum: 2 }),
    pgid: Type.Integer({ minimum: 2 }),
    startTime: Type.String({ maxLength: 32 }),
    bootId: Type.String({ maxLength: 64 }),
  },
  { additionalProperties: false },
);

/** `services/<name>/state.json`: what the next agent needs to re-adopt or restart a service. */
export const ServiceRecord = Type.Object(
  {
    version: Type.Literal(1),
    /** The resolved spec the process was started with. */
    spec: ServiceSpec,
    specHash: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    generation: Type.Integer({ minimum: 0 }),
    state: ServiceState,
    process: Type.Union([ProcessRecordSchema, Type.Null()]),
    restarts: Type.Integer({ minimum: 0 }),
    restartTimes: Type.Array(Type.Integer({ minimum: 0 }), { maxItems: MAX_RESTART_HISTORY }),
    lastError: Type.Union([Reason, Type.Null()]),
    since: Type.Union([Timestamp, Type.Null()]),
  },
  { additionalProperties: false },
);
export type ServiceRecord = Static<typeof ServiceRecord>;

/** Per-service directories under `<state>/services/`. */
export interface ServiceDirs {
  readonly root: string;
  dir(name: string): string;
  ensure(name: string): Promise<string>;
  /** Names with a directory (services some agent supervised and never removed). */
  list(): Promise<string[]>;
  load(name: string): Promise<ServiceRecord | undefined>;
  save(record: ServiceRecord, durable: boolean): Promise<void>;
  remove(name: string): Promise<void>;
}

/**
 * `stateFiles` learns of each record after its first durable write and forgets a service's
 * files before its directory goes (see state-manifest.ts).
 */
export function serviceDirs(root: string, stateFiles: StateFiles = UNTRACKED): ServiceDirs {
  const dir = (name: string): string => {
    if (!SERVICE_INSTANCE_RE.test(name))
      throw new CorralError(ErrorCode.VALIDATION, `not a service name: ${name}`);
    return join(root, name);
  };
  return {
    root,
    dir,
    async ensure(name) {
      await mkdir(dir(name), { recursive: true, mode: 0o700 });
      return dir(name);
    },
    async list() {
      try {
        const entries = await readdir(root, { withFileTypes: true });
        return entries.filter((e) => e.isDirectory() && SERVICE_INSTANCE_RE.test(e.name)).map((e) => e.name);
      } catch (e: unknown) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
        throw e;
      }
    },
    load(name) {
      return readJsonFile(
        join(dir(name), RECORD_FILE),
        ServiceRecord,
        `${name} service record`,
        MAX_RECORD_BYTES,
      );
    },
    async save(record, durable) {
      const d = await this.ensure(record.spec.name);
      const file = join(d, RECORD_FILE);
      await writeJsonAtomic(file, record, durable);
      // Listed only once durable: a record lost before its first fsync is allowed to be missing.
      if (durable) await stateFiles.note(file);
    },
    async remove(name) {
      await stateFiles.forget(dir(name));
      await rm(dir(name), { recursive: true, force: true });
    },
  };
}
