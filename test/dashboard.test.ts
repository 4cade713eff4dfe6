import { existsSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalFleet, type LocalFleet } from '../cli/up/local-fleet.js';
import { CLI, deploy, fleetCli, poll, ROOT, tempDir } from './fleet-fixture.js';

/**
 * The web dashboard in a real headless Chromium (Debian's, driven by playwright-core; nothing
 * downloaded) against a real controller and agents, every one a `corral` process: login,
 * the fleet page kept live, worker text shown as text, the session cookie's limits (CSRF,
 * scopes, logout). Screenshots of each page at 1280 and 390 px go to test-artifacts/dashboard/.
 */
const CHROMIUM = '/usr/bin/chromium';
const SHOTS = join(ROOT, 'test-artifacts', 'dashboard');
const HEARTBEAT_INTERVAL_MS = 1_000;
/** As the machine's notes say Chromium must run here: no sandbox as root, no background network. */
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const hasChromium = existsSync(CHROMIUM);

let dir: string;
let fleet: LocalFleet;
let browser: Browser;
let adminToken: string;
let readToken: string;

async function operatorToken(name: string, scopes: string): Promise<string> {
  const r = await fleetCli(fleet, ['controller', 'operators', 'create', name, '--scope', scopes, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { token: string }).token;
}

async function logIn(context: BrowserContext, token: string): Promise<Page> {
  const page = await context.newPage();
  await page.goto(`${fleet.controller.adminUrl}/`);
  await page.getByLabel('Operator token').fill(token);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.locator('#who').waitFor();
  return page;
}

async function shoot(page: Page, name: string): Promise<void> {
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: 900 });
    await page.screenshot({ path: join(SHOTS, `${name}-${width}.png`), fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 900 });
}

beforeAll(async () => {
  if (!hasChromium) return;
  await mkdir(SHOTS, { recursive: true });
  dir = await tempDir('dashboard');
  fleet = await startLocalFleet({
    dir,
    cli: CLI,
    workers: ['web-1', 'web-2'].map((name) => ({ name, address: '127.0.0.1' })),
    heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
    updater: false,
    forwarder: false,
  });
  adminToken = (await readFile(join(fleet.controller.stateDir, 'admin-token'), 'utf8')).trim();
  readToken = await operatorToken('viewer', 'read');
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}, 240_000);

afterAll(async () => {
  await browser?.close();
  await fleet?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe.skipIf(!hasChromium)('the web dashboard in a real browser', () => {
  it('serves its page with a strict CSP; a wrong token is refused on the page, the right one shows the fleet', async () => {
    const res = await fetch(`${fleet.controller.adminUrl}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-security-policy')).toContain("default-src 'self'");
    expect(res.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');

    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${fleet.controller.adminUrl}/`);
    await shoot(page, 'login');
    await page.getByLabel('Operator token').fill('corral_op_not-a-real-token');
    await page.getByRole('button', { name: 'Log in' }).click();
    await expect.poll(() => page.locator('#login-status').textContent()).toContain('invalid');
    await page.getByLabel('Operator token').fill(adminToken);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.locator('#fleet tbody tr').nth(1).waitFor();
    const rows = await page
      .locator('#fleet tbody tr')
      .evaluateAll((trs) =>
        trs.map((tr) => ({ host: tr.getAttribute('data-host'), text: tr.textContent ?? '' })),
      );
    expect(rows.map((r) => r.host).sort()).toEqual(['web-1', 'web-2']);
    // The health dot has words beside it: colour is never the only signal.
    expect(rows.every((r) => r.text.includes('online'))).toBe(true);
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === 'corral_session');
    expect(session).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
    await shoot(page, 'fleet');
    await context.close();
  }, 60_000);

  it('updates the fleet page live as a deploy lands, and shows a worker-sent <script> as text', async () => {
    const context = await browser.newContext();
    const page = await logIn(context, adminToken);
    await page.locator('#fleet tbody tr').nth(1).waitFor();
    // A marker that a reload would lose.
    await page.evaluate(() => ((window as unknown as { stayed: boolean }).stayed = true));
    const spec = {
      services: [
        {
          name: 'ticker',
          command: 'sh',
          args: ['-c', 'while true; do sleep 1; done'],
          restart: 'always' as const,
        },
        {
          name: 'broken',
          command: '/nonexistent/<script>window.pwned=1</script>',
          restart: 'never' as const,
        },
      ],
    };
    await deploy(fleet, spec);
    await expect
      .poll(() => page.locator('#fleet tbody').textContent(), { timeout: 30_000 })
      .toMatch(/1\/1 running|1\/2 running/);
    expect(await page.evaluate(() => (window as unknown as { stayed?: boolean }).stayed)).toBe(true);

    await page.goto(`${fleet.controller.adminUrl}/#/services`);
    const broken = page.locator('#services tbody tr[data-service="broken"]');
    await expect
      .poll(() => broken.locator('.error').textContent(), { timeout: 30_000 })
      .toContain('<script>');
    // Shown as text: no element was made from it, nothing ran.
    expect(await page.locator('#services script').count()).toBe(0);
    expect(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned)).toBeUndefined();
    await shoot(page, 'services');
    await context.close();
  }, 90_000);

  it("refuses a session's change without its CSRF header, a read-only operator's change, and the cookie after logout", async () => {
    const context = await browser.newContext();
    const page = await logIn(context, readToken);
    expect(await page.locator('#who').textContent()).toContain('viewer (read)');
    // A forged change with the cookie (what a cross-site form would send): no CSRF header.
    const forged = await page.evaluate(async () => {
      const r = await fetch('/v1/teardown', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
        credentials: 'same-origin',
      });
      return { status: r.status, body: (await r.json()) as { error: { code: string } } };
    });
    expect(forged).toMatchObject({ status: 403, body: { error: { code: 'CORRAL_ERR_CSRF' } } });
    // With the header the page holds, the server still enforces the operator's scopes.
    const session = await page.evaluate(async () => {
      const r = await fetch('/v1/session', { credentials: 'same-origin' });
      return (await r.json()) as { csrf: string };
    });
    const scoped = await page.evaluate(async (csrf) => {
      const r = await fetch('/v1/teardown', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-corral-csrf': csrf },
        body: '{}',
        credentials: 'same-origin',
      });
      return { status: r.status, body: (await r.json()) as { error: { code: string } } };
    }, session.csrf);
    expect(scoped).toMatchObject({ status: 403, body: { error: { code: 'CORRAL_ERR_SCOPE' } } });

    const cookie = (await context.cookies()).find((c) => c.name === 'corral_session');
    expect(cookie).toBeDefined();
    const withCookie = (): Promise<Response> =>
      fetch(`${fleet.controller.adminUrl}/v1/hosts`, {
        headers: { cookie: `corral_session=${cookie!.value}` },
      });
    expect((await withCookie()).status).toBe(200);
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByLabel('Operator token').waitFor();
    const after = await withCookie();
    expect(after.status).toBe(401);
    await context.close();
  }, 60_000);

  it('a cookie sent to another origin is not one the API takes from a cross-site form', async () => {
    // A cross-site POST carries Origin and no CSRF header; with a valid cookie it is refused.
    const context = await browser.newContext();
    const page = await logIn(context, adminToken);
    const cookie = (await context.cookies()).find((c) => c.name === 'corral_session');
    const res = await fetch(`${fleet.controller.adminUrl}/v1/teardown`, {
      method: 'POST',
      headers: {
        cookie: `corral_session=${cookie!.value}`,
        origin: 'http://evil.example',
        'content-type': 'application/json',
      },
      body: '{}',
    });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('CORRAL_ERR_CSRF');
    // Nothing was torn down.
    const services = await poll('services still there', async () => {
      const r = await fleetCli(fleet, ['controller', 'services', '--json']);
      const list = JSON.parse(r.stdout) as { service: string }[];
      return list.length > 0 ? list : undefined;
    });
    expect(services.map((s) => s.service)).toContain('ticker');
    await page.close();
    await context.close();
  }, 60_000);
});
