import { Type, type Static } from '@sinclair/typebox';

/** Lines one page answers at most (`limit`). */
export const MAX_LOG_LIMIT = 10_000;
export const DEFAULT_LOG_LIMIT = 200;
/** Longest `grep` pattern accepted, in characters. */
export const MAX_LOG_GREP_CHARS = 256;
/** Bytes of each message a pattern is matched against (the start of the message). */
export const MAX_LOG_MATCH_CHARS = 8192;
/** Characters of a message an answer carries; longer ones are cut and marked `truncated`. */
export const MAX_LOG_MESSAGE_CHARS = 16_384;

/**
 * `GET /v1/logs`: lines of the hosts' ingest files. `host` is a host name or id (resolved
 * through the database, never a path); none means every host, merged by timestamp. `since`
 * and `until` are RFC 3339 timestamps (compared with each line's own timestamp); `grep` a
 * JavaScript regular expression on the message; `service` the RFC 5424 app-name. A page is
 * the newest `limit` matching lines, oldest first; `follow=true` streams new lines as
 * server-sent events (`event: line`) after them.
 */
export const LogsQuery = Type.Object(
  {
    host: Type.Optional(Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9][a-z0-9-]*$' })),
    service: Type.Optional(Type.String({ minLength: 1, maxLength: 48, pattern: '^[!-~]+$' })),
    since: Type.Optional(Type.String({ format: 'date-time', maxLength: 40 })),
    until: Type.Optional(Type.String({ format: 'date-time', maxLength: 40 })),
    grep: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
    limit: Type.Optional(Type.Integer({ minimum: 1 })),
    follow: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type LogsQuery = Static<typeof LogsQuery>;

/** One stored line, parsed from RFC 5424 (fields the line lacks are null). */
export const LogLine = Type.Object(
  {
    /** The line's own timestamp (the worker's clock), RFC 3339; null for NILVALUE or unparsable. */
    ts: Type.Union([Type.String(), Type.Null()]),
    /** The host, by the controller's name for it (provenance is the pinned certificate). */
    host: Type.String(),
    hostId: Type.String(),
    /** RFC 5424 APP-NAME. */
    service: Type.Union([Type.String(), Type.Null()]),
    /** Worker text, untrusted: a client escapes it before showing it. */
    message: Type.String(),
    truncated: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type LogLine = Static<typeof LogLine>;

export const LogsPage = Type.Object(
  {
    lines: Type.Array(LogLine),
    /** True when the time or byte budget ran out first: older matching lines may exist. */
    partial: Type.Boolean(),
  },
  { additionalProperties: false },
);
export type LogsPage = Static<typeof LogsPage>;
