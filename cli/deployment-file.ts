import { open } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import {
  DeploymentSpec,
  duplicateServiceNames,
  hostVariableProblem,
  MAX_DEPLOYMENT_SPEC_BYTES,
} from '../protocol/deployment.js';
import { isCorralError } from '../protocol/errors.js';
import { parseWith } from '../protocol/validate.js';
import { CliExit, EXIT_FAILURE } from './exit.js';

/** YAML aliases expanded at most (a small file must not grow into a huge document). */
const MAX_YAML_ALIASES = 100;

async function readCapped(path: string): Promise<string> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (e: unknown) {
    const code = (e as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new CliExit(EXIT_FAILURE, `cannot read the deployment spec ${path} (${code})`);
  }
  try {
    const buf = Buffer.alloc(MAX_DEPLOYMENT_SPEC_BYTES + 1);
    let size = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buf, size, buf.length - size, null);
      if (bytesRead === 0) break;
      size += bytesRead;
      if (size > MAX_DEPLOYMENT_SPEC_BYTES) {
        throw new CliExit(EXIT_FAILURE, `${path} is larger than ${MAX_DEPLOYMENT_SPEC_BYTES} bytes`);
      }
    }
    return buf.subarray(0, size).toString('utf8');
  } finally {
    await handle.close();
  }
}

/**
 * Reads a deployment spec (YAML, or JSON, which YAML reads too), at most 1 MiB, and checks it
 * against the schema. Throws CliExit whose message names the file and, for a schema error,
 * the field (`spec.yaml: /services/1/restart: …`).
 */
export async function readDeploymentFile(path: string): Promise<DeploymentSpec> {
  const text = await readCapped(path);
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  const first = doc.errors[0];
  if (first) {
    throw new CliExit(EXIT_FAILURE, `${path}: not valid YAML or JSON: ${first.message.split('\n')[0] ?? ''}`);
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_YAML_ALIASES });
  } catch (e: unknown) {
    throw new CliExit(EXIT_FAILURE, `${path}: ${e instanceof Error ? e.message : String(e)}`);
  }
  let spec: DeploymentSpec;
  try {
    spec = parseWith(DeploymentSpec, value, path);
  } catch (e: unknown) {
    if (isCorralError(e)) throw new CliExit(EXIT_FAILURE, e.message);
    throw e;
  }
  const dups = duplicateServiceNames(spec);
  if (dups.length > 0) {
    throw new CliExit(EXIT_FAILURE, `${path}: /services: service names repeat: ${dups.join(', ')}`);
  }
  const variables = hostVariableProblem(spec);
  if (variables) throw new CliExit(EXIT_FAILURE, `${path}: ${variables}`);
  return spec;
}
