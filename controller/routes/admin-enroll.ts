import type { Server as HttpServer } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { HostNameParams } from '../../protocol/admin-hosts.js';
import { TokenIdParams, TokenListResponse, TokenRevokeResponse } from '../../protocol/admin-tokens.js';
import {
  BundleWrittenRequest,
  BundleWrittenResponse,
  EnrollRequest,
  EnrollResponse,
  TokenCreateRequest,
  TokenCreateResponse,
} from '../../protocol/enrollment.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import type { Kysely } from 'kysely';
import type { ControllerDatabase } from '../db/schema.js';
import type { Enrollment } from '../fleet/enrollment.js';
import { findHostByName } from '../fleet/host-store.js';
import type { TokenStore } from '../fleet/token-store.js';
import { adminActor } from '../http/admin-auth.js';

export interface EnrollRouteOptions {
  readonly db: Kysely<ControllerDatabase>;
  readonly enrollment: Enrollment;
  readonly tokens: TokenStore;
  /** The CA's fingerprint, for the `--ca-pin` a join token is shown with. */
  readonly caFingerprint: string;
  /** The join listener, host:port, as workers should dial it. */
  joinAddress(): string;
}

/** Enrollment: bundles made here, and join tokens for workers that make their own keys. */
export const adminEnrollRoutes: FastifyPluginAsyncTypebox<EnrollRouteOptions, HttpServer> = async (
  app,
  o,
) => {
  app.post(
    '/v1/enroll',
    { schema: { body: EnrollRequest, response: { 200: EnrollResponse } } },
    async (request) => o.enrollment.enroll(request.body, adminActor(request)),
  );

  // `controller enroll` confirms here once it has written the bundle it was given.
  app.post(
    '/v1/hosts/:name/bundle-written',
    {
      schema: {
        params: HostNameParams,
        body: BundleWrittenRequest,
        response: { 200: BundleWrittenResponse },
      },
    },
    async (request) => {
      const host = await findHostByName(o.db, request.params.name);
      if (!host || host.id !== request.body.hostId || host.decommissioned_at !== null)
        throw new CorralError(
          ErrorCode.NOT_FOUND,
          `no active host ${request.params.name} with id ${request.body.hostId}`,
        );
      const at = await o.enrollment.bundleWritten(host.id, adminActor(request));
      return { hostId: host.id, bundleWrittenAt: at };
    },
  );

  app.post(
    '/v1/tokens',
    { schema: { body: TokenCreateRequest, response: { 200: TokenCreateResponse } } },
    async (request) => {
      const { token, view } = await o.tokens.create(request.body, adminActor(request));
      return { token, caPin: `sha256:${o.caFingerprint}`, controller: o.joinAddress(), view };
    },
  );

  app.get('/v1/tokens', { schema: { response: { 200: TokenListResponse } } }, async () => ({
    tokens: await o.tokens.list(),
  }));

  app.post(
    '/v1/tokens/:id/revoke',
    { schema: { params: TokenIdParams, response: { 200: TokenRevokeResponse } } },
    async (request) => ({ token: await o.tokens.revoke(request.params.id, adminActor(request)) }),
  );
};
