import { open, readFile, realpath, writeFile, type FileHandle } from 'node:fs/promises';
import { isIP } from 'node:net';
import { isAbsolute, join, normalize } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import {
  PORT_RE,
  VOLUME_NAME_RE,
  VOLUME_RE,
  type ContainerServiceSpec,
  type ServiceSpec,
} from '../../protocol/service-spec.js';
import { createEngineClient, engineAbsent, EngineError, type EngineClient } from './docker-engine.js';
import { SERVICE_ENV } from './orphans.js';
import type { ExitInfo } from '../supervise/restart-policy.js';
import type {
  ContainerRef,
  LogTarget,
  OwnedWorkload,
  RunHandle,
  Runtime,
  RuntimeRef,
  StartRequest,
} from './runtime.js';
import { isWithin } from '../self-destruct/self-destruct-plan.js';

/** Labels on every container Corral starts; containers without them are never touched. */
export const LABEL_SERVICE = 'io.corral.service';
export const LABEL_INSTANCE = 'io.corral.agent-instance';
export const LABEL_SPEC_HASH = 'io.corral.spec-hash';
/** Written on every container; self-destruct and discovery filter on the instance label. */
export const LABEL_MANAGED = 'io.corral.managed';

const CONTAINER_ID_RE = /^[0-9a-f]{64}$/;
const SPEC_HASH_RE = /^[0-9a-f]{64}$/;
/** `services/<name>/container-logs.json`: how far the engine's log of which container was copied. */
export const LOG_CURSOR_FILE = 'container-logs.json';
/** Wait before following a container's logs again after the stream broke, in ms. */
const LOG_RETRY_MS = 1000;
/** The extra time the engine gets beyond a stop's grace period before the call has failed, in ms. */
const STOP_SLACK_MS = 30_000;
/** A pull may take this long, in ms. */
const PULL_TIMEOUT_MS = 15 * 60_000;
const MAX_LOG_LINE_BYTES = 64 * 1024;

export interface ContainerRuntimeOptions {
  /** The engine's Unix socket (see docker-engine.ts engineSocket). */
  readonly socket: string;
  /** Host directories bind mounts may come from (each, and anything beneath it). */
  readonly allowedVolumeDirs?: readonly string[];
  /** How often a container is inspected when the engine's wait call is not available, in ms. */
  readonly pollMs?: number;
}

interface Inspected {
  readonly Id: string;
  readonly Name: string;
  readonly Config: { readonly Image: string; readonly Labels: Record<string, string> | null };
  readonly State: {
    readonly Running: boolean;
    readonly ExitCode: number;
    readonly OOMKilled?: boolean;
    readonly Error?: string;
    readonly Pid?: number;
  };
}

interface Listed {
  readonly Id: string;
  readonly Names?: readonly string[];
  readonly Image: string;
  readonly Labels: Record<string, string> | null;
  readonly State?: string;
}

/** `512m` → bytes. */
export function memoryBytes(text: string): number {
  const m = /^([0-9]+)([kmg]?)$/.exec(text);
  if (!m) throw new CorralError(ErrorCode.VALIDATION, `not a memory size: ${text}`);
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2] as '' | 'k' | 'm' | 'g'];
  return Number(m[1]) * unit;
}

/** The container name of a service of an agent instance: stable, so a second copy cannot exist. */
export function containerName(instance: string, service: string): string {
  return `corral-${instance.slice(0, 12)}-${service}`;
}

interface PortBinding {
  readonly hostIp: string;
  readonly hostPort: number;
  readonly containerPort: number;
  readonly proto: 'tcp' | 'udp';
}

function parsePort(text: string, field: string): PortBinding {
  const m = PORT_RE.exec(text);
  const bad = (why: string): CorralError => new CorralError(ErrorCode.VALIDATION, `${field} ${why}`);
  if (!m) throw bad(`is not [ADDRESS:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]: ${text}`);
  const hostIp = (m[1] ?? '0.0.0.0').replace(/^\[(.*)\]$/, '$1');
  if (isIP(hostIp) === 0) throw bad(`has host address ${hostIp}, which is not an IP address`);
  const hostPort = Number(m[2]);
  const containerPort = Number(m[3]);
  for (const p of [hostPort, containerPort])
    if (p < 1 || p > 65535) throw bad(`has port ${p} outside 1-65535`);
  return { hostIp, hostPort, containerPort, proto: (m[4] ?? 'tcp') as 'tcp' | 'udp' };
}

interface Volume {
  readonly kind: 'bind' | 'named';
  readonly source: string;
  readonly target: string;
  readonly readOnly: boolean;
}

function parseVolume(text: string, field: string, allowed: readonly string[]): Volume {
  const m = VOLUME_RE.exec(text);
  if (!m?.[1] || !m[2])
    throw new CorralError(ErrorCode.VALIDATION, `${field} is not SOURCE:TARGET[:ro]: ${text}`);
  const [, source, target, mode] = m;
  const readOnly = mode === 'ro';
  if (source.startsWith('/')) {
    const path = normalize(source);
    if (path !== source.replace(/\/+$/, '') || !isAbsolute(path)) {
      throw new CorralError(
        ErrorCode.VALIDATION,
        `${field} bind source ${source} is not a plain absolute path`,
      );
    }
    if (!allowed.some((dir) => isWithin(path, dir))) {
      throw new CorralError(
        ErrorCode.VALIDATION,
        `${field} bind mount ${source} is outside the directories this agent allows for volumes (${allowed.length ? allowed.join(', ') : 'none configured'})`,
      );
    }
    return { kind: 'bind', source: path, target, readOnly };
  }
  if (!VOLUME_NAME_RE.test(source)) {
    throw new CorralError(ErrorCode.VALIDATION, `${field} volume name ${source} is not valid`);
  }
  return { kind: 'named', source, target, readOnly };
}

function containerSpec(spec: ServiceSpec): ContainerServiceSpec {
  if (spec.runtime !== 'container') {
    throw new CorralError(ErrorCode.INTERNAL, `not a container spec: ${spec.runtime}`);
  }
  return spec;
}

function asContainer(ref: RuntimeRef): ContainerRef {
  if (ref.kind !== 'container') throw new CorralError(ErrorCode.INTERNAL, `not a container: ${ref.kind}`);
  return ref;
}

/** `repo/name:tag` → fromImage and tag for a pull (a digest stays in fromImage). */
function pullParams(image: string): { fromImage: string; tag?: string } {
  if (image.includes('@')) return { fromImage: image };
  const slash = image.lastIndexOf('/');
  const colon = image.lastIndexOf(':');
  if (colon > slash) return { fromImage: image.slice(0, colon), tag: image.slice(colon + 1) };
  return { fromImage: image, tag: 'latest' };
}

/** How far a container's log was copied: its id, the last timestamp, and lines seen at it. */
interface LogCursor {
  readonly id: string;
  readonly ts: string;
  readonly atTs: number;
}

async function readCursor(dir: string, id: string): Promise<LogCursor | undefined> {
  try {
    const v = JSON.parse(await readFile(join(dir, LOG_CURSOR_FILE), 'utf8')) as Partial<LogCursor>;
    if (v.id === id && typeof v.ts === 'string' && typeof v.atTs === 'number') {
      return { id, ts: v.ts, atTs: v.atTs };
    }
    return undefined;
  } catch (e: unknown) {
    // ENOENT: never followed; SyntaxError: a torn write (the file is a hint, re-read from the start)
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || e instanceof SyntaxError) return undefined;
    throw e;
  }
}

/** Seconds since the epoch of an RFC 3339 timestamp, for the logs call's `since`. */
function epochSeconds(ts: string): number {
  const ms = Date.parse(ts);
  return Number.isNaN(ms) ? 0 : Math.floor(ms / 1000);
}

/**
 * Runs `runtime: container` services through the Docker Engine API on its Unix socket (dockerd,
 * or podman's `podman system service`). Containers carry Corral's labels and a name fixed by
 * agent instance and service, are created with the engine's restart policy `no` (the agent's
 * policy restarts them, as for processes), and are found again by label after an agent restart.
 * A container without Corral's labels is never stopped or removed.
 */
export function createContainerRuntime(options: ContainerRuntimeOptions): Runtime<'container'> {
  const engine: EngineClient = createEngineClient(options.socket);
  const allowed = (options.allowedVolumeDirs ?? []).map((d) => normalize(d).replace(/\/+$/, '') || '/');
  const pollMs = options.pollMs ?? 1000;
  const watchers = new Set<AbortController>();

  async function inspectContainer(idOrName: string): Promise<Inspected | undefined> {
    const { status, value } = await engine.json<Inspected>(
      `/containers/${encodeURIComponent(idOrName)}/json`,
      {
        ok: [200, 404],
      },
    );
    return status === 404 ? undefined : value;
  }

  const ours = (c: {
    Config?: { Labels: Record<string, string> | null };
    Labels?: Record<string, string> | null;
  }) => (c.Config?.Labels ?? c.Labels ?? {})[LABEL_MANAGED] === 'true';

  async function ensureImage(spec: ContainerServiceSpec): Promise<void> {
    const policy = spec.pull ?? 'missing';
    if (policy !== 'always') {
      const { status } = await engine.json(`/images/${encodeURIComponent(spec.image)}/json`, {
        ok: [200, 404],
      });
      if (status === 200) return;
      if (policy === 'never') {
        throw new CorralError(
          ErrorCode.CONTAINER_ENGINE,
          `image ${spec.image} is not on this host and the service's pull policy is never`,
        );
      }
    }
    const res = await engine.stream('/images/create', {
      method: 'POST',
      query: pullParams(spec.image),
      timeoutMs: PULL_TIMEOUT_MS,
    });
    // The engine answers 200 and then streams progress; a failure is an `error` line in it.
    let failure: string | undefined;
    let tail = '';
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      const lines = (tail + chunk.toString('utf8')).split('\n');
      tail = lines.pop() ?? '';
      for (const line of lines) {
        try {
          const v = JSON.parse(line) as { error?: unknown };
          if (typeof v.error === 'string') failure ??= v.error;
        } catch {
          // SyntaxError: a progress line that is not JSON; only error lines matter
        }
      }
    }
    if (res.status !== 200 || failure !== undefined) {
      throw new CorralError(
        ErrorCode.CONTAINER_ENGINE,
        `pulling ${spec.image} failed: ${failure ?? `status ${res.status}`}`.slice(0, 1000),
      );
    }
  }

  /** Re-checks each bind source with symbolic links resolved: one pointing outside is refused. */
  async function checkBindsOnDisk(volumes: readonly Volume[]): Promise<void> {
    for (const v of volumes) {
      if (v.kind !== 'bind') continue;
      const real = await realpath(v.source).catch((e: unknown) => {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
          throw new CorralError(ErrorCode.VALIDATION, `bind mount source ${v.source} does not exist`);
        }
        throw e;
      });
      const realAllowed = await Promise.all(
        allowed.map((d) => realpath(d).catch(() => d /* ENOENT: as given */)),
      );
      if (!realAllowed.some((d) => isWithin(real, d))) {
        throw new CorralError(
          ErrorCode.VALIDATION,
          `bind mount ${v.source} resolves to ${real}, outside the directories this agent allows for volumes`,
        );
      }
    }
  }

  function createBody(request: StartRequest, spec: ContainerServiceSpec, volumes: readonly Volume[]) {
    const ports = (spec.ports ?? []).map((p, i) => parsePort(p, `ports/${i}`));
    const exposed: Record<string, object> = {};
    const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
    for (const p of ports) {
      const key = `${p.containerPort}/${p.proto}`;
      exposed[key] = {};
      (bindings[key] ??= []).push({ HostIp: p.hostIp, HostPort: String(p.hostPort) });
    }
    const labels = request.labels;
    // Never the instance marker: the container's processes are visible in the host's /proc, and
    // the process runtime would take them for stray processes of its own. Labels mark containers.
    const env = { ...spec.env, [SERVICE_ENV]: labels.service };
    return {
      Image: spec.image,
      ...(spec.command !== undefined && { Entrypoint: [spec.command] }),
      ...(spec.args !== undefined && { Cmd: spec.args }),
      // An entrypoint given without args must not inherit the image's CMD as its arguments.
      ...(spec.command !== undefined && spec.args === undefined && { Cmd: [] }),
      Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      Labels: {
        [LABEL_MANAGED]: 'true',
        [LABEL_SERVICE]: labels.service,
        [LABEL_INSTANCE]: labels.instance,
        [LABEL_SPEC_HASH]: labels.specHash,
      },
      ...(spec.user !== undefined && { User: spec.user }),
      ExposedPorts: exposed,
      HostConfig: {
        RestartPolicy: { Name: 'no' },
        PortBindings: bindings,
        Binds: volumes.map((v) => `${v.source}:${v.target}${v.readOnly ? ':ro' : ''}`),
        ...(spec.memory !== undefined && { Memory: memoryBytes(spec.memory) }),
        ...(spec.cpus !== undefined && { NanoCpus: Math.round(spec.cpus * 1e9) }),
        ...(spec.network !== undefined && { NetworkMode: spec.network }),
      },
    };
  }

  /** Removes a container of ours by name (an old incarnation) before a new one takes the name. */
  async function clearName(name: string): Promise<void> {
    const old = await inspectContainer(name);
    if (!old) return;
    if (!ours(old)) {
      throw new CorralError(
        ErrorCode.CONFLICT,
        `container name ${name} is taken by a container Corral did not start; it is left alone`,
      );
    }
    if (old.State.Running) {
      throw new CorralError(
        ErrorCode.CONFLICT,
        `container ${name} still runs; it is stopped before a new one starts`,
      );
    }
    await engine.json(`/containers/${old.Id}`, {
      method: 'DELETE',
      query: { force: true },
      ok: [200, 204, 404],
    });
  }

  function exitOf(c: Inspected | undefined): ExitInfo {
    if (!c) return { known: false, code: null, signal: null };
    const error = c.State.OOMKilled ? 'killed: out of memory' : c.State.Error || undefined;
    return { known: true, code: c.State.ExitCode, signal: null, ...(error !== undefined && { error }) };
  }

  /** Resolves when the container is no longer running: the engine's wait, else polling. */
  function watch(ref: ContainerRef, stop: AbortController): Promise<ExitInfo> {
    return (async () => {
      while (!stop.signal.aborted) {
        try {
          const res = await engine.json<{ StatusCode?: number }>(`/containers/${ref.id}/wait`, {
            method: 'POST',
            query: { condition: 'not-running' },
            signal: stop.signal,
            timeoutMs: 0,
            ok: [200, 404],
          });
          if (res.status === 404) return exitOf(undefined);
          return exitOf(await inspectContainer(ref.id));
        } catch (e: unknown) {
          if (stop.signal.aborted) break;
          void e; // the engine went away or the wait broke: inspect until it answers
          await sleep(pollMs, undefined, { signal: stop.signal }).catch(() => undefined /* aborted */);
          const c = await inspectContainer(ref.id).catch(() => 'unreachable' as const);
          if (c === 'unreachable') continue;
          if (!c?.State.Running) return exitOf(c);
        }
      }
      return new Promise<ExitInfo>(() => undefined); // detached: never resolves
    })();
  }

  function handleFor(ref: ContainerRef, pid: number | null, exited?: ExitInfo): RunHandle {
    const stop = new AbortController();
    watchers.add(stop);
    const done = exited ? Promise.resolve(exited) : watch(ref, stop);
    void done.finally(() => watchers.delete(stop));
    return {
      ref,
      pid,
      exited: done,
      detach() {
        stop.abort();
        watchers.delete(stop);
      },
    };
  }

  /** Copies the container's log into the target files until it ends or `signal` aborts. */
  async function follow(ref: ContainerRef, target: LogTarget, signal: AbortSignal): Promise<void> {
    let cursor = await readCursor(target.serviceDir, ref.id);
    const files: Record<1 | 2, FileHandle | undefined> = { 1: undefined, 2: undefined };
    const pathOf = { 1: target.stdoutPath, 2: target.stderrPath };
    const saveCursor = (c: LogCursor): Promise<void> =>
      writeFile(join(target.serviceDir, LOG_CURSOR_FILE), JSON.stringify(c), { mode: 0o600 });
    try {
      while (!signal.aborted) {
        let res;
        try {
          res = await engine.stream(`/containers/${ref.id}/logs`, {
            query: {
              follow: true,
              stdout: true,
              stderr: true,
              timestamps: true,
              ...(cursor && { since: epochSeconds(cursor.ts) }),
            },
            signal,
            timeoutMs: 0,
          });
        } catch {
          // Unreachable engine or aborted: try again while the container is ours to follow
          await sleep(LOG_RETRY_MS, undefined, { signal }).catch(() => undefined /* aborted */);
          continue;
        }
        if (res.status === 404) {
          await res.body.dump();
          return;
        }
        let buffered = Buffer.alloc(0);
        const partial: Record<1 | 2, string> = { 1: '', 2: '' };
        let skipAtTs = cursor?.atTs ?? 0;
        let ts = cursor?.ts ?? '';
        let atTs = cursor?.atTs ?? 0;
        const writeLine = async (stream: 1 | 2, line: string): Promise<void> => {
          const space = line.indexOf(' ');
          const stamp = space > 0 ? line.slice(0, space) : '';
          const text = space > 0 ? line.slice(space + 1) : line;
          if (cursor && stamp !== '') {
            if (stamp < cursor.ts) return; // copied before the cursor was saved
            if (stamp === cursor.ts && skipAtTs > 0) {
              skipAtTs--;
              return;
            }
          }
          if (stamp === ts) atTs++;
          else {
            ts = stamp;
            atTs = 1;
          }
          files[stream] ??= await open(pathOf[stream], 'a', 0o640);
          await files[stream].write(`${text}\n`);
        };
        try {
          for await (const chunk of res.body as AsyncIterable<Buffer>) {
            buffered = Buffer.concat([buffered, chunk]);
            // Frames: 1 byte stream (1 stdout, 2 stderr), 3 zero bytes, 4 bytes length, payload.
            while (buffered.length >= 8) {
              const size = buffered.readUInt32BE(4);
              if (buffered.length < 8 + size) break;
              const stream = buffered[0] === 2 ? 2 : 1;
              const payload = buffered.subarray(8, 8 + size).toString('utf8');
              buffered = buffered.subarray(8 + size);
              const lines = (partial[stream] + payload).split('\n');
              partial[stream] = (lines.pop() ?? '').slice(-MAX_LOG_LINE_BYTES);
              for (const line of lines) await writeLine(stream, line);
            }
            if (ts !== '') await saveCursor({ id: ref.id, ts, atTs });
          }
          for (const stream of [1, 2] as const)
            if (partial[stream] !== '') await writeLine(stream, partial[stream]);
          if (ts !== '') await saveCursor({ id: ref.id, ts, atTs });
          cursor = ts === '' ? cursor : { id: ref.id, ts, atTs };
        } catch {
          // The stream broke (engine restarted, aborted): follow again from the saved cursor
          cursor = ts === '' ? cursor : { id: ref.id, ts, atTs };
        }
        // The stream ends when the container stops; follow again only while it still runs.
        const c = await inspectContainer(ref.id).catch(() => undefined /* unreachable: stop following */);
        if (!c?.State.Running) return;
        await sleep(LOG_RETRY_MS, undefined, { signal }).catch(() => undefined /* aborted */);
      }
    } finally {
      await files[1]?.close();
      await files[2]?.close();
    }
  }

  async function listOwned(instance: string): Promise<OwnedWorkload[]> {
    // No engine socket on this host: no containers of ours either (and undici stays unloaded).
    if (!(await engine.present())) return [];
    let listed: Listed[] | undefined;
    try {
      ({ value: listed } = await engine.json<Listed[]>('/containers/json', {
        query: { all: true, filters: JSON.stringify({ label: [`${LABEL_INSTANCE}=${instance}`] }) },
      }));
    } catch (e: unknown) {
      if (engineAbsent(e)) return []; // no engine on this host: no containers of ours either
      throw e;
    }
    const out: OwnedWorkload[] = [];
    for (const c of listed ?? []) {
      const labels = c.Labels ?? {};
      const service = labels[LABEL_SERVICE];
      // The engine filtered by label; checked again, as nothing unlabelled may be touched.
      if (!ours(c) || labels[LABEL_INSTANCE] !== instance || !service || !CONTAINER_ID_RE.test(c.Id))
        continue;
      const hash = labels[LABEL_SPEC_HASH];
      out.push({
        service,
        ref: {
          kind: 'container',
          id: c.Id,
          name: (c.Names?.[0] ?? '').replace(/^\//, '') || c.Id,
          image: c.Image,
        },
        specHash: hash !== undefined && SPEC_HASH_RE.test(hash) ? hash : undefined,
        running: c.State === 'running',
      });
    }
    return out;
  }

  return {
    kind: 'container',

    check(spec, where) {
      const c = containerSpec(spec);
      (c.ports ?? []).forEach((p, i) => parsePort(p, `${where}/ports/${i}`));
      (c.volumes ?? []).forEach((v, i) => parseVolume(v, `${where}/volumes/${i}`, allowed));
      if (c.memory !== undefined) memoryBytes(c.memory);
    },

    async start(request) {
      const spec = containerSpec(request.spec);
      const volumes = (spec.volumes ?? []).map((v, i) => parseVolume(v, `volumes/${i}`, allowed));
      await checkBindsOnDisk(volumes);
      await ensureImage(spec);
      const name = containerName(request.labels.instance, request.labels.service);
      await clearName(name);
      const { value: created } = await engine.json<{ Id?: string }>('/containers/create', {
        method: 'POST',
        query: { name },
        body: createBody(request, spec, volumes),
      });
      const id = created?.Id;
      if (!id || !CONTAINER_ID_RE.test(id)) {
        throw new CorralError(ErrorCode.CONTAINER_ENGINE, `container engine created ${name} without an id`);
      }
      try {
        await engine.json(`/containers/${id}/start`, { method: 'POST', ok: [204, 304] });
      } catch (e: unknown) {
        await engine
          .json(`/containers/${id}`, { method: 'DELETE', query: { force: true }, ok: [200, 204, 404] })
          .catch(() => undefined /* the start's error is the one to report */);
        throw e;
      }
      const ref: ContainerRef = { kind: 'container', id, name, image: spec.image };
      const c = await inspectContainer(id);
      return handleFor(ref, c?.State.Pid || null);
    },

    async adopt(ref) {
      const r = asContainer(ref);
      let c: Inspected | undefined | 'unreachable';
      try {
        c = await inspectContainer(r.id);
      } catch (e: unknown) {
        if (!(e instanceof CorralError)) throw e;
        c = 'unreachable'; // the engine is down: its containers may still run, watch until it answers
      }
      if (c === 'unreachable') return handleFor(r, null);
      if (!c || !ours(c)) return handleFor(r, null, exitOf(undefined));
      if (!c.State.Running) return handleFor(r, null, exitOf(c));
      return handleFor(r, c.State.Pid || null);
    },

    async inspect(ref) {
      const c = await inspectContainer(asContainer(ref).id).catch((e: unknown) => {
        if (engineAbsent(e)) return undefined;
        throw e;
      });
      return c !== undefined && ours(c) && c.State.Running;
    },

    async stop(ref, graceMs) {
      const r = asContainer(ref);
      let c: Inspected | undefined;
      try {
        c = await inspectContainer(r.id);
      } catch (e: unknown) {
        if (engineAbsent(e)) return; // no engine: nothing of it runs that we could stop
        throw e;
      }
      if (!c) return;
      if (!ours(c)) {
        throw new CorralError(
          ErrorCode.CONFLICT,
          `container ${r.id.slice(0, 12)} carries no Corral label; left alone`,
        );
      }
      if (c.State.Running) {
        await engine.json(`/containers/${r.id}/stop`, {
          method: 'POST',
          query: { t: Math.ceil(graceMs / 1000) },
          timeoutMs: graceMs + STOP_SLACK_MS,
          ok: [204, 304, 404],
        });
      }
      await engine.json(`/containers/${r.id}`, {
        method: 'DELETE',
        query: { force: true },
        ok: [200, 204, 404],
      });
    },

    listOwned,

    logs(handle, target, signal) {
      const ref = asContainer(handle.ref);
      void follow(ref, target, signal).catch(
        () => undefined /* a log file write failed: the capture reports files */,
      );
    },

    async exec(ref, argv, signal) {
      const r = asContainer(ref);
      const { value } = await engine.json<{ Id?: string }>(`/containers/${r.id}/exec`, {
        method: 'POST',
        body: { Cmd: argv, AttachStdout: true, AttachStderr: true },
        signal,
      });
      if (!value?.Id) throw new EngineError(500, 'container engine created an exec without an id');
      // Attached: the stream ends when the command does (a detached exec's state is not kept
      // current by podman's compatibility API). The output is read and dropped.
      const res = await engine.stream(`/exec/${value.Id}/start`, {
        method: 'POST',
        body: { Detach: false, Tty: false },
        signal,
        timeoutMs: 0,
      });
      for await (const chunk of res.body as AsyncIterable<Buffer>) void chunk;
      const { value: done } = await engine.json<{ ExitCode?: number | null }>(`/exec/${value.Id}/json`, {
        signal,
      });
      return typeof done?.ExitCode === 'number' ? done.ExitCode : -1;
    },

    close() {
      for (const w of watchers) w.abort();
      watchers.clear();
      void engine.close().catch(() => undefined /* already closing */);
    },
  };
}
