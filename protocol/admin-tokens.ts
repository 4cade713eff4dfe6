import { Type, type Static } from '@sinclair/typebox';
import { TokenView } from './enrollment.js';

/** Admin API: `GET /v1/tokens`. */
export const TokenListResponse = Type.Object(
  { tokens: Type.Array(TokenView, { maxItems: 100_000 }) },
  { additionalProperties: false },
);
export type TokenListResponse = Static<typeof TokenListResponse>;

export const TokenIdParams = Type.Object(
  { id: Type.String({ pattern: '^[a-z]+-[0-9a-f]{8,64}$' }) },
  { additionalProperties: false },
);
export type TokenIdParams = Static<typeof TokenIdParams>;

/** Admin API: `POST /v1/tokens/:id/revoke`. */
export const TokenRevokeResponse = Type.Object({ token: TokenView }, { additionalProperties: false });
export type TokenRevokeResponse = Static<typeof TokenRevokeResponse>;
