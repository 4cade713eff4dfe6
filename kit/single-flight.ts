import { CorralError, ErrorCode } from '../protocol/errors.js';

export interface SingleFlightOptions {
  /** Names the queue in the error a refused task gets. */
  readonly name: string;
  /** How many accepted tasks may wait behind the running one. */
  readonly maxQueued: number;
}

interface Keyed {
  promise: Promise<unknown>;
  started: boolean;
}

/**
 * Runs async tasks one at a time: the one single-flight section of the code base.
 *
 * Invariants:
 * 1. At most one task runs at any moment, and tasks start in the order they were accepted.
 * 2. A task starts only once the task before it has settled, resolved or rejected. A task's
 *    result or error reaches only the callers of that task; the queue goes on after a failure.
 * 3. At most `maxQueued` accepted tasks wait behind the running one. A task past that is
 *    refused at once (CORRAL_ERR_UNAVAILABLE) and never runs: nothing queues without bound.
 * 4. `share(key, fn)`: while a task of that key waits or runs, callers get its promise and no
 *    new task is queued (a refresh asked for twice runs once).
 * 5. `coalesce(key, fn)`: while a task of that key still waits, callers get its promise; once it
 *    has started, a new one is queued (for tasks that act on the state of when they start, so
 *    a waiting one already carries every change made before it).
 * 6. `idle()` resolves once nothing waits or runs, tasks accepted while it waited included.
 */
export class SingleFlight {
  readonly #name: string;
  readonly #maxQueued: number;
  #tail: Promise<void> = Promise.resolve();
  #waiting = 0;
  readonly #keyed = new Map<string, Keyed>();

  constructor(options: SingleFlightOptions) {
    this.#name = options.name;
    this.#maxQueued = options.maxQueued;
  }

  /** Tasks accepted and not yet started. */
  get waiting(): number {
    return this.#waiting;
  }

  /** Queues `fn` behind every task accepted before it; rejects with its error. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    return this.#enqueue(fn, () => undefined);
  }

  share<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const current = this.#keyed.get(key);
    if (current) return current.promise as Promise<T>;
    return this.#queueKeyed(key, fn);
  }

  coalesce<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const current = this.#keyed.get(key);
    if (current && !current.started) return current.promise as Promise<T>;
    return this.#queueKeyed(key, fn);
  }

  async idle(): Promise<void> {
    let seen: Promise<void>;
    do {
      seen = this.#tail;
      await seen;
    } while (seen !== this.#tail);
  }

  #queueKeyed<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const entry: Keyed = { promise: Promise.resolve(), started: false };
    const promise = this.#enqueue(fn, () => {
      entry.started = true;
    }).finally(() => {
      if (this.#keyed.get(key) === entry) this.#keyed.delete(key);
    });
    entry.promise = promise;
    this.#keyed.set(key, entry);
    promise.catch(() => undefined /* the callers of this task get the error through `promise` */);
    return promise;
  }

  #enqueue<T>(fn: () => Promise<T>, onStart: () => void): Promise<T> {
    if (this.#waiting >= this.#maxQueued) {
      return Promise.reject(
        new CorralError(
          ErrorCode.UNAVAILABLE,
          `${this.#name}: ${this.#maxQueued} already waiting; retry later`,
        ),
      );
    }
    this.#waiting++;
    const next = this.#tail.then(() => {
      this.#waiting--;
      onStart();
      return fn();
    });
    this.#tail = next.then(
      () => undefined,
      () => undefined /* the caller of this task gets the error through `next` */,
    );
    return next;
  }
}
