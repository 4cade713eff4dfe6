import { Type, type Static } from '@sinclair/typebox';
import { ReleaseVersion } from './release.js';

/** The daemons that record themselves in their state dir's `run/<daemon>.pid`. */
export const PID_FILE_DAEMONS = ['agent', 'updater', 'forwarder', 'controller'] as const;
export type PidFileDaemon = (typeof PID_FILE_DAEMONS)[number];

/** The two argv words that run each daemon (`corral updater serve`). */
export const DAEMON_COMMAND_WORDS: Readonly<Record<PidFileDaemon, readonly [string, string]>> = {
  agent: ['agent', 'serve'],
  updater: ['updater', 'serve'],
  forwarder: ['forwarder', 'run'],
  controller: ['controller', 'serve'],
};

/**
 * Environment variables carrying the random token an updater puts into each child it starts:
 * the child copies it into its pid file, and a restarted updater adopts a child only when the
 * token is in that process's environment (so never a hand-started one).
 */
export const AGENT_INSTANCE_ENV = 'CORRAL_AGENT_INSTANCE';
export const FORWARDER_INSTANCE_ENV = 'CORRAL_FORWARDER_INSTANCE';
export const INSTANCE_TOKEN_RE = /^[0-9a-f]{16,64}$/;

/**
 * `STATE/run/<daemon>.pid`, the one pid-file format of every Corral daemon: the process named
 * by pid + start time (clock ticks since boot, /proc/PID/stat field 22) + boot id, so a pid
 * reused since, or the same pid after a reboot, never matches. Written by the daemon itself at
 * start, and for a child of the updater also by the updater right after it spawned it (so a
 * restarted updater finds a child that had not got as far as writing its own). The fields up
 * to `dirs` are those of the first release that had pid files; later ones are optional, so a
 * file an older daemon wrote still reads.
 */
export const PidFile = Type.Object(
  {
    daemon: Type.Union(PID_FILE_DAEMONS.map((d) => Type.Literal(d))),
    pid: Type.Integer({ minimum: 2 }),
    startTime: Type.String({ pattern: '^[0-9]{1,20}$' }),
    bootId: Type.String({ maxLength: 64 }),
    /** Directories the daemon keeps outside its state dir (the updater's release root). */
    dirs: Type.Array(Type.String({ minLength: 1, maxLength: 1024 }), { maxItems: 8 }),
    /** The release it runs from, when an updater started it. */
    version: Type.Optional(ReleaseVersion),
    /** The updater's instance token (see AGENT_INSTANCE_ENV), when an updater started it. */
    instance: Type.Optional(Type.String({ pattern: INSTANCE_TOKEN_RE.source })),
  },
  { additionalProperties: false },
);
export type PidFile = Static<typeof PidFile>;
export const MAX_PID_FILE_BYTES = 8 * 1024;
