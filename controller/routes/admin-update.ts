import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import type { Server as HttpServer } from 'node:http';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ensurePrivateDir } from '../../pki/index.js';
import { ADMIN_UPDATE_PATH, AdminUpdateQuery, AdminUpdateResponse } from '../../protocol/admin-update.js';
import { NAME_RE } from '../../protocol/common.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { DEFAULT_MAX_RELEASE_BYTES, RELEASE_CONTENT_TYPE } from '../../protocol/updater-api.js';
import { adminActor } from '../http/admin-auth.js';
import type { ReleaseUpdater } from '../release/update-operation.js';

export interface UpdateRouteOptions {
  readonly updater: ReleaseUpdater;
  /** Private directory (0700) for uploads in flight; created on first use. */
  readonly uploadDir: string;
  readonly maxReleaseBytes?: number;
}

/**
 * `POST /v1/update`: the release tarball as the raw body, streamed to a private temp file
 * (digest computed on the way), validated, then pushed to the hosts as an `update` operation.
 */
export const adminUpdateRoutes: FastifyPluginAsyncTypebox<UpdateRouteOptions, HttpServer> = async (
  app,
  o,
) => {
  const maxBytes = o.maxReleaseBytes ?? DEFAULT_MAX_RELEASE_BYTES;
  // The body stays a stream: the handler reads it from request.raw.
  app.addContentTypeParser(RELEASE_CONTENT_TYPE, (_request, _payload, done) => done(null, undefined));

  app.post(
    ADMIN_UPDATE_PATH,
    { schema: { querystring: AdminUpdateQuery, response: { 200: AdminUpdateResponse } } },
    async (request) => {
      const q = request.query;
      const type = String(request.headers['content-type'] ?? '')
        .split(';')[0]
        ?.trim();
      if (type !== RELEASE_CONTENT_TYPE) {
        throw new CorralError(
          ErrorCode.VALIDATION,
          `body: must be ${RELEASE_CONTENT_TYPE} (the release tarball)`,
        );
      }
      const hosts = q.hosts === undefined ? [] : q.hosts.split(',').map((h) => h.trim());
      if (hosts.length > 0 === (q.all === true)) {
        throw new CorralError(ErrorCode.VALIDATION, 'querystring: name hosts or set all, not both');
      }
      const bad = hosts.find((h) => !NAME_RE.test(h));
      if (bad !== undefined)
        throw new CorralError(ErrorCode.VALIDATION, `querystring/hosts: bad host name "${bad}"`);
      const declared = Number(request.headers['content-length'] ?? 0);
      if (declared > maxBytes) {
        throw new CorralError(ErrorCode.PAYLOAD_TOO_LARGE, `a release may be at most ${maxBytes} bytes`);
      }

      await ensurePrivateDir(o.uploadDir);
      const file = join(o.uploadDir, `release-${randomUUID()}.tar.gz`);
      try {
        const hash = createHash('sha256');
        let size = 0;
        const meter = new Transform({
          transform(chunk: Buffer, _enc, next) {
            size += chunk.length;
            if (size > maxBytes) {
              next(
                new CorralError(ErrorCode.PAYLOAD_TOO_LARGE, `a release may be at most ${maxBytes} bytes`),
              );
              return;
            }
            hash.update(chunk);
            next(null, chunk);
          },
        });
        await pipeline(request.raw, meter, createWriteStream(file, { flags: 'wx', mode: 0o600 }));
        const sha256 = hash.digest('hex');
        if (q.sha256 !== undefined && q.sha256 !== sha256) {
          throw new CorralError(
            ErrorCode.DIGEST_MISMATCH,
            `the upload has SHA-256 ${sha256}, not the announced ${q.sha256}`,
          );
        }
        return await o.updater.update({
          file,
          sha256,
          hosts,
          all: q.all === true,
          includeSelf: q.includeSelf === true,
          force: q.force === true,
          dryRun: q.dryRun === true,
          actor: adminActor(request),
        });
      } finally {
        await rm(file, { force: true });
      }
    },
  );
};
