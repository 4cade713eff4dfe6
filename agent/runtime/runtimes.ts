import { createContainerRuntime } from './container-runtime.js';
import { createProcessRuntime } from './process-runtime.js';
import type { Runtime, RuntimeKind, Runtimes } from './runtime.js';

export interface RuntimesOptions {
  /** How often adopted processes are checked, in ms. */
  readonly adoptPollMs?: number;
  /** Directories a process service's workingDir may lie in. */
  readonly allowedWorkingDirs?: readonly string[];
  /** The container engine; null: `runtime: container` is refused at apply. */
  readonly container: {
    readonly socket: string;
    readonly allowedVolumeDirs?: readonly string[];
  } | null;
}

/** The runtimes an agent (or the reaper) works with, by kind. */
export function createRuntimes(o: RuntimesOptions): Runtimes {
  const map = new Map<RuntimeKind, Runtime>();
  map.set(
    'process',
    createProcessRuntime({
      ...(o.adoptPollMs !== undefined && { adoptPollMs: o.adoptPollMs }),
      ...(o.allowedWorkingDirs && { allowedWorkingDirs: o.allowedWorkingDirs }),
    }),
  );
  if (o.container) {
    map.set(
      'container',
      createContainerRuntime({
        socket: o.container.socket,
        ...(o.container.allowedVolumeDirs && { allowedVolumeDirs: o.container.allowedVolumeDirs }),
        ...(o.adoptPollMs !== undefined && { pollMs: o.adoptPollMs }),
      }),
    );
  }
  return map;
}
