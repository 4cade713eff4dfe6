import { LABEL_KEY_RE, Labels } from '../protocol/common.js';
import { isCorralError } from '../protocol/errors.js';
import { parseWith } from '../protocol/validate.js';
import { CliExit, EXIT_USAGE } from './exit.js';

const MAX_LABEL_KEY_CHARS = 63;
const MAX_LABEL_VALUE_CHARS = 253;

/** Collects a repeatable flag's values (commander's `collect`). */
export const collectFlag = (value: string, previous: string[] = []): string[] => [...previous, value];

/**
 * `--label key=value` flags as labels, checked here against the same rules as the protocol's
 * Labels schema (key: 1-63 of a-z 0-9 . _ / -, starting and ending with a letter or digit;
 * value: at most 253 characters; at most 64 labels), so a bad one is a usage error (exit 2)
 * before anything is sent. The same key twice with different values is refused too.
 */
export function parseLabelFlags(pairs: readonly string[], flag = '--label'): Labels {
  const labels: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CliExit(EXIT_USAGE, `${flag} must be key=value, got ${JSON.stringify(pair)}`);
    const key = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    if (key.length > MAX_LABEL_KEY_CHARS || !LABEL_KEY_RE.test(key))
      throw new CliExit(
        EXIT_USAGE,
        `${flag} ${JSON.stringify(key)}: a label key is 1-${MAX_LABEL_KEY_CHARS} characters of a-z, 0-9, '.', '_', '/' and '-', starting and ending with a letter or digit`,
      );
    if (value.length > MAX_LABEL_VALUE_CHARS)
      throw new CliExit(
        EXIT_USAGE,
        `${flag} ${key}: a label value is at most ${MAX_LABEL_VALUE_CHARS} characters`,
      );
    if (labels[key] !== undefined && labels[key] !== value)
      throw new CliExit(EXIT_USAGE, `${flag} ${key} is given twice with different values`);
    labels[key] = value;
  }
  try {
    return parseWith(Labels, labels, flag);
  } catch (e: unknown) {
    if (isCorralError(e)) throw new CliExit(EXIT_USAGE, e.message);
    throw e;
  }
}
