import type { Server as HttpsServer } from 'node:https';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { BundleWrittenRequest, BundleWrittenResponse } from '../../protocol/enrollment.js';
import type { Enrollment } from '../fleet/enrollment.js';
import { workerPeer, workerRefused } from '../http/worker-auth.js';

/**
 * `POST /v1/bundle-written`: a worker that has just joined says its bundle is on disk, over
 * mutual TLS with the agent certificate of that bundle (pinned, for the host id in the body).
 * From then on the host is no longer one whose enrollment was cut short (`enroll --replace`).
 */
export const bundleWrittenRoute: FastifyPluginAsyncTypebox<{ enrollment: Enrollment }, HttpsServer> = async (
  app,
  opts,
) => {
  app.post(
    '/v1/bundle-written',
    { schema: { body: BundleWrittenRequest, response: { 200: BundleWrittenResponse } } },
    async (request) => {
      const peer = workerPeer(request);
      if (request.body.hostId !== peer.hostId) throw workerRefused(request, 'host-mismatch');
      const at = await opts.enrollment.bundleWritten(peer.hostId, 'worker');
      return { hostId: peer.hostId, bundleWrittenAt: at };
    },
  );
};
