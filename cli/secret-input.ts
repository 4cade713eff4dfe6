import { open } from 'node:fs/promises';
import { CliExit, EXIT_USAGE } from './exit.js';
import type { Output } from './output.js';

/** Longest secret read from a file or stdin, in bytes (a join token is about 60). */
export const MAX_SECRET_BYTES = 4096;

/** The first line, without its line ending and surrounding blanks; empty and oversized are refused. */
function firstLine(flag: string, where: string, text: string): string {
  const end = text.indexOf('\n');
  const line = end === -1 ? text : text.slice(0, end);
  if (Buffer.byteLength(line) > MAX_SECRET_BYTES) {
    throw new CliExit(EXIT_USAGE, `${flag}: ${where} holds more than ${MAX_SECRET_BYTES} bytes on one line`);
  }
  const token = line.trim();
  if (token === '') throw new CliExit(EXIT_USAGE, `${flag}: ${where} holds no token`);
  return token;
}

async function fromStdin(flag: string, io: Output): Promise<string> {
  const stdin = process.stdin;
  if (stdin.isTTY) io.err('join token: ');
  stdin.setEncoding('utf8');
  let text = '';
  for await (const chunk of stdin as AsyncIterable<string>) {
    text += chunk;
    // Leaving the loop destroys stdin: nothing after the first line is read.
    if (text.includes('\n') || Buffer.byteLength(text) > MAX_SECRET_BYTES) break;
  }
  return firstLine(flag, 'stdin', text);
}

async function fromFile(flag: string, path: string, io: Output): Promise<string> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (e: unknown) {
    throw new CliExit(
      EXIT_USAGE,
      `${flag}: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
    );
  }
  try {
    const st = await handle.stat();
    if (st.isDirectory()) throw new CliExit(EXIT_USAGE, `${flag}: ${path} is a directory`);
    if (st.isFile() && (st.mode & 0o077) !== 0) {
      io.err(`corral: warning: ${path} can be read by other users; keep a token file 0600\n`);
    }
    // Read in pieces up to the limit: a FIFO or /dev/fd/N (`<(…)`) has no size to go by.
    const buf = Buffer.alloc(MAX_SECRET_BYTES + 1);
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await handle.read(buf, got, buf.length - got, null);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return firstLine(flag, path, buf.subarray(0, got).toString('utf8'));
  } finally {
    await handle.close();
  }
}

/**
 * A secret given as `--x-file PATH` (`-` for stdin) rather than on the command line, where
 * every user of the machine can read it in `ps` and `/proc/PID/cmdline`. Takes the first line;
 * exits 2 (usage) when it is missing, empty or too long.
 */
export function readSecret(flag: string, path: string, io: Output): Promise<string> {
  return path === '-' ? fromStdin(flag, io) : fromFile(flag, path, io);
}
