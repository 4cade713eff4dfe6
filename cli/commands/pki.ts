import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { identityFromPem, loadBundle, loadOrCreateCa, isKeyAlgorithm } from '../../pki/index.js';
import { CliExit, EXIT_USAGE } from '../exit.js';
import { renderJson, renderRecord, type Output } from '../output.js';

/** `corral pki …`: inspect certificates and bundles; make a standalone CA. */
export function registerPkiCommands(program: Command, io: Output): void {
  const pki = program.command('pki').description('inspect certificates, bundles and CAs');

  pki
    .command('inspect')
    .description('show the role, host id, fingerprint and expiry of a PEM certificate')
    .argument('<cert>', 'path to a PEM certificate')
    .option('--json', 'print JSON')
    .action(async (file: string, opts: { json?: boolean }) => {
      const id = identityFromPem(await readFile(file, 'utf8'));
      const view = {
        role: id.role ?? null,
        hostId: id.hostId ?? null,
        fingerprint: id.fingerprint,
        notAfter: id.notAfter.toISOString(),
        subject: id.subject,
      };
      io.out(
        opts.json
          ? renderJson(view)
          : renderRecord(
              Object.entries(view).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : v] as const),
            ),
      );
    });

  pki
    .command('bundle')
    .description('check a worker bundle directory and show what it holds')
    .argument('<dir>', 'bundle directory')
    .option('--json', 'print JSON')
    .action(async (dir: string, opts: { json?: boolean }) => {
      const bundle = await loadBundle(dir);
      const view = {
        ...bundle.manifest,
        agentFingerprint: bundle.identities.agent?.fingerprint ?? null,
        updaterFingerprint: bundle.identities.updater?.fingerprint ?? null,
      };
      io.out(
        opts.json
          ? renderJson(view)
          : renderRecord(
              Object.entries(view).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : v] as const),
            ),
      );
    });

  pki
    .command('ca')
    .description('create (or load) a CA in a directory and print its fingerprint')
    .requiredOption('--dir <dir>', 'CA directory (created 0700)')
    .option('--algorithm <alg>', 'ecdsa-p256, ecdsa-p384, rsa-3072 or rsa-4096', 'ecdsa-p256')
    .option('--json', 'print JSON')
    .action(async (opts: { dir: string; algorithm: string; json?: boolean }) => {
      if (!isKeyAlgorithm(opts.algorithm))
        throw new CliExit(EXIT_USAGE, `unknown algorithm ${opts.algorithm}`);
      const ca = await loadOrCreateCa(opts.dir, { algorithm: opts.algorithm });
      const view = { dir: opts.dir, fingerprint: ca.fingerprint, pin: `sha256:${ca.fingerprint}` };
      io.out(
        opts.json
          ? renderJson(view)
          : renderRecord(
              Object.entries(view).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : v] as const),
            ),
      );
    });
}
