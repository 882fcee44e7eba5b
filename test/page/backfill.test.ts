// Reports » Webhooks: the Backfill action and its live progress bar, in headless
// Chromium against the real API. The backfill's steps and the sending are done here
// in SQL, so the test decides what the page must show at each moment.
import test from 'ava';
import type { Page } from 'playwright-core';
import { accessibleOf, PAGE_TEST_API_LIMITS, signIn, untilReport, untilText, useBrowser } from '../helpers/browser.ts';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';
import { untimedStep } from '../helpers/backfill-step.ts';

const { db, api } = useTestDatabaseWithApi(test, { limits: PAGE_TEST_API_LIMITS });
const { browserTest, openTab, problemsOf } = useBrowser(test);

async function signedIn(companyId: string, role: 'webhook_admin' | 'webhook_viewer'): Promise<{ page: Page; problems: string[] }> {
  const page = await openTab(`${api().api.url}/reports/webhooks`);
  await signIn(page, await api().token(companyId, role));
  await untilReport(page);
  return { page, problems: problemsOf(page) };
}

browserTest('an admin starts a backfill; its bar follows the snapshots sent, live, until it is done; a viewer sees it without buttons', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const name = '<img src=x onerror="window.injected=1"> Sync';
  const hook = await f.webhook({ companyId: company.id, name, actions: ['contact.deleted'] });
  await db().pool.query(
    `insert into crm.contacts (company_id, first_name) select $1, 'C' || i from generate_series(1, 30) i`, [company.id]);
  const row = `tr[data-webhook-id="${hook.id}"]`;

  const { page, problems } = await signedIn(company.id, 'webhook_admin');
  // asked in the page, not by the browser's own window.confirm (which no style, no
  // screen reader's description and some embedded browsers reach)
  const browserDialogs: string[] = [];
  page.on('dialog', (dialog) => {
    browserDialogs.push(dialog.message());
    void dialog.dismiss();
  });
  const start = `${row} [data-action=backfill]`;
  const focused = (selector: string) => page.locator(selector).evaluate((element) => element === document.activeElement);
  const backfills = async () => (await db().pool.query('select count(*)::int as n from webhooks.backfills where webhook_id = $1', [hook.id])).rows[0].n;
  // by keyboard: the question says what is sent where, and takes the focus on Cancel
  await page.focus(start);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#confirm[open]');
  t.deepEqual(await accessibleOf(page, '#confirm'), {
    role: 'alertdialog', name: `Backfill "${name}"?`, ignored: false,
    description: `Sends 30 contacts of your company to ${hook.url}, once each, as contact.snapshot deliveries beside its live ones.`,
  });
  t.true(await focused('#confirm-no'), 'the safe choice has the focus');
  // Escape: nothing sent, and the focus back on Backfill
  await page.keyboard.press('Escape');
  await page.waitForSelector('#confirm', { state: 'hidden' });
  t.true(await focused(start), 'Escape gives the focus back to Backfill');
  t.is(await backfills(), 0);
  // Cancel the same
  await page.keyboard.press('Enter');
  await page.waitForSelector('#confirm[open]');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#confirm', { state: 'hidden' });
  t.true(await focused(start), 'Cancel gives the focus back to Backfill');
  t.is(await backfills(), 0);
  // asked again and answered: Start backfill is before Cancel
  await page.keyboard.press('Enter');
  await page.waitForSelector('#confirm[open]');
  await page.keyboard.press('Shift+Tab');
  await page.keyboard.press('Enter');
  await untilText(page, '#flash', `Backfill started · ${name}`);
  t.is(await backfills(), 1);
  t.deepEqual(browserDialogs, []);
  await untilText(page, `${row} .backfill-words`, 'Backfill: counting contacts…');
  t.true(await page.isVisible(`${row} [data-action=cancel-backfill]`));

  const { rows: [{ id }] } = await db().pool.query('select id from webhooks.backfills where webhook_id = $1', [hook.id]);
  // one step writes all 30 (a batch is 500; untimed, as a loaded machine's step, whose
  // writes took 20 ms each, stopped short after 12) and ends the walk: what remains is
  // sending. (The bar said "0 of 30" already while the walk ran, its total counted: the
  // page has its end once Cancel is gone)
  await untimedStep(db().pool, id);
  await page.waitForSelector(`${row} [data-action=cancel-backfill]`, { state: 'detached' });
  t.is(await page.textContent(`${row} .backfill-words`), 'Backfill: 0 of 30 sent', 'all queued: nothing left to cancel');
  await db().pool.query(
    `update webhooks.deliveries set state = 'succeeded', attempts = 1, completed_at = now()
     where id in (select id from webhooks.deliveries where webhook_id = $1 order by id limit 12)`, [hook.id]);
  await untilText(page, `${row} .backfill-words`, 'Backfill: 12 of 30 sent');
  t.is(await page.getAttribute(`${row} progress`, 'value'), '12');
  t.is(await page.getAttribute(`${row} progress`, 'max'), '30');

  const viewer = await signedIn(company.id, 'webhook_viewer');
  await untilText(viewer.page, `${row} .backfill-words`, 'Backfill: 12 of 30 sent');
  t.is(await viewer.page.locator(`${row} .backfill button`).count(), 0, 'a viewer gets no buttons');

  // two fail for good: said beside the count, not taken for received
  await db().pool.query(
    `update webhooks.deliveries set state = 'failed', attempts = 1, completed_at = now(), last_error = 'HTTP 500'
     where id in (select id from webhooks.deliveries where webhook_id = $1 and state = 'pending' order by id limit 2)`, [hook.id]);
  await db().pool.query(
    `update webhooks.deliveries set state = 'succeeded', attempts = 1, completed_at = now() where webhook_id = $1 and state = 'pending'`, [hook.id]);
  await untilText(page, `${row} .backfill-words`, /^Backfilled 30 contacts on .*; 2 failed, shown in its history$/);
  t.true(await page.isVisible(`${row} [data-action=backfill]`), 'done: a new one may start');
  t.is(await page.evaluate(() => (window as unknown as { injected?: number }).injected), undefined);
  t.deepEqual(problems, []);
  t.deepEqual(viewer.problems, []);
  await viewer.page.close();
  await page.close();
});

browserTest('cancel: the bar gives way to what it came to; a disabled webhook\'s Backfill is off, and says why in words on the page that it names as its description', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted'] });
  const off = await f.webhook({ companyId: company.id, actions: ['contact.deleted'], enabled: false });
  await db().pool.query(
    `insert into crm.contacts (company_id, first_name) select $1, 'C' || i from generate_series(1, 5) i`, [company.id]);
  await db().pool.query('select webhooks.backfill($1)', [hook.id]);
  const row = `tr[data-webhook-id="${hook.id}"]`;

  const { page, problems } = await signedIn(company.id, 'webhook_admin');
  const offButton = `tr[data-webhook-id="${off.id}"] [data-action=backfill]`;
  t.true(await page.isDisabled(offButton));
  // (a title shows on hover alone: no keyboard or screen reader reaches it)
  const describedBy = await page.getAttribute(offButton, 'aria-describedby');
  t.truthy(describedBy);
  t.is(await page.textContent(`#${describedBy}`), 'Enable this webhook to backfill it.');
  t.true(await page.isVisible(`#${describedBy}`));
  t.is(await page.getAttribute(`${row} [data-action=cancel-backfill]`, 'aria-describedby'), null);
  await page.click(`${row} [data-action=cancel-backfill]`);
  await untilText(page, `${row} .backfill-words`, /^Backfill cancelled on .+ after 0$/);
  const { rows: [backfill] } = await db().pool.query('select state from webhooks.backfills where webhook_id = $1', [hook.id]);
  t.is(backfill.state, 'cancelled');

  // a backfill that failed says why, as the engine wrote it
  const { rows: [failed] } = await db().pool.query('select webhooks.backfill($1) as id', [hook.id]);
  await db().pool.query(
    `update webhooks.backfills set state = 'failed', finished_at = now(),
            error = 'the contacts after id 0 could not be written (SQLSTATE 54000); try again, or ask your operator'
     where id = $1`, [failed.id]);
  await page.reload();
  await untilText(page, `${row} .backfill-words`,
    /^Backfill stopped on .+ after 0: the contacts after id 0 could not be written \(SQLSTATE 54000\); try again, or ask your operator$/);
  t.deepEqual(problems, []);
  await page.close();
});

browserTest('a webhook whose latest backfill is older than a hundred of its company\'s others still shows it', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const early = await f.webhook({ companyId: company.id, name: 'Backfilled once, long ago', actions: ['contact.deleted'] });
  const busy = await f.webhook({ companyId: company.id, name: 'Backfilled often', actions: ['contact.deleted'] });
  const done = (webhookId: string, count: number, contacts: number) => db().pool.query(
    `insert into webhooks.backfills (webhook_id, company_id, state, total, queued, finished_at)
     select $1, $2, 'done', $4, $4, now() from generate_series(1, $3)`, [webhookId, company.id, count, contacts]);
  await done(early.id, 1, 7);
  // more than a page of the API's (API_DEFAULT_PAGE_SIZE, 100) after it
  await done(busy.id, 120, 3);

  const { page, problems } = await signedIn(company.id, 'webhook_admin');
  await untilText(page, `tr[data-webhook-id="${busy.id}"] .backfill-words`, /^Backfilled 3 contacts on /);
  await untilText(page, `tr[data-webhook-id="${early.id}"] .backfill-words`, /^Backfilled 7 contacts on /);
  t.deepEqual(problems, []);
  await page.close();
});

browserTest('while a backfill runs, the buttons of the report keep the keyboard\'s focus: its Cancel, and the other rows\' Backfill', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const running = await f.webhook({ companyId: company.id, name: 'Running', actions: ['contact.deleted'] });
  const other = await f.webhook({ companyId: company.id, name: 'Other', actions: ['contact.deleted'] });
  await db().pool.query(
    `insert into crm.contacts (company_id, first_name) select $1, 'C' || i from generate_series(1, 5) i`, [company.id]);
  const { rows: [backfill] } = await db().pool.query('select webhooks.backfill($1) as id', [running.id]);
  const { page, problems } = await signedIn(company.id, 'webhook_admin');
  const cancel = `tr[data-webhook-id="${running.id}"] [data-action=cancel-backfill]`;
  const otherBackfill = `tr[data-webhook-id="${other.id}"] [data-action=backfill]`;
  // the page asks for the backfills' progress every second, and asks again only once it has shown the answer before
  const asked = () => page.waitForRequest((request) => /latestBackfills/.test(request.postData() ?? ''));
  const focused = (selector: string) => page.locator(selector).evaluate((element) => element === document.activeElement);

  await page.focus(otherBackfill);
  // each second, the latest backfill of the webhook whose backfill is going alone, not
  // every page of every webhook's
  const polled = await asked();
  t.deepEqual(polled.postDataJSON().variables, { webhookIds: [running.id], after: null });
  await asked();
  t.true(await focused(otherBackfill), 'another row\'s Backfill keeps the focus');

  await page.focus(cancel);
  await asked();
  await asked();
  t.true(await focused(cancel), 'Cancel keeps the focus while nothing changes');
  await db().pool.query('update webhooks.backfills set total = 30 where id = $1', [backfill.id]);
  await untilText(page, `tr[data-webhook-id="${running.id}"] .backfill-words`, 'Backfill: 0 of 30 sent');
  t.true(await focused(cancel), 'and while its bar moves on');
  // Enter, where the focus is, cancels it
  await page.keyboard.press('Enter');
  await untilText(page, `tr[data-webhook-id="${running.id}"] .backfill-words`, /^Backfill cancelled on /);
  t.deepEqual(problems, []);
  await page.close();
});

browserTest('a company of more contacts than a step counts: the bar says those sent while it counts them, then of its total', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted'] });
  const { rows: [{ part }] } = await db().pool.query('select webhooks_private.backfill_counted_a_step() as part');
  const CONTACTS = part + 5;
  await db().pool.query(
    `insert into crm.contacts (company_id, first_name) select $1, 'C' || i from generate_series(1, $2::int) i`, [company.id, CONTACTS]);
  const { rows: [{ id }] } = await db().pool.query('select webhooks.backfill($1) as id', [hook.id]);
  const words = `tr[data-webhook-id="${hook.id}"] .backfill-words`;
  const { page, problems } = await signedIn(company.id, 'webhook_admin');
  await untilText(page, words, 'Backfill: counting contacts…');
  // the first step writes a batch and counts the first part: no total yet (untimed: a
  // loaded machine's step may stop short after a few contacts)
  await untimedStep(db().pool, id);
  await db().pool.query(
    `update webhooks.deliveries set state = 'succeeded', attempts = 1, completed_at = now()
     where id in (select id from webhooks.deliveries where webhook_id = $1 order by id limit 7)`, [hook.id]);
  await untilText(page, words, 'Backfill: 7 sent, counting contacts…');
  t.is((await db().pool.query('select total from webhooks.backfills where id = $1', [id])).rows[0].total, null);
  // the next step that writes a batch counts the rest
  await db().pool.query(`update webhooks.deliveries set state = 'succeeded', attempts = 1, completed_at = now() where webhook_id = $1 and state = 'pending'`, [hook.id]);
  await db().pool.query('select webhooks_relay.backfill_step(p_only => $1)', [id]);
  await untilText(page, words, new RegExp(`^Backfill: [0-9,]+ of ${CONTACTS.toLocaleString('en-US')} sent$`));
  t.deepEqual(problems, []);
  await page.close();
});
