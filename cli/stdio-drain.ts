/**
 * Getting the CLI's output out before the process ends. Writes to a pipe or a socket are
 * asynchronous in Node: whatever the reader has not taken yet waits in the stream, and a
 * `process.exit()` at that moment drops it (a pipe holds 64 KiB, so `corral … | jq` used to
 * stop at exactly 65,536 bytes with exit 0).
 */

type Stream = NodeJS.WriteStream;

export interface StdioWatch {
  /** A write error other than the reader going away, if one happened: the output is incomplete. */
  failure(): Error | undefined;
}

const isBrokenPipe = (e: unknown): boolean =>
  typeof e === 'object' && e !== null && (e as { code?: unknown }).code === 'EPIPE';

/**
 * Takes over write errors of stdout and stderr for the life of the process. A reader that
 * went away (EPIPE: `corral … | head`) wants no more output, which is not a failure of the
 * command; any other write error is kept, so the exit status can say the output is incomplete.
 */
export function watchStdio(streams: readonly Stream[] = [process.stdout, process.stderr]): StdioWatch {
  let failed: Error | undefined;
  for (const stream of streams) {
    stream.on('error', (e: Error) => {
      if (!isBrokenPipe(e)) failed ??= e;
    });
  }
  return { failure: () => failed };
}

/**
 * Resolves once everything written to `stream` so far has been handed to the OS (then it
 * survives the process), or once the stream can take nothing more (destroyed, broken pipe).
 * Write callbacks run in order, so the callback of an empty write comes after all earlier ones.
 */
export function drained(stream: Stream): Promise<void> {
  if (stream.destroyed || stream.writableEnded) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      stream.off('close', done);
      stream.off('error', done);
      resolve();
    };
    stream.once('close', done);
    stream.once('error', done);
    stream.write('', done);
  });
}
