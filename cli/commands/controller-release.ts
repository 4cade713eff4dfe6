import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { packRelease } from '../../controller/release/pack.js';
import { sha256File } from '../../controller/release/read-release.js';
import {
  ADMIN_RELEASES_PATH,
  ADMIN_UPDATE_PATH,
  type AdminReleasesResponse,
  type AdminUpdateResponse,
} from '../../protocol/admin-update.js';
import { adminClientFor } from '../admin-client.js';
import { addAdminTargetOptions, type AdminTargetOptions } from '../controller-home.js';
import { CliExit, EXIT_FAILURE, EXIT_USAGE } from '../exit.js';
import { LONG_REQUEST_TIMEOUT_MS, withProgress } from '../follow-operation.js';
import { addRolloutOptions, rolloutFromFlags, type RolloutFlags } from '../rollout-flags.js';
import type { ApprovalPending } from '../../protocol/approvals.js';
import { isApprovalPending, printApprovalPending } from './approval-pending.js';
import { renderJson, renderRecord, renderTable, type Output } from '../output.js';

type JsonOpt = AdminTargetOptions & { json?: boolean };
type UpdateOpts = JsonOpt & {
  release: string;
  host?: string[];
  all?: boolean;
  includeSelf?: boolean;
  dryRun?: boolean;
  force?: boolean;
} & RolloutFlags;

/** History entries shown per host in the table. */
const HISTORY_SHOWN = 4;

const collect = (value: string, previous: string[] = []): string[] => [
  ...previous,
  ...value.split(',').filter(Boolean),
];

/** `corral controller release pack`, `update`, `releases`: pushing releases to updaters. */
export function registerControllerReleaseCommands(controller: Command, io: Output): void {
  const release = controller.command('release').description('build release tarballs for workers');

  release
    .command('pack')
    .description('pack DIR (its corral-release.json include list) into a deterministic .tar.gz')
    .argument('<dir>', 'directory holding corral-release.json and what it includes')
    .requiredOption('--version <version>', 'release version (also the directory name on workers)')
    .requiredOption('--out <file>', 'where to write the .tar.gz')
    .option('--json', 'print JSON')
    .action(async (dir: string, opts: { version: string; out: string; json?: boolean }) => {
      const result = await packRelease({ dir, version: opts.version, out: opts.out });
      const view = {
        file: result.file,
        version: result.version,
        sha256: result.sha256,
        bytes: result.bytes,
        entries: result.entries,
      };
      io.out(opts.json ? renderJson(view) : renderRecord(Object.entries(view)));
    });

  const update = addAdminTargetOptions(
    controller
      .command('update')
      .description('push a release to workers through their updaters; health-checked, rolled back on failure')
      .requiredOption('--release <file>', 'release .tar.gz (from `controller release pack`)')
      .option('--host <name...>', 'hosts to update (repeat or comma-separate)', collect)
      .option('--all', 'every active host')
      .option('--include-self', "also replace each host's updater with this release")
      .option('--dry-run', 'ask each updater what would happen; change nothing')
      .option('--force', 'push even a version that rolled back on a host before')
      .option('--json', 'print JSON'),
  );
  addRolloutOptions(update, '25% of the hosts').action(async (opts: UpdateOpts) => {
    const hosts = opts.host ?? [];
    if (hosts.length > 0 === (opts.all === true)) {
      throw new CliExit(EXIT_USAGE, 'name hosts with --host, or use --all (not both)');
    }
    let bytes: number;
    try {
      bytes = (await stat(opts.release)).size;
    } catch (e: unknown) {
      throw new CliExit(EXIT_USAGE, `cannot read ${opts.release}: ${(e as Error).message}`);
    }
    const sha256 = await sha256File(opts.release);
    const q = new URLSearchParams({ sha256 });
    if (opts.all) q.set('all', 'true');
    else q.set('hosts', hosts.join(','));
    if (opts.includeSelf) q.set('includeSelf', 'true');
    if (opts.dryRun) q.set('dryRun', 'true');
    if (opts.force) q.set('force', 'true');
    for (const [k, v] of Object.entries(rolloutFromFlags(opts))) q.set(k, String(v));
    const admin = await adminClientFor(opts);
    const answer = await withProgress(admin, io, 'update', !opts.json && !opts.dryRun, () =>
      admin.postStream<AdminUpdateResponse | ApprovalPending>(
        `${ADMIN_UPDATE_PATH}?${q.toString()}`,
        createReadStream(opts.release),
        bytes,
        LONG_REQUEST_TIMEOUT_MS,
      ),
    );
    if (isApprovalPending(answer)) {
      printApprovalPending(io, answer, { what: `the push of ${opts.release}`, json: opts.json });
      return;
    }
    const res = answer;
    if (opts.json) {
      io.out(renderJson(res));
    } else {
      io.out(
        renderTable(
          ['host', 'outcome', 'version', 'reason'],
          res.hosts.map((h) => [h.host, h.outcome, h.version, h.reason]),
        ),
      );
      io.out(
        res.dryRun
          ? `\ndry run of ${res.version}: nothing was changed\n`
          : `\nrelease ${res.version} (sha256 ${res.sha256.slice(0, 12)}), operation ${res.operationId ?? '-'}\n`,
      );
    }
    if (res.state === 'halted') {
      throw new CliExit(
        EXIT_FAILURE,
        `${res.reason ?? 'halted'}; ${res.hosts.filter((h) => h.outcome === 'untouched').length} hosts untouched ` +
          `(corral controller ops resume ${res.operationId ?? '?'} | ops cancel ${res.operationId ?? '?'})`,
      );
    }
    if (!res.ok) {
      const off = res.hosts.filter((h) => h.outcome !== 'updated' && h.outcome !== 'self-updated').length;
      throw new CliExit(
        EXIT_FAILURE,
        res.dryRun
          ? 'some hosts could not be asked'
          : `${off} of ${res.hosts.length} hosts did not end on ${res.version}` +
              (res.operationId ? ` (corral controller ops show ${res.operationId})` : ''),
      );
    }
  });

  addAdminTargetOptions(
    controller
      .command('releases')
      .description("each host's current release and recent history, asked of its updater")
      .option('--host <name>', 'only this host')
      .option('--json', 'print JSON'),
  ).action(async (opts: JsonOpt & { host?: string }) => {
    const admin = await adminClientFor(opts);
    const qs = opts.host !== undefined ? `?host=${encodeURIComponent(opts.host)}` : '';
    const { hosts } = await admin.get<AdminReleasesResponse>(`${ADMIN_RELEASES_PATH}${qs}`);
    if (opts.json) {
      io.out(renderJson(hosts));
    } else {
      io.out(
        renderTable(
          ['host', 'current', 'previous', 'updater', 'history', 'error'],
          hosts.map((h) => [
            h.host,
            h.current,
            h.previous,
            h.updater,
            h.history
              .slice(-HISTORY_SHOWN)
              .map((e) => `${e.version}:${e.outcome}`)
              .join(' '),
            h.error,
          ]),
        ),
      );
    }
    if (hosts.some((h) => h.error !== null)) {
      throw new CliExit(EXIT_FAILURE, 'some updaters could not be asked');
    }
  });
}
