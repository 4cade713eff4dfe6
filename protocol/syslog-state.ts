import { Type, type Static } from '@sinclair/typebox';

/** Streams whose positions the listener keeps per host; the least recently written go first. */
export const MAX_INGEST_STREAMS_PER_HOST = 256;
/** Largest ingest state file the listener reads, in bytes. */
export const MAX_INGEST_STATE_BYTES = 256 * 1024;

const IngestStreams = Type.Record(
  Type.String({ pattern: '^[0-9a-f]{32}$' }),
  Type.Object(
    {
      position: Type.Integer({ minimum: 0 }),
      updatedAtMs: Type.Integer({ minimum: 0 }),
      /** The generation's content key (syslog-corral.ts), when the forwarder sent one. */
      key: Type.Optional(Type.String({ pattern: '^[0-9a-f]{32}$' })),
    },
    { additionalProperties: false },
  ),
  { maxProperties: MAX_INGEST_STREAMS_PER_HOST },
);

/** A host's ingest file stem: `<hostName>.<hostId>`, or `<hostId>` alone (files written before names). */
export const INGEST_STEM_RE = /^[a-z0-9][a-z0-9-]{0,62}(?:\.[a-z0-9][a-z0-9-]{0,62})?$/;

/**
 * Which file of a host's ingest is current: `<stem>.log`, holding the host's bytes from
 * `base` on (offsets in the journal and `logBytes` count every byte the host ever had, across
 * its files); `generation` is the number its file takes when it is rotated
 * (`<stem>.<generation, 6 digits>.log`).
 */
export const IngestFileState = Type.Object(
  {
    stem: Type.String({ pattern: INGEST_STEM_RE.source, maxLength: 127 }),
    generation: Type.Integer({ minimum: 0, maximum: 999_999 }),
    base: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type IngestFileState = Static<typeof IngestFileState>;

/**
 * `<logDir>/<hostId>.state`: the checkpoint record of a host's ingest. `logBytes` is the
 * host's length (its current file's `base` plus that file's size) when the state was written
 * (after an fsync of the file); on start the listener applies what the ingest journal (below)
 * holds beyond it and truncates the file to the result. `streams` maps each Corral stream id
 * to the position durably written and the generation's key (see syslog-corral.ts). Without
 * `file` (a state written before rotation), the current file is `<hostId>.log` from 0.
 */
export const IngestState = Type.Object(
  {
    version: Type.Literal(1),
    logBytes: Type.Integer({ minimum: 0 }),
    streams: IngestStreams,
    file: Type.Optional(IngestFileState),
  },
  { additionalProperties: false },
);
export type IngestState = Static<typeof IngestState>;

/** Hosts one ingest journal record may name. */
export const MAX_JOURNAL_RECORD_HOSTS = 1024;
/** Largest metadata part of one journal record, in bytes. */
export const MAX_JOURNAL_META_BYTES = 32 * 1024 * 1024;
/** Largest line data one journal record may carry, in bytes. */
export const MAX_JOURNAL_DATA_BYTES = 64 * 1024 * 1024;

/**
 * The metadata of one record of the listener's ingest journal (`<logDir>/ingest-journal.N`,
 * one record per group commit across hosts): for each host, where its lines go in its ingest
 * file (`offset`, `bytes`; the lines follow the metadata in the record, in this order) and
 * the streams this commit moved (position, time, key). Offsets count across the host's
 * rotated files (IngestFileState): the host is `offset + bytes` long once the record is applied.
 */
export const IngestJournalMeta = Type.Object(
  {
    hosts: Type.Array(
      Type.Object(
        {
          id: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' }),
          offset: Type.Integer({ minimum: 0 }),
          bytes: Type.Integer({ minimum: 0, maximum: MAX_JOURNAL_DATA_BYTES }),
          streams: IngestStreams,
        },
        { additionalProperties: false },
      ),
      { maxItems: MAX_JOURNAL_RECORD_HOSTS },
    ),
  },
  { additionalProperties: false },
);
export type IngestJournalMeta = Static<typeof IngestJournalMeta>;
