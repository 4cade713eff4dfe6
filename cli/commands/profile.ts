import type { Command } from 'commander';
import { renderJson, renderRecord, renderTable, type Output } from '../output.js';
import { addProfile, configDir, listProfiles, removeProfile } from '../profiles.js';
import { CliExit, EXIT_FAILURE } from '../exit.js';

/** `corral profile add|list|remove`: named admin API targets for `corral --profile NAME …`. */
export function registerProfileCommands(program: Command, io: Output): void {
  const profile = program
    .command('profile')
    .description(`named controllers to drive with corral --profile NAME (kept 0600 in ${configDir()})`);

  profile
    .command('add')
    .description('add or replace a profile: the admin URL and an operator certificate bundle or token')
    .argument('<name>', 'profile name')
    .requiredOption('--url <url>', 'admin API URL, e.g. https://ctl.example:8770')
    .option(
      '--bundle <dir>',
      'operator bundle from `controller operators create --cert` (CA, certificate, key)',
    )
    .option('--token-file <file>', 'operator token, read from this file (copied into the profile)')
    .option('--ca <file>', 'CA certificate to verify an https controller with, for a token profile')
    .option('--json', 'print JSON')
    .action(
      async (
        name: string,
        opts: { url: string; bundle?: string; tokenFile?: string; ca?: string; json?: boolean },
      ) => {
        const p = await addProfile(process.env, name, {
          url: opts.url,
          ...(opts.bundle !== undefined && { bundle: opts.bundle }),
          ...(opts.tokenFile !== undefined && { tokenFile: opts.tokenFile }),
          ...(opts.ca !== undefined && { caFile: opts.ca }),
        });
        const view = { name, url: p.url, auth: p.cert ? 'certificate' : 'token', verifiesCa: p.ca };
        io.out(opts.json ? renderJson(view) : renderRecord(Object.entries(view)));
      },
    );

  profile
    .command('list')
    .description('list profiles (never their secrets)')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const rows = Object.entries(await listProfiles(process.env)).map(([name, p]) => ({
        name,
        url: p.url,
        auth: p.cert ? 'certificate' : 'token',
        verifiesCa: p.ca,
      }));
      io.out(
        opts.json
          ? renderJson(rows)
          : renderTable(
              ['name', 'url', 'auth', 'verifies CA'],
              rows.map((r) => [r.name, r.url, r.auth, r.verifiesCa ? 'yes' : 'no']),
            ),
      );
    });

  profile
    .command('remove')
    .description('remove a profile and its copies of the certificate and token')
    .argument('<name>', 'profile name')
    .action(async (name: string) => {
      if (!(await removeProfile(process.env, name)))
        throw new CliExit(EXIT_FAILURE, `no profile named ${name}`);
    });
}
