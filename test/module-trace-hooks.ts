import { appendFileSync } from 'node:fs';

/**
 * Module hooks (`module.register`) that append every module URL an ES import resolves to, one a
 * line, to the file named by `initialize`'s data. Used to see what a CLI command loads; a
 * CommonJS package's own `require`s are not seen, its entry (imported from ESM) is.
 */
let traceFile: string | undefined;

export function initialize(data: { file: string }): void {
  traceFile = data.file;
}

type Resolved = { url: string };
type NextResolve = (specifier: string, context: unknown) => Promise<Resolved>;

export async function resolve(specifier: string, context: unknown, next: NextResolve): Promise<Resolved> {
  const result = await next(specifier, context);
  if (traceFile !== undefined) appendFileSync(traceFile, `${result.url}\n`);
  return result;
}
