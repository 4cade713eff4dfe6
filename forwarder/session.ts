import { once } from 'node:events';
import { isIP } from 'node:net';
import { connect, type TLSSocket } from 'node:tls';
import { clientTlsOptions, type TlsMaterial } from '../pki/tls-options.js';
import {
  CorralProtocolError,
  encodeCorralControlFrame,
  isCorralControl,
  MAX_CONTROL_FRAME_BYTES,
  parseCorralControl,
  type CorralControl,
} from '../protocol/syslog-corral.js';
import { FrameParser } from '../protocol/syslog-frame.js';
import { ForwarderError, ForwarderErrorCode } from './errors.js';

export interface SessionOptions {
  readonly tls: TlsMaterial;
  readonly host: string;
  readonly port: number;
  readonly connectTimeoutMs: number;
  /** Called for each `at` or `ack` the listener sends. */
  readonly onControl: (msg: CorralControl) => void;
}

/** The connection to the listener ended (CORRAL_ERR_SESSION_CLOSED); the message says how. */
export class SessionClosedError extends ForwarderError {
  override readonly name: string = 'SessionClosedError';

  constructor(message: string, options?: { cause?: unknown }) {
    super(ForwarderErrorCode.SESSION_CLOSED, message, options);
  }
}

/**
 * One TLS connection to the listener (or any RFC 5425 receiver): presents the worker's
 * certificate, accepts only a `controller` certificate of our CA for the address dialled,
 * writes frames with backpressure and reads the listener's control frames.
 */
export class Session {
  /** Settles (never rejects) with why the connection ended. */
  readonly closed: Promise<Error>;
  private readonly socket: TLSSocket;
  private closeError: Error | undefined;

  private constructor(socket: TLSSocket, onControl: (msg: CorralControl) => void) {
    this.socket = socket;
    const parser = new FrameParser(MAX_CONTROL_FRAME_BYTES);
    this.closed = new Promise<Error>((resolve) => {
      socket.once('close', () =>
        resolve(this.closeError ?? new SessionClosedError('connection closed by peer')),
      );
    });
    socket.on('error', (e: Error) => {
      this.closeError ??= e;
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        parser.push(chunk, (buf, start, end) => {
          if (!isCorralControl(buf, start, end))
            throw new CorralProtocolError('listener sent a non-control frame');
          onControl(parseCorralControl(buf, start, end));
        });
      } catch (e: unknown) {
        this.destroy(e instanceof Error ? e : new SessionClosedError(String(e), { cause: e }));
      }
    });
  }

  static async open(options: SessionOptions, signal: AbortSignal): Promise<Session> {
    const socket = connect({
      ...clientTlsOptions(options.tls, { roles: ['controller'] }),
      host: options.host,
      port: options.port,
      servername: isIP(options.host) === 0 ? options.host : undefined,
    });
    socket.setTimeout(options.connectTimeoutMs, () =>
      socket.destroy(new SessionClosedError('connect timed out')),
    );
    try {
      await once(socket, 'secureConnect', { signal });
    } catch (e: unknown) {
      socket.destroy();
      throw e;
    }
    socket.setTimeout(0);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    return new Session(socket, options.onControl);
  }

  get isOpen(): boolean {
    return !this.socket.destroyed;
  }

  send(msg: CorralControl): void {
    this.socket.write(encodeCorralControlFrame(msg));
  }

  /**
   * Writes segments in order; `onFlushed` runs once the last one is handed to the kernel.
   * Resolves when the socket can take more, rejects if the connection ends first.
   */
  async write(segments: readonly Buffer[], onFlushed?: () => void): Promise<void> {
    if (this.socket.destroyed) throw this.closeError ?? new SessionClosedError('connection is closed');
    let ok = true;
    this.socket.cork();
    segments.forEach((segment, i) => {
      const last = i === segments.length - 1;
      ok = this.socket.write(
        segment,
        last && onFlushed ? (e?: Error | null) => !e && onFlushed() : undefined,
      );
    });
    this.socket.uncork();
    if (ok) return;
    const drained = once(this.socket, 'drain').then(
      () => 'drain' as const,
      () => 'error' as const /* the socket failed: `closed` carries why */,
    );
    const result = await Promise.race([drained, this.closed]);
    if (result === 'error') throw await this.closed;
    if (result !== 'drain') throw result;
  }

  destroy(error?: Error): void {
    this.closeError ??= error;
    this.socket.destroy();
  }
}
