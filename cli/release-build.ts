import { copyFile, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { packRelease, type PackResult } from '../controller/release/pack.js';
import { CorralError, ErrorCode, RELEASE_SOURCE_FILE } from '../protocol/index.js';
import { AGENT_NODE_FLAGS } from '../agent/node-flags.js';

/**
 * The runtime files of the native SQLite binding and the two small packages its loader needs,
 * relative to each package's directory: the JS that `require('sqlite3')` runs and the compiled
 * `.node` file, nothing that only builds or installs it.
 */
const NATIVE_RUNTIME: Readonly<Record<string, readonly string[]>> = {
  sqlite3: [
    'package.json',
    'LICENSE',
    'lib/sqlite3.js',
    'lib/sqlite3-binding.js',
    'lib/trace.js',
    'build/Release/node_sqlite3.node',
  ],
  bindings: ['package.json', 'LICENSE.md', 'bindings.js'],
  'file-uri-to-path': ['package.json', 'LICENSE', 'index.js'],
};

/** Makes `require` work inside the ESM bundle (CommonJS dependencies call it). */
const BUNDLE_BANNER =
  "import { createRequire as __corralCreateRequire } from 'node:module';\n" +
  'const require = __corralCreateRequire(import.meta.url);';

export interface ReleaseBuildOptions {
  /** The running installation: holds package.json, bin/corral.js, dist/ and node_modules/. */
  readonly installRoot: string;
  readonly out: string;
  /** Default: the installation's package.json version. */
  readonly version?: string;
}

export interface ReleaseBuildResult extends PackResult {
  readonly node: { readonly version: string; readonly abi: string; readonly platform: string };
}

type Esbuild = typeof import('esbuild');

async function loadEsbuild(installRoot: string): Promise<Esbuild> {
  try {
    const req = createRequire(join(installRoot, 'package.json'));
    return (await import(req.resolve('esbuild'))) as Esbuild;
  } catch (e: unknown) {
    throw new CorralError(
      ErrorCode.UNAVAILABLE,
      `release build needs esbuild, installed with Corral's development dependencies (npm install in ${installRoot}): ${e instanceof Error ? e.message : String(e)}`,
    );
  }
}

/**
 * Packs the running installation as a release `controller update` can push: the CLI bundled
 * as ESM (`dist/cli/main.js` and the chunks its lazy imports load, all in `dist/cli/`, every
 * production dependency inlined; nothing from devDependencies is reachable from it), `bin/corral.js`, a minimal `package.json`, and the
 * native SQLite binding with only its runtime files (`node_modules/sqlite3` and its loader).
 * The bundle is built with paths relative to the installation and no source maps, and the
 * tarball by `packRelease`, so the same installation gives the same bytes. The `.node` file
 * runs on this platform and Node ABI only (`createdBy` names both).
 */
export async function buildCorralRelease(o: ReleaseBuildOptions): Promise<ReleaseBuildResult> {
  const root = o.installRoot;
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as {
    version?: string;
    engines?: Record<string, string>;
  };
  const version = o.version ?? pkg.version ?? '0.0.0';
  const esbuild = await loadEsbuild(root);
  const node = {
    version: process.version,
    abi: process.versions.modules,
    platform: `${process.platform}-${process.arch}`,
  };
  const stage = await mkdtemp(join(tmpdir(), 'corral-release-build-'));
  try {
    await esbuild.build({
      absWorkingDir: root,
      entryPoints: [join(root, 'dist', 'cli', 'main.js')],
      outdir: join(stage, 'dist', 'cli'),
      // Split at the CLI's lazy imports: `agent serve` loads its own chunks only, not the
      // controller's (fastify, kysely, the dashboard's routes), which is most of an idle
      // agent's memory budget on every worker (`npm run bench -- agent`).
      splitting: true,
      chunkNames: 'chunk-[hash]',
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: `node${process.versions.node.split('.')[0] ?? '20'}`,
      external: ['sqlite3'],
      minify: true,
      keepNames: true,
      legalComments: 'none',
      sourcemap: false,
      banner: { js: BUNDLE_BANNER },
      logLevel: 'silent',
    });
    await mkdir(join(stage, 'bin'), { recursive: true });
    await copyFile(join(root, 'bin', 'corral.js'), join(stage, 'bin', 'corral.js'));
    // The dashboard's files as built (page, styles, its own small modules), served by the controller.
    await cp(join(root, 'dist', 'ui'), join(stage, 'dist', 'ui'), {
      recursive: true,
      filter: (f) => !f.endsWith('.map') && !f.endsWith('.test.js'),
    }).catch((e: unknown) => {
      // An installation built without its dashboard ships none (the controller says so at `/`).
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    });
    const req = createRequire(join(root, 'package.json'));
    for (const [name, files] of Object.entries(NATIVE_RUNTIME)) {
      const from = dirname(
        req.resolve(`${name}/package.json`, { paths: [join(root, 'node_modules', 'sqlite3')] }),
      );
      for (const file of files) {
        const to = join(stage, 'node_modules', name, file);
        await mkdir(dirname(to), { recursive: true });
        await copyFile(join(from, file), to);
      }
    }
    const releasePkg = {
      name: 'corral',
      version,
      private: true,
      type: 'module',
      ...(pkg.engines ? { engines: pkg.engines } : {}),
    };
    await writeFile(join(stage, 'package.json'), `${JSON.stringify(releasePkg, null, 2)}\n`);
    const source = {
      version,
      start: {
        command: 'node',
        args: [
          ...AGENT_NODE_FLAGS,
          '${release}/bin/corral.js',
          'agent',
          'serve',
          '--state-dir',
          '${agentStateDir}',
        ],
      },
      updater: { command: 'node', args: ['${release}/bin/corral.js', 'updater', 'serve'] },
      forwarder: {
        command: 'node',
        args: ['${release}/bin/corral.js', 'forwarder', 'run', '--state-dir', '${agentStateDir}'],
      },
      include: ['bin', 'dist', 'node_modules', 'package.json'],
      createdBy: `corral release build (node ${node.version}, abi ${node.abi}, ${node.platform})`,
    };
    await writeFile(join(stage, RELEASE_SOURCE_FILE), `${JSON.stringify(source, null, 2)}\n`);
    const packed = await packRelease({ dir: stage, version, out: o.out });
    return { ...packed, node };
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}
