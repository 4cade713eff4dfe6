import type { Server as HttpServer } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import { BACKUP_CONTENT_TYPE, BACKUP_MANIFEST_HEADER, BackupRequest } from '../../protocol/backup.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Clock } from '../clock.js';
import { adminActor } from '../http/admin-auth.js';
import { createBackupStream } from '../state/backup-state.js';
import type { StatePaths } from '../state/state-paths.js';
import type { DatabaseTarget } from '../db/database-target.js';

export interface BackupRouteOptions {
  /** The state dir backed up; undefined for a controller built without one (backups refused). */
  readonly paths: StatePaths | undefined;
  /** The database, when it is not the state dir's `corral.db`. */
  readonly database?: DatabaseTarget | undefined;
  readonly audit: AuditLog;
  readonly clock: Clock;
  readonly log: Logger;
}

/**
 * `POST /v1/backup` (scope admin): the state dir as one encrypted stream (state/backup-state.ts).
 * The passphrase comes in the body, is used for this answer's key and is never logged (the
 * request log has no bodies) nor stored. The backup is audited first, so the snapshot holds
 * its own entry. A failure after the answer began cuts the connection: the CLI then has an
 * incomplete file, which it refuses and removes.
 */
export const adminBackupRoutes: FastifyPluginAsyncTypebox<BackupRouteOptions, HttpServer> = async (
  app,
  o,
) => {
  app.post('/v1/backup', { schema: { body: BackupRequest } }, async (request, reply) => {
    const paths = o.paths;
    if (!paths) throw new CorralError(ErrorCode.UNAVAILABLE, 'this controller has no state dir to back up');
    const actor = adminActor(request);
    await o.audit.append({ actor, action: 'backup', target: 'controller', details: {} });
    const backup = await createBackupStream({
      paths,
      database: o.database,
      clock: o.clock,
      passphrase: request.body.passphrase,
    });
    backup.stream.once('error', (e: unknown) => o.log.warn({ err: e }, 'backup stream failed'));
    o.log.info({ actor, auditSeq: backup.manifest.auditSeq }, 'backup started');
    return reply
      .type(BACKUP_CONTENT_TYPE)
      .header(BACKUP_MANIFEST_HEADER, Buffer.from(JSON.stringify(backup.manifest)).toString('base64url'))
      .send(backup.stream);
  });
};
