/**
 * The admin API asks for its credentials on every request: an admin token replaced while the
 * controller runs (the operator lost `admin-token` and ran `corral controller init
 * --reinitialize`, as `serve --reinitialize` also does) is honoured at once, and the token it
 * replaced is refused, without a restart.
 */
import { readFile, rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEntry } from '../protocol/admin-audit.js';
import { corral, databaseArgs, startController, type TestController } from './controller-fixture.js';

let t: TestController;

beforeAll(async () => {
  t = await startController();
}, 60_000);

afterAll(async () => {
  await t?.close();
});

describe('admin token replaced on disk', () => {
  it('is honoured without a restart, and the old one is refused', async () => {
    const old = t.adminToken;
    expect((await t.admin('GET', '/v1/hosts', undefined, old)).status).toBe(200);

    // The operator lost the token file and has init make a new one, beside the running controller.
    await rm(t.identity.paths.adminToken);
    const reinit = await corral([
      'controller',
      'init',
      '--reinitialize',
      '--state-dir',
      t.dir,
      ...databaseArgs(t),
    ]);
    expect(reinit.stderr).toContain('admin-token');
    expect(reinit.code).toBe(0);
    const replaced = (await readFile(t.identity.paths.adminToken, 'utf8')).trim();
    expect(replaced).not.toBe(old);

    const refused = await t.admin<{ error: { code: string } }>('GET', '/v1/hosts', undefined, old);
    expect(refused.status).toBe(401);
    expect(refused.body.error.code).toBe('CORRAL_ERR_UNAUTHENTICATED');
    expect((await t.admin('GET', '/v1/hosts', undefined, replaced)).status).toBe(200);
    const audit = await t.admin<{ entries: AuditEntry[] }>('GET', '/v1/audit', undefined, replaced);
    expect(audit.body.entries.some((e) => e.action === 'reinitialize')).toBe(true);
    // The CLI finds the new token where the operator left it.
    const hosts = await corral([
      'controller',
      'hosts',
      '--json',
      '--state-dir',
      t.dir,
      '--url',
      t.endpoints.admin,
    ]);
    expect(hosts.stderr).toBe('');
    expect(hosts.code).toBe(0);
  }, 60_000);
});
