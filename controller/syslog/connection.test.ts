import { EventEmitter } from 'node:events';
import type { TLSSocket } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { encodeCorralControlFrame } from '../../protocol/syslog-corral.js';
import { encodeFrame } from '../../protocol/syslog-frame.js';
import { SyslogConnection, type ConnectionEvents } from './connection.js';
import type { HostWriter, IngestItem } from './host-writer.js';
import { SYSLOG_MIN_PENDING_SHARE_BYTES, pendingShare } from './listener.js';
import { CloseReason } from './reasons.js';

const STREAM = '0123456789abcdef0123456789abcdef';

/** The parts of a TLS socket a connection uses, counting pauses and resumes. */
class FakeSocket extends EventEmitter {
  pauses = 0;
  resumes = 0;
  destroyed = false;
  readonly remoteAddress = '127.0.0.1';
  readonly written: Buffer[] = [];
  setTimeout(): this {
    return this;
  }
  pause(): this {
    this.pauses++;
    return this;
  }
  resume(): this {
    this.resumes++;
    return this;
  }
  destroy(): this {
    this.destroyed = true;
    return this;
  }
  write(buf: Buffer): boolean {
    this.written.push(buf);
    return true;
  }
}

/** A writer that keeps the items; the test settles them as commits would. */
function fakeWriter(items: IngestItem[]): HostWriter {
  return {
    hostId: 'host-1',
    failed: false,
    appliedPosition: () => 0,
    committedPosition: () => 0,
    findByKey: () => undefined,
    append: (item) => items.push(item),
    release: () => undefined,
  };
}

const events: ConnectionEvents = {
  claimStream: () => undefined,
  releaseStream: () => undefined,
  ingested: () => undefined,
  gap: () => undefined,
  lost: () => undefined,
  closed: () => undefined,
};

describe('syslog connection: pending bytes against its share', () => {
  it('stops reading above its share, reads again at half of it, and asks the share anew each time', async () => {
    const socket = new FakeSocket();
    const items: IngestItem[] = [];
    let limit = 600_000;
    const conn = new SyslogConnection({
      socket: socket as unknown as TLSSocket,
      host: { hostId: 'host-1', hostName: 'host-1' },
      writer: fakeWriter(items),
      maxFrameBytes: 1024 * 1024,
      idleTimeoutMs: 60_000,
      pendingLimit: () => limit,
      events,
    });
    conn.start();
    const resumedAtStart = socket.resumes;
    let position = 0;
    /** One batch of one line of 300,000 bytes (LF included). */
    const batch = (): void => {
      const line = Buffer.alloc(299_999, 0x61);
      const frames = [
        encodeCorralControlFrame({
          kind: 'batch',
          slot: 0,
          start: position,
          end: position + 300_000,
          count: 1,
        }),
        encodeFrame(line),
      ];
      position += 300_000;
      socket.emit('data', Buffer.concat(frames));
    };
    socket.emit('data', encodeCorralControlFrame({ kind: 'open', slot: 0, streamId: STREAM }));
    expect(items).toHaveLength(1);
    (items[0] as IngestItem).settle(undefined);
    batch();
    batch();
    expect(socket.pauses).toBe(0); // 600,000 bytes queued: at its share, not above
    batch();
    expect(socket.pauses).toBe(1);
    (items[1] as IngestItem).settle(undefined);
    expect(socket.resumes).toBe(resumedAtStart); // 600,000 left: above half of the share
    (items[2] as IngestItem).settle(undefined);
    expect(socket.resumes).toBe(resumedAtStart + 1);
    // More connections now: a smaller share, and the next batch stops reading at once.
    limit = 100_000;
    batch();
    expect(socket.pauses).toBe(2);
    (items[3] as IngestItem).settle(undefined);
    expect(socket.resumes).toBe(resumedAtStart + 1); // 300,000 queued: still above 50,000
    (items[4] as IngestItem).settle(undefined);
    expect(socket.resumes).toBe(resumedAtStart + 2);
    expect(socket.destroyed).toBe(false);
    conn.close(CloseReason.PEER_CLOSED);
  });

  it('shares the budget evenly, within the floor and the per-connection cap', () => {
    const mib = 1024 * 1024;
    expect(pendingShare(1, 128 * mib, 8 * mib)).toBe(8 * mib);
    expect(pendingShare(0, 128 * mib, 8 * mib)).toBe(8 * mib);
    expect(pendingShare(200, 128 * mib, 8 * mib)).toBe(Math.floor((128 * mib) / 200));
    expect(pendingShare(4096, 128 * mib, 8 * mib)).toBe(SYSLOG_MIN_PENDING_SHARE_BYTES);
    expect(pendingShare(4096, 128 * mib, 64 * 1024)).toBe(64 * 1024);
  });
});
