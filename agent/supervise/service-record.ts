import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { Reason, Timestamp } from '../../protocol/common.js';
import { ServiceState } from '../../protocol/heartbeat.js';
import { SERVICE_INSTANCE_RE, ServiceSpec } from '../../protocol/service-spec.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { readJsonFile, writeJsonAtomic } from '../../kit/json-file.js';
import { UNTRACKED, type StateFiles } from '../state/state-manifest.js';

/** Restart times kept per service: enough for any sane crash-loop window. */
export const MAX_RESTART_HISTORY = 100;
export const MAX_RECORD_BYTES = 1024 * 1024;
export const RECORD_FILE = 'state.json';

/** A process's identity as version 1 records and the reaper's plan held it. */
export const ProcessRecordSchema = Type.Object(
  {
    pid: Type.Integer({ minimum: 2 }),
    pgid: Type.Integer({ minimum: 2 }),
    startTime: Type.String({ maxLength: 32 }),
    bootId: Type.String({ maxLength: 64 }),
  },
  { additionalProperties: false },
);

export const ProcessRefSchema = Type.Object(
  {
    kind: Type.Literal('process'),
    pid: Type.Integer({ minimum: 2 }),
    pgid: Type.Integer({ minimum: 2 }),
    startTime: Type.String({ maxLength: 32 }),
    bootId: Type.String({ maxLength: 64 }),
  },
  { additionalProperties: false },
);
export const ContainerRefSchema = Type.Object(
  {
    kind: Type.Literal('container'),
    id: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    name: Type.String({ minLength: 1, maxLength: 128 }),
    image: Type.String({ minLength: 1, maxLength: 512 }),
  },
  { additionalProperties: false },
);
/** A workload reference, by runtime kind (see runtime.ts RuntimeRef). */
export const RuntimeRefSchema = Type.Union([ProcessRefSchema, ContainerRefSchema]);

const RecordFields = {
  /** The resolved spec the workload was started with. */
  spec: ServiceSpec,
  specHash: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  generation: Type.Integer({ minimum: 0 }),
  state: ServiceState,
  restarts: Type.Integer({ minimum: 0 }),
  restartTimes: Type.Array(Type.Integer({ minimum: 0 }), { maxItems: MAX_RESTART_HISTORY }),
  lastError: Type.Union([Reason, Type.Null()]),
  since: Type.Union([Timestamp, Type.Null()]),
};

/** Version 1 (agents before container services): a process record, processes only. */
const ServiceRecordV1 = Type.Object(
  { version: Type.Literal(1), ...RecordFields, process: Type.Union([ProcessRecordSchema, Type.Null()]) },
  { additionalProperties: false },
);

/** `services/<name>/state.json`: what the next agent needs to re-adopt or restart a service. */
export const ServiceRecord = Type.Object(
  { version: Type.Literal(2), ...RecordFields, ref: Type.Union([RuntimeRefSchema, Type.Null()]) },
  { additionalProperties: false },
);
export type ServiceRecord = Static<typeof ServiceRecord>;

export const StoredServiceRecord = Type.Union([ServiceRecord, ServiceRecordV1]);
export type StoredServiceRecord = Static<typeof StoredServiceRecord>;

/** A record as read from disk, in the current version (version 1's process becomes its ref). */
export function upgradeRecord(stored: StoredServiceRecord): ServiceRecord {
  if (stored.version === 2) return stored;
  const { process, version: _v1, ...rest } = stored;
  return { version: 2, ...rest, ref: process ? { kind: 'process', ...process } : null };
}

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
    async load(name) {
      const stored = await readJsonFile(
        join(dir(name), RECORD_FILE),
        StoredServiceRecord,
        `${name} service record`,
        MAX_RECORD_BYTES,
      );
      return stored && upgradeRecord(stored);
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
