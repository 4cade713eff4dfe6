import { CliExit, EXIT_USAGE } from './exit.js';
import type { Output } from './output.js';
import { MAX_SECRET_BYTES, readSecret } from './secret-input.js';

/** Exit code of a command the user interrupted at a prompt (128 + SIGINT). */
const EXIT_INTERRUPTED = 130;

/** Reads one line from the terminal without echoing it. */
function promptHidden(label: string, io: Output): Promise<string> {
  const stdin = process.stdin;
  io.err(label);
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  stdin.resume();
  return new Promise((resolve, reject) => {
    let text = '';
    const finish = (): void => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      io.err('\n');
    };
    const onData = (s: string): void => {
      for (const ch of s) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') {
          finish();
          resolve(text);
          return;
        }
        if (ch === '\u0003') {
          finish();
          reject(new CliExit(EXIT_INTERRUPTED, 'interrupted'));
          return;
        }
        if (ch === '\u007f' || ch === '\b') text = text.slice(0, -1);
        else text += ch;
        if (Buffer.byteLength(text) > MAX_SECRET_BYTES) {
          finish();
          reject(new CliExit(EXIT_USAGE, `a passphrase is at most ${MAX_SECRET_BYTES} bytes`));
          return;
        }
      }
    };
    stdin.on('data', onData);
  });
}

/**
 * A backup passphrase: the first line of `--passphrase-file` (`-` for stdin) when given, else
 * asked for on the terminal without echo (twice with `confirm`). Never taken from the command
 * line, where `ps` shows it. Exits 2 (usage) without a file and without a terminal.
 */
export async function readPassphrase(
  file: string | undefined,
  io: Output,
  o: { readonly confirm: boolean },
): Promise<string> {
  if (file !== undefined) return readSecret('--passphrase-file', file, io);
  if (!process.stdin.isTTY) {
    throw new CliExit(EXIT_USAGE, 'no terminal to ask for the passphrase on: give --passphrase-file FILE');
  }
  const first = await promptHidden('backup passphrase: ', io);
  if (first === '') throw new CliExit(EXIT_USAGE, 'the passphrase is empty');
  if (o.confirm && (await promptHidden('again: ', io)) !== first) {
    throw new CliExit(EXIT_USAGE, 'the passphrases do not match');
  }
  return first;
}
