import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import type { Server as HttpServer } from 'node:http';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ensurePrivateDir } from '../../pki/index.js';
import { ADMIN_UPDATE_PATH, AdminUpdateQuery, AdminUpdateResponse } from '../../protocol/admin-update.js';
import { ApprovalPending } from '../../protocol/approvals.js';
import { NAME_RE } from '../../protocol/common.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { DEFAULT_MAX_RELEASE_BYTES, RELEASE_CONTENT_TYPE } from '../../protocol/updater-api.js';
import { adminActor } from '../http/admin-auth.js';
import type { ReleaseUpdater } from '../release/update-operation.js';
import { readReleaseFile } from '../release/read-release.js';
import { gatedAnswer, type ApprovalGate } from '../approvals/approval-gate.js';
import { keptUploadDir, updateApprovalTarget, type KeptUpdate } from '../approvals/approval-executors.js';

export interface UpdateRouteOptions {
  readonly updater: ReleaseUpdater;
  /** Private directory (0700) for uploads in flight; created on first use. */
  readonly uploadDir: string;
  readonly maxReleaseBytes?: number;
  /** When `update` needs approval, a push becomes a pending approval (202) keeping its upload. */
  readonly gate?: ApprovalGate | undefined;
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
    {
      schema: { querystring: AdminUpdateQuery, response: { 200: AdminUpdateResponse, 202: ApprovalPending } },
    },
    async (request, reply) => {
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
        const push = {
          sha256,
          hosts,
          all: q.all === true,
          includeSelf: q.includeSelf === true,
          force: q.force === true,
          rollout: {
            ...(q.maxParallel !== undefined && { maxParallel: q.maxParallel }),
            ...(q.canary !== undefined && { canary: q.canary }),
            ...(q.canaryWaitMs !== undefined && { canaryWaitMs: q.canaryWaitMs }),
            ...(q.haltOnFailure !== undefined && { haltOnFailure: q.haltOnFailure }),
          },
        };
        const actor = adminActor(request);
        if (q.dryRun === true || !o.gate || o.gate.required('update', { all: push.all }) === 0)
          return await o.updater.update({ ...push, file, dryRun: q.dryRun === true, actor });
        try {
          await readReleaseFile(file, sha256);
        } catch (e: unknown) {
          if (e instanceof CorralError) throw e;
          const why = e instanceof Error ? e.message : String(e);
          throw new CorralError(ErrorCode.VALIDATION, `body: not a Corral release: ${why.slice(0, 2000)}`);
        }
        // The upload is kept (under the approval's own name) until the request ends.
        const dir = keptUploadDir(o.uploadDir);
        await ensurePrivateDir(dir);
        const kept = join(dir, `release-${randomUUID()}.tar.gz`);
        await rename(file, kept);
        const body: KeptUpdate = { ...push, file: kept };
        const gated = await o.gate.pass(
          { action: 'update', target: updateApprovalTarget(push), body, actor, all: push.all },
          () => o.updater.update({ ...push, file: kept, dryRun: false, actor }),
        );
        if (!('pending' in gated && gated.created)) await rm(kept, { force: true });
        return gatedAnswer(reply, gated);
      } finally {
        await rm(file, { force: true });
      }
    },
  );
};
