import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { JoinError, JoinErrorCode } from '../agent/link/join.js';
import { ControllerError, ControllerErrorCode } from '../controller/errors.js';
import { ForwarderError, ForwarderErrorCode } from '../forwarder/errors.js';
import { PkiErrorCode } from '../pki/index.js';
import { CorralError, ERROR_STATUS, ErrorCode, RemoteError, remoteErrorOf } from '../protocol/errors.js';
import { CorralProtocolError } from '../protocol/syslog-corral.js';
import { FrameError } from '../protocol/syslog-frame.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const PRODUCT = ['protocol', 'pki', 'kit', 'controller', 'agent', 'updater', 'forwarder', 'cli'];

async function productFiles(): Promise<string[]> {
  const files: string[] = [];
  for (const folder of PRODUCT) {
    const entries = await readdir(join(ROOT, folder), { withFileTypes: true, recursive: true }).catch(
      (e: unknown) => {
        // kit/ exists only once that branch is merged.
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
        throw e;
      },
    );
    for (const e of entries) {
      if (e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.test.ts'))
        files.push(join(e.parentPath, e.name));
    }
  }
  return files;
}

describe('one error family, each code registered once', () => {
  it('spells every CORRAL_ERR_* code in exactly one place of product code', async () => {
    const seen = new Map<string, string[]>();
    for (const file of await productFiles()) {
      const text = await readFile(file, 'utf8');
      for (const m of text.matchAll(/'(CORRAL_ERR_[A-Z0-9_]+)'/g)) {
        const code = m[1] ?? '';
        seen.set(code, [...(seen.get(code) ?? []), relative(ROOT, file)]);
      }
    }
    const twice = [...seen].filter(([, where]) => where.length > 1);
    expect(twice).toEqual([]);
    expect(seen.get('CORRAL_ERR_PIN_MISMATCH')).toEqual(['pki/errors.ts']);
    expect(seen.get('CORRAL_ERR_CLOSED')).toEqual(['protocol/errors.ts']);
  });

  it('has no error class outside the family but pki (which imports nothing of ours) and the CLI exit', async () => {
    const outside: string[] = [];
    for (const file of await productFiles()) {
      const text = await readFile(file, 'utf8');
      for (const m of text.matchAll(/class (\w+)(?:<[^>]*>)? extends Error\b/g))
        outside.push(`${relative(ROOT, file)}: ${m[1]}`);
    }
    expect(outside.sort()).toEqual([
      'cli/exit.ts: CliExit',
      'pki/errors.ts: PkiError',
      'protocol/errors.ts: CorralError',
    ]);
  });

  it('gives every wire code a status, and none of them is also a pki code', () => {
    for (const code of Object.values(ErrorCode)) expect(ERROR_STATUS[code]).toBeGreaterThanOrEqual(400);
    const pki = new Set<string>(Object.values(PkiErrorCode));
    expect(Object.values(ErrorCode).filter((c) => pki.has(c))).toEqual([]);
  });

  it("makes each package's errors CorralErrors that are not for clients", () => {
    const family = [
      new ControllerError(ControllerErrorCode.ROW_DAMAGED, 'x'),
      new ForwarderError(ForwarderErrorCode.POSITIONS_DAMAGED, 'x'),
      new JoinError(JoinErrorCode.BAD_PIN, 'x'),
      new FrameError(ErrorCode.SYSLOG_FRAME, 'x'),
      new CorralProtocolError('x'),
    ];
    for (const e of family) {
      expect(e).toBeInstanceOf(CorralError);
      expect(e.code).toMatch(/^CORRAL_ERR_/);
      expect(e.statusCode).toBeUndefined();
    }
    expect(new CorralError(ErrorCode.CLOSED, 'x').statusCode).toBe(503);
  });

  it('reads an error answer into a RemoteError with the code as sent and the status', () => {
    const sent = remoteErrorOf(
      409,
      JSON.stringify({ error: { code: 'CORRAL_ERR_FROM_THE_FUTURE', message: 'no' } }),
      '/v1/x',
    );
    expect(sent).toBeInstanceOf(RemoteError);
    expect(sent).toMatchObject({ code: 'CORRAL_ERR_FROM_THE_FUTURE', status: 409, message: '/v1/x: no' });
    expect(remoteErrorOf(502, 'Bad Gateway', '/v1/x')).toMatchObject({
      code: ErrorCode.UNAVAILABLE,
      status: 502,
    });
  });
});
