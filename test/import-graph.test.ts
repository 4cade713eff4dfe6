import { builtinModules } from 'node:module';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const LIBRARIES = ['protocol', 'pki', 'kit'];
const DEPLOYABLES = ['controller', 'agent', 'updater', 'forwarder'];
/** What each top-level folder may import of ours (besides itself). */
const ALLOWED: Record<string, readonly string[]> = {
  protocol: [],
  pki: [],
  kit: ['protocol', 'pki'],
  controller: LIBRARIES,
  agent: LIBRARIES,
  updater: LIBRARIES,
  forwarder: LIBRARIES,
};

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch((e: unknown) => {
    // A folder with no files yet is not in git, so a fresh clone may lack it.
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  });
  return entries.filter((e) => e.isFile() && e.name.endsWith('.ts')).map((e) => join(e.parentPath, e.name));
}

const IMPORT_RE =
  /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|import\s+['"]([^'"]+)['"]/g;

function importSpecifiers(text: string): string[] {
  return [...text.matchAll(IMPORT_RE)].map((m) => m[1] ?? m[2] ?? m[3] ?? '');
}

/** Node's own modules, also when imported without the `node:` prefix (`fs`, `crypto`). */
const NODE_BUILTINS = new Set(builtinModules);

/** Every relative import in `file`, as the top-level folder it lands in. */
function importedFolders(file: string, text: string): string[] {
  const folders: string[] = [];
  for (const m of text.matchAll(IMPORT_RE)) {
    const spec = m[1] ?? m[2] ?? m[3];
    if (!spec?.startsWith('.')) continue;
    const target = relative(ROOT, resolve(dirname(file), spec));
    folders.push(target.split(sep)[0] ?? '');
  }
  return folders;
}

describe('import direction (DESIGN.md)', () => {
  for (const [folder, allowed] of Object.entries(ALLOWED)) {
    it(`${folder}/ imports only ${allowed.length ? allowed.join(', ') : 'nothing of ours'}`, async () => {
      const violations: string[] = [];
      for (const file of await sourceFiles(join(ROOT, folder))) {
        const text = await readFile(file, 'utf8');
        for (const target of importedFolders(file, text)) {
          if (target !== folder && !allowed.includes(target)) {
            violations.push(`${relative(ROOT, file)} -> ${target}/`);
          }
        }
      }
      expect(violations).toEqual([]);
    });
  }

  // protocol/ is the wire: schemas, codes and the error envelope, the same for every process.
  // Anything that needs Node (files, sockets, timers, processes) belongs in kit/.
  it('protocol/ imports no node: module', async () => {
    const found: string[] = [];
    for (const file of await sourceFiles(join(ROOT, 'protocol'))) {
      if (file.endsWith('.test.ts')) continue;
      for (const spec of importSpecifiers(await readFile(file, 'utf8'))) {
        if (spec.startsWith('node:') || NODE_BUILTINS.has(spec.split('/')[0] ?? '')) {
          found.push(`${relative(ROOT, file)} -> ${spec}`);
        }
      }
    }
    expect(found).toEqual([]);
  });

  it('recognises a violation when it sees one', () => {
    const file = join(ROOT, 'agent', 'x.ts');
    expect(importedFolders(file, "import { a } from '../controller/y.js';")).toEqual(['controller']);
    expect(importedFolders(file, "const m = await import('../updater/z.js');")).toEqual(['updater']);
    expect(importedFolders(file, "export * from '../pki/index.js';")).toEqual(['pki']);
    expect(DEPLOYABLES.every((d) => d in ALLOWED)).toBe(true);
    expect(importedFolders(join(ROOT, 'kit', 'x.ts'), "import { a } from '../agent/y.js';")).toEqual([
      'agent',
    ]);
    expect(importSpecifiers("import { readFile } from 'node:fs/promises';\nimport x from 'crypto';")).toEqual(
      ['node:fs/promises', 'crypto'],
    );
    expect(NODE_BUILTINS.has('crypto')).toBe(true);
  });
});
