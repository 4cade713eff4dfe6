import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { RemoteError } from '../../protocol/errors.js';
import {
  MAX_EVENT_CURSOR,
  MAX_EVENTS_PAGE,
  SSE_TRUNCATED_EVENT,
  type EventsPage,
  type FleetEvent,
} from '../../protocol/fleet-events.js';
import { createAdminClient, type AdminClient } from '../admin-client.js';
import { addAdminTargetOptions, resolveAdminTarget, type AdminTargetOptions } from '../controller-home.js';
import { CliExit, EXIT_FAILURE, EXIT_USAGE } from '../exit.js';
import { jsonArrayWriter, tableWriter, type Cell, type Output } from '../output.js';
import { terminalSafeJson } from '../terminal-text.js';
import { createSseReader } from '../sse-reader.js';
import type { AdminTarget } from '../profiles.js';

type EventsOpts = AdminTargetOptions & { follow?: boolean; since?: string; json?: boolean };

const HEADERS = ['cursor', 'time', 'kind', 'host', 'service', 'detail'];
/** Waits between reconnects of a follow stream, in ms (doubling up to the cap). */
const RECONNECT_BASE_MS = 500;
const RECONNECT_CAP_MS = 10_000;

const PLAIN_VALUE = /^[A-Za-z0-9._:@/+-]*$/;

/**
 * `from=running to=failed lastError="exit 1"`: the event's data on one line. Text that came
 * from a worker is put in as sent: the table escapes it like every other cell (terminalText).
 */
export function detailText(data: FleetEvent['data']): string {
  return Object.entries(data)
    .map(([k, v]) => `${k}=${typeof v === 'string' && !PLAIN_VALUE.test(v) ? `"${v}"` : String(v)}`)
    .join(' ');
}

export function eventRow(e: FleetEvent): Cell[] {
  return [e.cursor, e.time, e.kind, e.host?.name, e.service, detailText(e.data)];
}

function parseSince(text: string | undefined): number {
  if (text === undefined) return 0;
  if (!/^\d{1,15}$/.test(text) || Number(text) > MAX_EVENT_CURSOR) {
    throw new CliExit(
      EXIT_USAGE,
      '--since must be an event cursor (a whole number, as the CURSOR column shows)',
    );
  }
  return Number(text);
}

/** Every stored event after `since`, a page at a time. */
async function* pages(admin: AdminClient, since: number): AsyncGenerator<EventsPage> {
  let cursor = since;
  for (;;) {
    const page = await admin.get<EventsPage>(`/v1/events?since=${cursor}&limit=${MAX_EVENTS_PAGE}`);
    yield page;
    if (page.events.length < MAX_EVENTS_PAGE || page.cursor === cursor) return;
    cursor = page.cursor;
  }
}

/**
 * Follows the stream from `since`, printing each event; reconnects after a drop with
 * `Last-Event-ID`, so no event is shown twice or skipped (unless retention took it first,
 * which is said on stderr). Runs until interrupted; a refusal (bad token) ends it.
 */
async function follow(
  target: AdminTarget,
  since: number,
  print: (e: FleetEvent) => Promise<void>,
  io: Output,
): Promise<never> {
  let cursor = since;
  let failures = 0;
  // The admin client's connection settings: a profile's CA and operator certificate over TLS.
  const client = createAdminClient(target);
  for (;;) {
    try {
      // The stream is idle between events; keep-alive comments arrive every 15 s.
      const res = await client.events('/v1/events?follow=true', { 'last-event-id': String(cursor) }, 60_000);
      failures = 0;
      const reader = createSseReader();
      res.setEncoding('utf8');
      for await (const chunk of res as AsyncIterable<string>) {
        for (const m of reader.push(chunk)) {
          if (m.event === SSE_TRUNCATED_EVENT) {
            io.err(
              `corral: warning: events after ${cursor} were deleted by retention before they were read\n`,
            );
            continue;
          }
          const e = JSON.parse(m.data) as FleetEvent;
          if (e.cursor <= cursor) continue;
          await print(e);
          cursor = e.cursor;
        }
      }
    } catch (e: unknown) {
      // A refusal ends it; an unavailable controller (503), a cut or a silent stream is retried.
      if (e instanceof RemoteError && e.status !== 503) throw e;
      if (e instanceof RangeError) throw new CliExit(EXIT_FAILURE, e.message);
    }
    failures++;
    await sleep(Math.min(RECONNECT_CAP_MS, RECONNECT_BASE_MS * 2 ** Math.min(failures - 1, 10)));
  }
}

/** `corral controller events [-f] [--since CURSOR] [--json]`. */
export function registerControllerEventsCommand(controller: Command, io: Output): void {
  addAdminTargetOptions(
    controller
      .command('events')
      .description('fleet events (hosts, services, operations, releases), oldest first; -f follows')
      .option('-f, --follow', 'keep printing events as they happen (reconnects by itself)')
      .option('--since <cursor>', 'only events after this cursor')
      .option('--json', 'print JSON (with -f: one JSON object per line)'),
  ).action(async (opts: EventsOpts) => {
    const since = parseSince(opts.since);
    const target = await resolveAdminTarget(opts);
    const admin = createAdminClient(target);
    const table = tableWriter(HEADERS);
    const json = jsonArrayWriter();
    let last = since;
    let truncatedSaid = false;
    let any = false;
    for await (const page of pages(admin, since)) {
      if (page.truncated && !truncatedSaid) {
        truncatedSaid = true;
        io.err(`corral: warning: events after ${since} were deleted by retention; the oldest kept follow\n`);
      }
      if (opts.json && !opts.follow) io.out(json.items(page.events));
      else if (opts.json) for (const e of page.events) io.out(`${terminalSafeJson(JSON.stringify(e))}\n`);
      else if (page.events.length > 0 || (!any && !opts.follow))
        io.out(table.rows(page.events.map(eventRow)));
      any ||= page.events.length > 0;
      last = page.cursor;
      await io.flush?.();
    }
    if (!opts.follow) {
      if (opts.json) io.out(json.end());
      return;
    }
    await follow(
      target,
      last,
      async (e) => {
        io.out(opts.json ? `${terminalSafeJson(JSON.stringify(e))}\n` : table.rows([eventRow(e)]));
        await io.flush?.();
      },
      io,
    );
  });
}
