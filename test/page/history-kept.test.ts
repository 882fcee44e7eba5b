// A history whose Date Range reaches past the retention (webhooks.kept_since(), a
// UTC midnight) says where the kept firings start, in the admin's own time zone: a
// file of its own, since the retention's start holds for the whole database and the
// other page tests write firings into the days it would have dropped.
import test, { type ExecutionContext } from 'ava';
import type { Page } from 'playwright-core';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { launchBrowser, PAGE_TEST_API_LIMITS, signIn, untilReport, untilText, useBrowser, visit } from '../helpers/browser.ts';
import { utcDay } from '../helpers/days.ts';
import { seedCompany } from '../helpers/report-data.ts';

const { db, api } = useTestDatabaseWithApi(test, { limits: PAGE_TEST_API_LIMITS });
// (each zone's tab is of a browser of its own: one browser's clock is in one time zone)
const { browserTest } = useBrowser(test);

/** A tab of a browser of its own whose clock is in `timezoneId` (the shared one's is UTC), its errors collected. */
async function tabIn(t: ExecutionContext, timezoneId: string): Promise<{ page: Page; errors: string[] }> {
  const browser = await launchBrowser({ timezoneId });
  t.teardown(() => browser.close());
  const page = await browser.context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text());
  });
  await visit(page, `${api().api.url}/reports/webhooks`);
  return { page, errors };
}

browserTest('a history reaching past the retention says when the kept firings start, to the minute where that is no midnight of the admin\'s', async (t) => {
  const { companyId, notes } = await seedCompany(db().pool);
  // the retention dropped the days before ten days ago (UTC days, as the engine keeps them)
  const keptSince = utcDay(-10);
  await db().pool.query('insert into webhooks_private.outbox_kept_since (kept_since) values ($1)', [keptSince]);
  const token = await api().token(companyId, 'webhook_admin', 'jane.admin@purple.example');
  const subtitle = async (timezoneId: string) => {
    const { page, errors } = await tabIn(t, timezoneId);
    await signIn(page, token);
    await untilReport(page);
    await page.click(`tr[data-webhook-id="${notes.id}"] .times-fired`);
    await untilText(page, '#page-title', notes.name);
    const words = await untilText(page, '#page-subtitle', /no longer kept/);
    t.deepEqual(errors, []);
    await page.close();
    return words;
  };
  const day = (timeZone: string) => new Intl.DateTimeFormat('en-US', { timeZone, year: 'numeric', month: 'short', day: 'numeric' })
    .format(keptSince);

  // New York, 5 hours behind UTC (4 in summer): the kept firings start in the evening of the day before
  const evening = new Intl.DateTimeFormat('en-US', { timeZone: 'America/New_York', hour: 'numeric', minute: '2-digit', second: '2-digit' })
    .format(keptSince);
  t.regex(evening, /^[78]:00:00 PM$/);
  t.regex(await subtitle('America/New_York'),
    new RegExp(`\\. Firings before ${day('America/New_York')}, ${evening} are no longer kept, so they are not listed here; Times Fired still includes them\\.$`));
  // Tokyo, 9 hours ahead: at 9 AM that day
  t.regex(await subtitle('Asia/Tokyo'),
    new RegExp(`\\. Firings before ${day('Asia/Tokyo')}, 9:00:00 AM are no longer kept, so they are not listed here; Times Fired still includes them\\.$`));
  // in UTC the start is a midnight: the day alone
  t.regex(await subtitle('UTC'),
    new RegExp(`\\. Firings before ${day('UTC')} are no longer kept, so they are not listed here; Times Fired still includes them\\.$`));
});
