import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { parseHostPort } from '../../kit/host-port.js';
import { CliExit, EXIT_USAGE } from '../exit.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';

/** Environment variable naming the config file when `--config` is not given. */
export const CONFIG_ENV = 'CORRAL_CONFIG';
/** Largest config file read, in bytes. */
export const MAX_CONFIG_BYTES = 256 * 1024;

/** What one key may hold. Paths must be absolute; durations carry their unit (`30s`, `5m`). */
export type Field =
  | { readonly kind: 'string'; readonly allowed?: readonly string[] }
  | { readonly kind: 'path' }
  | { readonly kind: 'paths' }
  | { readonly kind: 'strings' }
  | { readonly kind: 'hostPort' }
  | { readonly kind: 'duration'; readonly zero?: boolean }
  | { readonly kind: 'int'; readonly min: number; readonly max?: number }
  | { readonly kind: 'bool' }
  /** A whole number from 0 to `max`, or a mapping `{ count: N, FLAG: true|false }` of `flags`. */
  | { readonly kind: 'countRule'; readonly max: number; readonly flags: readonly string[] };

/** A config file's shape: top-level keys, each a field or a section of fields. */
export type ConfigSpec = Readonly<Record<string, Field | Readonly<Record<string, Field>>>>;

const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** What a field allows, as the refusal says it. */
export function describeField(f: Field): string {
  switch (f.kind) {
    case 'string':
      return f.allowed ? `one of ${f.allowed.join(', ')}` : 'a string';
    case 'path':
      return 'an absolute path';
    case 'paths':
      return 'a list of absolute paths';
    case 'strings':
      return 'a list of strings';
    case 'hostPort':
      return 'HOST:PORT';
    case 'duration':
      return `a duration with its unit, like 30s, 5m or 250ms${f.zero ? ' (or 0)' : ''}`;
    case 'int':
      return `a whole number from ${f.min}${f.max !== undefined ? ` to ${f.max}` : ''}`;
    case 'bool':
      return 'true or false';
    case 'countRule':
      return `a whole number from 0 to ${f.max}, or { count: N${f.flags.map((x) => `, ${x}: true|false`).join('')} }`;
  }
}

const isField = (v: Field | Readonly<Record<string, Field>>): v is Field =>
  typeof (v as { kind?: unknown }).kind === 'string';

/** Parses a duration as a config file (and every duration flag) writes it; ms. Throws Error. */
export function parseConfigDuration(text: string, zero = false): number {
  const t = text.trim();
  if (zero && /^0+(?:\.0+)?(?:ms|s|m|h|d)?$/.test(t)) return 0;
  const m = DURATION_RE.exec(t);
  const ms = m ? Number(m[1]) * (DURATION_UNITS_MS[m[2] ?? 's'] ?? 1000) : Number.NaN;
  if (!Number.isFinite(ms) || ms < 1)
    throw new CorralError(
      ErrorCode.VALIDATION,
      `expected a duration like 30s, 5m or 250ms, got ${JSON.stringify(text)}`,
    );
  return Math.round(ms);
}

function checkValue(f: Field, v: unknown): { ok: true; value: unknown } | { ok: false } {
  const strings = (x: unknown): x is string[] =>
    Array.isArray(x) &&
    x.length <= 256 &&
    x.every((s) => typeof s === 'string' && s.length > 0 && s.length <= 4096);
  switch (f.kind) {
    case 'string':
      if (typeof v !== 'string' || v.length === 0 || v.length > 4096) return { ok: false };
      return f.allowed && !f.allowed.includes(v) ? { ok: false } : { ok: true, value: v };
    case 'path':
      return typeof v === 'string' && isAbsolute(v) && !v.includes('\0') && v.length <= 4096
        ? { ok: true, value: resolve(v) }
        : { ok: false };
    case 'paths':
      return strings(v) && v.every((p) => isAbsolute(p))
        ? { ok: true, value: v.map((p) => resolve(p)) }
        : { ok: false };
    case 'strings':
      return strings(v) ? { ok: true, value: [...v] } : { ok: false };
    case 'hostPort':
      if (typeof v !== 'string') return { ok: false };
      try {
        parseHostPort(v);
        return { ok: true, value: v };
      } catch (e: unknown) {
        void e; // refused below with what is allowed
        return { ok: false };
      }
    case 'duration':
      if (typeof v !== 'string' && !(f.zero && v === 0)) return { ok: false };
      try {
        return { ok: true, value: parseConfigDuration(String(v), f.zero) };
      } catch (e: unknown) {
        void e; // refused below with what is allowed
        return { ok: false };
      }
    case 'int':
      return typeof v === 'number' &&
        Number.isSafeInteger(v) &&
        v >= f.min &&
        (f.max === undefined || v <= f.max)
        ? { ok: true, value: v }
        : { ok: false };
    case 'bool':
      return typeof v === 'boolean' ? { ok: true, value: v } : { ok: false };
    case 'countRule': {
      const count = (n: unknown): n is number =>
        typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 && n <= f.max;
      if (count(v)) return { ok: true, value: v };
      if (v === null || typeof v !== 'object' || Array.isArray(v)) return { ok: false };
      const rule = v as Record<string, unknown>;
      const keysKnown = Object.keys(rule).every((k) => k === 'count' || f.flags.includes(k));
      const flagsOk = f.flags.every((k) => rule[k] === undefined || typeof rule[k] === 'boolean');
      return keysKnown && flagsOk && count(rule.count) ? { ok: true, value: { ...rule } } : { ok: false };
    }
  }
}

/**
 * Reads a YAML config file and checks it against `spec`: every key must be known and every
 * value what its field allows (durations as milliseconds, paths resolved). Anything else ends
 * the command with exit 2 and one line naming the file, the key and what is allowed.
 * An empty file is an empty config.
 */
export async function loadConfigFile(path: string, spec: ConfigSpec): Promise<Record<string, unknown>> {
  const file = resolve(path);
  const refuse = (what: string): never => {
    throw new CliExit(EXIT_USAGE, `config file ${file}: ${what}`);
  };
  let text: string;
  try {
    const st = await stat(file);
    if (!st.isFile()) refuse('not a regular file');
    if (st.size > MAX_CONFIG_BYTES) refuse(`larger than ${MAX_CONFIG_BYTES} bytes`);
    text = await readFile(file, 'utf8');
  } catch (e: unknown) {
    if (e instanceof CliExit) throw e;
    return refuse(`cannot be read: ${e instanceof Error ? e.message : String(e)}`);
  }
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false, strict: true });
  const first = doc.errors[0];
  if (first) refuse(`not valid YAML: ${first.message.split('\n')[0] ?? ''}`);
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 50 });
  } catch (e: unknown) {
    return refuse(`not usable YAML: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data)) return refuse('must be a mapping of keys to values');
  const out: Record<string, unknown> = {};
  const known = (names: string[]): string => names.join(', ');
  for (const [key, value] of Object.entries(data as Record<string, unknown>)) {
    const entry = spec[key];
    if (entry === undefined)
      refuse(`unknown key ${JSON.stringify(key)} (known: ${known(Object.keys(spec))})`);
    if (isField(entry!)) {
      const checked = checkValue(entry, value);
      if (!checked.ok) refuse(`${key}: expected ${describeField(entry)}, got ${show(value)}`);
      else out[key] = checked.value;
      continue;
    }
    const section = entry as Readonly<Record<string, Field>>;
    if (value === null) continue;
    if (typeof value !== 'object' || Array.isArray(value))
      refuse(`${key}: expected a mapping of keys to values`);
    const inner: Record<string, unknown> = {};
    for (const [sub, v] of Object.entries(value as Record<string, unknown>)) {
      const f = section[sub];
      if (f === undefined)
        refuse(
          `unknown key ${JSON.stringify(`${key}.${sub}`)} (known in ${key}: ${known(Object.keys(section))})`,
        );
      const checked = checkValue(f!, v);
      if (!checked.ok) refuse(`${key}.${sub}: expected ${describeField(f!)}, got ${show(v)}`);
      else inner[sub] = checked.value;
    }
    out[key] = inner;
  }
  return out;
}

function show(v: unknown): string {
  const text = JSON.stringify(v) ?? String(v);
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}

/** The config file a daemon reads: `--config`, else `$CORRAL_CONFIG`, else none. */
export function configPath(
  flag: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  const chosen = flag ?? env[CONFIG_ENV];
  return chosen === undefined || chosen === '' ? undefined : resolve(chosen);
}
