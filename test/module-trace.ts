import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * Node arguments that make a child process record the modules its ES imports resolve to in
 * `traceFile`, through the compiled hooks of the installation at `root`
 * (`dist/test/module-trace-hooks.js`).
 */
export function moduleTraceArgs(root: string, traceFile: string): string[] {
  const hooks = pathToFileURL(join(root, 'dist', 'test', 'module-trace-hooks.js')).href;
  const script =
    `import { register } from 'node:module';` +
    `register(${JSON.stringify(hooks)}, { data: { file: ${JSON.stringify(traceFile)} } });`;
  return ['--import', `data:text/javascript,${encodeURIComponent(script)}`];
}

/** The distinct module URLs a traced run recorded, in first-seen order (none: an empty list). */
export async function tracedModules(traceFile: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(traceFile, 'utf8');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  return [...new Set(text.split('\n').filter((l) => l.length > 0))];
}
