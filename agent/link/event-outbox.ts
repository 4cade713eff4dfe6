import { randomUUID } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import { LifecycleEvent } from '../../protocol/heartbeat.js';
import { readJsonFile, writeJsonAtomic } from '../../kit/json-file.js';
import { UNTRACKED, type StateFiles } from '../state/state-manifest.js';

/** Events kept until acknowledged; past this the oldest are dropped (and counted). */
export const MAX_OUTBOX_EVENTS = 1000;
export const MAX_OUTBOX_BYTES = 4 * 1024 * 1024;
export const OUTBOX_FILE = 'outbox.json';

export const OutboxFile = Type.Object(
  {
    version: Type.Literal(1),
    events: Type.Array(LifecycleEvent, { maxItems: MAX_OUTBOX_EVENTS }),
    dropped: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);

export type NewEvent = Omit<LifecycleEvent, 'id' | 'time'>;

/**
 * Lifecycle events waiting for the controller's acknowledgement, oldest first, persisted in
 * `outbox.json` so an agent restart re-sends what was not acknowledged.
 */
export interface EventOutbox {
  add(event: NewEvent): LifecycleEvent;
  /** The oldest `max` unacknowledged events. */
  pending(max: number): LifecycleEvent[];
  ack(ids: readonly string[]): void;
  /** Events dropped because the outbox was full. */
  dropped(): number;
  /** Resolves when everything added or acknowledged so far is on disk. */
  flush(): Promise<void>;
}

export async function openEventOutbox(
  path: string,
  options: { now: () => number; onError: (err: unknown) => void; stateFiles?: StateFiles },
): Promise<EventOutbox> {
  // The agent's start-up check (state-check.ts) has refused a damaged outbox already.
  const saved = await readJsonFile(path, OutboxFile, 'event outbox', MAX_OUTBOX_BYTES);
  const stateFiles = options.stateFiles ?? UNTRACKED;
  let events: LifecycleEvent[] = saved ? [...saved.events] : [];
  let dropped = saved?.dropped ?? 0;
  let writes: Promise<void> = Promise.resolve();

  const persist = (): void => {
    const snapshot = { version: 1 as const, events: [...events], dropped };
    writes = writes
      .then(async () => {
        await writeJsonAtomic(path, snapshot, true);
        await stateFiles.note(path);
      })
      .catch(options.onError);
  };

  return {
    add(event) {
      const full: LifecycleEvent = {
        ...event,
        id: randomUUID(),
        time: new Date(options.now()).toISOString(),
      };
      events.push(full);
      if (events.length > MAX_OUTBOX_EVENTS) {
        dropped += events.length - MAX_OUTBOX_EVENTS;
        events = events.slice(-MAX_OUTBOX_EVENTS);
      }
      persist();
      return full;
    },
    pending: (max) => events.slice(0, max),
    ack(ids) {
      if (ids.length === 0) return;
      const acked = new Set(ids);
      const before = events.length;
      events = events.filter((e) => !acked.has(e.id));
      if (events.length !== before) persist();
    },
    dropped: () => dropped,
    flush: () => writes,
  };
}
