import type { Logger } from 'pino';
import { openHostWriter, type HostWriter } from './host-writer.js';

export interface WriterPool {
  /** The host's writer, opened on first use; pair every successful call with `release`. */
  acquire(hostId: string): Promise<HostWriter>;
  /** Drops one reference; the last one closes the writer (its file descriptors) after its commits. */
  release(writer: HostWriter): void;
  closeAll(): Promise<void>;
}

interface Entry {
  readonly hostId: string;
  readonly ready: Promise<HostWriter>;
  writer?: HostWriter;
  refs: number;
  closing?: Promise<void>;
}

/**
 * One writer per host with live connections, so a fleet does not hold descriptors for every
 * host ever seen. A writer that failed is closed before its host's file is opened again (the
 * reopen truncates back to the last commit), and never shared with a new connection.
 */
export function createWriterPool(options: { logDir: string; log: Logger; clock: () => number }): WriterPool {
  const current = new Map<string, Entry>();
  const all = new Set<Entry>();

  function retire(entry: Entry): Promise<void> {
    entry.closing ??= entry.ready
      .then((writer) => writer.close())
      .catch((e: unknown) => {
        options.log.error({ err: e, hostId: entry.hostId }, 'syslog ingest file close failed');
      })
      .finally(() => {
        if (current.get(entry.hostId) === entry) current.delete(entry.hostId);
        all.delete(entry);
      });
    return entry.closing;
  }

  async function acquire(hostId: string): Promise<HostWriter> {
    for (;;) {
      const entry = current.get(hostId);
      if (entry && (entry.closing || entry.writer?.failed)) {
        await retire(entry);
        continue;
      }
      if (entry) {
        entry.refs++;
        try {
          return await entry.ready;
        } catch (e: unknown) {
          entry.refs--;
          throw e;
        }
      }
      const fresh: Entry = { hostId, ready: openHostWriter({ ...options, hostId }), refs: 1 };
      current.set(hostId, fresh);
      all.add(fresh);
      try {
        fresh.writer = await fresh.ready;
        return fresh.writer;
      } catch (e: unknown) {
        if (current.get(hostId) === fresh) current.delete(hostId);
        all.delete(fresh);
        throw e;
      }
    }
  }

  function release(writer: HostWriter): void {
    const entry = [...all].find((e) => e.writer === writer);
    if (!entry) return;
    entry.refs--;
    if (entry.refs <= 0 || writer.failed) void retire(entry);
  }

  return {
    acquire,
    release,
    async closeAll() {
      await Promise.all([...all].map((entry) => retire(entry)));
    },
  };
}
