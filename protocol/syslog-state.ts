import { Type, type Static } from '@sinclair/typebox';

/** Streams whose positions the listener keeps per host; the least recently written go first. */
export const MAX_INGEST_STREAMS_PER_HOST = 256;
/** Largest ingest state file the listener reads, in bytes. */
export const MAX_INGEST_STATE_BYTES = 256 * 1024;

/**
 * `<logDir>/<hostId>.state.json`: the commit record of a host's ingest file. `logBytes` is
 * the ingest file's length when the state was written (after an fsync of the file); the
 * listener truncates the file back to it on start. `streams` maps each Corral stream id to
 * the position durably written and the generation's key (see syslog-corral.ts).
 */
export const IngestState = Type.Object(
  {
    version: Type.Literal(1),
    logBytes: Type.Integer({ minimum: 0 }),
    streams: Type.Record(
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
    ),
  },
  { additionalProperties: false },
);
export type IngestState = Static<typeof IngestState>;
