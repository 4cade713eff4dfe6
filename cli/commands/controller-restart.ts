import type { Command } from 'commander';
import type { ServiceRestartResponse } from '../../protocol/admin-restart.js';
import { adminClientFor } from '../admin-client.js';
import { addAdminTargetOptions, type AdminTargetOptions } from '../controller-home.js';
import { CliExit, EXIT_FAILURE } from '../exit.js';
import { renderJson, renderTable, type Output } from '../output.js';

/** `corral controller restart SERVICE [--host H]`: exits non-zero when a host's restart failed. */
export function registerControllerRestartCommand(controller: Command, io: Output): void {
  addAdminTargetOptions(
    controller
      .command('restart')
      .description('stop and start a service again where it is placed, one host at a time')
      .argument('<service>', 'service name, or one instance (name#k)')
      .option('--host <host>', 'only on this host')
      .option('--json', 'print JSON'),
  ).action(async (service: string, opts: AdminTargetOptions & { host?: string; json?: boolean }) => {
    const admin = await adminClientFor(opts);
    const res = await admin.post<ServiceRestartResponse>('/v1/restart', {
      service,
      ...(opts.host !== undefined && { host: opts.host }),
    });
    io.out(
      opts.json
        ? renderJson(res)
        : renderTable(
            ['host', 'instance', 'result', 'pid', 'restarts', 'reason'],
            res.instances.map((r) => [
              r.host,
              r.instance,
              r.ok ? 'restarted' : 'failed',
              r.pid === null ? null : String(r.pid),
              r.restarts === null ? null : String(r.restarts),
              r.reason,
            ]),
          ) + `operation ${res.operationId}: ${res.state}\n`,
    );
    if (!res.ok) throw new CliExit(EXIT_FAILURE, `restart of ${service} ${res.state}`);
  });
}
