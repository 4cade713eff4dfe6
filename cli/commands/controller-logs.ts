import type { Command } from 'commander';
import { MAX_LOG_LIMIT, type LogLine, type LogsPage } from '../../protocol/admin-logs.js';
import { createAdminClient } from '../admin-client.js';
import { addAdminTargetOptions, resolveAdminTarget, type AdminTargetOptions } from '../controller-home.js';
import { parseDurationMs } from '../duration.js';
import { CliExit, EXIT_FAILURE, EXIT_USAGE } from '../exit.js';
import { inline, renderJson, type Output, type StyledText } from '../output.js';
import type { AdminTarget } from '../profiles.js';
import { createSseReader } from '../sse-reader.js';
import { terminalSafeJson } from '../terminal-text.js';

type LogsOpts = AdminTargetOptions & {
  service?: string;
  since?: string;
  until?: string;
  follow?: boolean;
  grep?: string;
  limit?: string;
  json?: boolean;
};

/** `10m` (that long ago) or an RFC 3339 timestamp, as the API takes it. */
export function timeOption(flag: string, text: string, now: number): string {
  if (/^\d{4}-\d\d-\d\dT/.test(text)) {
    const ms = Date.parse(text);
    if (!Number.isFinite(ms))
      throw new CliExit(EXIT_USAGE, `${flag}: ${JSON.stringify(text)} is not a timestamp`);
    return new Date(ms).toISOString();
  }
  try {
    return new Date(now - parseDurationMs(text)).toISOString();
  } catch (e: unknown) {
    void e; // refused below with what is allowed
    throw new CliExit(
      EXIT_USAGE,
      `${flag}: expected a duration (10m: that long ago) or an RFC 3339 timestamp, got ${JSON.stringify(text)}`,
    );
  }
}

/**
 * One line as shown: `TIME HOST SERVICE: MESSAGE`. The message (worker text) is escaped like
 * every output line (terminalText: control and escape bytes shown as `\x1b`, never raw), and
 * each part is escaped again by the styled writer; colours only on a terminal.
 */
export function lineParts(line: LogLine): StyledText[] {
  return [
    { text: `${line.ts ?? '-'} `, style: 'dim' },
    { text: inline(line.host, 63), style: 'cyan' },
    { text: ' ' },
    { text: inline(line.service ?? '-', 48), style: 'yellow' },
    { text: `: ${inline(line.message)}${line.truncated ? ' [cut]' : ''}\n` },
  ];
}

function printLine(io: Output, line: LogLine, json: boolean | undefined): void {
  if (json) io.out(`${terminalSafeJson(JSON.stringify(line))}\n`);
  else if (io.outStyled) io.outStyled(lineParts(line));
  else
    io.out(
      lineParts(line)
        .map((p) => p.text)
        .join(''),
    );
}

function query(host: string | undefined, opts: LogsOpts, follow: boolean): string {
  const q = new URLSearchParams();
  const now = Date.now();
  if (host !== undefined) q.set('host', host);
  if (opts.service !== undefined) q.set('service', opts.service);
  if (opts.since !== undefined) q.set('since', timeOption('--since', opts.since, now));
  if (opts.until !== undefined) q.set('until', timeOption('--until', opts.until, now));
  if (opts.grep !== undefined) q.set('grep', opts.grep);
  if (opts.limit !== undefined) {
    if (!/^\d{1,9}$/.test(opts.limit) || Number(opts.limit) < 1) {
      throw new CliExit(EXIT_USAGE, `--limit must be a whole number from 1 to ${MAX_LOG_LIMIT}`);
    }
    q.set('limit', opts.limit);
  }
  if (follow) q.set('follow', 'true');
  return `/v1/logs?${q.toString()}`;
}

/** Streams the page and then new lines until interrupted or the controller ends the stream. */
async function follow(
  target: AdminTarget,
  path: string,
  io: Output,
  json: boolean | undefined,
): Promise<never> {
  // Keep-alive comments arrive every 15 s while no line does.
  const res = await createAdminClient(target).events(path, {}, 60_000);
  const reader = createSseReader();
  res.setEncoding('utf8');
  try {
    for await (const chunk of res as AsyncIterable<string>) {
      for (const m of reader.push(chunk)) {
        if (m.event !== 'line') continue;
        printLine(io, JSON.parse(m.data) as LogLine, json);
      }
      await io.flush?.();
    }
  } catch (e: unknown) {
    if (e instanceof RangeError) throw new CliExit(EXIT_FAILURE, e.message);
    throw e;
  }
  throw new CliExit(EXIT_FAILURE, 'the controller ended the log stream');
}

/** `corral controller logs [HOST] [--service S] [--since 10m] [--until T] [-f] [--grep RE] [--limit N] [--json]`. */
export function registerControllerLogsCommand(controller: Command, io: Output): void {
  addAdminTargetOptions(
    controller
      .command('logs [host]')
      .description("workers' logs (a host by name or id; every host merged by time when none is given)")
      .option('--service <name>', 'only lines of this service (RFC 5424 app-name, e.g. corral-agent)')
      .option('--since <time>', 'only lines from then on: a duration ago (10m) or an RFC 3339 timestamp')
      .option('--until <time>', 'only lines up to then: a duration ago or an RFC 3339 timestamp')
      .option('--grep <regex>', 'only lines whose message matches (JavaScript regular expression)')
      .option('--limit <n>', `the newest N lines (default 200, at most ${MAX_LOG_LIMIT})`)
      .option('-f, --follow', 'then keep printing lines as they arrive')
      .option('--json', 'print JSON (with -f: one JSON object per line)'),
  ).action(async (host: string | undefined, opts: LogsOpts) => {
    const target = await resolveAdminTarget(opts);
    if (opts.follow) return follow(target, query(host, opts, true), io, opts.json);
    const page = await createAdminClient(target).get<LogsPage>(query(host, opts, false));
    if (opts.json) io.out(renderJson(page));
    else for (const line of page.lines) printLine(io, line, false);
    if (page.partial) {
      io.err('corral: warning: the query ran out of its time or byte budget; older lines may match too\n');
    }
  });
}
