import { setMaxListeners } from 'node:events';
import type { Server as HttpServer } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Kysely } from 'kysely';
import { DEFAULT_LOG_LIMIT, LogsPage, LogsQuery } from '../../protocol/admin-logs.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import type { ControllerDatabase } from '../db/schema.js';
import { followLogs } from '../logs/log-follow.js';
import {
  checkLimit,
  compileGrep,
  mergeByTime,
  newBudget,
  readHost,
  resolveLogHosts,
  type FileMark,
  type LogFilter,
} from '../logs/log-query.js';

/** Follow streams open at once; more are refused with CORRAL_ERR_UNAVAILABLE. */
export const MAX_LOG_STREAMS = 32;

export interface LogRoutesOptions {
  readonly readDb: Kysely<ControllerDatabase>;
  /** The syslog listener's ingest directory; undefined: no lines (a controller without one). */
  readonly logDir: string | undefined;
}

/**
 * `GET /v1/logs`: the newest lines of one host's ingest files (by name or id) or of every
 * host's, merged by timestamp, filtered by service, time and pattern (log-query.ts has the
 * bounds); `follow=true` then streams new lines as server-sent events, across rotations.
 * Files are found by listing the ingest directory for the resolved host id: nothing from the
 * query becomes a path.
 */
export const adminLogRoutes: FastifyPluginAsyncTypebox<LogRoutesOptions, HttpServer> = async (
  app,
  { readDb, logDir },
) => {
  const stopping = new AbortController();
  setMaxListeners(MAX_LOG_STREAMS * 2 + 8, stopping.signal);
  app.addHook('preClose', (done) => {
    stopping.abort();
    done();
  });
  let streams = 0;

  app.get(
    '/v1/logs',
    { schema: { querystring: LogsQuery, response: { 200: LogsPage } } },
    async (request, reply) => {
      const q = request.query;
      const limit = checkLimit(q.limit ?? DEFAULT_LOG_LIMIT);
      const filter: LogFilter = {
        service: q.service,
        sinceMs: q.since === undefined ? undefined : Date.parse(q.since),
        untilMs: q.until === undefined ? undefined : Date.parse(q.until),
        grep: q.grep === undefined ? undefined : compileGrep(q.grep),
      };
      if (filter.sinceMs !== undefined && filter.untilMs !== undefined && filter.untilMs < filter.sinceMs) {
        throw new CorralError(ErrorCode.VALIDATION, 'querystring/until is before querystring/since');
      }
      const hosts = await resolveLogHosts(readDb, q.host);
      const budget = newBudget();
      const marks = new Map<string, FileMark | undefined>();
      const perHost = [];
      if (logDir !== undefined) {
        for (const host of hosts) {
          const got = await readHost(logDir, host, filter, limit, budget);
          marks.set(host.id, got.mark);
          perHost.push(got.lines);
        }
      }
      const lines = mergeByTime(perHost)
        .slice(-limit)
        .map((f) => f.line);
      if (q.follow !== true || logDir === undefined) return { lines, partial: budget.spent };
      if (streams >= MAX_LOG_STREAMS) {
        throw new CorralError(ErrorCode.UNAVAILABLE, 'too many log streams are open; retry later');
      }
      streams++;
      const gone = new AbortController();
      reply.raw.once('close', () => gone.abort());
      void reply.hijack();
      try {
        await followLogs({
          raw: reply.raw,
          logDir,
          hosts: () => (q.host === undefined ? resolveLogHosts(readDb, undefined) : Promise.resolve(hosts)),
          marks,
          first: lines,
          filter,
          signal: AbortSignal.any([gone.signal, stopping.signal]),
        });
      } catch (err: unknown) {
        request.log.error({ err }, 'log stream broke off');
        reply.raw.destroy();
      } finally {
        streams--;
      }
      return reply;
    },
  );
};
