import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { ROOT } from './fleet-fixture.js';

/**
 * What the dashboard's browser tests share: Debian's Chromium driven by playwright-core
 * (nothing downloaded), a login through the page's own form, and screenshots of a page at
 * both widths the dashboard is made for into test-artifacts/dashboard/ (not committed).
 */
export const CHROMIUM = '/usr/bin/chromium';
export const hasChromium = existsSync(CHROMIUM);
export const SHOTS = join(ROOT, 'test-artifacts', 'dashboard');
export const WIDTHS_PX = [1280, 390] as const;
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

export async function launchChromium(): Promise<Browser> {
  await mkdir(SHOTS, { recursive: true });
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

/** Logs in on the page's form with an operator token; resolves once the page shows who is in. */
export async function logIn(
  context: BrowserContext,
  adminUrl: string,
  token: string,
  hash = '',
): Promise<Page> {
  const page = await context.newPage();
  await page.goto(`${adminUrl}/${hash}`);
  await page.getByLabel('Operator token').fill(token);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.locator('#who').waitFor();
  return page;
}

/** Full-page screenshots at 1280 and 390 px wide, as `NAME-WIDTH.png`. */
export async function shoot(page: Page, name: string): Promise<void> {
  for (const width of WIDTHS_PX) {
    await page.setViewportSize({ width, height: 900 });
    await page.screenshot({ path: join(SHOTS, `${name}-${width}.png`), fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 900 });
}

/** Buttons that change something (the dashboard marks each with `data-action`). */
export const actionButtons = (page: Page): Promise<number> => page.locator('[data-action]').count();

/** Form controls on the page with neither a `<label>` nor an `aria-label` (ids, for the message). */
export const unlabelled = (page: Page): Promise<string[]> =>
  page.evaluate(() =>
    Array.from(document.querySelectorAll<HTMLInputElement>('input, select, textarea'))
      .filter((c) => (c.labels?.length ?? 0) === 0 && !c.getAttribute('aria-label'))
      .map((c) => c.id || c.outerHTML.slice(0, 80)),
  );
