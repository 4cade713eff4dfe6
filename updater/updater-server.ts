import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { serverTlsOptions, type TlsMaterial } from '../pki/index.js';
import {
  ErrorCode,
  errorEnvelope,
  ErrorEnvelope,
  MAX_WORKER_BODY_BYTES,
  RELEASE_CONTENT_TYPE,
  ReleasesResponse,
  RollbackResponse,
  SelfUpdateResponse,
  UPDATER_RELEASES_PATH,
  UPDATER_ROLLBACK_PATH,
  UPDATER_UPDATE_PATH,
  UPDATER_UPDATE_SELF_PATH,
  UpdateQuery,
  UpdateResponse,
} from '../protocol/index.js';
import { createTlsApp, type TlsApp } from '../kit/fastify/create-app.js';
import { pinnedPeer } from '../kit/fastify/pinned-peer.js';
import type { AgentRelease } from './agent-runner.js';
import { discardUpload } from './receive-upload.js';
import type { ReleaseManager, Upload } from './release-manager.js';

export interface UpdaterServerOptions {
  readonly tls: TlsMaterial;
  /** The only client certificate allowed to call: the controller-client in the bundle. */
  readonly controllerClientFingerprint: string;
  readonly manager: ReleaseManager;
  /** The upload cap: a body the updater did not use is drained up to this size before answering. */
  readonly maxReleaseBytes: number;
  readonly installSelf: (upload: Upload) => Promise<{ release: AgentRelease; response: SelfUpdateResponse }>;
  /** Called once the 202 of a self-update has gone out. */
  readonly onSelfUpdate: (release: AgentRelease) => void;
  readonly log: Logger;
}

function contentLength(header: string | undefined): number | undefined {
  if (header === undefined || !/^\d{1,15}$/.test(header)) return undefined;
  return Number(header);
}

/**
 * The updater's HTTPS API: mutual TLS with our CA, and every request must come from the pinned
 * controller-client certificate (checked on the very connection, before routing) or it gets
 * 403, with the same codes as the agent (kit/fastify/pinned-peer.ts). Uploads arrive as a raw
 * stream; JSON bodies are capped at MAX_WORKER_BODY_BYTES.
 */
export function buildUpdaterServer(o: UpdaterServerOptions): TlsApp {
  const app = createTlsApp({
    https: serverTlsOptions(o.tls),
    bodyLimit: MAX_WORKER_BODY_BYTES,
    log: o.log,
    // Uploads of large releases may take long; only the pinned controller gets this far.
    requestTimeoutMs: 0,
    // As before the kit: fastify's own defaults (`force=true` in the query is coerced).
    ajv: { coerceTypes: 'array', removeAdditional: true },
  });
  void app.register(pinnedPeer, {
    role: 'controller-client',
    fingerprint: () => o.controllerClientFingerprint,
    guarded: 'updater',
  });
  // The release body stays a stream: it is hashed and capped while it is written to staging.
  app.addContentTypeParser(RELEASE_CONTENT_TYPE, (_request, payload, done) => done(null, payload));

  const upload = (request: {
    body: unknown;
    query: UpdateQuery;
    headers: Record<string, unknown>;
  }): Upload => ({
    body: request.body as Readable,
    query: request.query,
    contentLength: contentLength(request.headers['content-length'] as string | undefined),
  });
  /**
   * Every answer to an upload goes out after the whole body was read: a body the update did
   * not consume (already active, refused before reading, busy) is drained first, up to the
   * size cap. Only a body that is larger than the cap, or broke off, gets its connection closed.
   */
  const answering = async <T>(
    request: { body: unknown; headers: Record<string, unknown> },
    reply: { header(k: string, v: string): unknown },
    run: Promise<T>,
  ): Promise<T> => {
    const finish = async (): Promise<void> => {
      const body = request.body as Readable;
      if (body.readableEnded) return;
      const declared = contentLength(request.headers['content-length'] as string | undefined);
      const fits = declared !== undefined && declared <= o.maxReleaseBytes;
      if (!fits || !(await discardUpload(body, o.maxReleaseBytes))) reply.header('connection', 'close');
    };
    try {
      const result = await run;
      await finish();
      return result;
    } catch (e: unknown) {
      await finish();
      throw e;
    }
  };

  app.post(
    UPDATER_UPDATE_PATH,
    { schema: { querystring: UpdateQuery, response: { 200: UpdateResponse, '4xx': ErrorEnvelope } } },
    async (request, reply) => {
      if (!request.body)
        return reply
          .code(415)
          .send(errorEnvelope(ErrorCode.BAD_REQUEST, `send the release as ${RELEASE_CONTENT_TYPE}`));
      return answering(request, reply, o.manager.update(upload(request)));
    },
  );

  app.post(
    UPDATER_UPDATE_SELF_PATH,
    { schema: { querystring: UpdateQuery, response: { 202: SelfUpdateResponse, '4xx': ErrorEnvelope } } },
    async (request, reply) => {
      if (!request.body)
        return reply
          .code(415)
          .send(errorEnvelope(ErrorCode.BAD_REQUEST, `send the release as ${RELEASE_CONTENT_TYPE}`));
      const { release, response } = await answering(request, reply, o.installSelf(upload(request)));
      reply.raw.once('close', () => o.onSelfUpdate(release));
      return reply.code(202).header('connection', 'close').send(response);
    },
  );

  app.post(
    UPDATER_ROLLBACK_PATH,
    { schema: { response: { 200: RollbackResponse, '4xx': ErrorEnvelope } } },
    async () => o.manager.rollback(),
  );

  app.get(UPDATER_RELEASES_PATH, { schema: { response: { 200: ReleasesResponse } } }, async () =>
    o.manager.releases(),
  );
  return app;
}
