import { stringify as stringifyYaml } from 'yaml';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalFleet, type LocalFleet } from '../cli/up/local-fleet.js';
import {
  actionButtons,
  hasChromium,
  launchChromium,
  logIn as logInAt,
  shoot,
  unlabelled,
} from './dashboard-fixture.js';
import { CLI, fleetCli, poll, tempDir } from './fleet-fixture.js';
import type { BrowserContext } from 'playwright-core';
import { rolloutFromFlags } from '../cli/rollout-flags.js';

/**
 * The web dashboard in a real headless Chromium (Debian's, driven by playwright-core; nothing
 * downloaded) against a real controller and agents with forwarders, every one a `corral`
 * process: login, the fleet page kept live, a deploy through the deploy page watched to its
 * end, a host's tabs and its logs followed live, worker text shown as text, the session
 * cookie's limits (CSRF, scopes, logout) and a read-only operator offered no actions.
 * Screenshots of each page at 1280 and 390 px go to test-artifacts/dashboard/.
 * (dashboard-admin.test.ts has approvals, releases, operations, audit and operators.)
 */
const HEARTBEAT_INTERVAL_MS = 1_000;

/** A service as `controller host NAME --json` lists it. */
interface HostService {
  readonly name: string;
  readonly state: string;
  readonly pid: number | null;
  readonly restarts: number;
}

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

const logIn = (context: BrowserContext, token: string, hash = ''): Promise<Page> =>
  logInAt(context, fleet.controller.adminUrl, token, hash);

/** What the deploy page is given: a ticker, a talker on every host, and one whose error is markup. */
const SPEC = {
  services: [
    { name: 'ticker', command: 'sh', args: ['-c', 'while true; do sleep 1; done'], restart: 'always' },
    {
      name: 'talker',
      command: 'sh',
      args: ['-c', 'i=0; while true; do i=$((i+1)); echo "talk $i"; sleep 0.3; done'],
      restart: 'always',
      placement: 'every-host',
    },
    { name: 'broken', command: '/nonexistent/<script>window.pwned=1</script>', restart: 'never' },
  ],
};

beforeAll(async () => {
  if (!hasChromium) return;
  dir = await tempDir('dashboard');
  fleet = await startLocalFleet({
    dir,
    cli: CLI,
    workers: ['web-1', 'web-2'].map((name) => ({ name, address: '127.0.0.1' })),
    heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
    updater: false,
  });
  adminToken = (await readFile(join(fleet.controller.stateDir, 'admin-token'), 'utf8')).trim();
  readToken = await operatorToken('viewer', 'read');
  browser = await launchChromium();
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

  it('deploys through the deploy page (dry-run plan, apply, the operation watched to its end) while the fleet page updates live; a worker-sent <script> is text', async () => {
    const context = await browser.newContext();
    const fleetPage = await logIn(context, adminToken);
    await fleetPage.locator('#fleet tbody tr').nth(1).waitFor();
    // A marker that a reload would lose.
    await fleetPage.evaluate(() => ((window as unknown as { stayed: boolean }).stayed = true));

    const page = await context.newPage();
    await page.goto(`${fleet.controller.adminUrl}/#/deploy`);
    const apply = page.getByRole('button', { name: 'Apply' });
    await page.getByLabel('Deployment spec (YAML or JSON)').fill('{ "services": [');
    await page.getByRole('button', { name: 'Dry run' }).click();
    await expect.poll(() => page.locator('#deploy-status').textContent()).toContain('not YAML or JSON');
    expect(await apply.isDisabled()).toBe(true);
    // YAML, as a spec file is usually written.
    await page.getByLabel('Deployment spec (YAML or JSON)').fill(stringifyYaml(SPEC));
    await page.getByRole('button', { name: 'Dry run' }).click();
    await page.locator('#deploy-plan tbody tr').nth(3).waitFor();
    const plan = await page
      .locator('#deploy-plan tbody tr')
      .evaluateAll((trs) =>
        trs.map((tr) => `${tr.getAttribute('data-service')}:${tr.getAttribute('data-change')}`),
      );
    expect(plan.sort()).toEqual(['broken:placed', 'talker:placed', 'talker:placed', 'ticker:placed']);
    // A dry run changed nothing.
    const before = JSON.parse(
      (await fleetCli(fleet, ['controller', 'services', '--json'])).stdout,
    ) as unknown[];
    expect(before).toEqual([]);
    expect(await unlabelled(page)).toEqual([]);
    await shoot(page, 'deploy');
    await apply.click();
    await expect
      .poll(() => page.locator('#op-facts [data-fact="state"]').textContent(), { timeout: 60_000 })
      .toMatch(/succeeded|partial|failed/);
    expect(await page.locator('#op-steps tbody tr').count()).toBe(2);
    expect(await page.locator('#deploy-status').textContent()).toMatch(
      /^Operation \S+ (succeeded|partial|failed)\.$/,
    );
    await shoot(page, 'deploy-applied');

    await expect
      .poll(() => fleetPage.locator('#fleet tbody').textContent(), { timeout: 30_000 })
      .toMatch(/2\/2 running/);
    expect(await fleetPage.evaluate(() => (window as unknown as { stayed?: boolean }).stayed)).toBe(true);
    await fleetPage.close();

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
  }, 120_000);

  it("shows a host's tabs and follows its logs live, with a service filter, grep, and pause/resume", async () => {
    const context = await browser.newContext();
    const page = await logIn(context, adminToken, '#/host/web-1/overview');
    await page.locator('#host-pins tbody tr').nth(1).waitFor();
    const pins = await page.locator('#host-pins tbody tr td:first-child').allTextContents();
    expect(pins.sort()).toEqual(['agent', 'updater']);
    expect(await page.locator('#host-facts').textContent()).toContain('eligible');
    await page.locator('#host-metrics').waitFor();
    await shoot(page, 'host-overview');

    await page.getByRole('link', { name: 'Services', exact: true }).last().click();
    await page.locator('#host-services tr[data-service="talker"]').waitFor();
    await shoot(page, 'host-services');

    await page.locator('nav.tabs [data-tab="operations"]').click();
    await page.locator('#host-ops tbody tr').first().waitFor({ timeout: 30_000 });
    expect(await page.locator('#host-ops tbody tr').first().textContent()).toContain('deploy');
    await shoot(page, 'host-operations');

    await page.locator('nav.tabs [data-tab="logs"]').click();
    await page.getByLabel('Service').fill('talker');
    await page.getByRole('button', { name: 'Apply' }).click();
    const lines = page.locator('#log-lines li');
    // Live: the count grows while the page is open (the talker prints every 0.3 s).
    await expect.poll(() => lines.count(), { timeout: 60_000 }).toBeGreaterThan(3);
    const seen = await lines.count();
    await expect.poll(() => lines.count(), { timeout: 30_000 }).toBeGreaterThan(seen);
    const services = await lines.evaluateAll((lis) => lis.map((li) => li.getAttribute('data-service')));
    expect(new Set(services)).toEqual(new Set(['talker']));

    await page.getByRole('button', { name: 'Pause' }).click();
    const paused = await lines.count();
    await expect
      .poll(() => page.locator('#log-state').textContent(), { timeout: 30_000 })
      .toMatch(/paused, [1-9]\d* new lines held/);
    expect(await lines.count()).toBe(paused);
    await page.getByRole('button', { name: 'Resume' }).click();
    await expect.poll(() => lines.count()).toBeGreaterThan(paused);
    expect(await unlabelled(page)).toEqual([]);
    await shoot(page, 'host-logs');

    await page.getByLabel('Grep').fill('talk [0-9]*7$');
    await page.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(() => lines.count(), { timeout: 30_000 }).toBeGreaterThan(0);
    const messages = await page.locator('#log-lines .log-message').allTextContents();
    expect(messages.every((m) => /talk \d*7$/.test(m))).toBe(true);

    await page.locator('nav.tabs [data-tab="actions"]').click();
    await page.locator('[data-action="drain"]').waitFor();
    expect(await page.locator('[data-action="decommission"]').isDisabled()).toBe(true);
    await context.close();
  }, 150_000);

  it("restarts a service from the host's services tab, by keyboard: the agent runs it under a new pid", async () => {
    const talkerOnWeb1 = async (): Promise<HostService | undefined> => {
      const r = await fleetCli(fleet, ['controller', 'host', 'web-1', '--json']);
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { services: HostService[] }).services.find((x) => x.name === 'talker');
    };
    const before = await poll('talker running on web-1', async () => {
      const t = await talkerOnWeb1();
      return t?.state === 'running' && t.pid !== null ? t : undefined;
    });
    const context = await browser.newContext();
    const page = await logIn(context, adminToken, '#/host/web-1/services');
    const talker = page.locator('#host-services tr[data-service="talker"]');
    await talker.waitFor();
    expect(await page.locator('#host-services th').allTextContents()).toContain('Actions');
    await talker.getByRole('button', { name: 'Restart talker on web-1' }).focus();
    await page.keyboard.press('Enter');
    const status = page.locator('#restart-status');
    await expect.poll(() => status.textContent(), { timeout: 60_000 }).toMatch(/^Restarted talker: pid \d+/);
    const said = Number(/pid (\d+)/.exec((await status.textContent()) ?? '')?.[1]);
    expect(said).not.toBe(before.pid);
    // The agent reports the pid the page was told, in its heartbeats, as the CLI shows it.
    const after = await poll('web-1 reports the new pid', async () => {
      const t = await talkerOnWeb1();
      return t?.pid === said && t.state === 'running' ? t : undefined;
    });
    expect(after.pid).not.toBe(before.pid);
    await page.reload();
    await expect
      .poll(() => talker.locator('td').nth(3).textContent(), { timeout: 30_000 })
      .toBe(String(said));
    expect(await unlabelled(page)).toEqual([]);
    await shoot(page, 'host-services-restarted');
    await context.close();
  }, 120_000);

  it("sends the deploy page's rollout options as the CLI sends its flags: both operations log the same rollout", async () => {
    const round = (n: string): typeof SPEC => ({
      services: SPEC.services.map((x) => (x.name === 'talker' ? { ...x, env: { ROUND: n } } : x)),
    });
    const context = await browser.newContext();
    const page = await logIn(context, adminToken, '#/deploy');
    await page.getByLabel('Deployment spec (YAML or JSON)').fill(JSON.stringify(round('2')));
    // A value the API would refuse is refused on the page, by the field's name; nothing is sent.
    await page.getByLabel('Max parallel hosts', { exact: true }).fill('0');
    await page.getByRole('button', { name: 'Dry run' }).click();
    await expect
      .poll(() => page.locator('#deploy-status').textContent())
      .toContain('Max parallel hosts must be an integer from 1');
    await page.getByLabel('Max parallel hosts', { exact: true }).fill('1');
    await page.getByLabel('Canary hosts', { exact: true }).fill('1');
    await page.getByLabel('Canary wait (seconds)', { exact: true }).fill('0');
    await page.getByLabel('Go on past failed hosts', { exact: true }).check();
    await page.getByLabel('Min healthy (seconds)', { exact: true }).fill('1');
    expect(await unlabelled(page)).toEqual([]);
    await page.getByRole('button', { name: 'Dry run' }).click();
    await expect.poll(() => page.locator('#deploy-status').textContent()).toContain('Dry run:');
    await shoot(page, 'deploy-rollout');
    await page.getByRole('button', { name: 'Apply' }).click();
    await expect
      .poll(() => page.locator('#op-facts [data-fact="state"]').textContent(), { timeout: 60_000 })
      .toMatch(/succeeded|partial|failed/);
    const pageRollout = (await page.locator('#op-log li').allTextContents())
      .map((l) => /rollout: .*$/.exec(l)?.[0])
      .find((l) => l !== undefined);
    expect(pageRollout).toBe(
      'rollout: 1 canary hosts first, then a 0 s wait; at most 1 hosts at once; goes on past failed hosts' +
        '; a host succeeds once its services run 1 s without a break',
    );
    await context.close();

    const file = join(dir, 'round-3.json');
    await writeFile(file, JSON.stringify(round('3')));
    const flags = [
      ...['--max-parallel', '1', '--canary', '1', '--canary-wait', '0', '--no-halt-on-failure'],
      ...['--min-healthy', '1s'],
    ];
    const cli = await fleetCli(fleet, ['controller', 'deploy', file, ...flags, '--json']);
    // The spec's `broken` service never runs: the health gate fails its host (exit 1), with
    // the service's own state in the reason; the JSON answer is printed all the same.
    expect(cli.code, cli.stderr).toBe(1);
    const { operationId, hosts } = JSON.parse(cli.stdout) as {
      operationId: string;
      hosts: { outcome: string; reason: string | null }[];
    };
    expect(hosts.filter((h) => h.outcome === 'failed').map((h) => h.reason)).toEqual([
      expect.stringMatching(/^unhealthy: broken: failed/),
    ]);
    const shown = await fleetCli(fleet, ['controller', 'ops', 'show', operationId, '--json']);
    expect(shown.code, shown.stderr).toBe(0);
    const log = (JSON.parse(shown.stdout) as { log: { message: string }[] }).log;
    expect(log.map((l) => l.message).find((m) => m.startsWith('rollout: '))).toBe(pageRollout);
  }, 150_000);

  it("sends the releases page's rollout options in the query, as `controller update` sends its flags", async () => {
    const context = await browser.newContext();
    const page = await logIn(context, adminToken, '#/releases');
    await page.locator('#releases tbody tr').first().waitFor({ timeout: 30_000 });
    await page.locator('#release-file').setInputFiles({
      name: 'not-a-release.tar.gz',
      mimeType: 'application/gzip',
      buffer: Buffer.from('not a release'),
    });
    await page.getByLabel('All hosts', { exact: true }).check();
    await page.getByLabel('Max parallel hosts', { exact: true }).fill('2');
    await page.getByLabel('Canary hosts', { exact: true }).fill('1');
    await page.getByLabel('Canary wait (seconds)', { exact: true }).fill('1.5');
    expect(await unlabelled(page)).toEqual([]);
    const sent = page.waitForRequest((r) => r.url().includes('/v1/update?'));
    await page.getByRole('button', { name: 'Dry run' }).click();
    const query = new URL((await sent).url()).searchParams;
    const expected = new URLSearchParams({ all: 'true', dryRun: 'true' });
    for (const [k, v] of Object.entries(
      rolloutFromFlags({ maxParallel: '2', canary: '1', canaryWait: '1500ms' }),
    )) {
      expected.set(k, String(v));
    }
    expect(Object.fromEntries(query)).toEqual(Object.fromEntries(expected));
    // The API took the query and refused the file itself.
    await expect
      .poll(() => page.locator('#push-status').textContent(), { timeout: 30_000 })
      .not.toBe('dry run…');
    console.log(`releases page dry run of a bad file: ${await page.locator('#push-status').textContent()}`);
    await shoot(page, 'releases-rollout');
    await context.close();
  }, 60_000);

  it('is usable by keyboard alone, with a visible focus', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${fleet.controller.adminUrl}/`);
    // The token field has the focus once the form is shown; Enter submits.
    await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe('token');
    await page.keyboard.type(adminToken);
    await page.keyboard.press('Enter');
    await page.locator('#fleet tbody tr').first().waitFor();
    const focused = (): Promise<{ text: string; outline: string }> =>
      page.evaluate(() => {
        const a = document.activeElement as HTMLElement;
        return { text: a.textContent ?? '', outline: getComputedStyle(a).outlineStyle };
      });
    await page.keyboard.press('Tab');
    expect(await focused()).toEqual({ text: 'Skip to the page', outline: 'solid' });
    await page.keyboard.press('Tab');
    expect(await focused()).toEqual({ text: 'Fleet', outline: 'solid' });
    await page.keyboard.press('Tab');
    await page.keyboard.press('Enter');
    await page.locator('#services').waitFor();
    expect(page.url()).toContain('#/services');
    // Into a host's tabs from the fleet page, by links only.
    await page.goto(`${fleet.controller.adminUrl}/#/fleet`);
    await page.locator('#fleet a[href="#/host/web-1"]').focus();
    await page.keyboard.press('Enter');
    await page.locator('nav.tabs [data-tab="logs"]').focus();
    await page.keyboard.press('Enter');
    await page.locator('#log-service').waitFor();
    expect(await unlabelled(page)).toEqual([]);
    await context.close();
  }, 60_000);

  it("refuses a session's change without its CSRF header, a read-only operator's change, and the cookie after logout", async () => {
    const context = await browser.newContext();
    const page = await logIn(context, readToken);
    expect(await page.locator('#who').textContent()).toContain('viewer (read)');
    // No page offers it an action: no action buttons, no actions tab, no deploy or operators page.
    expect(await page.locator('header nav a').allTextContents()).toEqual([
      'Fleet',
      'Services',
      'Releases',
      'Operations',
      'Approvals',
      'Audit',
    ]);
    // Each page once its data is on it (what it would offer an action on).
    const loaded: Record<string, string> = {
      '#/fleet': '#fleet tbody tr',
      '#/services': '#services tbody tr',
      '#/host/web-1/overview': '#host-pins tbody tr',
      '#/host/web-1/services': '#host-services tbody tr',
      '#/releases': '#releases tbody tr',
      '#/ops': '#ops tbody tr',
      '#/approvals': '#approvals-done',
      '#/audit': '#audit tbody tr',
    };
    for (const [hash, ready] of Object.entries(loaded)) {
      await page.goto(`${fleet.controller.adminUrl}/${hash}`);
      await page.locator(ready).first().waitFor({ timeout: 30_000 });
      expect(await actionButtons(page), hash).toBe(0);
    }
    expect(await page.locator('nav.tabs [data-tab="actions"]').count()).toBe(0);
    // No restart button on its host's services, nor a column for one.
    await page.goto(`${fleet.controller.adminUrl}/#/host/web-1/services`);
    await page.locator('#host-services tr[data-service="talker"]').waitFor({ timeout: 30_000 });
    expect(await page.locator('#host-services [data-action="restart"]').count()).toBe(0);
    expect(await page.getByRole('button', { name: /^Restart/ }).count()).toBe(0);
    expect(await page.locator('#host-services th').allTextContents()).not.toContain('Actions');
    await page.goto(`${fleet.controller.adminUrl}/#/host/web-1/actions`);
    await page.locator('#tab-overview').waitFor();
    expect(await actionButtons(page)).toBe(0);
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
