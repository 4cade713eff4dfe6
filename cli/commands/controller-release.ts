import type { Command } from 'commander';
import { packRelease } from '../../controller/release/pack.js';
import { renderJson, renderRecord, type Output } from '../output.js';

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
}
