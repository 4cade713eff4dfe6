import { describe, expect, it } from 'vitest';
import { errorLines } from './main.js';

describe('errorLines', () => {
  it('keeps a one-line message on one line', () => {
    expect(errorLines('no such host web-9 (CORRAL_ERR_NOT_FOUND)')).toBe(
      'corral: no such host web-9 (CORRAL_ERR_NOT_FOUND)\n',
    );
  });

  it('shows each line of a message on its own line, indented after the first', () => {
    expect(errorLines('state is damaged:\n  /d/corral.db is empty\nRestore it')).toBe(
      'corral: state is damaged:\n    /d/corral.db is empty\n  Restore it\n',
    );
  });

  it('escapes controls inside every line, so no line can start a fake one', () => {
    const out = errorLines('refused: \x1b[2K\rcorral: ok\nHOST  STATUS\x07');
    expect(out).toBe('corral: refused: \\x1b[2K\\rcorral: ok\n  HOST  STATUS\\x07\n');
    for (const line of out.split('\n').slice(1, -1)) expect(line.startsWith('  ')).toBe(true);
  });
});
