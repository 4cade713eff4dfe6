import type { Logger } from 'pino';
import type { PositionStore } from './position-store.js';

interface Position {
  readonly streamId: string;
  readonly position: number;
}

const key = (p: Position): string => `${p.streamId}:${p.position}`;

/**
 * Writes one file's acknowledged position to the store in the background: one write at a
 * time, later positions coalescing into the next write. A failed write is logged and retried
 * on the next position (or flush), never in a tight loop.
 */
export class PositionSaver {
  private wanted: Position | undefined;
  private savedKey = '';
  private pending: Promise<void> | undefined;

  constructor(
    private readonly store: PositionStore,
    private readonly path: string,
    private readonly log: Logger,
  ) {}

  /** Records that the store already holds this position (just loaded, or written with its record). */
  stored(streamId: string, position: number): void {
    this.wanted = { streamId, position };
    this.savedKey = key(this.wanted);
  }

  save(streamId: string, position: number): void {
    this.wanted = { streamId, position };
    this.kick();
  }

  /** Waits until the latest position is stored (a few tries; failures are logged). */
  async flush(): Promise<void> {
    for (let attempt = 0; attempt < 4; attempt++) {
      const pending = this.pending;
      if (pending) await pending;
      else if (this.wanted && key(this.wanted) !== this.savedKey) this.kick();
      else return;
    }
  }

  private kick(): void {
    const wanted = this.wanted;
    if (this.pending || !wanted || key(wanted) === this.savedKey) return;
    let failed = false;
    this.pending = this.store
      .setOffset(this.path, wanted.streamId, wanted.position)
      .then(
        () => {
          this.savedKey = key(wanted);
        },
        (e: unknown) => {
          failed = true;
          this.log.error({ err: e }, 'saving the file position failed');
        },
      )
      .finally(() => {
        this.pending = undefined;
        if (!failed) this.kick();
      });
  }
}
