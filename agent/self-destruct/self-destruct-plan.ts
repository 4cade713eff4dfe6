import { lstat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isAbsolute, normalize, relative, sep } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { MAX_APPLY_SERVICES } from '../../protocol/agent-api.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { CORRAL_DAEMONS, type FoundDaemon } from './corral-daemons.js';
import { ProcessRecordSchema, RuntimeRefSchema } from '../supervise/service-record.js';

/** Most controller addresses a plan names for the wipe report to try. */
export const MAX_WIPE_REPORT_CONTROLLERS = 64;

const ProcessIdentitySchema = Type.Object(
  {
    pid: Type.Integer({ minimum: 2 }),
    startTime: Type.String({ maxLength: 32 }),
    bootId: Type.String({ maxLength: 64 }),
  },
  { additionalProperties: false },
);

/** Where the reaper reports home when it has finished (a decommissioned worker's last call). */
export const ReaperReportTarget = Type.Object(
  {
    hostId: Type.String({ maxLength: 64 }),
    /** The controller's worker API, `HOST:PORT`: the one the agent was talking to. */
    controller: Type.String({ maxLength: 300 }),
    /** Every controller's worker API the agent knew of, to fail over along after `controller`. */
    controllers: Type.Optional(
      Type.Array(Type.String({ maxLength: 300 }), { maxItems: MAX_WIPE_REPORT_CONTROLLERS }),
    ),
    caPem: Type.String({ maxLength: 64 * 1024 }),
    certPem: Type.String({ maxLength: 64 * 1024 }),
    keyPem: Type.String({ maxLength: 64 * 1024 }),
  },
  { additionalProperties: false },
);
export type ReaperReportTarget = Static<typeof ReaperReportTarget>;

/** What the reaper is told to do; written to a file it reads and then deletes. */
export const ReaperPlan = Type.Object(
  {
    version: Type.Literal(2),
    hostname: Type.String({ maxLength: 255 }),
    /** The agent to stop first, so it cannot restart what the reaper stops. */
    agent: Type.Union([ProcessRecordSchema, Type.Null()]),
    /**
     * The updater and forwarder found running on this state dir (pid file or /proc), stopped
     * before the agent (the updater would restart it); each checked again before any signal.
     */
    daemons: Type.Array(
      Type.Object(
        {
          name: Type.Union(CORRAL_DAEMONS.map((d) => Type.Literal(d))),
          process: ProcessIdentitySchema,
        },
        { additionalProperties: false },
      ),
      { maxItems: 16 },
    ),
    /** systemd units of the Corral daemons, stopped and disabled when systemd is pid 1. */
    units: Type.Array(Type.String({ pattern: '^[A-Za-z0-9@._:-]{1,128}$' }), { maxItems: 16 }),
    services: Type.Array(
      Type.Object(
        {
          name: Type.String({ maxLength: 63 }),
          ref: RuntimeRefSchema,
          stopGraceMs: Type.Integer({ minimum: 0 }),
        },
        { additionalProperties: false },
      ),
      { maxItems: MAX_APPLY_SERVICES * 2 },
    ),
    /**
     * The container engine's socket and this agent's instance: the reaper lists the instance's
     * labelled containers again when it runs and removes them with the ones above. Null: no engine.
     */
    containers: Type.Union([
      Type.Object(
        {
          socket: Type.String({ minLength: 1, maxLength: 1024 }),
          instance: Type.String({ pattern: '^[0-9a-f]{24}$' }),
        },
        { additionalProperties: false },
      ),
      Type.Null(),
    ]),
    /** Directories whose contents go (the directory too, unless it holds a kept one). */
    deleteDirs: Type.Array(Type.String({ maxLength: 1024 }), { maxItems: 16 }),
    /** Directories kept whole, even inside a deleted one: the logs. */
    keepDirs: Type.Array(Type.String({ maxLength: 1024 }), { maxItems: 16 }),
    /** Where the reaper appends its last RFC 5424 line (inside a kept directory), if anywhere. */
    logFile: Type.Union([Type.String({ maxLength: 1024 }), Type.Null()]),
    /**
     * The controller to tell when it has finished, with the agent's identity (the file is 0600
     * and the reaper deletes it as soon as it has read it); null: tell nobody.
     */
    report: Type.Union([ReaperReportTarget, Type.Null()]),
    /** Wait before starting, so the agent's reply is out, in ms. */
    startDelayMs: Type.Integer({ minimum: 0, maximum: 60_000 }),
  },
  { additionalProperties: false },
);
export type ReaperPlan = Static<typeof ReaperPlan>;

/** Directories no configuration may make the reaper delete, whatever it says. */
const NEVER_DELETE = [
  '/',
  '/bin',
  '/boot',
  '/dev',
  '/etc',
  '/home',
  '/lib',
  '/lib64',
  '/media',
  '/mnt',
  '/opt',
  '/proc',
  '/root',
  '/run',
  '/sbin',
  '/srv',
  '/sys',
  '/tmp',
  '/usr',
  '/usr/bin',
  '/usr/lib',
  '/usr/local',
  '/usr/local/bin',
  '/usr/local/lib',
  '/usr/share',
  '/var',
  '/var/lib',
  '/var/log',
  '/var/tmp',
  '/var/run',
];

/** True when `inner` is `outer` or lies beneath it. */
export function isWithin(inner: string, outer: string): boolean {
  const rel = relative(outer, inner);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/**
 * Refuses a directory the reaper must never delete: relative paths, `..` tricks, system
 * directories, the home directory, and anything holding one of those. Returns the normalized path.
 */
export function checkDeletable(dir: string): string {
  const path = normalize(dir).replace(/\/+$/, '') || '/';
  if (!isAbsolute(dir) || path !== dir.replace(/\/+$/, '')) {
    throw new CorralError(
      ErrorCode.VALIDATION,
      `refusing to delete ${JSON.stringify(dir)}: not a plain absolute path`,
    );
  }
  const guarded = [...NEVER_DELETE, homedir()];
  if (guarded.some((g) => isWithin(g, path))) {
    throw new CorralError(
      ErrorCode.VALIDATION,
      `refusing to delete ${path}: it is or holds a system directory`,
    );
  }
  if (path.split('/').filter(Boolean).length < 2) {
    throw new CorralError(ErrorCode.VALIDATION, `refusing to delete ${path}: too close to the root`);
  }
  return path;
}

/**
 * Checks what is on disk at `dir` without following it (lstat): a directory, or nothing yet.
 * A symbolic link is refused, since deleting "it" would delete whatever it points to; so is
 * any other kind of file. Done when the plan is made and again by the reaper right before it
 * deletes, so a directory swapped for a link in between is refused too.
 * Throws CORRAL_ERR_VALIDATION.
 */
export async function checkDirectoryOnDisk(dir: string): Promise<'directory' | 'missing'> {
  let st;
  try {
    st = await lstat(dir);
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw e;
  }
  if (st.isSymbolicLink()) {
    throw new CorralError(
      ErrorCode.VALIDATION,
      `refusing to delete ${dir}: it is a symbolic link; name the directory itself`,
    );
  }
  if (!st.isDirectory()) {
    throw new CorralError(ErrorCode.VALIDATION, `refusing to delete ${dir}: it is not a directory`);
  }
  return 'directory';
}

/** `buildReaperPlan`, then every directory it would delete checked on disk (`checkDirectoryOnDisk`). */
export async function buildCheckedReaperPlan(
  ...args: Parameters<typeof buildReaperPlan>
): Promise<ReaperPlan> {
  const plan = buildReaperPlan(...args);
  for (const dir of plan.deleteDirs) await checkDirectoryOnDisk(dir);
  return plan;
}

export interface SelfDestructConfig {
  /** The agent's state dir: deleted, except the kept directories inside it. */
  readonly stateDir: string;
  /** Install directories (releases), deleted whole. */
  readonly installDirs: readonly string[];
  /** Other Corral directories to delete (the updater's and forwarder's state). */
  readonly extraDirs: readonly string[];
  /** Kept: the directory of the worker log, and any others given. */
  readonly keepDirs: readonly string[];
  readonly units: readonly string[];
  readonly logFile: string | null;
  /** The container engine to remove this instance's containers from; null: none. */
  readonly containers?: { readonly socket: string; readonly instance: string } | null;
}

export function buildReaperPlan(
  config: SelfDestructConfig,
  hostname: string,
  agent: ReaperPlan['agent'],
  services: ReaperPlan['services'],
  startDelayMs: number,
  daemons: readonly FoundDaemon[] = [],
  report: ReaperReportTarget | null = null,
): ReaperPlan {
  const deleteDirs = [
    config.stateDir,
    ...config.installDirs,
    ...config.extraDirs,
    ...daemons.flatMap((d) => d.dirs),
  ].map(checkDeletable);
  const keepDirs = config.keepDirs.map((d) => normalize(d).replace(/\/+$/, ''));
  for (const keep of keepDirs) {
    if (!isAbsolute(keep))
      throw new CorralError(ErrorCode.VALIDATION, `kept directory ${keep} is not absolute`);
  }
  return {
    version: 2,
    hostname,
    agent,
    daemons: daemons.map((d) => ({ name: d.name, process: { ...d.process } })),
    units: [...config.units],
    services,
    deleteDirs: [...new Set(deleteDirs)],
    keepDirs: [...new Set(keepDirs)],
    logFile: config.logFile,
    containers: config.containers ? { ...config.containers } : null,
    report,
    startDelayMs,
  };
}
