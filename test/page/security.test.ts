// What the browser is told about the Reports page with every answer of its folder
// (api/static.ts): a Content-Security-Policy that allows the page's own files and
// nothing else (no inline script or style, no eval, no other origin), no framing by
// any site (clickjacking of Delete or Rotate secret), nosniff and no referrer. And that
// the page works under that policy: every page test fails on a violation
// (test/helpers/browser.ts), and this one shows that a violation is caught.
import test from 'ava';
import { readdir } from 'node:fs/promises';
import { DEFAULT_PAGE_DIR } from '../../api/server.ts';
import { PAGE_CONTENT_SECURITY_POLICY } from '../../api/static.ts';
import { BROWSER_WAIT_MS, CSP_VIOLATION, PAGE_TEST_API_LIMITS, signIn, untilReport, untilText, useBrowser } from '../helpers/browser.ts';
import { until } from '../helpers/until.ts';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { seedCompany } from '../helpers/report-data.ts';

const { db, api } = useTestDatabaseWithApi(test, { limits: PAGE_TEST_API_LIMITS });
const { browserTest, openTab, problemsOf } = useBrowser(test);

const SECURITY_HEADERS = {
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

test('every answer of the page\'s folder carries its Content-Security-Policy, no framing, nosniff and no referrer', async (t) => {
  t.is(PAGE_CONTENT_SECURITY_POLICY,
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'");
  const files = (await readdir(DEFAULT_PAGE_DIR)).map((name) => `/${name}`);
  t.true(files.includes('/app.js') && files.includes('/style.css') && files.includes('/index.html'), files.join(', '));
  const asked: Array<[string, string, number]> = [
    ...['/', '/reports/webhooks', '/reports/webhooks/', ...files].map((path) => ['GET', path, 200] as [string, string, number]),
    ['HEAD', '/app.js', 200],
    ['GET', '/no-such-file.js', 404],
    ['GET', '/%E0%A4%A', 400],
    ['POST', '/reports/webhooks', 405],
  ];
  for (const [method, path, status] of asked) {
    const response = await fetch(`${api().api.url}${path}`, { method });
    await response.arrayBuffer();
    t.is(response.status, status, `${method} ${path}`);
    t.is(response.headers.get('content-security-policy'), PAGE_CONTENT_SECURITY_POLICY, `${method} ${path}`);
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) t.is(response.headers.get(name), value, `${method} ${path}: ${name}`);
  }
});

browserTest('the page works under its policy, which refuses an injected inline script (and the page tests say so); no other site may frame it', async (t) => {
  const { companyId, notes } = await seedCompany(db().pool);
  const page = await openTab(`${api().api.url}/reports/webhooks`);
  await signIn(page, await api().token(companyId, 'webhook_admin', 'jane.admin@purple.example'));
  await untilReport(page);
  await page.click(`tr[data-webhook-id="${notes.id}"] .times-fired`);
  await page.waitForSelector('#history:not([hidden]) #history-body tr');
  await page.click('#edit-webhook');
  await untilText(page, '#page-title', `Edit ${notes.name}`);
  await page.click('#setup-cancel');
  await page.waitForSelector('#history:not([hidden]) #audit-list li');
  t.deepEqual(problemsOf(page), [], 'the report, a history, its changes and the form ran with nothing refused');

  // markup that got in (it cannot: dom.js inserts text as text) would run nothing
  await page.evaluate(() => {
    const script = document.createElement('script');
    script.textContent = 'window.injected = 1';
    document.body.append(script);
  });
  await page.waitForFunction(() => document.readyState === 'complete');
  t.is(await page.evaluate(() => (window as unknown as { injected?: number }).injected), undefined);
  // (as long as any wait of a page test: 5 s was short of what a loaded machine takes)
  await until('a problem said by the tab', async () => problemsOf(page).length > 0, BROWSER_WAIT_MS);
  t.true(problemsOf(page).some((problem) => problem.startsWith(`${CSP_VIOLATION} script-src`)),
    JSON.stringify(problemsOf(page)));
  await page.close();

  // framed by another page (here a blank one: another origin), it is not shown
  const framing = await openTab('about:blank');
  await framing.setContent(`<iframe id="framed" src="${api().api.url}/reports/webhooks" width="800" height="600"></iframe>`);
  await framing.waitForLoadState('load');
  const frame = await (await framing.$('#framed'))!.contentFrame();
  t.is(await frame?.locator('#token').count().catch(() => 0) ?? 0, 0, 'the page is not shown in the frame');
  await framing.close();
});
