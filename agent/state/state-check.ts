import { access, open, readdir, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { TSchema } from '@sinclair/typebox';
import { syncDir } from '../../pki/fs-secure.js';
import { SERVICE_INSTANCE_RE } from '../../protocol/service-spec.js';
import { CorralError, ErrorCode, isCorralError } from '../../protocol/errors.js';
import { AgentStateManifest, MAX_STATE_MANIFEST_BYTES } from '../../protocol/state-manifest.js';
import { parseJsonWith } from '../../protocol/validate.js';
import { DESIRED_STATE_FILE, DesiredState, MAX_DESIRED_STATE_BYTES } from '../reconcile/desired-store.js';
import { MAX_OUTBOX_BYTES, OUTBOX_FILE, OutboxFile } from '../link/event-outbox.js';
import { writeJsonAtomic } from '../../kit/json-file.js';
import { MAX_OFFSETS_BYTES, Offsets, OFFSETS_FILE } from '../logs/log-capture.js';
import { MAX_RECORD_BYTES, RECORD_FILE, StoredServiceRecord } from '../supervise/service-record.js';
import { manifestPath } from './state-manifest.js';

export const SERVICES_DIR = 'services';

/** One kind of agent state file: where it lives, its schema, and what losing it costs. */
interface StateKind {
  readonly match: RegExp;
  readonly schema: TSchema;
  readonly maxBytes: number;
  /** What `--reinitialize` destroys when it replaces this file (`name`: the service, if any). */
  destroys(name: string | undefined): string;
  /** A check beyond the schema; returns what is wrong. */
  extra?(value: unknown, name: string | undefined): string | undefined;
}

const KINDS: readonly StateKind[] = [
  {
    match: new RegExp(`^${DESIRED_STATE_FILE.replace('.', '\\.')}$`),
    schema: DesiredState,
    maxBytes: MAX_DESIRED_STATE_BYTES,
    destroys: () =>
      'the desired set and its generation: every service on this worker is stopped at start and stays stopped until the controller deploys to this host again',
  },
  {
    match: new RegExp(`^${OUTBOX_FILE.replace('.', '\\.')}$`),
    schema: OutboxFile,
    maxBytes: MAX_OUTBOX_BYTES,
    destroys: () => 'the lifecycle events the controller has not acknowledged yet (it never sees them)',
  },
  {
    match: new RegExp(`^${SERVICES_DIR}/([^/]+)/${RECORD_FILE.replace('.', '\\.')}$`),
    schema: StoredServiceRecord,
    maxBytes: MAX_RECORD_BYTES,
    destroys: (name) =>
      `the record of service ${name}: its process (found by its environment) is stopped and started again from the desired set, and its restart history is lost`,
    extra: (value, name) =>
      (value as StoredServiceRecord).spec.name === name ? undefined : `is damaged: it names another service`,
  },
  {
    match: new RegExp(`^${SERVICES_DIR}/([^/]+)/${OFFSETS_FILE.replace('.', '\\.')}$`),
    schema: Offsets,
    maxBytes: MAX_OFFSETS_BYTES,
    destroys: (name) =>
      `how far the output of ${name} was shipped: its output files are shipped again from the start (duplicate lines in the worker log)`,
  },
];

const MANIFEST_DESTROYS = 'only the state manifest, which is rebuilt from the files present';

function kindOf(rel: string): { kind: StateKind; name: string | undefined } | undefined {
  for (const kind of KINDS) {
    const m = kind.match.exec(rel);
    if (m) return { kind, name: m[1] };
  }
  return undefined;
}

export interface AgentStateProblem {
  readonly file: string;
  readonly rel: string;
  readonly problem: string;
}

export interface Reinitialized {
  readonly file: string;
  readonly problem: string;
  /** Where the old file went; null when it was missing. */
  readonly movedTo: string | null;
  readonly destroyed: string;
}

export interface CheckedState {
  /** The state files listed in the manifest now (all present and whole), for trackStateFiles. */
  readonly files: string[];
  /** What `reinitialize` replaced (empty when nothing was wrong). */
  readonly reinitialized: Reinitialized[];
}

type Read = { readonly kind: 'missing' } | { readonly kind: 'text'; readonly text: string };

async function readBounded(path: string, maxBytes: number): Promise<Read | { kind: 'too-large' }> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
    throw e;
  }
  try {
    const { size } = await fh.stat();
    if (size > maxBytes) return { kind: 'too-large' };
    const buf = Buffer.alloc(size);
    const { bytesRead } = await fh.read(buf, 0, size, 0);
    return { kind: 'text', text: buf.subarray(0, bytesRead).toString('utf8') };
  } finally {
    await fh.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/** The state files present: the agent's own, and each service's record and offsets. */
async function presentStateFiles(stateDir: string): Promise<string[]> {
  const out: string[] = [];
  for (const f of [DESIRED_STATE_FILE, OUTBOX_FILE]) if (await exists(join(stateDir, f))) out.push(f);
  let names: string[] = [];
  try {
    const entries = await readdir(join(stateDir, SERVICES_DIR), { withFileTypes: true });
    names = entries.filter((e) => e.isDirectory() && SERVICE_INSTANCE_RE.test(e.name)).map((e) => e.name);
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  for (const name of names.sort()) {
    const files = await readdir(join(stateDir, SERVICES_DIR, name));
    for (const f of [RECORD_FILE, OFFSETS_FILE])
      if (files.includes(f)) out.push(`${SERVICES_DIR}/${name}/${f}`);
  }
  return out;
}

/** What is wrong with the state file `rel`, or undefined when it is whole (or not a state file). */
async function checkFile(stateDir: string, rel: string): Promise<string | undefined> {
  const k = kindOf(rel);
  if (!k) return undefined;
  const read = await readBounded(join(stateDir, rel), k.kind.maxBytes);
  if (read.kind === 'missing') return 'is missing';
  if (read.kind === 'too-large') return `is damaged: larger than ${k.kind.maxBytes} bytes`;
  if (read.text.length === 0) return 'is empty (0 bytes)';
  let value: unknown;
  try {
    value = parseJsonWith(k.kind.schema, read.text, rel, k.kind.maxBytes);
  } catch (e: unknown) {
    if (isCorralError(e)) return `is damaged: ${e.message}`;
    throw e;
  }
  return k.kind.extra?.(value, k.name);
}

type ManifestRead =
  | { readonly kind: 'absent' }
  | { readonly kind: 'ok'; readonly files: string[] }
  | { readonly kind: 'damaged'; readonly problem: string };

async function readManifest(stateDir: string): Promise<ManifestRead> {
  const read = await readBounded(manifestPath(stateDir), MAX_STATE_MANIFEST_BYTES);
  if (read.kind === 'missing') return { kind: 'absent' };
  if (read.kind === 'too-large') return { kind: 'damaged', problem: 'is damaged: too large' };
  if (read.text.length === 0) return { kind: 'damaged', problem: 'is empty (0 bytes)' };
  try {
    const m = parseJsonWith(AgentStateManifest, read.text, 'state manifest', MAX_STATE_MANIFEST_BYTES);
    return { kind: 'ok', files: [...m.files] };
  } catch (e: unknown) {
    if (isCorralError(e)) return { kind: 'damaged', problem: `is damaged: ${e.message}` };
    throw e;
  }
}

function destroysFor(rel: string): string {
  const k = kindOf(rel);
  return k ? k.kind.destroys(k.name) : MANIFEST_DESTROYS;
}

/** CORRAL_ERR_STATE_DAMAGED naming each file, what is wrong, and the two ways back. */
export function agentStateDamagedError(
  stateDir: string,
  problems: readonly AgentStateProblem[],
): CorralError {
  const lines = [
    `agent state in ${stateDir} is damaged; nothing was changed:`,
    ...problems.map((p) => `  ${p.file} ${p.problem}`),
    'Restore the state dir from a backup (its files belong together), or replace what is damaged with',
    `  corral agent serve --state-dir ${stateDir} --reinitialize`,
    'which destroys:',
    ...[...new Set(problems.map((p) => destroysFor(p.rel)))].map((d) => `  - ${d}`),
  ];
  return new CorralError(ErrorCode.STATE_DAMAGED, lines.join('\n'));
}

/** `20240102T030405Z`. */
function stamp(now: number): string {
  return new Date(now)
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}

/**
 * Checks the agent's state files before anything uses them, changing nothing unless asked to
 * reinitialize. Every file the manifest lists must exist, be non-empty and match its schema;
 * every state file present must match its schema too. Without a manifest (a first start, or a
 * state dir from before manifests) the files present are checked, a service record without
 * `agent-state.json` is a lost desired set, and a manifest of what is present is written.
 * Throws CORRAL_ERR_STATE_DAMAGED naming each bad file and the way back; with `reinitialize`,
 * moves each bad file to `<file>.damaged-<time>` instead and says what that destroys.
 */
export async function checkAgentState(
  stateDir: string,
  o: { readonly reinitialize: boolean; readonly now: () => number },
): Promise<CheckedState> {
  const manifest = await readManifest(stateDir);
  const present = await presentStateFiles(stateDir);
  const problems: AgentStateProblem[] = [];
  const add = (rel: string, problem: string): void => {
    problems.push({ file: join(stateDir, rel), rel, problem });
  };
  if (manifest.kind === 'damaged') {
    problems.push({ file: manifestPath(stateDir), rel: '', problem: manifest.problem });
  }
  const listed = manifest.kind === 'ok' ? manifest.files : [];
  for (const rel of [...new Set([...listed, ...present])].sort()) {
    const problem = await checkFile(stateDir, rel);
    if (problem) add(rel, problem);
  }
  if (
    manifest.kind !== 'ok' &&
    !present.includes(DESIRED_STATE_FILE) &&
    present.some((r) => r.endsWith(`/${RECORD_FILE}`))
  ) {
    add(DESIRED_STATE_FILE, 'is missing (the service records show an apply was accepted here)');
  }

  const reinitialized: Reinitialized[] = [];
  if (problems.length > 0) {
    if (!o.reinitialize) throw agentStateDamagedError(stateDir, problems);
    const suffix = `.damaged-${stamp(o.now())}`;
    const dirs = new Set<string>();
    for (const p of problems) {
      let movedTo: string | null = p.file + suffix;
      try {
        await rename(p.file, movedTo);
        dirs.add(dirname(p.file));
      } catch (e: unknown) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        movedTo = null;
      }
      reinitialized.push({ file: p.file, problem: p.problem, movedTo, destroyed: destroysFor(p.rel) });
    }
    for (const d of dirs) await syncDir(d);
  }
  const bad = new Set(problems.map((p) => p.rel));
  const files = [...new Set([...listed, ...present])].filter((r) => !bad.has(r) && kindOf(r)).sort();
  const unchanged = manifest.kind === 'ok' && JSON.stringify(files) === JSON.stringify([...listed].sort());
  if (!unchanged) {
    await writeJsonAtomic(manifestPath(stateDir), { version: 1, daemon: 'agent', files }, true);
  }
  return { files, reinitialized };
}

/** Thrown at restore when a record became unreadable after the start-up check. */
export function damagedRecordError(file: string, cause: unknown): CorralError {
  return new CorralError(
    ErrorCode.STATE_DAMAGED,
    `${file} is damaged: ${cause instanceof Error ? cause.message : String(cause)}`,
    { cause },
  );
}
