// Reports » Webhooks, end to end: the real API server on a free port over a database
// of this file's own, and headless Chromium clicking through the page as an admin.
// Screenshots of the report and of a history go to test-results/.
import test from 'ava';
import { SignJWT } from 'jose';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { accessibleOf, launchBrowser, PAGE_TEST_API_LIMITS, signIn, untilReport, untilText, useBrowser, visit } from '../helpers/browser.ts';
import { expiredToken, startTestApi, useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';
import { scrape } from '../helpers/prometheus.ts';
import { fire, fireMany, seedCompany } from '../helpers/report-data.ts';
import { until } from '../helpers/until.ts';
import { holdingProxy } from '../helpers/holding-proxy.ts';

// (the page's modules are plain JavaScript for the browser, without types)
const pageApi: string = '../../page/api.js';

const RESULTS = fileURLToPath(new URL('../../test-results/', import.meta.url));

const { db, api } = useTestDatabaseWithApi(test, { limits: PAGE_TEST_API_LIMITS });
const { browserTest, openTab, problemsOf } = useBrowser(test);

test.before(async () => {
  await mkdir(RESULTS, { recursive: true });
});

// ---- driving the page ----------------------------------------------------------------

/** A fresh tab (its own sessionStorage) on the Reports page. */
const openPage = () => openTab(`${api().api.url}/reports/webhooks`);

async function signedIn(companyId: string): Promise<Page> {
  const page = await openPage();
  await signIn(page, await api().token(companyId, 'webhook_admin', 'jane.admin@purple.example'));
  await untilReport(page);
  return page;
}

const timesFired = (webhookId: string) => `tr[data-webhook-id="${webhookId}"] .times-fired`;
const row = (webhookId: string) => `tr[data-webhook-id="${webhookId}"]`;
const cells = async (page: Page, selector: string) =>
  (await page.locator(`${selector} > td`).allInnerTexts()).map((text) => text.replace(/\s+/g, ' ').trim());

/** A screenshot of the page down to the end of its content, for test-results/. */
async function screenshot(page: Page, name: string): Promise<void> {
  const height = await page.evaluate(() => Math.ceil(document.querySelector('main')!.getBoundingClientRect().bottom));
  const width = page.viewportSize()!.width;
  await page.screenshot({ path: `${RESULTS}${name}`, fullPage: true, clip: { x: 0, y: 0, width, height } });
}

/** "YYYY-MM-DD", n days ago (the browser runs in UTC). */
const dayAgo = (n: number) => new Date(Date.now() - n * 86_400_000).toISOString().slice(0, 10);

// ---- tests ----------------------------------------------------------------------------

// What the page says to an admin names what they can do and whom to ask: a CRM admin
// has no shell to run "npm run token" in, nor a server to "npm start" (the operator
// reads those in docs/page.md)
const ASK_FOR_A_TOKEN = 'Ask whoever runs webhooks for your company for a new admin token.';

/** Sets the tab's wall clock (Date.now, new Date()) apart from the server's by shiftMs, from its next load on: a laptop whose clock is not kept in step. */
async function shiftClock(page: Page, shiftMs: number): Promise<void> {
  await page.addInitScript((shift) => {
    const RealDate = Date;
    class ShiftedDate extends RealDate {
      constructor(...args: unknown[]) {
        if (args.length === 0) super(RealDate.now() + shift);
        else super(...(args as [string]));
      }
      static override now(): number {
        return RealDate.now() + shift;
      }
    }
    globalThis.Date = ShiftedDate as DateConstructor;
  }, shiftMs);
  await page.reload();
}

browserTest('the API judges a token\'s expiry, not the browser\'s clock: a clock ahead still signs in with a valid token; behind, an expired one is told as expired', async (t) => {
  const { companyId } = await seedCompany(db().pool);
  // ahead by 13 hours: the page's clock thinks the token of 12 hours long expired
  const ahead = await openPage();
  await shiftClock(ahead, 13 * 3_600_000);
  t.true(await ahead.evaluate(() => Date.now()) > Date.now() + 12 * 3_600_000, 'the tab\'s clock is ahead');
  await signIn(ahead, await api().token(companyId, 'webhook_admin'));
  await untilReport(ahead);
  t.true(await ahead.isHidden('#sign-in-error'));
  // behind by 13 hours: the page's clock thinks a token expired an hour ago is valid;
  // the API refuses it, and the admin is told it expired, and when
  const behind = await openPage();
  await shiftClock(behind, -13 * 3_600_000);
  await signIn(behind, await expiredToken(api().jwtSecret, companyId));
  await untilText(behind, '#sign-in-error', new RegExp(`^This token expired on .+\\. ${ASK_FOR_A_TOKEN.replaceAll('.', '\\.')}$`));
  t.is(await behind.evaluate(() => sessionStorage.length), 0, 'an expired token is not kept');
  t.true(await behind.isHidden('#report'));
});

browserTest('sign-in says what is wrong with a missing, malformed, expired or wrong token', async (t) => {
  const { companyId } = await seedCompany(db().pool);
  const page = await openPage();
  const error = '#sign-in-error';

  await signIn(page, '');
  await untilText(page, error, 'Paste a token first: the admin token you were given for your company. Ask whoever runs webhooks for your company if you have none.');
  t.notRegex(await page.textContent('#sign-in') ?? '', /npm/, 'the sign-in names no command');

  await signIn(page, 'not a token');
  t.is(await page.textContent(error), 'That is not a token: a token is three parts separated by dots (eyJ….eyJ….…). Copy the whole token you were given.');

  const key = new TextEncoder().encode(api().jwtSecret);
  const expired = await new SignJWT({ role: 'webhook_admin', company_id: companyId })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt(Math.floor(Date.now() / 1000) - 7200)
    .setExpirationTime(Math.floor(Date.now() / 1000) - 3600)
    .sign(key);
  await signIn(page, expired);
  await page.waitForSelector(`${error}:not([hidden])`);
  t.regex(await page.textContent(error) ?? '', /^This token expired on .+\. /);
  t.true((await page.textContent(error))!.endsWith(` ${ASK_FOR_A_TOKEN}`));
  t.is(await page.evaluate(() => sessionStorage.length), 0, 'an expired token is not kept');

  const forged = await new SignJWT({ role: 'webhook_admin', company_id: companyId })
    .setProtectedHeader({ alg: 'HS256' })
    .setExpirationTime('1h')
    .sign(new TextEncoder().encode('some other secret'));
  await signIn(page, forged);
  await page.waitForSelector(`${error}:not([hidden])`);
  t.is(await page.textContent(error), `The server does not accept this token (invalid token: signature verification failed). ${ASK_FOR_A_TOKEN}`);

  // a good token: the report, and the token kept for this tab only
  await signIn(page, await api().token(companyId));
  await page.waitForSelector('#report:not([hidden]) #webhooks-body tr');
  t.is(await page.textContent('#who-name'), 'Purple Realty');
  await page.reload();
  await page.waitForSelector('#report:not([hidden]) #webhooks-body tr');
  t.true(await page.isHidden('#sign-in'), 'a reload keeps the tab signed in');

  await page.click('#sign-out');
  await page.waitForSelector('#sign-in:not([hidden])');
  t.is(await page.evaluate(() => sessionStorage.getItem('bpd-webhooks.token')), null);
  t.deepEqual(problemsOf(page).filter((p) => !p.includes('401')), []);
  await page.close();
});

browserTest('a token copied with line breaks in it signs in; one whose claims are not an object is said to be no token', async (t) => {
  const { companyId } = await seedCompany(db().pool);
  const page = await openPage();
  const error = '#sign-in-error';

  // a token has no white space: a terminal that wrapped the line adds some when it is copied
  await signIn(page, 'eyJhbGciOiJIUzI1NiJ9.bnVsbA.c2ln');
  await untilText(page, error, /^That is not a token/);
  t.is(await page.evaluate(() => sessionStorage.length), 0);

  const token = await api().token(companyId);
  await signIn(page, `${token.slice(0, 40)}\n${token.slice(40, 90)}\r\n ${token.slice(90)}`);
  await untilReport(page);
  t.is(await page.textContent('#who-name'), 'Purple Realty');
  t.true(await page.isHidden('#error'), await page.textContent('#error') ?? '');
  t.is(await page.evaluate(() => sessionStorage.getItem('bpd-webhooks.token')), token);
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('the report shows active and disabled webhooks in plain words; the Date Range changes Times Fired', async (t) => {
  const { companyId, notes, jane, sheet } = await seedCompany(db().pool);
  const page = await signedIn(companyId);
  const created = new Intl.DateTimeFormat('en-US', { year: 'numeric', month: 'short', day: 'numeric', timeZone: 'UTC' })
    .format(new Date());

  // newest first; the last column is the Disable / Enable and Backfill buttons
  t.deepEqual(await cells(page, row(sheet.id)), [
    'Contacts spreadsheet', 'Contact created Contact saved in BPD', created, 'https://sheets.example.com/macros/s/AKfy/exec',
    `Disabled since ${created} The receiver answered 410 Gone`, '0', 'Enable Backfill Enable this webhook to backfill it.',
  ]);
  t.deepEqual(await cells(page, row(jane.id)), [
    'Jane’s new contacts to Asana', 'User assigned: Jane Doe', created, 'https://hooks.asana.example.com/bpd/tasks',
    'Active', '1', 'Disable Backfill',
  ]);
  t.deepEqual(await cells(page, row(notes.id)), [
    'Handwritten thank-you notes', 'Status added: Thank You Note', created,
    'https://api.handwritten.example.com/v1/bpd/thank-you', 'Active', '5 1 failed', 'Disable Backfill',
  ]);
  t.is(await page.getAttribute('#range-presets [aria-pressed=true]', 'data-preset'), '30');
  t.regex(await page.textContent('#page-subtitle') ?? '', /^2 active, 1 disabled · Times Fired /);
  await screenshot(page, 'reports-page.png');

  await page.click('#range-presets [data-preset="7"]');
  await untilText(page, timesFired(notes.id), '2');
  t.is(await page.textContent(timesFired(jane.id)), '1');
  t.is(await page.textContent(timesFired(sheet.id)), '0');

  await page.click('#range-presets [data-preset="90"]');
  await untilText(page, timesFired(notes.id), '9');
  t.is(await page.textContent(timesFired(sheet.id)), '1');

  // custom: from 50 to 35 days ago holds the notes firing of 40 days ago and the sheet's of 45
  await page.click('#range-presets [data-preset="custom"]');
  await page.fill('#range-from', dayAgo(50));
  await page.fill('#range-to', dayAgo(35));
  await page.click('#range-custom button[type=submit]');
  await untilText(page, timesFired(jane.id), '0');
  t.is(await page.textContent(timesFired(notes.id)), '1');
  t.is(await page.textContent(timesFired(sheet.id)), '1');

  // an end before the start is refused in words, and the counts stay
  await page.fill('#range-from', dayAgo(10));
  await page.fill('#range-to', dayAgo(20));
  await page.click('#range-custom button[type=submit]');
  await untilText(page, '#error', 'The end date is before the start date.');
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('Times Fired opens the history with successes and failures; Replay queues a failed firing again', async (t) => {
  const { companyId, notes, sheet, failedId, succeededId, ada, grace } = await seedCompany(db().pool);
  const page = await signedIn(companyId);
  await page.click('#range-presets [data-preset="7"]');
  await untilText(page, timesFired(notes.id), '2');
  await page.click(timesFired(notes.id));

  await page.waitForSelector('#history:not([hidden]) #history-body tr');
  t.is(await page.textContent('#page-title'), 'Handwritten thank-you notes');
  const firing = (id: string) => `#history-body tr[data-delivery-id="${id}"]`;
  // time, action, contact, outcome, status code, error, attempts, payload, replay
  const [, ...success] = await cells(page, firing(succeededId));
  t.deepEqual(success, ['Status added', `Ada Lovelace #${ada.id}`, 'Success', '200', '', '2', 'Show', '']);
  const [, ...failure] = await cells(page, firing(failedId));
  t.deepEqual(failure, ['Status added', `Grace Hopper #${grace.id}`, 'Failure', '500', 'HTTP 500 Internal Server Error', '5', 'Show', 'Replay']);
  t.is(await page.locator(`${firing(succeededId)} button`, { hasText: 'Replay' }).count(), 0, 'no Replay on a success');
  t.is(await page.textContent('#page-info'), '1–2 of 2 · page 1 of 1');

  // the payload as sent, and every attempt
  await page.click(`${firing(failedId)} button:has-text("Show")`);
  await page.waitForSelector(`${firing(failedId)} + tr table.attempts tbody tr`);
  const payload = JSON.parse(await page.textContent(`${firing(failedId)} + tr pre.payload`) ?? '');
  t.is(payload.type, 'contact.status_added');
  t.like(payload.data, { status: { name: 'Thank You Note' }, contact: { first_name: 'Grace', last_name: 'Hopper' } });
  const attempts = await page.locator(`${firing(failedId)} + tr table.attempts tbody tr`).allInnerTexts();
  t.is(attempts.length, 5);
  t.regex(attempts[4].replace(/\s+/g, ' '), /^5 .+ 120 ms 500 HTTP 500 Internal Server Error \{"error":"upstream unavailable"\}$/);
  await screenshot(page, 'history-page.png');

  // the outcome filter
  await page.click('#outcome-filter [data-outcome="failed"]');
  await untilText(page, '#page-info', '1–1 of 1 · page 1 of 1');
  t.is(await page.locator('#history-body tr[data-delivery-id]').count(), 1);

  await page.click(`${firing(failedId)} button:has-text("Replay")`);
  await page.waitForSelector('#flash:not(:empty)');
  t.is(await page.textContent('#flash'), `Replay: firing #${failedId} is queued to be sent again.`);
  const { rows } = await db().pool.query('select state, attempts, completed_at from webhooks.deliveries where id = $1', [failedId]);
  t.deepEqual(rows, [{ state: 'pending', attempts: 5, completed_at: null }]);
  // no longer a failure: the failure filter is empty now, the firing waits under Pending
  await untilText(page, '#page-info', 'No firings');
  await page.click('#outcome-filter [data-outcome="pending"]');
  await page.waitForSelector(`${firing(failedId)}[data-state="pending"]`);
  t.regex((await cells(page, firing(failedId)))[3], /^Pending next try /);

  // a disabled webhook sends nothing: its failures wait for Enable before a Replay
  await page.click('#range-presets [data-preset="90"]');
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${sheet.id}`);
  await page.waitForSelector('#history-body tr[data-state="failed"]');
  const offReplay = '#history-body tr[data-state="failed"] button:has-text("Replay")';
  t.true(await page.isDisabled(offReplay));
  // why, in words on the page that the button names as its description (a title shows
  // on hover alone, and a disabled button takes no focus)
  const offWhy = await page.getAttribute(offReplay, 'aria-describedby');
  t.truthy(offWhy);
  t.is(await page.textContent(`#${offWhy}`), 'This webhook is disabled: enable it to replay a failed firing.');
  t.true(await page.isVisible(`#${offWhy}`));
  t.is(await page.locator('#history-body [title]').count(), 0, 'no reason in a title alone');
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('each outcome filter counts the firings it lists, test sends too; Times Fired leaves them out', async (t) => {
  const pool = db().pool;
  const f = factories(pool);
  const company = await f.company('Tested Realty');
  const webhook = await f.webhook({ companyId: company.id, name: 'Letters', actions: ['contact.status_added'] });
  const contact = await f.contact(company.id);
  await fire(pool, { webhook, contact, action: 'contact.status_added', daysAgo: 1, outcome: 'succeeded', attempts: 1 });
  await fire(pool, { webhook, contact, action: 'contact.status_added', daysAgo: 1, outcome: 'failed', attempts: 5, statusCode: 500 });
  // two test sends: one the receiver refused, one it took
  await fire(pool, { webhook, contact, action: 'webhook.test', daysAgo: 1, outcome: 'failed', attempts: 1, statusCode: 403 });
  await fire(pool, { webhook, contact, action: 'webhook.test', daysAgo: 1, outcome: 'succeeded', attempts: 1 });
  const page = await signedIn(company.id);
  t.is(await page.textContent(timesFired(webhook.id)), '2');
  await page.click(timesFired(webhook.id));
  await page.waitForSelector('#history:not([hidden]) #history-body tr[data-delivery-id]');
  t.is(await page.textContent('#history-facts div:last-child dd'), '2', 'Times Fired leaves the test sends out');
  const count = (outcome: string) => page.textContent(`#outcome-filter [data-outcome="${outcome}"] .count`);
  const listed = () => page.locator('#history-body tr[data-delivery-id]').count();
  t.is(await page.textContent('#page-info'), '1–4 of 4 · page 1 of 1');
  t.is(await listed(), 4);
  t.deepEqual([await count('all'), await count('succeeded'), await count('failed'), await count('pending')], ['4', '2', '2', '0']);
  await page.click('#outcome-filter [data-outcome="failed"]');
  await untilText(page, '#page-info', '1–2 of 2 · page 1 of 1');
  t.is(await listed(), 2);
  t.is(await page.getAttribute('#outcome-filter [data-outcome="failed"]', 'aria-label'), 'Failure: 2');
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('the report\'s "N failed" opens a Failure that says why it counts more: the failed test sends the report leaves out', async (t) => {
  const pool = db().pool;
  const f = factories(pool);
  const company = await f.company('Tested Again Realty');
  const webhook = await f.webhook({ companyId: company.id, name: 'Letters', actions: ['contact.status_added'] });
  const contact = await f.contact(company.id);
  await fire(pool, { webhook, contact, action: 'contact.status_added', daysAgo: 1, outcome: 'succeeded', attempts: 1 });
  await fire(pool, { webhook, contact, action: 'contact.status_added', daysAgo: 1, outcome: 'failed', attempts: 5, statusCode: 500 });
  await fire(pool, { webhook, contact, action: 'webhook.test', daysAgo: 1, outcome: 'failed', attempts: 1, statusCode: 403 });
  const page = await signedIn(company.id);
  t.is(await page.textContent(`${row(webhook.id)} .failed-count`), '1 failed');
  await page.click(`${row(webhook.id)} .failed-count`);
  await untilText(page, '#page-info', '1–2 of 2 · page 1 of 1');
  const failure = '#outcome-filter [data-outcome="failed"]';
  t.is(await page.textContent(`${failure} .count`), '2');
  // why 2 where the link said 1, in words on the page that the filter names as its description
  const why = await page.getAttribute(failure, 'aria-describedby');
  t.is(why, 'failure-with-tests');
  t.is(await page.textContent(`#${why}`),
    'Failure counts failed test sends too, which Times Fired leaves out: its "1 failed" counts firings alone.');
  t.true(await page.isVisible(`#${why}`));
  // without a failed test send they agree, and nothing is said
  await pool.query(`delete from webhooks.deliveries where webhook_id = $1 and action = 'webhook.test'`, [webhook.id]);
  await page.reload({ waitUntil: 'domcontentloaded' });
  await untilText(page, '#page-info', '1–1 of 1 · page 1 of 1');
  t.is(await page.textContent(`${failure} .count`), '1');
  t.is(await page.locator('#failure-with-tests').count(), 0);
  t.is(await page.getAttribute(failure, 'aria-describedby'), null);
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('the webhook\'s page that says "enable it to send a test" has Enable, and Disable, as the report\'s row does', async (t) => {
  const pool = db().pool;
  const f = factories(pool);
  const company = await f.company('Switched Realty');
  const webhook = await f.webhook({ companyId: company.id, name: 'Letters', actions: ['contact.status_added'] });
  await pool.query('select webhooks.disable_webhook($1)', [webhook.id]);
  const page = await signedIn(company.id);
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${webhook.id}`);
  await page.waitForSelector('body:not([aria-busy]) #history:not([hidden]) #toggle-webhook');
  t.is(await page.textContent('#send-test-why'), 'This webhook is disabled: enable it to send a test.');
  t.is(await page.textContent('#toggle-webhook'), 'Enable');
  t.is(await page.getAttribute('#toggle-webhook', 'aria-label'), 'Enable Letters');
  const asked: string[] = [];
  page.on('request', (request) => {
    if (request.url().endsWith('/graphql') && /mutation/.test(request.postDataJSON()?.query ?? '')) asked.push(request.postDataJSON().query);
  });
  const enabled = async () => (await pool.query('select enabled from webhooks.webhooks where id = $1', [webhook.id])).rows[0].enabled;

  await page.click('#toggle-webhook');
  await untilText(page, '#flash', 'Webhook Status: Enable · Letters');
  await page.waitForSelector('body:not([aria-busy]) #send-test:enabled');
  t.true(await enabled());
  t.is(await page.textContent('#toggle-webhook'), 'Disable');
  t.is(await page.evaluate(() => document.activeElement?.id), 'toggle-webhook', 'the focus stays on the button');
  t.regex((await page.innerText('#history-facts')).replace(/\s+/g, ' '), /STATUS Active/);

  await page.click('#toggle-webhook');
  await untilText(page, '#flash', 'Webhook Status: Disable · Letters');
  await page.waitForSelector('body:not([aria-busy]) #send-test:disabled');
  t.false(await enabled());
  t.is(await page.textContent('#toggle-webhook'), 'Enable');
  // the report's own mutations, one each
  t.is(asked.length, 2);
  t.regex(asked[0]!, /enableWebhook\(/);
  t.regex(asked[1]!, /disableWebhook\(/);
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('an ordered webhook\'s firing behind an earlier one of its contact says it waits for it, not when its next try is', async (t) => {
  const pool = db().pool;
  const f = factories(pool);
  const company = await f.company('In Order Realty');
  const webhook = await f.webhook({ companyId: company.id, name: 'Ledger sync', actions: ['contact.updated'], fields: ['city'] });
  await pool.query(`select webhooks.set_webhook_delivery($1, null, true)`, [webhook.id]);
  const [ada, grace] = [await f.contact(company.id, { city: 'a0' }), await f.contact(company.id, { city: 'g0' })];
  await pool.query(`update crm.contacts set city = 'a1' where id = $1`, [ada.id]);
  // a relay holds Ada's first firing; her second and Grace's come after it
  await pool.query(`select * from webhooks_relay.claim_deliveries('relay-a', 10, interval '1 hour', 10,
                      '{}'::bigint[], '{}'::integer[], array[$1::bigint])`, [webhook.id]);
  await pool.query(`update crm.contacts set city = 'a2' where id = $1`, [ada.id]);
  await pool.query(`update crm.contacts set city = 'g1' where id = $1`, [grace.id]);
  const { rows } = await pool.query(`select id from webhooks.deliveries where webhook_id = $1 order by id`, [webhook.id]);
  const [sending, held, free] = rows.map((r) => r.id);

  const page = await signedIn(company.id);
  await page.click(timesFired(webhook.id));
  await page.waitForSelector('#history-body tr[data-delivery-id]');
  const outcome = async (id: string) => (await cells(page, `#history-body tr[data-delivery-id="${id}"]`))[3];
  t.is(await outcome(sending), 'Sending');
  t.is(await outcome(held), 'Pending waiting for an earlier firing of this contact');
  // why it waits, in words on the page that the line names as its description, not in a
  // title that shows on hover alone
  const heldLine = `#history-body tr[data-delivery-id="${held}"] .reason`;
  const heldWhy = await page.getAttribute(heldLine, 'aria-describedby');
  t.truthy(heldWhy);
  t.is(await page.textContent(`#${heldWhy}`), 'This webhook sends the firings of one contact one at a time, in order.');
  t.true(await page.isVisible(`#${heldWhy}`));
  t.is(await page.locator('#history-body [title]').count(), 0, 'no reason in a title alone');
  t.regex(await outcome(free), /^Pending next try /, 'another contact\'s firing is not held back');
  // the next try, on one line, within its cell rather than over the next
  t.deepEqual(await overflowing(page, '#history-table'), []);
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a backfill\'s snapshot held while its webhook is disabled says it waits for the webhook to be enabled', async (t) => {
  const pool = db().pool;
  const f = factories(pool);
  const company = await f.company('Paused Backfill Realty');
  const webhook = await f.webhook({ companyId: company.id, name: 'Mirror', actions: ['contact.deleted'] });
  await f.contact(company.id, { city: 'Denver' });
  const { rows: [{ id: backfillId }] } = await pool.query('select webhooks.backfill($1) as id', [webhook.id]);
  await pool.query('select webhooks_relay.backfill_step(p_only => $1)', [backfillId]);
  await pool.query(`update webhooks.delivery_queue set next_attempt_at = now() where webhook_id = $1`, [webhook.id]);
  await pool.query('select webhooks.disable_webhook($1)', [webhook.id]);
  // a relay's claim finds it due: held (no next try), not failed (the claim asked of
  // this webhook alone: the file's other tests run beside it, and a claim of every
  // webhook took another test's pending firing, which its page then showed as Sending)
  await pool.query(`select * from webhooks_relay.claim_deliveries('relay-a', 10, interval '1 hour', 10,
                      '{}'::bigint[], '{}'::integer[], array[$1::bigint])`, [webhook.id]);
  const { rows: [snapshot] } = await pool.query(`select id, state from webhooks.deliveries where webhook_id = $1`, [webhook.id]);
  t.is(snapshot.state, 'pending');

  const page = await signedIn(company.id);
  await page.click(timesFired(webhook.id));
  await page.waitForSelector('#history-body tr[data-delivery-id]');
  const [, action, , outcome] = await cells(page, `#history-body tr[data-delivery-id="${snapshot.id}"]`);
  t.is(outcome, 'Pending waiting for the webhook to be enabled');
  // its action in words, as every other firing's
  t.is(action, 'Backfill snapshot');
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('Disable shows "Webhook Status: Disable" and turns into Enable, which turns the webhook back on', async (t) => {
  const { companyId, notes } = await seedCompany(db().pool);
  const page = await signedIn(companyId);
  const button = `${row(notes.id)} [data-action]`;
  const stored = async () =>
    (await db().pool.query('select enabled, disabled_by from webhooks.webhooks where id = $1', [notes.id])).rows[0];

  t.is(await page.textContent(button), 'Disable');
  await page.click(button);
  await untilText(page, button, 'Enable');
  t.is(await page.textContent('#flash'), 'Webhook Status: Disable · Handwritten thank-you notes');
  t.regex((await cells(page, row(notes.id)))[4], /^Disabled since /);
  t.deepEqual(await stored(), { enabled: false, disabled_by: 'jane.admin@purple.example' });
  t.regex(await page.textContent('#page-subtitle') ?? '', /^1 active, 2 disabled/);

  await page.click(button);
  await untilText(page, button, 'Disable');
  t.is(await page.textContent('#flash'), 'Webhook Status: Enable · Handwritten thank-you notes');
  t.is((await cells(page, row(notes.id)))[4], 'Active');
  t.deepEqual(await stored(), { enabled: true, disabled_by: null });
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('an action refused because its webhook was disabled meanwhile (another tab, the relay) says why, and the view is read again: Backfill, Replay and Send test are off', async (t) => {
  const { companyId, notes, failedId } = await seedCompany(db().pool);
  // as another admin's tab, or the relay after a 410 Gone, leaves it
  const setEnabled = (enabled: boolean) => db().pool.query(
    `update webhooks.webhooks
     set enabled = $2, disabled_at = case when $2 then null else now() end,
         disabled_by = case when $2 then null else 'relay' end,
         disabled_reason = case when $2 then null else 'The receiver answered 410 Gone' end
     where id = $1`,
    [notes.id, enabled]);
  const refused = async (doing: string) => {
    await page.waitForSelector('#error:not([hidden])');
    t.is(await page.textContent('#error'), `webhook ${notes.id} is disabled; enable it before ${doing}`);
  };
  const page = await signedIn(companyId);

  // Backfill, asked on the report
  await setEnabled(false);
  await page.click(`${row(notes.id)} [data-action=backfill]`);
  await page.waitForSelector('#confirm[open]');
  await page.click('#confirm-yes');
  await refused('a backfill');
  t.regex((await cells(page, row(notes.id)))[4], /^Disabled since .*The receiver answered 410 Gone$/);
  t.is(await page.textContent(`${row(notes.id)} [data-action=enable]`), 'Enable');
  t.true(await page.isDisabled(`${row(notes.id)} [data-action=backfill]`));
  t.is((await db().pool.query('select count(*)::int as n from webhooks.backfills where webhook_id = $1', [notes.id])).rows[0].n, 0);

  // Replay, on the webhook's page
  await setEnabled(true);
  await page.click('#range-presets [data-preset="7"]');
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${notes.id}?outcome=failed`);
  const replay = `#history-body tr[data-delivery-id="${failedId}"] button:has-text("Replay")`;
  await page.waitForSelector(`${replay}:enabled`);
  await page.waitForSelector('body:not([aria-busy])');
  await setEnabled(false);
  await page.click(replay);
  await refused('replaying');
  t.true(await page.isDisabled(replay));
  t.is(await page.getAttribute(replay, 'aria-describedby'), 'replay-off');
  t.regex((await page.innerText('#history-facts')).replace(/\s+/g, ' '), /STATUS Disabled since .* The receiver answered 410 Gone/);
  t.deepEqual((await db().pool.query('select state from webhooks.deliveries where id = $1', [failedId])).rows, [{ state: 'failed' }]);

  // Send test, beside it
  await setEnabled(true);
  await page.reload({ waitUntil: 'domcontentloaded' });
  await page.waitForSelector('body:not([aria-busy]) #send-test:enabled');
  await setEnabled(false);
  await page.click('#send-test');
  await refused('sending a test');
  t.true(await page.isDisabled('#send-test'));
  t.is(await page.textContent(`#${await page.getAttribute('#send-test', 'aria-describedby')}`),
    'This webhook is disabled: enable it to send a test.');
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a token found expired leaves nothing of its company on the page for the next to sign in: no message, no open question', async (t) => {
  const mine = await seedCompany(db().pool);
  const theirs = await seedCompany(db().pool, 'Rival Realty');
  const page = await signedIn(mine.companyId);
  await page.click('#range-presets [data-preset="7"]');
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${mine.notes.id}`);
  await page.click(`#history-body tr[data-delivery-id="${mine.failedId}"] button:has-text("Replay")`);
  await untilText(page, '#flash', `Replay: firing #${mine.failedId} is queued to be sent again.`);
  await page.click('#delete-webhook');
  await untilText(page, '#confirm-text', /^Delete "Handwritten thank-you notes"/);

  const expired = await expiredToken(api().jwtSecret, mine.companyId);
  await page.evaluate((token) => sessionStorage.setItem('bpd-webhooks.token', token), expired);
  // the question is modal, so no one clicks beside it: a request of the page's own finds
  // the token expired meanwhile, as a backfill's progress asked each second would
  await page.locator('#range-presets [data-preset="30"]').dispatchEvent('click');
  await untilText(page, '#sign-in-error', /^This token expired on /);
  // (and the sign-in is not left inert behind it)
  await signIn(page, await api().token(theirs.companyId));
  await page.waitForSelector('#error:not([hidden])');
  t.true(await page.isHidden('#flash'), await page.textContent('#flash') ?? '');
  t.true(await page.isHidden('#confirm'), await page.textContent('#confirm-text') ?? '');
  await page.close();
});

browserTest('a token that expires while the page is open is said so at the next click, Show included: the sign-in asks for a new one', async (t) => {
  const { companyId, notes, failedId } = await seedCompany(db().pool);
  const page = await signedIn(companyId);
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${notes.id}`);
  await page.waitForSelector(`#history-body tr[data-delivery-id="${failedId}"]`);
  await page.evaluate((token) => sessionStorage.setItem('bpd-webhooks.token', token), await expiredToken(api().jwtSecret, companyId));
  await page.click(`#history-body tr[data-delivery-id="${failedId}"] button:has-text("Show")`);
  await untilText(page, '#sign-in-error', /^This token expired on .+\. Ask whoever runs webhooks/);
  t.true(await page.isHidden('#app'), 'nothing of the company on view, as after any other click');
  t.is(await page.evaluate(() => sessionStorage.getItem('bpd-webhooks.token')), null);
  // (the API judges the expiry: the browser logs the 401 of the request it refused, and nothing else)
  t.deepEqual(problemsOf(page), ['Failed to load resource: the server responded with a status of 401 (Unauthorized)']);
  await page.close();
});

browserTest('the next to sign in on a tab never sees the view of the one before, even while their own does not come', async (t) => {
  const mine = await seedCompany(db().pool);
  const theirs = await seedCompany(db().pool, 'Rival Realty');
  const page = await signedIn(mine.companyId);
  t.true(await page.isVisible(row(mine.notes.id)));
  await untilText(page, '#page-subtitle', /^2 active, 1 disabled/);
  const expired = await expiredToken(api().jwtSecret, mine.companyId);
  await page.evaluate((token) => sessionStorage.setItem('bpd-webhooks.token', token), expired);
  await page.click('#range-presets [data-preset="7"]');
  await untilText(page, '#sign-in-error', /^This token expired on /);
  // the server out of reach for the next: their report never comes
  await page.route('**/graphql', (route) => route.abort());
  await signIn(page, await api().token(theirs.companyId));
  await untilText(page, '#error', /^The server cannot be reached/);
  t.is(await page.textContent('#error'), 'The server cannot be reached. Check your network connection and try again; if it stays out of reach, tell whoever runs webhooks for your company. Try again');
  t.false(await page.isVisible(row(mine.notes.id)), 'the company before\'s webhooks are not on view');
  t.is(await page.textContent('#who-name'), '', 'nor its name');
  t.is(await page.textContent('#page-subtitle'), '', 'nor its tally');
  await page.close();
});

browserTest('a webhook whose receiver keeps failing shows as Failing: how many attempts since when, the next try, and when it will be disabled; a success makes it Active again', async (t) => {
  const { companyId, notes, jane } = await seedCompany(db().pool);
  // six failed attempts, an hour apart from a day ago, as the relay's settle counts them
  // (webhooks.breaker_after is 5: the breaker opens; its first wait set to an hour here,
  // so that the page still shows it open however long the browser takes)
  const settle = await db().pool.connect();
  t.teardown(() => settle.release());
  await settle.query('begin');
  await settle.query(`set local webhooks.breaker_probe_interval = '1 hour'`);
  const { rows: [{ first }] } = await settle.query(
    `with attempts as (select now() - interval '1 day' + n * interval '1 hour' as at from generate_series(1, 6) n)
     select webhooks_private.lane_results(array_fill($1::bigint, array[6]), array_agg(at order by at),
                                          array_fill(503, array[6]), array_fill(null::text, array[6])),
            min(at) as first
     from attempts`, [notes.id]);
  await settle.query('commit');
  const page = await signedIn(companyId);
  const time = (at: Date) => new Intl.DateTimeFormat('en-US', {
    year: 'numeric', month: 'short', day: 'numeric', hour: 'numeric', minute: '2-digit', second: '2-digit', timeZone: 'UTC',
  }).format(at);
  const status = (await cells(page, row(notes.id)))[4];
  t.true(status.startsWith(`Failing 6 failed attempts in a row since ${time(first)} Deliveries wait for the next try at `), status);
  t.true(status.endsWith(` Will be disabled ${time(new Date(first.getTime() + 5 * 86_400_000))} unless an attempt succeeds`), status);
  t.is((await cells(page, row(jane.id)))[4], 'Active');

  // the receiver answers again: the next report shows it Active
  await db().pool.query(
    `select webhooks_private.lane_results(array[$1::bigint], array[now()], array[200], array[null::text])`, [notes.id]);
  await page.click('#range-presets [data-preset="7"]');
  await untilText(page, `${row(notes.id)} td:nth-child(5)`, 'Active');
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a history of 10,000 firings is paged 50 at a time', async (t) => {
  const make = factories(db().pool);
  const company = await make.company('Busy Brokers');
  const contact = await make.contact(company.id);
  const webhook = await make.webhook({ companyId: company.id, name: 'Every new contact', actions: ['contact.created'] });
  await fireMany(db().pool, webhook, contact, 10_000);

  const page = await signedIn(company.id);
  t.is(await page.textContent(timesFired(webhook.id)), '10,000');
  // a screen reader says the number the cell shows ("10000" until 2026-12-07)
  t.is(await page.getAttribute(timesFired(webhook.id), 'aria-label'), 'Times Fired: 10,000. Show the history of Every new contact');
  t.is(await page.textContent(`${row(webhook.id)} .failed-count`), '1,000 failed');
  await page.click(timesFired(webhook.id));
  await untilText(page, '#page-info', '1–50 of 10,000 · page 1 of 200');
  const shown = () => page.locator('#history-body tr[data-delivery-id]').count();
  t.is(await shown(), 50, 'one page in the document, not the whole history');

  await page.click('#pager [rel=next]');
  await untilText(page, '#page-info', '51–100 of 10,000 · page 2 of 200');
  const newest = await page.locator('#history-body tr[data-delivery-id]').first().getAttribute('data-delivery-id');
  // Last asks for the oldest page, oldest first: no offset past the whole history,
  // which the database would read and throw away row by row
  const asked: Array<{ query: string; variables: Record<string, unknown> }> = [];
  const listen = (request: import('playwright-core').Request) => {
    if (request.url().endsWith('/graphql')) asked.push(request.postDataJSON());
  };
  page.on('request', listen);
  await page.click('#pager [rel=last]');
  await untilText(page, '#page-info', '9,951–10,000 of 10,000 · page 200 of 200');
  page.off('request', listen);
  const pages = asked.filter((request) => /\bhistory(OldestFirst)?\(/.test(request.query));
  t.is(pages.length, 1, JSON.stringify(asked.map((request) => request.variables)));
  t.regex(pages[0]!.query, /historyOldestFirst\(/);
  t.like(pages[0]!.variables, { offset: 0, first: 50 });
  t.is(await shown(), 50);
  // the oldest 50, newest first as every page
  const { rows: oldest } = await db().pool.query(
    'select id::text from webhooks.deliveries where webhook_id = $1 order by created_at, id limit 50', [webhook.id]);
  t.deepEqual(await page.locator('#history-body tr[data-delivery-id]').evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.deliveryId)),
    oldest.map((row) => row.id).reverse());
  t.not(newest, oldest[0]!.id);
  t.true(await page.isVisible('#pager span[aria-disabled]:has-text("Next")'), 'no page after the last');

  await page.click('#outcome-filter [data-outcome="failed"]');
  await untilText(page, '#page-info', '1–50 of 1,000 · page 1 of 20');
  t.deepEqual(new Set(await page.locator('#history-body tr[data-delivery-id]').evaluateAll(
    (rows) => rows.map((r) => (r as HTMLElement).dataset.state))), new Set(['failed']));
  t.is(await page.textContent('#outcome-filter [data-outcome="all"] .count'), '10,000');
  // a link past the end lands on the last page
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${webhook.id}?page=999&outcome=failed`);
  await untilText(page, '#page-info', '951–1,000 of 1,000 · page 20 of 20');
  // also one whose offset would be past what a GraphQL Int holds
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${webhook.id}?page=99999999999`);
  await untilText(page, '#page-info', '9,951–10,000 of 10,000 · page 200 of 200');
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a page asked by its number deeper than the API pages by offset from both ends (PAGE_TOO_DEEP) shows the nearer end and says why, not the refusal; asked once', async (t) => {
  const make = factories(db().pool);
  const company = await make.company('Deep Brokers');
  const contact = await make.contact(company.id);
  const webhook = await make.webhook({ companyId: company.id, name: 'Deep history', actions: ['contact.created'] });
  // one a minute: 20,500 are the last 15 days (the Date Range shows 30)
  await fireMany(db().pool, webhook, contact, 20_500);
  const page = await signedIn(company.id);
  const asked: Array<{ query: string; variables: Record<string, unknown> }> = [];
  page.on('request', (request) => {
    if (request.url().endsWith('/graphql')) asked.push(request.postDataJSON());
  });
  const refused: string[] = [];
  page.on('response', async (response) => {
    if (response.url().endsWith('/graphql')) {
      const code = (await response.json().catch(() => null))?.errors?.[0]?.extensions?.code;
      if (code) refused.push(code);
    }
  });
  // page 205 of 410: 10,200 firings from the newest, 10,250 from the oldest
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${webhook.id}?page=205`);
  await untilText(page, '#page-info', '1–50 of 20,500 · page 1 of 410');
  t.is(await page.textContent('#flash'), 'Page 205 lies more than 10,000 firings from both ends of this history: ' +
    'a page that deep is found by Next › and ‹ Previous alone, not by its number. Its first page is shown instead.');
  t.true(await page.isHidden('#error'), `no error: ${await page.textContent('#error')}`);
  // nearer the oldest end: its last page
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${webhook.id}?page=207`);
  await untilText(page, '#page-info', '20,451–20,500 of 20,500 · page 410 of 410');
  t.regex(await page.textContent('#flash') ?? '', /^Page 207 lies more than 10,000 firings from both ends of this history: .* Its last page is shown instead\.$/);
  // the limit learnt from the one refusal: no page that deep is asked again
  t.deepEqual(refused, ['PAGE_TOO_DEEP']);
  const tooDeepAsked = () => asked.filter((request) => /\bhistory(OldestFirst)?\(/.test(request.query) && Number(request.variables.offset) > 10_000).length;
  t.is(tooDeepAsked(), 1);
  // a page as deep as the API serves is asked by its number
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${webhook.id}?page=201`);
  await untilText(page, '#page-info', '10,001–10,050 of 20,500 · page 201 of 410');
  // page 205 reached next to a firing (as Next leaves it), then another Date Range: page
  // 205 of that range is asked by its number, and is that deep too
  const { rows: [before] } = await db().pool.query(
    `select id::text, to_json(created_at) #>> '{}' as at from webhooks.deliveries where webhook_id = $1
     order by created_at desc, id desc offset ${204 * 50 - 1} limit 1`, [webhook.id]);
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${webhook.id}?page=205&after=${before.id}&at=${encodeURIComponent(before.at)}`);
  await untilText(page, '#page-info', '10,201–10,250 of 20,500 · page 205 of 410');
  await page.click('#range-presets [data-preset="90"]');
  await untilText(page, '#page-info', '1–50 of 20,500 · page 1 of 410');
  t.regex(await page.textContent('#flash') ?? '', /^Page 205 lies more than 10,000 firings from both ends of this history: .* Its first page is shown instead\.$/);
  t.deepEqual(refused, ['PAGE_TOO_DEEP']);
  t.is(tooDeepAsked(), 1);
  t.deepEqual(problemsOf(page).filter((problem) => !/status of 400/.test(problem)), []);
  await page.close();
});

browserTest('Next and Previous ask the page next to a firing shown, at any depth, and stay put while new firings arrive; Back and reload find the same page', async (t) => {
  const make = factories(db().pool);
  const company = await make.company('Paging Partners');
  const contact = await make.contact(company.id);
  const webhook = await make.webhook({ companyId: company.id, name: 'Every new contact', actions: ['contact.created'] });
  await fireMany(db().pool, webhook, contact, 500);
  // the history as it is now, newest first
  const { rows: before } = await db().pool.query(
    'select id::text from webhooks.deliveries where webhook_id = $1 order by created_at desc, id desc', [webhook.id]);
  const history = before.map((row) => row.id as string);
  const shown = () => page.locator('#history-body tr[data-delivery-id]').evaluateAll(
    (rows) => rows.map((r) => (r as HTMLElement).dataset.deliveryId));
  const asked: Array<{ query: string; variables: Record<string, unknown> }> = [];
  const pagesAsked = () => asked.splice(0).filter((request) => /\bhistory(OldestFirst)?\(/.test(request.query));

  const page = await signedIn(company.id);
  page.on('request', (request) => {
    if (request.url().endsWith('/graphql')) asked.push(request.postDataJSON());
  });
  await page.click(timesFired(webhook.id));
  await untilText(page, '#page-info', '1–50 of 500 · page 1 of 10');
  t.deepEqual(await shown(), history.slice(0, 50));
  const lastShown = await page.locator('#history-body tr[data-delivery-id]').last().getAttribute('data-delivery-id');

  // a firing arrives among the newest: the next page is still the one after the last shown
  const arrived = await fire(db().pool, { webhook, contact, action: 'contact.created', daysAgo: 0, outcome: 'succeeded', attempts: 1 });
  pagesAsked();
  await page.click('#pager [rel=next]');
  await untilText(page, '#page-info', '51–100 of 501 · page 2 of 11');
  t.deepEqual(await shown(), history.slice(50, 100));
  const [second] = pagesAsked();
  t.regex(second!.query, /\bhistory\(/);
  t.like(second!.variables, { afterId: lastShown, offset: 0, first: 50 });
  t.regex(String(second!.variables.afterCreatedAt), /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}/, 'to the microsecond');

  await page.click('#pager [rel=next]');
  await untilText(page, '#page-info', '101–150 of 501 · page 3 of 11');
  t.deepEqual(await shown(), history.slice(100, 150));
  t.regex(page.url(), new RegExp(`page=3&after=${history[99]}&at=`));
  // reload: the same page
  await page.reload();
  await untilText(page, '#page-info', '101–150 of 501 · page 3 of 11');
  t.deepEqual(await shown(), history.slice(100, 150));

  // Previous: the page before the first shown, asked oldest first after it
  pagesAsked();
  await page.click('#pager [rel=prev]');
  await untilText(page, '#page-info', '51–100 of 501 · page 2 of 11');
  t.deepEqual(await shown(), history.slice(50, 100));
  const [previous] = pagesAsked();
  t.regex(previous!.query, /\bhistoryOldestFirst\(/);
  t.like(previous!.variables, { afterId: history[100], offset: 0, first: 50 });
  // Back: page 3 again
  await page.goBack();
  await untilText(page, '#page-info', '101–150 of 501 · page 3 of 11');
  t.deepEqual(await shown(), history.slice(100, 150));
  // another Date Range: its page 3, by its number (the firing was of the range before)
  pagesAsked();
  await page.click('#range-presets [data-preset="7"]');
  await until('the page of the new range', async () => pagesAsked().some((request) =>
    request.variables.afterId === null && request.variables.offset === 100));
  await untilText(page, '#page-info', '101–150 of 501 · page 3 of 11');
  // the first page is the newest, the firing that arrived with it
  await page.click('#pager [rel=first]');
  await untilText(page, '#page-info', '1–50 of 501 · page 1 of 11');
  const newest = await shown();
  t.true(newest.includes(arrived));
  t.deepEqual(newest.filter((id) => id !== arrived), history.slice(0, 49));
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a receiver\'s response, as the relay keeps it (1,024 bytes), can be read to its end under Show', async (t) => {
  const pool = db().pool;
  const make = factories(pool);
  const company = await make.company('Wordy Receivers');
  const contact = await make.contact(company.id);
  const webhook = await make.webhook({ companyId: company.id, name: 'Verbose', actions: ['contact.created'] });
  const firingId = await fire(pool, { webhook, contact, action: 'contact.created', daysAgo: 1, outcome: 'failed', attempts: 1, statusCode: 422 });
  const body = `${Array.from({ length: 40 }, (_, i) => `line ${i}: the field "email" is not valid`).join('\n')}`.slice(0, 1000) + '\nTHE END';
  await pool.query('update webhooks.delivery_attempts set response_body = $2 where delivery_id = $1', [firingId, body]);
  const page = await signedIn(company.id);
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${webhook.id}`);
  const firing = `#history-body tr[data-delivery-id="${firingId}"]`;
  await page.click(`${firing} button:has-text("Show")`);
  const response = page.locator(`${firing} + tr table.attempts .response`);
  await response.waitFor();
  t.is(await response.textContent(), body);
  // scrolled with the wheel, as one reads it, its end comes into view
  await response.hover();
  await page.mouse.wheel(0, 5_000);
  await until('the response scrolled to its end', () => response.evaluate((e) => e.scrollTop + e.clientHeight >= e.scrollHeight - 1));
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('the payload under Show is its text as sent: a number past JavaScript\'s precision keeps its digits, its keys their order', async (t) => {
  const pool = db().pool;
  const make = factories(pool);
  const company = await make.company('Precise Numbers');
  const contact = await make.contact(company.id);
  const webhook = await make.webhook({ companyId: company.id, name: 'Exact', actions: ['contact.created'] });
  const firingId = await fire(pool, { webhook, contact, action: 'contact.created', daysAgo: 1, outcome: 'succeeded', attempts: 1, statusCode: 200 });
  // a numeric contact field of 20 digits and a fraction, which a JavaScript number
  // rounds; and a key that is an integer ("12345678"), which a JavaScript object puts
  // before the others, where jsonb puts it after the shorter "contact"
  await pool.query(`update webhooks.deliveries
                    set payload = jsonb_set(jsonb_set(payload, '{data,contact,score}', '12345678901234567890.5'::jsonb), '{data,12345678}', '"eight"')
                    where id = $1`, [firingId]);
  const { rows: [{ sent }] } = await pool.query('select payload::text as sent from webhooks.deliveries where id = $1', [firingId]);
  t.true(sent.includes('"score": 12345678901234567890.5'), sent);
  t.true(sent.indexOf('"contact"') < sent.indexOf('"12345678"'), sent);
  const page = await signedIn(company.id);
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${webhook.id}`);
  const firing = `#history-body tr[data-delivery-id="${firingId}"]`;
  await page.click(`${firing} button:has-text("Show")`);
  const shown = page.locator(`${firing} + tr pre.payload:not(.muted)`);
  await shown.waitFor();
  t.is(await shown.textContent(), sent);
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a receiver\'s response and a redirect\'s Location made of markup show as the text they are: no element is made of them, nothing runs', async (t) => {
  const pool = db().pool;
  const make = factories(pool);
  const company = await make.company('Hostile Receivers');
  const contact = await make.contact(company.id);
  const webhook = await make.webhook({ companyId: company.id, name: 'Markup', actions: ['contact.created'] });
  // (the relay keeps a Location as a URL, asUrl; a DBA's or an older relay's text need not be one)
  const error = 'redirect not followed: HTTP 302 to javascript:window.injected=1//"><img src=x onerror="window.injected=2">';
  const firingId = await fire(pool, { webhook, contact, action: 'contact.created', daysAgo: 1, outcome: 'failed', attempts: 1, statusCode: 500, error });
  const body = '<script>window.injected=3</script><img src=x onerror="window.injected=4"><a href="javascript:window.injected=5">x</a>';
  await pool.query('update webhooks.delivery_attempts set response_body = $2 where delivery_id = $1', [firingId, body]);
  const page = await signedIn(company.id);
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${webhook.id}`);
  const firing = `#history-body tr[data-delivery-id="${firingId}"]`;
  await page.click(`${firing} button:has-text("Show")`);
  const response = page.locator(`${firing} + tr table.attempts .response`);
  await response.waitFor();
  t.is(await response.textContent(), body);
  t.is(await page.locator(`${firing} .error-text`).textContent(), error);
  t.is(await page.locator('#history-body script, #history-body img, #history-body a[href^="javascript:"]').count(), 0);
  t.is(await page.evaluate(() => (window as unknown as { injected?: number }).injected), undefined);
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a delivery answered 302 shows its attempt\'s "redirect not followed" as a note, not an error; a failed attempt before it stays an error', async (t) => {
  const pool = db().pool;
  const make = factories(pool);
  const company = await make.company('Script Receivers');
  const contact = await make.contact(company.id);
  const webhook = await make.webhook({ companyId: company.id, name: 'Apps Script', actions: ['contact.created'] });
  // the relay's rows for a first attempt refused and a second answered 302: a success
  // (webhooks_private.delivered_status) that keeps the note of the Location not followed
  const note = 'redirect not followed: HTTP 302 to https://script.googleusercontent.com/macros/echo?user_content_key=abc';
  const firingId = await fire(pool, { webhook, contact, action: 'contact.created', daysAgo: 1, outcome: 'succeeded', attempts: 2 });
  await pool.query(
    `update webhooks.delivery_attempts set status_code = 302, error = $2, response_body = null where delivery_id = $1 and attempt = 2`,
    [firingId, note]);
  await pool.query(`update webhooks.deliveries set last_status_code = 302, last_error = $2 where id = $1`, [firingId, note]);
  const page = await signedIn(company.id);
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${webhook.id}`);
  const firing = `#history-body tr[data-delivery-id="${firingId}"]`;
  await page.click(`${firing} button:has-text("Show")`);
  const attempts = `${firing} + tr table.attempts tbody tr`;
  await page.waitForSelector(attempts);
  t.deepEqual(await page.locator(`${attempts}:nth-child(1) .error-text`).allTextContents(), ['connection refused']);
  t.deepEqual(await page.locator(`${attempts}:nth-child(1) .note-text`).allTextContents(), []);
  t.deepEqual(await page.locator(`${attempts}:nth-child(2) .error-text`).allTextContents(), []);
  t.deepEqual(await page.locator(`${attempts}:nth-child(2) .note-text`).allTextContents(), [note]);
  // the firing's own row: succeeded, its last note no error either
  t.is(await page.getAttribute(firing, 'data-state'), 'succeeded');
  t.deepEqual(await page.locator(`${firing} .error-text`).allTextContents(), []);
  t.deepEqual(await page.locator(`${firing} .note-text`).allTextContents(), [note]);
  // a note is not styled as an error
  const colour = (selector: string) => page.locator(selector).first().evaluate((e) => getComputedStyle(e).color);
  t.not(await colour(`${attempts}:nth-child(2) .note-text`), await colour(`${attempts}:nth-child(1) .error-text`));
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a long error (a redirect\'s Location, as long as the relay keeps) keeps its firing\'s row a few lines tall, the rest a scroll away', async (t) => {
  const pool = db().pool;
  const make = factories(pool);
  const company = await make.company('Redirecting Receivers');
  const contact = await make.contact(company.id);
  const webhook = await make.webhook({ companyId: company.id, name: 'Moved', actions: ['contact.created'] });
  // RELAY_RESPONSE_EXCERPT_BYTES may be up to 64 KiB, and a Location header 16 KiB
  const error = `redirect not followed: HTTP 302 to https://login.example.com/sso?${'state=abc&'.repeat(1_600)}`;
  const firingId = await fire(pool, { webhook, contact, action: 'contact.created', daysAgo: 1, outcome: 'failed', attempts: 1, error });
  const page = await signedIn(company.id);
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${webhook.id}`);
  const firing = page.locator(`#history-body tr[data-delivery-id="${firingId}"]`);
  await firing.waitFor();
  const height = (await firing.boundingBox())!.height;
  t.true(height < 150, `the row is ${height} px tall`);
  const cell = firing.locator('.error-text');
  t.is(await cell.textContent(), error);
  await cell.hover();
  await page.mouse.wheel(0, 100_000);
  await until('the error scrolled to its end', () => cell.evaluate((e) => {
    const box = (e.firstElementChild ?? e) as HTMLElement;
    return box.scrollTop > 0 && box.scrollTop + box.clientHeight >= box.scrollHeight - 1;
  }));
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a firing tried more than a hundred times shows its latest attempts, and the earlier ones on request, asked after the earliest shown', async (t) => {
  const make = factories(db().pool);
  const company = await make.company('Stubborn Receivers');
  const contact = await make.contact(company.id);
  const webhook = await make.webhook({ companyId: company.id, name: 'Replayed often', actions: ['contact.created'] });
  const firingId = await fire(db().pool, { webhook, contact, action: 'contact.created', daysAgo: 1, outcome: 'failed', attempts: 130, statusCode: 500 });
  const page = await signedIn(company.id);
  // the attempts' requests: the variables of each
  const asked: Array<Record<string, unknown>> = [];
  page.on('request', (request) => {
    const body = request.url().endsWith('/graphql') ? request.postDataJSON() : undefined;
    if (body?.query?.includes('deliveryAttemptsLatestFirst')) asked.push(body.variables);
  });
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${webhook.id}`);
  const firing = `#history-body tr[data-delivery-id="${firingId}"]`;
  await page.click(`${firing} button:has-text("Show")`);
  const attempts = `${firing} + tr table.attempts tbody tr`;
  await page.waitForSelector(attempts);
  const numbers = async () => (await page.locator(`${attempts} > td:first-child`).allInnerTexts()).map(Number);
  const latest = await numbers();
  t.is(latest.length, 100);
  t.deepEqual([latest[0], latest[99]], [31, 130], 'the latest hundred, first to last');
  const earlier = `${firing} + tr button.earlier-attempts`;
  t.is(await page.textContent(earlier), 'Show the 30 earlier attempts');
  // named with its firing for a screen reader, as the firing's own Show button is
  const showFiring = await page.getAttribute(`${firing} button[aria-expanded]`, 'aria-label');
  const which = showFiring?.replace(/^Hide /, '') ?? '';
  t.regex(which, new RegExp(`^firing #${firingId}, `));
  t.is(await page.getAttribute(earlier, 'aria-label'), `Show the 30 earlier attempts of ${which}`);
  await page.click(earlier);
  await until('the earlier attempts shown', async () => (await numbers()).length === 130);
  t.deepEqual(await numbers(), Array.from({ length: 130 }, (_, i) => i + 1));
  t.is(await page.locator(earlier).count(), 0, 'nothing left to show');
  // the earlier ones after the earliest shown (its number and id), not by an offset,
  // which reads every attempt before the page (test/sql/attempts-pages.test.ts)
  const { rows: [thirtyFirst] } = await db().pool.query(
    'select id::text from webhooks.delivery_attempts where delivery_id = $1 and attempt = 31', [firingId]);
  t.like(asked, [{ id: firingId, afterAttempt: null, afterId: null }, { id: firingId, afterAttempt: 31, afterId: thirtyFirst.id }]);
  t.is(asked.length, 2);
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a firing tried more than a thousand times says "1,000+" of its earlier attempts, the API counting no further, and shows them all on request', async (t) => {
  const make = factories(db().pool);
  const company = await make.company('Very Stubborn Receivers');
  const contact = await make.contact(company.id);
  const webhook = await make.webhook({ companyId: company.id, name: 'Replayed thousands of times', actions: ['contact.created'] });
  const firingId = await fire(db().pool, { webhook, contact, action: 'contact.created', daysAgo: 1, outcome: 'failed', attempts: 1_050, statusCode: 500 });
  const page = await signedIn(company.id);
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${webhook.id}`);
  const firing = `#history-body tr[data-delivery-id="${firingId}"]`;
  await page.click(`${firing} button:has-text("Show")`);
  const attempts = `${firing} + tr table.attempts tbody tr`;
  const earlier = `${firing} + tr button.earlier-attempts`;
  await untilText(page, earlier, 'Show 100 earlier attempts (of 900+)');
  for (let shown = 200; shown <= 1_000; shown += 100) {
    await page.click(earlier);
    await until(`${shown} attempts shown`, async () => (await page.locator(attempts).count()) === shown);
  }
  t.is(await page.textContent(earlier), 'Show 100 earlier attempts', 'past the count: more, how many unsaid');
  await page.click(earlier);
  await until('every attempt shown', async () => (await page.locator(attempts).count()) === 1_050);
  t.is(await page.locator(earlier).count(), 0, 'nothing left to show');
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('an API whose pages hold fewer than a hundred rows (API_MAX_PAGE_SIZE) serves the report, a history, its changes and its attempts', async (t) => {
  const pool = db().pool;
  const make = factories(pool);
  const company = await make.company('Tight Pages');
  const contact = await make.contact(company.id);
  const webhook = await make.webhook({ companyId: company.id, name: 'Often tried', actions: ['contact.created'] });
  const firingId = await fire(pool, { webhook, contact, action: 'contact.created', daysAgo: 1, outcome: 'failed', attempts: 70, statusCode: 500 });
  const small = await startTestApi(db().url, { limits: { ...PAGE_TEST_API_LIMITS, maxPageSize: 60, defaultPageSize: 60 } });
  t.teardown(() => small.stop());
  const page = await openTab(`${small.api.url}/reports/webhooks`);
  await signIn(page, await small.token(company.id));
  await untilReport(page);
  t.true(await page.isHidden('#error'), await page.textContent('#error') ?? '');
  await page.click(timesFired(webhook.id));
  await page.waitForSelector('#audit-list li[data-action="webhook.created"]');
  t.true(await page.isHidden('#error'), await page.textContent('#error') ?? '');
  const firing = `#history-body tr[data-delivery-id="${firingId}"]`;
  await page.click(`${firing} button:has-text("Show")`);
  const earlier = `${firing} + tr button.earlier-attempts`;
  await untilText(page, earlier, 'Show the 10 earlier attempts');
  await page.click(earlier);
  await until('every attempt shown', async () => (await page.locator(`${firing} + tr table.attempts tbody tr`).count()) === 70);
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('an API whose pages hold fewer than fifty rows (API_MAX_PAGE_SIZE) serves a history in pages of that many', async (t) => {
  const make = factories(db().pool);
  const company = await make.company('Tiny Pages');
  const contact = await make.contact(company.id);
  const webhook = await make.webhook({ companyId: company.id, name: 'Paged small', actions: ['contact.created'] });
  await fireMany(db().pool, webhook, contact, 45);
  const small = await startTestApi(db().url, { limits: { ...PAGE_TEST_API_LIMITS, maxPageSize: 20, defaultPageSize: 20 } });
  t.teardown(() => small.stop());
  const page = await openTab(`${small.api.url}/reports/webhooks`);
  await signIn(page, await small.token(company.id));
  await untilReport(page);
  await page.click(timesFired(webhook.id));
  await untilText(page, '#page-info', '1–20 of 45 · page 1 of 3');
  t.true(await page.isHidden('#error'), await page.textContent('#error') ?? '');
  t.is(await page.locator('#history-body tr[data-delivery-id]').count(), 20);
  await page.click('#pager [rel=last]');
  await untilText(page, '#page-info', '41–45 of 45 · page 3 of 3');
  t.is(await page.locator('#history-body tr[data-delivery-id]').count(), 5);
  t.true(await page.isHidden('#error'), await page.textContent('#error') ?? '');
  // (the browser logs the one refusal of a page of 50, HTTP 400, that taught the page the API's size)
  const refusals = problemsOf(page).filter((problem) => /status of 400 \(Bad Request\)/.test(problem));
  t.is(refusals.length, 1);
  t.deepEqual(problemsOf(page).filter((problem) => !refusals.includes(problem)), []);
  await page.close();
});

browserTest('"Triggered by" says a webhook\'s filters in plain words, in the report and in its history', async (t) => {
  const f = factories(db().pool);
  const company = await f.company('Filter Realty');
  const sync = await f.webhook({
    companyId: company.id, name: 'Encompass sync', actions: ['contact.updated'],
    watchFields: ['email', 'phone'], conditions: { field: 'state', op: 'in', value: ['VA', 'MD'] }, ignoreSources: ['encompass'],
  });
  const thankYou = await f.status(company.id, 'Thank You Note');
  const letters = await f.webhook({
    companyId: company.id, name: 'Letters', actions: ['contact.status_added'], statusId: thankYou.id,
    conditions: {
      all: [
        { field: 'state', op: 'not_in', value: ['AK', 'HI'] },
        { not: { field: 'street', op: 'is_null' } },
        { any: [{ field: 'custom.score', op: 'gte', value: 5 }, { field: 'birthday', op: 'lt', value: '2000-01-01' }] },
      ],
    },
  });
  const page = await signedIn(company.id);
  t.is((await cells(page, row(sync.id)))[1],
    'Contact updated (outside BPD) when email or phone changes state is VA or MD not from encompass');
  t.is(await page.locator(`${row(sync.id)} .triggers li`).count(), 4);
  t.deepEqual(await page.locator(`${row(letters.id)} .triggers li`).allInnerTexts(), [
    'Status added: Thank You Note', 'state is none of AK, HI', 'not (street is empty)',
    'score is at least 5 or birthday is before 2000-01-01',
  ]);
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${sync.id}`);
  await untilText(page, '#history-facts div:first-child dd',
    'Contact updated (outside BPD) · when email or phone changes · state is VA or MD · not from encompass');
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

/**
 * What runs past its own box sideways under `selector`: the table it is in, when that
 * must be scrolled sideways to reach its last columns, and each element whose content
 * is wider than it (drawn over its neighbours, or widening the page), with its start.
 */
async function overflowing(page: Page, selector: string): Promise<string[]> {
  return page.evaluate((s) => {
    const root = document.querySelector(s)!;
    const found: string[] = [];
    const wrap = root.closest('.table-wrap');
    if (wrap && wrap.scrollWidth > wrap.clientWidth + 1) found.push(`the table: ${wrap.scrollWidth}px wide in ${wrap.clientWidth}px`);
    for (const element of root.querySelectorAll<HTMLElement>('*')) {
      if (element.clientWidth > 0 && element.scrollWidth > element.clientWidth + 1 && getComputedStyle(element).overflowX === 'visible') {
        found.push(`${element.scrollWidth}px in ${element.clientWidth}px: ${element.outerHTML.slice(0, 120)}`);
      }
    }
    return found;
  }, selector);
}

browserTest('long text without spaces in a name, a filter or a disable reason wraps in its cell: every row\'s buttons stay on the page', async (t) => {
  const pool = db().pool;
  const f = factories(pool);
  const company = await f.company('Long Words Realty');
  const status = await f.status(company.id, `Status${'S'.repeat(300)}`);
  const zips = Array.from({ length: 100 }, (_, i) => String(22_000 + i));
  const long = await f.webhook({
    companyId: company.id, name: `Name${'N'.repeat(196)}`, actions: ['contact.status_added'], statusId: status.id,
    conditions: { all: [{ field: 'postal_code', op: 'in', value: zips }, { field: 'email', op: 'contains', value: `@${'e'.repeat(400)}` }] },
    ignoreSources: Array.from({ length: 20 }, (_, i) => `integration-${i}`),
  });
  // as the relay words it after every attempt failed, quoting the receiver's error
  const gone = await f.webhook({ companyId: company.id, name: 'Gone', actions: ['contact.created'], enabled: false });
  await pool.query(`update webhooks.webhooks set disabled_by = 'relay', disabled_reason = $2 where id = $1`,
    [gone.id, `every attempt has failed for 3 days; the last: redirect not followed: HTTP 301 to https://x.example/${'r'.repeat(400)}`]);
  const page = await signedIn(company.id);
  t.deepEqual(await overflowing(page, '#webhooks-table'), []);
  for (const id of [long.id, gone.id]) {
    const button = await page.locator(`${row(id)} [data-action]`).first().boundingBox();
    t.true(button !== null && button.x + button.width <= page.viewportSize()!.width, `the button of webhook ${id} is on the page`);
  }
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${long.id}`);
  await untilText(page, '#page-title', long.name);
  t.deepEqual(await overflowing(page, 'main'), [], 'its title and facts fit the page');
  // the questions and the secret's note that name it
  await page.click('#delete-webhook');
  await untilText(page, '#confirm-text', /^Delete "Name/);
  t.deepEqual(await overflowing(page, 'main'), [], 'Delete\'s question fits the page');
  await page.click('#confirm-no');
  await page.click('#rotate-secret');
  await page.click('#confirm-yes');
  await untilText(page, '#secret-note', /^The new secret of "Name/);
  t.deepEqual(await overflowing(page, 'main'), [], 'the new secret\'s note fits the page');
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('text of one letter and hundreds of combining marks, where no line may break, stays in its cell: it draws over no other, and no link reaches past its cell', async (t) => {
  const { companyId, notes } = await seedCompany(db().pool);
  const f = factories(db().pool);
  // "Z" and its marks are one character as a reader sees it (a grapheme cluster), which
  // no line breaks inside however it is told to wrap; the database takes it
  const stacked = (length: number) => `Z${'\u0336\u0301\u0308\u030a\u0352\u0357\u035b\u0363\u0364\u0365'.repeat(60)}`.slice(0, length);
  const hostile = await f.webhook({ companyId, name: stacked(150), url: `https://receiver.example.com/${stacked(300)}`, actions: ['contact.created'] });
  await db().pool.query(`update webhooks.webhooks set enabled = false, disabled_at = now(), disabled_reason = $2 where id = $1`,
    [hostile.id, stacked(200)]);
  const contact = await f.contact(companyId, { first_name: stacked(300), last_name: null });
  const marked = await fire(db().pool, { webhook: notes, contact, action: 'contact.status_added', daysAgo: 1, outcome: 'failed', attempts: 1, statusCode: 500, error: stacked(300) });

  const page = await signedIn(companyId);
  t.deepEqual(await overflowing(page, '#webhooks-table'), []);
  for (const id of [hostile.id, notes.id]) {
    const button = await page.locator(`${row(id)} [data-action]`).first().boundingBox();
    t.true(button !== null && button.x + button.width <= page.viewportSize()!.width, `the button of webhook ${id} is on the page`);
  }
  // what is beside the name, in the next column, is not a link to the webhook
  const besideName = await page.locator(`${row(hostile.id)} .name`).evaluate((name) => {
    const box = name.getBoundingClientRect();
    return document.elementFromPoint(box.right + 20, box.top + box.height / 2)?.closest('a')?.outerHTML ?? null;
  });
  t.is(besideName, null);

  await page.click(timesFired(notes.id));
  await page.waitForSelector(`#history-body tr[data-delivery-id="${marked}"]`);
  t.deepEqual(await overflowing(page, '#history-table'), []);
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${hostile.id}`);
  await page.waitForSelector('#history:not([hidden])');
  t.deepEqual(await overflowing(page, 'main'), [], 'its title and facts stay on the page');
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('the history of changes and the page\'s messages wrap a long URL and a long name within the page', async (t) => {
  const pool = db().pool;
  const f = factories(pool);
  const company = await f.company('Logic Apps Realty');
  // as Azure Logic Apps and Power Automate give them: one word of some 300 characters
  const url = `https://prod-12.westus.logic.azure.com:443/workflows/${'a1b2c3d4'.repeat(4)}/triggers/manual/paths/invoke`
    + `?api-version=2016-10-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=${'Q'.repeat(120)}`;
  const webhook = await f.webhook({ companyId: company.id, name: `Flow${'F'.repeat(150)}`, actions: ['contact.created'], url });
  await pool.query(`update webhooks.webhooks set name = 'Power Automate flow' where id = $1`, [webhook.id]);
  const page = await signedIn(company.id);
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${webhook.id}`);
  await page.waitForSelector('#audit-list li[data-action="webhook.updated"]');
  t.deepEqual(await overflowing(page, 'main'), []);
  // and the message that names the URL (no relay here: the test waits to be sent)
  await page.click('#send-test');
  await untilText(page, '#flash', /^Test sent to https:/);
  t.deepEqual(await overflowing(page, 'main'), []);
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a webhook changed more times than a page of its history of changes holds shows the latest, and counts none of them', async (t) => {
  const pool = db().pool;
  const f = factories(pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, name: 'Renamed by a script', actions: ['contact.created'] });
  // a script's renames, a row each (the log is kept for good): more than the page's 100
  await pool.query(
    `insert into webhooks.audit_log (company_id, webhook_id, actor, action, at)
     select $1, $2, 'script', 'webhook.updated', now() - n * interval '1 minute' from generate_series(1, 120) n`,
    [company.id, webhook.id]);
  const asked: string[] = [];
  const page = await signedIn(company.id);
  page.on('request', (request) => {
    if (request.url().endsWith('/graphql')) asked.push(request.postDataJSON()?.query ?? '');
  });
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${webhook.id}`);
  await untilText(page, '#audit-list li.muted', 'The latest 100 changes; older ones are not shown.');
  t.is(await page.locator('#audit-list li[data-action]').count(), 100);
  t.false(asked.some((query) => /auditLog\s*(\([^)]*\))?\s*\{[^}]*totalCount/.test(query)), 'the log is not counted');
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a company name from the CRM without spaces leaves Sign out on the page', async (t) => {
  const f = factories(db().pool);
  const company = await f.company(`Realty${'R'.repeat(300)}`);
  await f.webhook({ companyId: company.id, name: 'Sheet', actions: ['contact.created'] });
  const page = await signedIn(company.id);
  await untilText(page, '#who-name', /^Realty/);
  const signOut = await page.locator('#sign-out').boundingBox();
  t.true(signOut !== null && signOut.x + signOut.width <= page.viewportSize()!.width, 'Sign out is on the page');
  t.true(await page.evaluate(() => document.documentElement.scrollWidth <= document.documentElement.clientWidth), 'nothing wider than the page');
  // the name as the API gives it (its first 200 characters, as every name of the CRM)
  // is on the page: wrapped, and past a few lines scrolled, which the keyboard and a
  // finger reach (not in a title, which shows on hover alone)
  t.is(await page.getAttribute('#who-name', 'title'), null);
  t.is(await page.textContent('#who-name'), `Realty${'R'.repeat(194)}`);
  t.true(await page.locator('#who-name').evaluate((name) => name.scrollWidth <= name.clientWidth), 'not cut at its side');
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a long company name is shown whole in the top bar, not cut short with the rest in a title', async (t) => {
  const f = factories(db().pool);
  const name = `Purple Realty ${'and Partners '.repeat(8)}of Springfield`;
  const company = await f.company(name);
  await f.webhook({ companyId: company.id, name: 'Sheet', actions: ['contact.created'] });
  const page = await signedIn(company.id);
  await untilText(page, '#who-name', name.trim());
  t.is(await page.getAttribute('#who-name', 'title'), null);
  const shown = await page.locator('#who-name').evaluate((element) => ({
    wide: element.scrollWidth <= element.clientWidth, tall: element.scrollHeight <= element.clientHeight,
  }));
  t.deepEqual(shown, { wide: true, tall: true }, 'every word of it in view');
  const signOut = await page.locator('#sign-out').boundingBox();
  t.true(signOut !== null && signOut.x + signOut.width <= page.viewportSize()!.width, 'Sign out is on the page');
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a contact\'s name from the CRM neither widens the history past the page nor reorders the contact\'s number after it', async (t) => {
  const pool = db().pool;
  const f = factories(pool);
  const company = await f.company('Odd Contacts Realty');
  // a name pasted without spaces, and one whose last character is RIGHT-TO-LEFT OVERRIDE
  const long = await f.contact(company.id, { first_name: 'Z'.repeat(10_000), last_name: null });
  const override = await f.contact(company.id, { first_name: 'Eve', last_name: 'Mallory\u202E' });
  const webhook = await f.webhook({ companyId: company.id, name: 'Everyone', actions: ['contact.created'], fields: ['first_name', 'last_name'] });
  const longId = await fire(pool, { webhook, contact: long, action: 'contact.created', daysAgo: 1, outcome: 'succeeded', attempts: 1 });
  const overrideId = await fire(pool, { webhook, contact: override, action: 'contact.created', daysAgo: 1, outcome: 'succeeded', attempts: 1 });
  const page = await signedIn(company.id);
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${webhook.id}`);
  await page.waitForSelector(`#history-body tr[data-delivery-id="${longId}"]`);
  t.deepEqual(await overflowing(page, '#history-table'), []);
  const show = await page.locator(`#history-body tr[data-delivery-id="${longId}"] button:has-text("Show")`).boundingBox();
  t.true(show !== null && show.x + show.width <= page.viewportSize()!.width, 'the row\'s Show is on the page');
  // "#<id>" reads left to right, its "#" first: the override ends with the name
  const order = await page.locator(`#history-body tr[data-delivery-id="${overrideId}"] .contact-id`).evaluate((span) => {
    const text = span.firstChild!;
    const x = (i: number) => {
      const range = document.createRange();
      range.setStart(text, i);
      range.setEnd(text, i + 1);
      return range.getBoundingClientRect().x;
    };
    return { text: span.textContent, hashBeforeDigits: x(0) < x(1) };
  });
  t.deepEqual(order, { text: `#${override.id}`, hashBeforeDigits: true });
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

/** Whether `word`, inside the element, shows left to right: its first letter left of its second. */
async function readsLeftToRight(page: Page, selector: string, word: string): Promise<boolean> {
  return page.locator(selector).evaluate((element, w) => {
    const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const at = node.textContent!.indexOf(w);
      if (at < 0) continue;
      const x = (i: number) => {
        const range = document.createRange();
        range.setStart(node!, at + i);
        range.setEnd(node!, at + i + 1);
        return range.getBoundingClientRect().x;
      };
      return x(0) < x(1);
    }
    throw new Error(`no "${w}" in ${element.textContent}`);
  }, word);
}

browserTest('a status named in the CRM with a bidi control does not reorder the words after it: its webhook\'s triggers, its history of changes', async (t) => {
  const pool = db().pool;
  const f = factories(pool);
  const company = await f.company('Bidi Realty');
  const vip = await f.status(company.id, 'VIP\u202E');
  const notes = await f.status(company.id, 'Thank You Note');
  const webhook = await f.webhook({
    companyId: company.id, name: 'Letters', actions: ['contact.status_added'], statusId: vip.id, ignoreSources: ['encompass'],
  });
  await pool.query(`update webhooks.webhooks set status_id = $2 where id = $1`, [webhook.id, notes.id]);
  await pool.query(`update webhooks.webhooks set status_id = $2 where id = $1`, [webhook.id, vip.id]);
  const page = await signedIn(company.id);
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${webhook.id}`);
  await untilText(page, '#history-facts div:first-child dd', /encompass$/);
  t.true(await readsLeftToRight(page, '#history-facts div:first-child dd', 'encompass'), 'the filter after the status');
  await page.waitForSelector('#audit-list li[data-action="webhook.updated"]');
  // "status: VIP → Thank You Note", then "status: Thank You Note → VIP"
  t.true(await readsLeftToRight(page, '#audit-list li[data-action="webhook.updated"] >> nth=1', 'Thank'), 'the status after it');
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a filter\'s value with a zero-width space shows it marked, in the report and in the form, and the form saves it as it was', async (t) => {
  const pool = db().pool;
  const f = factories(pool);
  const company = await f.company('Invisible Realty');
  // "Paris" with a zero-width space inside: no contact of Paris matches it
  const conditions = { field: 'city', op: 'eq', value: 'Par\u200Bis' };
  const webhook = await f.webhook({ companyId: company.id, name: 'Letters', actions: ['contact.created'] });
  await pool.query('update webhooks.webhooks set conditions = $2 where id = $1', [webhook.id, JSON.stringify(conditions)]);
  const page = await signedIn(company.id);
  t.is(await page.textContent(`${row(webhook.id)} .triggers li >> nth=1`), 'city is Par[U+200B]is');
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${webhook.id}/edit`);
  await page.waitForSelector('#setup-form');
  const text = await page.inputValue('#setup-conditions');
  t.true(text.includes('"Par\\u200bis"'), text);
  await page.click('#setup-submit');
  await untilText(page, '#flash', 'Saved · Letters');
  const { rows: [saved] } = await pool.query('select conditions from webhooks.webhooks where id = $1', [webhook.id]);
  t.deepEqual(saved.conditions, conditions);
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a filter\'s value with a bidi control does not reorder the words after it: the triggers in the report and on the webhook\'s page, its history of changes', async (t) => {
  const pool = db().pool;
  const f = factories(pool);
  const company = await f.company('Override Realty');
  // the database refuses bidi controls in a webhook's name, URL and ignored sources, but
  // a condition's value is any text a contact's field may hold
  const webhook = await f.webhook({ companyId: company.id, name: 'Letters', actions: ['contact.created'], ignoreSources: ['encompass'] });
  await pool.query('update webhooks.webhooks set conditions = $2 where id = $1', [webhook.id, JSON.stringify({
    all: [{ field: 'state', op: 'in', value: ['VA\u202E', 'MD'] }, { field: 'city', op: 'contains', value: '\u202ERichmond' }],
  })]);
  const page = await signedIn(company.id);
  const line = (n: number) => `${row(webhook.id)} .triggers li >> nth=${n}`;
  t.is(await page.textContent(line(1)), 'state is VA or MD');
  t.true(await readsLeftToRight(page, line(1), 'MD'), 'the value after it, in its line of the report');
  t.true(await readsLeftToRight(page, line(2), 'Richmond'), 'the value itself');

  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${webhook.id}`);
  await untilText(page, '#history-facts div:first-child dd', /encompass$/);
  t.true(await readsLeftToRight(page, '#history-facts div:first-child dd', 'encompass'), 'the filters after it on the webhook\'s page');
  await page.waitForSelector('#audit-list li[data-action="webhook.updated"]');
  t.true(await readsLeftToRight(page, '#audit-list li[data-action="webhook.updated"]', 'MD'), 'the change after it');
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a company with more webhooks than one page of the API holds sees them all, Disable asks again for one webhook\'s line, and it can edit its oldest', async (t) => {
  const f = factories(db().pool);
  const company = await f.company('Many Hooks Realty');
  const webhooks = [];
  for (let i = 1; i <= 5; i++) webhooks.push(await f.webhook({ companyId: company.id, name: `Hook ${i}`, actions: ['contact.created'] }));
  // an API whose connections give two rows unless asked for more (API_DEFAULT_PAGE_SIZE);
  // a company's webhooks may be as many as webhooks.max_webhooks_per_company
  const small = await startTestApi(db().url, { limits: { ...PAGE_TEST_API_LIMITS, defaultPageSize: 2 } });
  t.teardown(() => small.stop());
  // the oldest, on the API's third page, fired three times more than the others (all
  // of them once, for the contact's creation)
  const contact = await f.contact(company.id);
  for (let i = 0; i < 3; i++) await fire(db().pool, { webhook: webhooks[0]!, contact, action: 'contact.created', daysAgo: 1 + i, outcome: 'succeeded', attempts: 1, statusCode: 200 });
  const page = await openTab(`${small.api.url}/reports/webhooks`);
  // what the report's requests ask: the counts over the range once a view, not once a
  // page of webhooks (each page of the report counted every webhook of the company)
  const asked: string[] = [];
  page.on('request', (request) => {
    if (request.url().endsWith('/graphql')) asked.push(request.postDataJSON().query);
  });
  const counted = () => asked.filter((query) => /webhookReportCounts\(|webhookReport\((?![^)]*withCounts: false)/.test(query)).length;
  await signIn(page, await small.token(company.id));
  await untilReport(page);
  t.deepEqual(await page.locator('#webhooks-body .webhook-link').allTextContents(), ['Hook 5', 'Hook 4', 'Hook 3', 'Hook 2', 'Hook 1']);
  t.regex(await page.textContent('#page-subtitle') ?? '', /^5 active, 0 disabled/);
  t.is(await page.textContent(timesFired(webhooks[0]!.id)), '4');
  t.is(await page.textContent(timesFired(webhooks[4]!.id)), '1');
  t.true(asked.filter((query) => /webhookReport\(/.test(query)).length >= 3, 'three pages of webhooks');
  // each page after the row the one before ended at (afterCreatedAt, afterId), which
  // reads its own rows; PostGraphile's cursor (after) was an offset, and each page
  // listed and sorted every webhook of the company (test/sql/report-pages.test.ts)
  t.deepEqual(asked.filter((query) => /webhookReport\([^)]*\bafter:/.test(query)), []);
  t.is(asked.filter((query) => /webhookReport\([^)]*afterCreatedAt: \$afterCreatedAt, afterId: \$afterId/.test(query)).length, 2);
  t.is(counted(), 1, asked.join('\n'));
  await page.click('#range-presets [data-preset="90"]');
  await until('the report of 90 days', async () => counted() === 2 && !(await page.getAttribute('body', 'aria-busy')));
  t.is(await page.textContent(timesFired(webhooks[0]!.id)), '4');
  t.is(counted(), 2);
  // Disable asks again for its webhook's line alone, for the Date Range, not every
  // page of the report and the counts of every webhook (1,200 webhooks: 14 requests)
  asked.length = 0;
  const button = `${row(webhooks[0]!.id)} [data-action]`;
  await page.click(button);
  await untilText(page, button, 'Enable');
  await untilText(page, '#page-subtitle', /^4 active, 1 disabled · /);
  t.deepEqual(asked.map((query) => /^\s*(mutation|query) (\w+)/.exec(query)?.[2]), ['Disable', 'Webhook'], asked.join('\n'));
  t.is(await page.textContent(timesFired(webhooks[0]!.id)), '4');
  t.regex((await cells(page, row(webhooks[0]!.id)))[4], /^Disabled since /);
  t.true(await page.isDisabled(`${row(webhooks[0]!.id)} [data-action=backfill]`), 'a disabled webhook offers no Backfill');
  t.true(await page.locator(button).first().evaluate((element) => element === document.activeElement), 'the keyboard stays on the button');
  await visit(page, `${small.api.url}/reports/webhooks#/webhooks/${webhooks[0].id}/edit`);
  await untilText(page, '#page-title', 'Edit Hook 1');
  t.is(await page.inputValue('#setup-name'), 'Hook 1');
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a brokerage of 20,000 users: the setup form lists none of them, its pickers search as one types, by keyboard too; Edit shows the webhook\'s user and status and Save keeps them', async (t) => {
  const pool = db().pool;
  const f = factories(pool);
  const company = await f.company('Big Brokerage');
  await pool.query(
    `insert into crm.users (company_id, name, email)
     select $1, 'Broker ' || lpad(i::text, 5, '0'), 'broker' || lpad(i::text, 5, '0') || '@big.example' from generate_series(1, 20000) i`,
    [company.id]);
  await pool.query('analyze crm.users');
  const eve = await f.user(company.id, 'Eve Example');
  const status = await f.status(company.id, 'Eve\'s status');
  await f.status(company.id, 'Hot Lead');
  const assigned = await f.webhook({ companyId: company.id, name: 'Eve\'s tasks', actions: ['contact.user_assigned'], userId: eve.id });
  const tagged = await f.webhook({ companyId: company.id, name: 'Eve\'s tags', actions: ['contact.status_added'], statusId: status.id });
  const page = await signedIn(company.id);
  const asked: string[] = [];
  page.on('request', (request) => {
    if (request.url().endsWith('/graphql')) asked.push(request.postDataJSON()?.query ?? '');
  });

  // Edit opens with the webhook's user, and asks for no list of users or statuses
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${assigned.id}/edit`);
  await untilText(page, '#page-title', `Edit ${assigned.name}`);
  await page.waitForSelector('body:not([aria-busy])');
  t.is(await page.inputValue('#setup-user'), eve.id);
  t.is(await page.inputValue('#setup-user-search'), 'Eve Example');
  t.deepEqual(asked.filter((query) => /companyUsers|companyStatuses/.test(query)), []);
  t.true(asked.length <= 3, `${asked.length} requests to open the form`);

  // a labelled combobox: typing searches, 20 shown and "keep typing" past them
  const box = page.locator('#setup-user-search');
  t.is(await box.getAttribute('role'), 'combobox');
  t.is(await page.locator('label[for="setup-user-search"]').textContent(), 'Which user');
  await box.fill('broker');
  await untilText(page, '#setup-user-count', /^20 shown: more match, keep typing to narrow$/);
  t.is(await box.getAttribute('aria-expanded'), 'true');
  t.is(await page.locator('#setup-user-options [role=option]').count(), 21, 'Any user and 20 users');
  // a word of the name after its first: "Example" finds Eve Example
  await box.fill('example');
  await untilText(page, '#setup-user-count', /^1 match$/);
  t.deepEqual(await page.locator('#setup-user-options [role=option]').allTextContents(), ['Any user', `Eve Example (${eve.email})`]);
  await box.fill('BROKER 1234');
  await untilText(page, '#setup-user-count', /^10 match$/);
  t.deepEqual(await page.locator('#setup-user-options [role=option]').allTextContents(),
    ['Any user', ...Array.from({ length: 10 }, (_, i) => `Broker 1234${i} (broker1234${i}@big.example)`)]);
  // by keyboard: down to the second user, Enter chooses it (and sends nothing)
  await box.press('ArrowDown');
  await box.press('ArrowDown');
  await box.press('ArrowDown');
  const active = await box.getAttribute('aria-activedescendant');
  t.is(await page.locator(`#${active}`).textContent(), 'Broker 12341 (broker12341@big.example)');
  t.is(await page.locator(`#${active}`).getAttribute('aria-selected'), 'true');
  await box.press('Enter');
  t.is(await box.getAttribute('aria-expanded'), 'false');
  t.is(await page.inputValue('#setup-user-search'), 'Broker 12341');
  const broker = (await pool.query(`select id from crm.users where company_id = $1 and name = 'Broker 12341'`, [company.id])).rows[0].id;
  t.is(await page.inputValue('#setup-user'), broker);
  t.true(await page.isVisible('#setup-form'), 'Enter in the list did not send the form');
  // a text typed and left without a choice leaves the choice as it was
  await box.fill('zzz');
  await untilText(page, '#setup-user-count', /^No user's name \(or a word of it\) or email starts with “zzz”$/);
  await box.press('Escape');
  t.is(await page.inputValue('#setup-user-search'), 'Broker 12341');
  t.is(await page.inputValue('#setup-user'), broker);
  // fewer requests than keys: a search is asked once typing pauses, and only its answer shown
  t.true(asked.filter((query) => /companyUsersMatching/.test(query)).length <= 4);
  await page.click('#setup-submit');
  await untilText(page, '#flash', `Saved · ${assigned.name}`);

  // the status picker the same; Save as it is keeps the status
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${tagged.id}/edit`);
  await untilText(page, '#page-title', `Edit ${tagged.name}`);
  t.is(await page.inputValue('#setup-status'), status.id);
  t.is(await page.inputValue('#setup-status-search'), 'Eve\'s status');
  await page.click('#setup-submit');
  await untilText(page, '#flash', `Saved · ${tagged.name}`);
  const { rows } = await pool.query('select user_id, status_id from webhooks.webhooks where id = any($1) order by id', [[assigned.id, tagged.id]]);
  t.deepEqual(rows, [{ user_id: broker, status_id: null }, { user_id: null, status_id: status.id }]);

  // the history of changes asks the names of the users its entries name alone
  asked.length = 0;
  const plain = await f.webhook({ companyId: company.id, name: 'Plain', actions: ['contact.created'] });
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${plain.id}`);
  await untilText(page, '#page-title', 'Plain');
  await page.waitForSelector('body:not([aria-busy])');
  t.deepEqual(asked.filter((query) => /companyUsers|companyStatuses/.test(query)), []);
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${assigned.id}`);
  await untilText(page, '#audit-list li[data-action="webhook.updated"]', /user: Eve Example → Broker 12341$/);
  t.deepEqual(asked.filter((query) => /companyUsers|companyStatuses/.test(query)).map((query) => /companyUsersNamed/.test(query)), [true]);
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a webhook of another company is not there', async (t) => {
  const mine = await seedCompany(db().pool);
  const theirs = await seedCompany(db().pool, 'Rival Realty');
  const page = await signedIn(mine.companyId);
  t.is(await page.locator(row(theirs.notes.id)).count(), 0);
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${theirs.notes.id}`);
  await untilText(page, '#error', `There is no webhook #${theirs.notes.id} in your company.`);
  t.true(await page.isHidden('#history'));
  await page.close();
});

browserTest('a link tampered with (an id past bigint, a firing\'s time that is no time) says so plainly, and leaves no other webhook\'s view on the page', async (t) => {
  const make = factories(db().pool);
  const company = await make.company('Tampered Titles');
  const contact = await make.contact(company.id);
  const webhook = await make.webhook({ companyId: company.id, name: 'Every new contact', actions: ['contact.created'] });
  await fireMany(db().pool, webhook, contact, 120);
  const page = await signedIn(company.id);
  const go = (hash: string) => page.evaluate((h) => { location.hash = h; }, hash);

  // an id no webhook can have, from the history of one: that history (its Replay, its
  // tools) is not left on view under the other's link, nor the API's words said
  await go(`#/webhooks/${webhook.id}`);
  await untilText(page, '#page-info', '1–50 of 120 · page 1 of 3');
  await go('#/webhooks/99999999999999999999999');
  await untilText(page, '#error', 'There is no webhook #99999999999999999999999 in your company.');
  t.true(await page.isHidden('#history'));
  t.is(await page.textContent('#page-title'), 'Webhooks');
  // nor an Edit form whose Save would change the webhook before
  await go(`#/webhooks/${webhook.id}/edit`);
  await page.waitForSelector('#setup:not([hidden]) #setup-form');
  await go('#/webhooks/99999999999999999999/edit');
  await untilText(page, '#error', 'There is no webhook #99999999999999999999 in your company.');
  t.true(await page.isHidden('#setup'));

  // a firing named by a link in a way no firing is (a 30th of February, an hour 25, an
  // id past bigint, the year 0): its page is asked by its number, and the page says so
  for (const [side, id, at] of [
    ['after', '1', '2026-02-30T00:00:00Z'], ['before', '1', '2026-01-01T25:00:00Z'],
    ['after', '9999999999999999999', '2026-01-01T00:00:00Z'], ['after', '1', '0000-01-01T00:00:00Z'],
  ]) {
    await go(`#/webhooks/${webhook.id}`);
    await untilText(page, '#page-info', '1–50 of 120 · page 1 of 3');
    await go(`#/webhooks/${webhook.id}?page=2&${side}=${id}&at=${encodeURIComponent(at!)}`);
    await untilText(page, '#page-info', '51–100 of 120 · page 2 of 3');
    t.is(await page.textContent('#flash'), 'This link names no firing the page can find, so page 2 is shown by its number.', `${side}=${id}&at=${at}`);
    t.true(await page.isHidden('#error'));
  }
  // nothing was asked that the API refused
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a server that fails (5xx) is said plainly, and the counts of the range before do not stay on view as the new range\'s', async (t) => {
  const { companyId, notes } = await seedCompany(db().pool);
  const page = await signedIn(companyId);
  t.is(await page.textContent(timesFired(notes.id)), '5');
  await page.route('**/graphql', (route) => route.fulfill({ status: 502, contentType: 'text/html', body: '<html><body>Bad Gateway</body></html>' }));
  await page.click('#range-presets [data-preset="7"]');
  // (and its Try again button)
  await untilText(page, '#error', /^The server could not answer \(HTTP 502\b.*\)\. Try again in a moment\. Try again$/);
  t.true(await page.isHidden('#report'), 'the 30 days\' counts are not shown under Last 7 days');
  t.is(await page.textContent('#page-subtitle'), '');
  // the API's own failure, in its words
  await page.unroute('**/graphql');
  await page.route('**/graphql', (route) => route.fulfill({ status: 500, contentType: 'application/json', body: '{"errors":[{"message":"internal error"}]}' }));
  await page.click('#range-presets [data-preset="90"]');
  await untilText(page, '#error', 'The server could not answer (HTTP 500: internal error). Try again in a moment. Try again');
  await page.unroute('**/graphql');
  await page.click('#range-presets [data-preset="7"]');
  await untilText(page, timesFired(notes.id), '2');
  t.true(await page.isHidden('#error'));
  t.deepEqual(problemsOf(page).filter((problem) => !/status of 50[02]/.test(problem)), []);
  await page.close();
});

/**
 * The controls a keyboard reaches in main (links and buttons on view, enabled), as a
 * screen reader names them: { role, name, href }.
 */
async function namedControls(page: Page): Promise<Array<{ role: string; name: string; href: string | null }>> {
  const controls = [];
  for (const control of await page.locator('main a[href]:visible, main button:visible:enabled').all()) {
    // "- button \"Disable Letters\"", or YAML-quoted when the name has a colon
    let line = (await control.ariaSnapshot()).split('\n')[0]!.replace(/^- /, '');
    if (line.startsWith("'")) line = line.replace(/^'|':?$/g, '').replaceAll("''", "'");
    const [, role, name] = /^(\w+)(?: "(.*)")?/.exec(line) ?? [];
    controls.push({ role: role!, name: (name ?? '').replaceAll('\\"', '"'), href: await control.getAttribute('href') });
  }
  return controls;
}

/** Names that two controls doing different things share (a button each, or links to two places), and controls without a name. */
function ambiguous(controls: Array<{ role: string; name: string; href: string | null }>): string[] {
  const byName = new Map<string, Set<string>>();
  for (const c of controls) {
    const what = c.role === 'link' ? `link ${c.href}` : `${c.role} ${byName.get(c.name)?.size ?? 0}`;
    byName.set(c.name, (byName.get(c.name) ?? new Set()).add(what));
  }
  return [...byName].filter(([name, things]) => name === '' || things.size > 1).map(([name]) => name);
}

browserTest('every control of a row says which row it acts on: a screen reader\'s list of buttons and links has no two alike', async (t) => {
  const { companyId, notes, failedId, succeededId } = await seedCompany(db().pool);
  const page = await signedIn(companyId);
  const report = await namedControls(page);
  t.deepEqual(ambiguous(report), [], JSON.stringify(report));
  t.true(report.some((c) => c.role === 'button' && c.name.startsWith('Disable') && c.name.includes('Handwritten thank-you notes')));

  await page.click(timesFired(notes.id));
  await page.waitForSelector(`#history-body tr[data-delivery-id="${failedId}"]`);
  await page.click(`#history-body tr[data-delivery-id="${failedId}"] button:has-text("Show")`);
  await page.click(`#history-body tr[data-delivery-id="${succeededId}"] button:has-text("Show")`);
  await page.waitForSelector(`#history-body tr[data-delivery-id="${succeededId}"] + tr table.attempts`);
  const history = await namedControls(page);
  t.deepEqual(ambiguous(history), [], JSON.stringify(history));
  // the outcome filter says each count apart from its word ("Failure1" read as one)
  t.true(history.some((c) => c.role === 'link' && c.name === 'Failure: 1'), JSON.stringify(history));
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a viewer\'s token reads the report and history but is offered no Disable, Enable or Replay', async (t) => {
  const { companyId, notes, failedId } = await seedCompany(db().pool);
  const page = await openPage();
  await signIn(page, await api().token(companyId, 'webhook_viewer'));
  await page.waitForSelector('#report:not([hidden]) #webhooks-body tr');
  t.true(await page.isVisible('#who-role'));
  // what read-only means, in words on the page that the badge names as its
  // description: a title shows on hover alone, which no keyboard or touch reaches
  t.is(await page.getAttribute('#who-role', 'title'), null);
  // (its words, read as they are: a badge has no name of its own)
  t.is(await page.textContent('#who-role'), 'read-only');
  const badge = await accessibleOf(page, '#who-role');
  t.deepEqual({ description: badge.description, ignored: badge.ignored },
    { description: 'This token may only read: it cannot create, change, disable, replay or backfill webhooks.', ignored: false });
  t.true(await page.isVisible(`#${await page.getAttribute('#who-role', 'aria-describedby')}`));
  t.is(await page.locator('#webhooks-body [data-action]').count(), 0);
  await page.click(timesFired(notes.id));
  await page.waitForSelector(`#history-body tr[data-delivery-id="${failedId}"]`);
  t.is(await page.locator('#history-body button:has-text("Replay")').count(), 0);
  // the page is at / too, and the tab stays signed in across pages of the site
  await visit(page, `${api().api.url}/`);
  await page.waitForSelector('#report:not([hidden]) #webhooks-body tr');
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

test('the company name is read for the caller\'s own company only', async (t) => {
  const mine = await seedCompany(db().pool);
  await seedCompany(db().pool, 'Rival Realty');
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    await client.query('set local role webhook_viewer');
    const name = async () => (await client.query('select webhooks.current_company_name() as name')).rows[0].name;
    t.is(await name(), null, 'no company claim, no name');
    await client.query("select set_config('jwt.claims.company_id', $1, true)", [mine.companyId]);
    t.is(await name(), 'Purple Realty');
    await t.throwsAsync(client.query('select name from crm.companies'), { message: /permission denied/ });
  } finally {
    await client.query('rollback');
    client.release();
  }
});

browserTest('a Replay the database ends to break a deadlock is sent again by the page, not shown as an error', async (t) => {
  const make = factories(db().pool);
  const company = await make.company('Deadlocked Realty');
  const contact = await make.contact(company.id);
  const webhook = await make.webhook({ companyId: company.id, name: 'Contended', actions: ['contact.created'] });
  const firingId = await fire(db().pool, { webhook, contact, action: 'contact.created', daysAgo: 1, outcome: 'failed', attempts: 1, statusCode: 500 });
  const page = await signedIn(company.id);
  const replay = `#history-body tr[data-delivery-id="${firingId}"] button:has-text("Replay")`;
  const flash = `Replay: firing #${firingId} is queued to be sent again.`;
  const waitingReplays = async () => (await db().pool.query(
    `select count(*)::int as n from pg_stat_activity
     where datname = current_database() and wait_event_type = 'Lock' and query like '%replay_delivery%'`)).rows[0].n;

  // A DBA's transaction holds the firing's result, then wants the webhook the replay
  // holds. Postgres ends whichever of the two checks for a deadlock once both wait:
  // the replay, unless its one check came before the DBA asked (a busy machine),
  // when the DBA's is ended instead and the replay goes through; then once more.
  let replayEnded = false;
  for (let round = 1; round <= 5 && !replayEnded; round++) {
    await db().pool.query(`update webhooks.deliveries set state = 'failed', completed_at = now() where id = $1`, [firingId]);
    // the round in the query, not the hash: a new hash alone keeps the page, and the
    // last round's flash with it, which said "queued" before this round's replay was
    await visit(page, `${api().api.url}/reports/webhooks?round=${round}#/webhooks/${webhook.id}`);
    await page.waitForSelector(replay);
    const dba = await db().pool.connect();
    try {
      await dba.query('begin');
      await dba.query('select 1 from webhooks.delivery_results where delivery_id = $1 for update', [firingId]);
      await page.click(replay);
      await until('the replay waits for the DBA', async () => (await waitingReplays()) === 1);
      replayEnded = await dba.query('select 1 from webhooks.webhooks where id = $1 for update', [webhook.id]).then(() => true, () => false);
      // the page sent the replay again, and it waits for the DBA's transaction
      if (replayEnded) await until('the replay sent again waits for the DBA', async () => (await waitingReplays()) === 1);
    } finally {
      await dba.query('rollback');
      dba.release();
    }
    await untilText(page, '#flash', flash);
  }
  t.true(replayEnded, 'the database ended the replay in one of five rounds');
  const { rows } = await db().pool.query('select state from webhooks.deliveries where id = $1', [firingId]);
  t.deepEqual(rows, [{ state: 'pending' }]);
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a click refused because the company\'s turn is taken (429) is tried again after Retry-After, not lost', async (t) => {
  const { companyId, notes } = await seedCompany(db().pool);
  // an API where the company has one turn and nobody may wait for it; the rename that
  // holds the turn waits on a lock for as long as the click takes on a busy machine
  const tight = await startTestApi(db().url, {
    limits: { companyMaxInFlight: 1, companyMaxQueued: 0, statementTimeoutMs: 120_000 },
  });
  t.teardown(() => tight.stop());
  const token = await tight.token(companyId, 'webhook_admin', 'jane.admin@purple.example');
  const page = await openTab(`${tight.api.url}/reports/webhooks`);
  await signIn(page, token);
  await untilReport(page);

  // the company's one turn, held by a rename waiting on a DBA's lock of the webhook
  const dba = await db().pool.connect();
  t.teardown(() => dba.release());
  await dba.query('begin');
  await dba.query('select 1 from webhooks.webhooks where id = $1 for update', [notes.id]);
  const rename = tight.gql(token, 'mutation($id: BigInt!) { updateWebhook(input: { id: $id, name: "Renamed" }) { result { name } } }', { id: notes.id });
  const refusals = async () => [...(await scrape(tight.api.url)).entries()]
    .filter(([series]) => series.startsWith('bpd_webhooks_api_requests_total') && series.includes('code="429"'))
    .reduce((sum, [, n]) => sum + n, 0);
  await until('the rename waits on the lock', async () => (await db().pool.query(
    `select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`)).rows[0].n === 1);

  const button = `${row(notes.id)} [data-action]`;
  await page.click(button);
  await until('the click is refused', async () => (await refusals()) >= 1);
  await dba.query('commit');
  t.is((await rename).errors, undefined);

  // tried again once the turn was free: the webhook is disabled, and the page says so
  await untilText(page, button, 'Enable');
  t.is(await page.textContent('#flash'), 'Webhook Status: Disable · Handwritten thank-you notes');
  const { rows: [stored] } = await db().pool.query('select enabled from webhooks.webhooks where id = $1', [notes.id]);
  t.false(stored.enabled);
  // (the browser logs each refused request itself; nothing else went wrong)
  t.deepEqual(problemsOf(page).filter((problem) => !/status of 429 \(Too Many Requests\)/.test(problem)), []);
  await page.close();
});

browserTest('a server out of reach, or failing (5xx), is said with Try again, which shows the view once the server is back', async (t) => {
  const { companyId, notes } = await seedCompany(db().pool, 'Unreachable Realty');
  const page = await signedIn(companyId);
  await page.click(`${row(notes.id)} .webhook-link`);
  await untilText(page, '#page-title', 'Handwritten thank-you notes');
  // the API down: its connection refused
  await page.route('**/graphql', (route) => route.abort('connectionrefused'));
  await page.reload({ waitUntil: 'domcontentloaded' });
  await untilText(page, '#error', /^The server cannot be reached\./);
  t.true(await page.isHidden('#history'));
  await page.unroute('**/graphql');
  await page.click('#error button.try-again');
  await untilText(page, '#page-title', 'Handwritten thank-you notes');
  await page.waitForSelector('#history:not([hidden]) #history-body tr');
  t.true(await page.isHidden('#error'));
  // a proxy before it failing
  await page.route('**/graphql', (route) => route.fulfill({ status: 502, contentType: 'text/html', body: '<html><body>Bad Gateway</body></html>' }));
  await page.click('#range-presets [data-preset="90"]');
  await untilText(page, '#error', /^The server could not answer \(HTTP 502\b/);
  t.true(await page.isHidden('#history'));
  await page.unroute('**/graphql');
  await page.click('#error button.try-again');
  await page.waitForSelector('#history:not([hidden]) #history-body tr');
  t.true(await page.isHidden('#error'));
  t.deepEqual(problemsOf(page).filter((problem) => !/status of 502|ERR_CONNECTION_REFUSED/.test(problem)), []);
  await page.close();
});

browserTest('a request the server accepts and never answers ends after the page\'s wait: the page says so, keeps what was typed and tries again on request', async (t) => {
  const { companyId, notes } = await seedCompany(db().pool, 'Unanswered Realty');
  const { ANSWER_WAIT_MS } = (await import(pageApi)) as { ANSWER_WAIT_MS: number };
  const proxy = await holdingProxy(api().api.url);
  t.teardown(() => proxy.close());
  // a browser of this test's own: the page's timers go on a clock the test moves (the
  // wait passes without being waited), and a clock is its browser's, every tab's
  const browser = await launchBrowser();
  t.teardown(() => browser.close());
  const page = await browser.context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.clock.install();
  await visit(page, `${proxy.url}/reports/webhooks`);
  await signIn(page, await api().token(companyId, 'webhook_admin', 'jane.admin@purple.example'));
  await untilReport(page);

  // a view that never comes: said, the page no longer busy, and Try again shows it
  proxy.hold('/graphql');
  await page.click(`${row(notes.id)} .webhook-link`);
  await proxy.untilHeld(1);
  t.is(await page.getAttribute('body', 'aria-busy'), 'true');
  await page.clock.fastForward(ANSWER_WAIT_MS);
  await untilText(page, '#error', /^The server did not answer within 30 seconds\./);
  t.is(await page.getAttribute('body', 'aria-busy'), null);
  proxy.answer();
  await page.click('#error button.try-again');
  await untilText(page, '#page-title', 'Handwritten thank-you notes');
  t.true(await page.isHidden('#error'));

  // a Create that never comes back: the form keeps what was typed, and Try again sends
  // it again under the form's key (had the first been made, it would answer that one)
  await page.click('#new-webhook');
  await page.waitForSelector('#setup-form');
  await page.fill('#setup-name', 'Birthday cards');
  await page.fill('#setup-url', 'https://cards.example.com/in');
  await page.check('input[name=action][value="contact.created"]');
  proxy.hold('/graphql');
  await page.click('#setup-submit');
  await proxy.untilHeld(2);
  await page.clock.fastForward(ANSWER_WAIT_MS);
  await untilText(page, '#error', /^The server did not answer within 30 seconds\./);
  t.is(await page.inputValue('#setup-name'), 'Birthday cards');
  t.is(await page.inputValue('#setup-url'), 'https://cards.example.com/in');
  t.false(await page.isDisabled('#setup-submit'));
  const made = async () => (await db().pool.query(
    'select name from webhooks.webhooks where company_id = $1 and name = $2', [companyId, 'Birthday cards'])).rows.length;
  t.is(await made(), 0, 'the held request never reached the API');
  t.regex(await page.textContent('#error') ?? '', / The webhook may have been created all the same: Try again answers it if so, and makes it if not \(never a second one\)\. Try again$/);
  proxy.answer();
  await page.click('#error button.try-again');
  await untilText(page, '#flash', 'Created · Birthday cards');
  t.is(await made(), 1);
  t.deepEqual(errors, []);
});

browserTest('a CRM user\'s name of 3 MB shows as its first 200 characters, wrapped within the window; the setup form\'s boxes take no more than the API does', async (t) => {
  const pool = db().pool;
  const f = factories(pool);
  const company = await f.company('Long Names');
  const long = await f.user(company.id, `Ann ${'o'.repeat(3 * 1024 * 1024)}`);
  const hook = await f.webhook({ companyId: company.id, name: 'Long user', actions: ['contact.user_assigned'], userId: long.id });
  const page = await signedIn(company.id);
  const shown = `Ann ${'o'.repeat(196)}`;
  const line = await page.textContent(row(hook.id)) ?? '';
  t.true(line.includes(shown), 'the first 200 characters');
  t.false(line.includes(`${shown}o`), 'and no more');
  t.true(await page.evaluate(() => document.documentElement.scrollWidth <= document.documentElement.clientWidth), 'no line runs past the window');

  await page.goto(`${api().api.url}/reports/webhooks#/webhooks/${hook.id}/edit`);
  await untilText(page, '#page-title', 'Edit Long user');
  t.is(await page.inputValue('#setup-user-search'), shown);
  t.true(await page.evaluate(() => document.documentElement.scrollWidth <= document.documentElement.clientWidth), 'the form too');
  // each box takes what the API takes (inputBounds), no more: past them, the API's refusal showed
  const bounds = (await api().gql(await api().token(company.id), '{ inputBounds }')).data.inputBounds;
  // counted in characters, as the database counts them (char_length): an emoji is one,
  // where a box's maxlength counts it two (UTF-16), and took a name of 100 emoji at most
  const emoji = '\u{1F600}';
  for (const [box, bound] of [['#setup-name', bounds.name], ['#setup-url', bounds.url], ['#setup-user-search', bounds.search]] as const) {
    await page.fill(box, box === '#setup-url' ? 'https://x.example/' : '');
    const start = box === '#setup-url' ? 'https://x.example/'.length : 0;
    await page.focus(box);
    await page.keyboard.press('End');
    await page.keyboard.insertText(emoji.repeat(bound - start + 1));
    t.is([...await page.inputValue(box)].length, bound, `${box} takes ${bound} characters, emoji too`);
  }
  await page.fill('#setup-user-search', '');
  await page.focus('#setup-user-search');
  await page.keyboard.insertText('a'.repeat(bounds.search + 1));
  t.is((await page.inputValue('#setup-user-search')).length, bounds.search);
  await untilText(page, '#setup-user-count', /^No user's name \(or a word of it\) or email starts with “a+”$/);
  await page.fill('#setup-name', '');
  await page.focus('#setup-name');
  await page.keyboard.insertText('n'.repeat(bounds.name + 1));
  t.is((await page.inputValue('#setup-name')).length, bounds.name);
  t.deepEqual(problemsOf(page), []);
  await page.close();
});
