import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RELEASE_MANIFEST_FILE, RELEASE_VERSION_RE } from '../protocol/index.js';

/** The running Corral's own tree: the folder holding package.json, bin/ and dist/. */
export function installationRoot(): string {
  // dist/cli/installation.js → the installation root two levels up.
  return dirname(dirname(dirname(fileURLToPath(import.meta.url))));
}

/** The dashboard this installation built (`npm run build`, or a release's copy): `ROOT/dist/ui`. */
export function dashboardDir(): string {
  return join(installationRoot(), 'dist', 'ui');
}

/**
 * The running installation and its release version: the `manifest.json` a release carries at
 * its root (present when Corral runs from `PREFIX/releases/<version>/`), else the package's.
 */
export function runningRelease(): { root: string; version: string | undefined; packageVersion: string } {
  const root = installationRoot();
  const read = (name: string): Record<string, unknown> | undefined => {
    try {
      const value: unknown = JSON.parse(readFileSync(join(root, name), 'utf8'));
      return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
    } catch (e: unknown) {
      void e; // ENOENT (not a release) or unreadable: no version from it
      return undefined;
    }
  };
  const manifest = read(RELEASE_MANIFEST_FILE)?.version;
  const pkg = read('package.json')?.version;
  return {
    root,
    version: typeof manifest === 'string' && RELEASE_VERSION_RE.test(manifest) ? manifest : undefined,
    packageVersion: typeof pkg === 'string' ? pkg : '0.0.0',
  };
}
