import { Type, type Static } from '@sinclair/typebox';

/** `run/endpoints.json`: the addresses a daemon actually bound (port 0 resolved). */
export const Endpoints = Type.Record(
  Type.String({ pattern: '^[a-z][a-z0-9-]{0,31}$' }),
  Type.String({ maxLength: 300 }),
  { maxProperties: 16 },
);
export type Endpoints = Static<typeof Endpoints>;
