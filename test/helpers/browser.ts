// A real, headless Chromium for the page tests: Debian's `chromium` package driven by
// playwright-core. No browser is ever downloaded; the one on the machine is used.
// Without it the page tests are skipped on a workstation, but fail under CI (`CI`
// set), where `.ci/run` installs it.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestFn } from 'ava';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export type BrowserAvailability = { ok: true } | { ok: false; reason: string };

/** Whether the page tests can run here. Under CI a missing browser is an error. */
export function browserAvailability(): BrowserAvailability {
  if (existsSync(CHROMIUM_PATH)) return { ok: true };
  const reason = `no Chromium at ${CHROMIUM_PATH} (install Debian's chromium package, or set CHROMIUM_PATH)`;
  if (process.env.CI) throw new Error(`CI is set and ${reason}`);
  return { ok: false, reason };
}

export interface RunningBrowser {
  context: BrowserContext;
  close(): Promise<void>;
}

/** How long any wait of a page test may take. Generous because CI runs every test file
 *  at once on two cores: one wait of 10 s timed out there with its text already on the
 *  page, and a file's dozen tabs took 25–35 s each in a slow run. */
export const BROWSER_WAIT_MS = 60_000;

/** The API's limits under a page test: its statements may take as long as the page is
 *  waited for. In a CI run of every test file at once on two cores a history view
 *  never came, its cause not recorded: the statement timeout may have cancelled its
 *  request (until api/preset.ts stopped counting waits for a connection, a later
 *  statement of a request could be left a millisecond). The limits have tests of
 *  their own (test/api/limits.test.ts). */
export const PAGE_TEST_API_LIMITS = Object.freeze({ statementTimeoutMs: BROWSER_WAIT_MS });

/** Launches Chromium with a fresh profile folder of its own, thrown away on close; its
 *  clock in UTC unless told another time zone (an admin's, for what the page says in it). */
export async function launchBrowser({ timezoneId = 'UTC' }: { timezoneId?: string } = {}): Promise<RunningBrowser> {
  const userDataDir = await mkdtemp(join(tmpdir(), 'bpd-chromium-'));
  // launchPersistentContext passes the folder as --user-data-dir: a fresh profile each run
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: ARGS,
    viewport: { width: 1366, height: 820 },
    locale: 'en-US',
    timezoneId,
  });
  // every wait of a page test (waitForSelector, click): Playwright's own 30 s was near
  // what a test file of a dozen tabs at once takes on a loaded machine under CI
  context.setDefaultTimeout(BROWSER_WAIT_MS);
  return {
    context,
    async close() {
      await context.close();
      await rm(userDataDir, { recursive: true, force: true });
    },
  };
}

/** Opens `url` in the tab, waiting for what a page test needs of the navigation alone:
 *  the document parsed and its module script run (app.js, with the modules it imports,
 *  binds the sign-in form and the views' handlers, and style.css, before it, is loaded
 *  first), which is DOMContentLoaded. Not the load event, Playwright's default, which
 *  waits for the rest of the page's resources besides; and never the network gone
 *  quiet. What a test reads or clicks next it waits for itself, each on its own signal
 *  (untilText, waitForSelector, a locator's click), within BROWSER_WAIT_MS. A URL that
 *  differs from the tab's in its fragment alone (#/webhooks/…) is a navigation within
 *  the document, which returns at once. */
export async function visit(page: Page, url: string): Promise<void> {
  await page.goto(url, { waitUntil: 'domcontentloaded' });
}

/** How often untilText looks again: on a timer, so that the wait does not depend on
 *  animation frames, which a starved or hidden tab gets late or not at all. */
const TEXT_POLL_MS = 50;

/** Waits until the element's text, trimmed, is `expected` or matches it (the page loads
 *  asynchronously); returns that text. On a timeout, says what it found instead. */
export async function untilText(page: Page, selector: string, expected: string | RegExp): Promise<string> {
  try {
    const handle = await page.waitForFunction(
      ([s, source, flags]) => {
        const text = document.querySelector(s)?.textContent?.trim() ?? null;
        if (text === null) return false;
        return (flags === null ? text === source : new RegExp(source, flags).test(text)) ? text : false;
      },
      [selector, typeof expected === 'string' ? expected : expected.source, typeof expected === 'string' ? null : expected.flags] as const,
      { timeout: BROWSER_WAIT_MS, polling: TEXT_POLL_MS },
    );
    return (await handle.jsonValue()) as string;
  } catch {
    const actual = await page.locator(selector).first().textContent().catch(() => null);
    // and what the page said instead, if anything: an answer it could not show
    const said = await page.locator('#error:not([hidden]), #flash:not(:empty)').allTextContents().catch(() => []);
    throw new Error(`${selector}: expected ${typeof expected === 'string' ? JSON.stringify(expected) : String(expected)}, found ${JSON.stringify(actual?.trim())}` +
      (said.length ? `; the page said ${said.map((text) => JSON.stringify(text.trim())).join(', ')}` : ''));
  }
}

/** How a tab's problems say a Content-Security-Policy violation (openTab). */
export const CSP_VIOLATION = 'Content-Security-Policy violation:';

export interface PageTests {
  /** `test`, or `test.skip` where there is no browser (outside CI; under CI that fails) */
  browserTest: TestFn | TestFn['skip'];
  /** a fresh tab (its own sessionStorage) at `url`, its errors collected for problemsOf */
  openTab(url: string): Promise<Page>;
  /** a tab's exceptions, console errors and Content-Security-Policy violations so far, for t.deepEqual(…, []) */
  problemsOf(page: Page): string[];
}

/** How many tabs of one browser load their first page at once (openTab): a file of
 *  fifty page tests opened fifty at once, and on a loaded machine under CI some of those
 *  first loads ran past their minute (page.goto's timeout), the API answering. The rest
 *  wait for a turn, which no timeout counts. */
const FIRST_LOADS_AT_ONCE = 6;

/** One browser for a test file's page tests: launched before them, closed after them. */
export function useBrowser(test: TestFn): PageTests {
  const availability = browserAvailability();
  if (!availability.ok) console.warn(`page tests skipped: ${availability.reason}`);
  let browser: RunningBrowser | undefined;
  const problems = new WeakMap<Page, string[]>();
  // (openTab's first loads under way, and the tabs waiting for a turn)
  let loading = 0;
  const turns: Array<() => void> = [];
  test.before(async () => {
    if (availability.ok) browser = await launchBrowser();
  });
  test.after.always(async () => {
    await browser?.close();
  });
  return {
    browserTest: availability.ok ? test : test.skip,
    async openTab(url) {
      const page = await browser!.context.newPage();
      const seen: string[] = [];
      problems.set(page, seen);
      page.on('pageerror', (error) => seen.push(error.message));
      page.on('console', (message) => {
        if (message.type() === 'error') seen.push(message.text());
      });
      // what the page's Content-Security-Policy refused (api/static.ts), said on the
      // console as an error, whether or not the browser says so there itself: a page
      // that needs what its policy forbids is a broken page, and every test's problems
      // say so
      await page.addInitScript((prefix) => {
        document.addEventListener('securitypolicyviolation', (event) => {
          console.error(`${prefix} ${event.effectiveDirective} refused ${event.blockedURI || 'an inline script or style'}` +
            (event.sourceFile ? ` (${event.sourceFile}:${event.lineNumber})` : ''));
        }, true);
      }, CSP_VIOLATION);
      while (loading >= FIRST_LOADS_AT_ONCE) await new Promise<void>((resolve) => turns.push(resolve));
      loading += 1;
      try {
        await visit(page, url);
      } finally {
        loading -= 1;
        turns.shift()?.();
      }
      return page;
    },
    problemsOf: (page) => problems.get(page)!,
  };
}

/** Signs in on the Reports page with a token, as an admin pastes it. */
export async function signIn(page: Page, token: string): Promise<void> {
  await page.fill('#token', token);
  await page.click('#sign-in-form button[type=submit]');
}

/** Waits until the report shows its table of webhooks. */
export async function untilReport(page: Page): Promise<void> {
  await page.waitForSelector('#report:not([hidden]) #webhooks-body tr');
}

/**
 * Chooses in a picker of the setup form (picker: '#setup-user' or '#setup-status'):
 * types into its box, waits for the option whose text starts with `option`, and clicks it.
 */
export async function choose(page: Page, picker: string, typed: string, option: string): Promise<void> {
  await page.fill(`${picker}-search`, typed);
  const starts = new RegExp(`^${option.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`);
  await page.locator(`${picker}-options [role=option]`).filter({ hasText: starts }).first().click();
}

/** What a screen reader is told of an element: its role, accessible name and description, as Chromium computes them. */
export interface Accessible {
  role: string;
  name: string;
  description: string;
  /** whether it is left out of the accessibility tree (display: none, aria-hidden, …): no screen reader hears it */
  ignored: boolean;
}

/** The first element matching `selector`, as the browser's accessibility tree holds it. */
export async function accessibleOf(page: Page, selector: string): Promise<Accessible> {
  const cdp = await page.context().newCDPSession(page);
  try {
    const { root } = await cdp.send('DOM.getDocument', { depth: 0 });
    const { nodeId } = await cdp.send('DOM.querySelector', { nodeId: root.nodeId, selector });
    if (!nodeId) throw new Error(`accessibleOf: no element matches ${selector}`);
    const { nodes } = await cdp.send('Accessibility.getPartialAXTree', { nodeId, fetchRelatives: false });
    const node = nodes[0]!;
    const text = (value: { value?: unknown } | undefined) => String(value?.value ?? '').replace(/\s+/g, ' ').trim();
    return { role: text(node.role), name: text(node.name), description: text(node.description), ignored: node.ignored };
  } finally {
    await cdp.detach();
  }
}
