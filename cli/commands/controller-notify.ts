import type { Command } from 'commander';
import {
  MAX_DELIVERIES_PAGE,
  WEBHOOK_EVENT_FILTERS,
  type DeliveriesResponse,
  type WebhookAddResponse,
  type WebhookListResponse,
  type WebhookRemoveResponse,
} from '../../protocol/admin-notify.js';
import { adminClientFor } from '../admin-client.js';
import { addAdminTargetOptions, addStateDirOption, type AdminTargetOptions } from '../controller-home.js';
import { CliExit, EXIT_USAGE } from '../exit.js';
import { renderJson, renderRecord, renderTable, type Output } from '../output.js';
import { readSecret } from '../secret-input.js';

type JsonOpt = AdminTargetOptions & { json?: boolean };
type AddOpts = Omit<JsonOpt, 'url'> & {
  url: string;
  adminUrl?: string;
  events: string;
  secretFile?: string;
  allowHttp?: boolean;
};

/** `host.offline,release.rolled_back` → the filters, each checked against the ones there are. */
export function parseEventFilters(text: string): string[] {
  const filters = text
    .split(',')
    .map((f) => f.trim())
    .filter((f) => f !== '');
  if (filters.length === 0) throw new CliExit(EXIT_USAGE, '--events names no event kind');
  const unknown = filters.filter((f) => !WEBHOOK_EVENT_FILTERS.includes(f));
  if (unknown.length > 0) {
    throw new CliExit(
      EXIT_USAGE,
      `--events: unknown ${unknown.map((u) => JSON.stringify(u)).join(', ')}; use kinds (${WEBHOOK_EVENT_FILTERS.filter((f) => !f.endsWith('*')).join(', ')}), a group such as host.*, or *`,
    );
  }
  return [...new Set(filters)];
}

/** `corral controller notify add|list|remove|deliveries`: webhooks for fleet events. */
export function registerControllerNotifyCommands(controller: Command, io: Output): void {
  const notify = controller
    .command('notify')
    .description('webhooks: fleet events POSTed, signed (HMAC-SHA256), to URLs you choose');

  // `--url` is the webhook's here, so the admin API's URL is `--admin-url` (or $CORRAL_URL).
  addStateDirOption(
    notify
      .command('add')
      .description('add a webhook (https, or http to loopback; the target is checked first)')
      .argument('<name>', 'webhook name')
      .requiredOption('--url <url>', 'where deliveries are POSTed')
      .requiredOption(
        '--events <kinds>',
        'comma-separated kinds (host.offline,release.rolled_back,…), host.*, or *',
      )
      .option(
        '--secret-file <file>',
        'HMAC secret: first line of FILE (- for stdin); default: one is made and shown once',
      )
      .option('--allow-http', 'allow plain http to a host other than loopback (events travel in clear)')
      .option('--admin-url <url>', 'admin API URL (default $CORRAL_URL, or found in the state dir)')
      .option('--token <token>', 'admin token (default $CORRAL_TOKEN, or read from the state dir)')
      .option('--json', 'print JSON'),
  ).action(async (name: string, opts: AddOpts) => {
    const events = parseEventFilters(opts.events);
    const secret =
      opts.secretFile === undefined ? undefined : await readSecret('--secret-file', opts.secretFile, io);
    const admin = await adminClientFor({
      ...(opts.stateDir !== undefined && { stateDir: opts.stateDir }),
      ...(opts.adminUrl !== undefined && { url: opts.adminUrl }),
      ...(opts.token !== undefined && { token: opts.token }),
    });
    const res = await admin.post<WebhookAddResponse>('/v1/webhooks', {
      name,
      url: opts.url,
      events,
      ...(secret !== undefined && { secret }),
      ...(opts.allowHttp && { allowHttp: true }),
    });
    io.out(
      opts.json
        ? renderJson(res)
        : renderRecord([
            ['webhook', res.webhook.name],
            ['url', res.webhook.url],
            ['events', res.webhook.events.join(',')],
            ['secret', res.secret ?? 'as given in the secret file (never shown)'],
          ]),
    );
    if (res.secret !== undefined) {
      io.err('corral: the secret is shown this once; give it to the receiver to verify Corral-Signature\n');
    }
  });

  addAdminTargetOptions(
    notify.command('list').description('webhooks and their delivery counts').option('--json', 'print JSON'),
  ).action(async (opts: JsonOpt) => {
    const admin = await adminClientFor(opts);
    const { webhooks } = await admin.get<WebhookListResponse>('/v1/webhooks');
    io.out(
      opts.json
        ? renderJson(webhooks)
        : renderTable(
            ['name', 'url', 'events', 'pending', 'delivered', 'failed', 'last delivered'],
            webhooks.map((w) => [
              w.name,
              w.url,
              w.events.join(','),
              w.pending,
              w.delivered,
              w.failed,
              w.lastDeliveredAt,
            ]),
          ),
    );
  });

  addAdminTargetOptions(
    notify
      .command('remove')
      .description('remove a webhook and its delivery log (pending deliveries are dropped)')
      .argument('<name>', 'webhook name')
      .option('--json', 'print JSON'),
  ).action(async (name: string, opts: JsonOpt) => {
    const admin = await adminClientFor(opts);
    const res = await admin.delete<WebhookRemoveResponse>(`/v1/webhooks/${encodeURIComponent(name)}`);
    io.out(
      opts.json
        ? renderJson(res)
        : renderRecord([
            ['removed', res.removed],
            ['pending deliveries dropped', res.droppedDeliveries],
          ]),
    );
  });

  addAdminTargetOptions(
    notify
      .command('deliveries')
      .description("a webhook's delivery log, newest first: state, attempts, last answer")
      .argument('<name>', 'webhook name')
      .option('--limit <n>', 'how many', '50')
      .option('--json', 'print JSON'),
  ).action(async (name: string, opts: JsonOpt & { limit: string }) => {
    const limit = Number(opts.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_DELIVERIES_PAGE) {
      throw new CliExit(EXIT_USAGE, `--limit must be an integer between 1 and ${MAX_DELIVERIES_PAGE}`);
    }
    const admin = await adminClientFor(opts);
    const res = await admin.get<DeliveriesResponse>(
      `/v1/webhooks/${encodeURIComponent(name)}/deliveries?limit=${limit}`,
    );
    io.out(
      opts.json
        ? renderJson(res.deliveries)
        : renderTable(
            ['id', 'event', 'kind', 'state', 'attempts', 'last attempt', 'last answer', 'next attempt'],
            res.deliveries.map((d) => [
              d.id,
              d.eventCursor,
              d.kind,
              d.state,
              d.attempts,
              d.lastAttemptAt,
              d.lastError ?? (d.lastStatus !== null ? String(d.lastStatus) : null),
              d.nextAttemptAt,
            ]),
          ),
    );
  });
}
