/**
 * Operators over a real controller: the scope table covers exactly the routes the admin app
 * registered, every route refuses a token without its scope (driven from that table), a
 * revoked, rotated-out or expired token gets the same 401 as an unknown one, revocation closes
 * a live event stream, audit entries carry the operator's name, and the CLI makes and lists
 * operators. Plus the 0012 migration: the admin tokens there were become admin operators.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../controller/db/open-database.js';
import { MIGRATIONS } from '../controller/db/migrations.js';
import { ADMIN_ROUTE_SCOPES, PUBLIC } from '../controller/http/route-scopes.js';
import type { AuditEntry } from '../protocol/admin-audit.js';
import { SCOPES, type OperatorCreateResponse, type OperatorView, type Scope } from '../protocol/operators.js';
import { corral, startController, type TestController } from './controller-fixture.js';

let t: TestController;
let skewMs = 0;
type ErrorBody = { error: { code: string; message: string } };

beforeAll(async () => {
  t = await startController({ clock: { now: () => Date.now() + skewMs } });
}, 60_000);
afterAll(async () => {
  await t?.close();
});

async function createOperator(name: string, scopes: readonly Scope[], extra: Record<string, unknown> = {}) {
  const res = await t.admin<OperatorCreateResponse>('POST', '/v1/operators', { name, scopes, ...extra });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

/** A path for a route URL, its parameters filled with names that match nothing. */
const pathOf = (url: string): string =>
  url.replace(/:name\b/g, 'nobody').replace(/:id\b/g, 'tok-0000000000000000');

describe('the route scope table', () => {
  it('lists every route the admin app registered, and nothing else', () => {
    const registered = new Set(t.controller.adminRoutes.filter((r) => !r.startsWith('HEAD ')));
    expect([...registered].sort()).toEqual(Object.keys(ADMIN_ROUTE_SCOPES).sort());
  });

  it('every route refuses a token without its scope (403 naming it), and takes one with it', async () => {
    const NON_ADMIN = SCOPES.filter((s) => s !== 'admin');
    const lacking = new Map<Scope, string>();
    const holding = new Map<Scope, string>();
    for (const scope of SCOPES) {
      const others = NON_ADMIN.filter((s) => s !== scope);
      lacking.set(scope, (await createOperator(`no-${scope}`, others)).token ?? '');
      holding.set(scope, (await createOperator(`only-${scope}`, [scope])).token ?? '');
    }
    let checked = 0;
    for (const [route, access] of Object.entries(ADMIN_ROUTE_SCOPES)) {
      const [method = '', url = ''] = route.split(' ');
      const path = pathOf(url);
      if (access === PUBLIC) {
        // Answered without any credential (the dashboard's page says it is not built here).
        expect([401, 403], route).not.toContain((await t.admin(method, path, undefined, null)).status);
        continue;
      }
      const refused = await t.admin<ErrorBody>(method, path, undefined, lacking.get(access));
      expect(refused.status, route).toBe(403);
      expect(refused.body.error.code, route).toBe('CORRAL_ERR_SCOPE');
      expect(refused.body.error.message, route).toContain(`the ${access} scope`);
      const taken = await t.admin<ErrorBody>(method, path, undefined, holding.get(access));
      expect([401, 403], `${route}: ${JSON.stringify(taken.body)}`).not.toContain(taken.status);
      checked += 1;
    }
    expect(checked).toBe(Object.values(ADMIN_ROUTE_SCOPES).filter((a) => a !== PUBLIC).length);
  }, 60_000);
});

describe('operator tokens', () => {
  it('a revoked, rotated-out or expired token gets the same 401 as an unknown one', async () => {
    const unknown = await t.admin<ErrorBody>('GET', '/v1/hosts', undefined, 'corral_op_nonsense');
    expect(unknown.status).toBe(401);

    const gone = await createOperator('gone', ['read']);
    expect((await t.admin('GET', '/v1/hosts', undefined, gone.token)).status).toBe(200);
    expect((await t.admin('POST', '/v1/operators/gone/revoke')).status).toBe(200);
    const revoked = await t.admin<ErrorBody>('GET', '/v1/hosts', undefined, gone.token);
    expect(revoked).toEqual(unknown);

    const turning = await createOperator('turning', ['read']);
    const rotated = await t.admin<OperatorCreateResponse>('POST', '/v1/operators/turning/rotate');
    expect(rotated.status).toBe(200);
    expect(rotated.body.operator.scopes).toEqual(['read']);
    expect(await t.admin<ErrorBody>('GET', '/v1/hosts', undefined, turning.token)).toEqual(unknown);
    expect((await t.admin('GET', '/v1/hosts', undefined, rotated.body.token)).status).toBe(200);

    const brief = await createOperator('brief', ['read'], { expiresInSeconds: 60 });
    expect((await t.admin('GET', '/v1/hosts', undefined, brief.token)).status).toBe(200);
    skewMs = 61_000;
    try {
      expect(await t.admin<ErrorBody>('GET', '/v1/hosts', undefined, brief.token)).toEqual(unknown);
    } finally {
      skewMs = 0;
    }
    // A name is free again once its holder is revoked; never while it is active.
    expect(
      (await t.admin<ErrorBody>('POST', '/v1/operators', { name: 'turning', scopes: ['read'] })).status,
    ).toBe(409);
    expect((await t.admin('POST', '/v1/operators', { name: 'gone', scopes: ['read'] })).status).toBe(200);
  });

  it('revoking an operator closes its live event stream', async () => {
    const watcher = await createOperator('watcher', ['read']);
    const url = new URL(`${t.endpoints.admin}/v1/events?follow=true`);
    const req = httpRequest(url, {
      headers: { authorization: `Bearer ${watcher.token}`, accept: 'text/event-stream' },
    });
    req.end();
    const [res] = (await once(req, 'response')) as [IncomingMessage];
    expect(res.statusCode).toBe(200);
    res.resume();
    let cut: unknown;
    // The expected failure: the controller destroys the connection mid-stream ("aborted").
    res.on('error', (e: unknown) => (cut = e));
    const ended = new Promise((resolve) => res.once('close', resolve));
    expect((await t.admin('POST', '/v1/operators/watcher/revoke')).status).toBe(200);
    // The stream would otherwise stay open until the controller stops: the test times out.
    await ended;
    expect(res.complete).toBe(false);
    expect(String(cut)).toContain('aborted');
  });

  it('audit entries name the operator that acted', async () => {
    const alice = await createOperator('alice', ['enroll']);
    const made = await t.admin('POST', '/v1/tokens', { name: 'web-1', ttlSeconds: 600 }, alice.token);
    expect(made.status).toBe(200);
    const audit = await t.admin<{ entries: AuditEntry[] }>('GET', '/v1/audit?limit=1000');
    const byAction = (action: string, target: string) =>
      audit.body.entries.filter((e) => e.action === action && e.target === target).map((e) => e.actor);
    expect(byAction('token-create', 'web-1')).toEqual(['alice']);
    expect(byAction('operator-create', 'alice')).toEqual(['admin']);
    expect(audit.body.entries.every((e) => e.actor !== 'unknown')).toBe(true);
  });

  it('the CLI creates an operator (token shown once) and lists the init token as the admin operator', async () => {
    const target = ['--state-dir', t.dir, '--url', t.endpoints.admin];
    const made = await corral([
      'controller',
      'operators',
      'create',
      'ci',
      '--scope',
      'read,deploy',
      '--expires',
      '90d',
      '--json',
      ...target,
    ]);
    expect(made.stderr).toBe('');
    expect(made.code).toBe(0);
    const view = JSON.parse(made.stdout) as { token: string; scopes: string[]; expiresAt: string };
    expect(view.scopes).toEqual(['read', 'deploy']);
    expect(Date.parse(view.expiresAt) - Date.now()).toBeGreaterThan(89 * 86_400_000);
    expect((await t.admin('GET', '/v1/services', undefined, view.token)).status).toBe(200);

    const bad = await corral(['controller', 'operators', 'create', 'x', '--scope', 'root', ...target]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('unknown root');

    const list = await corral(['controller', 'operators', 'list', '--json', ...target]);
    expect(list.code).toBe(0);
    const operators = JSON.parse(list.stdout) as OperatorView[];
    expect(operators.find((o) => o.name === 'admin')).toMatchObject({
      kind: 'token',
      scopes: ['admin'],
      state: 'active',
      createdBy: 'init',
    });
    expect(operators.find((o) => o.name === 'ci')).toMatchObject({ createdBy: 'admin', state: 'active' });
    expect(list.stdout).not.toContain(view.token);

    const table = await corral(['controller', 'operators', 'list', ...target]);
    expect(table.stdout).toMatch(/^NAME\s+KIND\s+SCOPES\s+STATE/m);
    const revoked = await corral(['controller', 'operators', 'revoke', 'ci', ...target]);
    expect(revoked.code).toBe(0);
    expect((await t.admin('GET', '/v1/services', undefined, view.token)).status).toBe(401);
  }, 60_000);
});

describe('the 0012-operators migration', () => {
  it('turns the admin tokens there were into admin operators, revoked ones staying revoked', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'corral-mig-ops-'));
    try {
      const file = join(dir, 'corral.db');
      const old = await openDatabase(file, { migrations: MIGRATIONS.filter(([name]) => name < '0012') });
      const rows = [
        {
          id: 'adm-1',
          name: 'admin',
          hash: 'a'.repeat(64),
          created_at: '2026-01-01T00:00:00.000Z',
          revoked_at: '2026-01-02T00:00:00.000Z',
        },
        {
          id: 'adm-2',
          name: 'admin',
          hash: 'b'.repeat(64),
          created_at: '2026-01-02T00:00:00.000Z',
          revoked_at: null,
        },
      ];
      await (old as unknown as import('kysely').Kysely<{ admin_tokens: (typeof rows)[number] }>)
        .insertInto('admin_tokens')
        .values(rows)
        .execute();
      await old.destroy();
      const db = await openDatabase(file);
      try {
        const ops = await db.selectFrom('operators').selectAll().orderBy('id').execute();
        expect(ops.map((o) => [o.id, o.name, o.kind, o.hash, o.scopes, o.revoked_at])).toEqual([
          ['adm-1', 'admin', 'token', 'a'.repeat(64), '["admin"]', '2026-01-02T00:00:00.000Z'],
          ['adm-2', 'admin', 'token', 'b'.repeat(64), '["admin"]', null],
        ]);
      } finally {
        await db.destroy();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
