import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { CliExit, EXIT_FAILURE } from '../exit.js';
import { renderJson, renderRecord, type Output } from '../output.js';

/** The installation this CLI runs from: the nearest directory above it whose package.json is Corral's. */
export function installRoot(from = dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: unknown }).name === 'corral') return dir;
      } catch {
        // SyntaxError: not a package.json we can read; keep looking further up
      }
    }
    if (dirname(dir) === dir)
      throw new CliExit(EXIT_FAILURE, 'cannot find the Corral installation this runs from');
  }
}

/** `corral release build`: a release of Corral itself, for `controller update`. */
export function registerReleaseCommands(program: Command, io: Output): Command {
  const release = program.command('release').description('build a release of Corral itself');
  release
    .command('build')
    .description(
      'pack the running installation as a release tarball `controller update` can push (deterministic)',
    )
    .option('--out <file>', 'where to write the .tar.gz (default: ./corral-<version>.tar.gz)')
    .option('--version <version>', "release version (default: the installation's package.json version)")
    .option('--json', 'print JSON')
    .action(async (opts: { out?: string; version?: string; json?: boolean }) => {
      const { buildCorralRelease } = await import('../release-build.js');
      const root = installRoot();
      const pkgVersion = (
        JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version?: string }
      ).version;
      const version = opts.version ?? pkgVersion ?? '0.0.0';
      const out = resolve(opts.out ?? `corral-${version}.tar.gz`);
      const r = await buildCorralRelease({ installRoot: root, out, version });
      const view = {
        file: r.file,
        version: r.version,
        sha256: r.sha256,
        bytes: r.bytes,
        entries: r.entries,
        node: `${r.node.version} (abi ${r.node.abi}, ${r.node.platform})`,
      };
      io.out(
        opts.json
          ? renderJson(view)
          : renderRecord([
              ['file', view.file],
              ['version', view.version],
              ['sha256', view.sha256],
              ['size', `${(view.bytes / 1e6).toFixed(2)} MB (${view.bytes} bytes)`],
              ['entries', view.entries],
              ['runs on', `node ${view.node}`],
            ]),
      );
    });
  return release;
}
