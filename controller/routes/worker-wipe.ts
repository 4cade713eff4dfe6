import type { Server as HttpsServer } from 'node:https';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import {
  STANDING_PATH,
  StandingResponse,
  WIPE_REPORT_PATH,
  WipeReport,
  WipeReportResponse,
} from '../../protocol/wipe.js';
import type { AuditLog } from '../audit/audit-log.js';
import { isoAt, type Clock } from '../clock.js';
import type { ControllerDatabase } from '../db/schema.js';
import { wipeReporter, workerPeer, workerRefused } from '../http/worker-auth.js';

export interface WipeRoutesOptions {
  readonly db: Kysely<ControllerDatabase>;
  readonly audit: AuditLog;
  readonly clock: Clock;
  readonly log: Logger;
}

/**
 * `POST /v1/wipe-report`: a worker's reaper says its self-destruct has run, with what it
 * stopped, deleted and could not do; the host is shown `wiped` from then on (the first report
 * counts, later ones change nothing). `GET /v1/standing`: 200 while the certificate's host is
 * enrolled; a decommissioned host's own certificate gets 410 from the auth hook.
 */
export const wipeRoutes: FastifyPluginAsyncTypebox<WipeRoutesOptions, HttpsServer> = async (app, opts) => {
  app.post(
    WIPE_REPORT_PATH,
    { schema: { body: WipeReport, response: { 200: WipeReportResponse } } },
    async (request) => {
      const peer = wipeReporter(request);
      const report = request.body;
      if (report.hostId !== peer.hostId) throw workerRefused(request, 'host-mismatch');
      const nowIso = isoAt(opts.clock.now());
      const wipedAt = await opts.db.transaction().execute(async (trx) => {
        const marked = await trx
          .updateTable('hosts')
          .set({ wiped_at: nowIso, wipe_report: JSON.stringify(report) })
          .where('id', '=', peer.hostId)
          .where('wiped_at', 'is', null)
          .executeTakeFirst();
        if (marked.numUpdatedRows === 1n) {
          await opts.audit.append(
            {
              actor: `host:${peer.hostName}`,
              action: 'wiped',
              target: peer.hostName,
              details: {
                hostId: peer.hostId,
                stoppedServices: report.stoppedServices,
                stoppedDaemons: report.stoppedDaemons,
                deletedPaths: report.deletedPaths,
                errors: report.errors,
              },
            },
            trx,
          );
          return nowIso;
        }
        const row = await trx
          .selectFrom('hosts')
          .select('wiped_at')
          .where('id', '=', peer.hostId)
          .executeTakeFirst();
        return row?.wiped_at ?? nowIso;
      });
      const level = report.errors.length > 0 ? 'warn' : 'info';
      opts.log[level](
        { hostId: peer.hostId, hostName: peer.hostName, errors: report.errors },
        'worker reported its wipe',
      );
      return { hostId: peer.hostId, wipedAt };
    },
  );
  app.get(STANDING_PATH, { schema: { response: { 200: StandingResponse } } }, async (request) => {
    const peer = workerPeer(request);
    return { hostId: peer.hostId, standing: 'enrolled' as const };
  });
};
