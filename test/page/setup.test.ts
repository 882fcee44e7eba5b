// Setting a webhook up on the page, end to end: headless Chromium fills the New
// webhook form, the API creates it, a relay delivers its test to a real receiver that
// checks the signature with the secret the page showed once; edit, rotate and delete
// follow, each recorded in the webhook's history of changes. A viewer sees none of
// the controls.
import test from 'ava';
import type { Page, Route } from 'playwright-core';
import { expiredToken, startTestApi, type TestApi } from '../helpers/api.ts';
import { accessibleOf, choose, launchBrowser, PAGE_TEST_API_LIMITS, signIn, untilReport, untilText, useBrowser, visit } from '../helpers/browser.ts';
import type { TestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { gatedReplies, startReceiver, type Receiver } from '../helpers/receiver.ts';
import { relayTestDatabase, testRelay } from '../helpers/relay.ts';
import { until } from '../helpers/until.ts';
import type { Relay } from '../../relay/loop.ts';

let database: TestDatabase;
let api: TestApi;
let relay: Relay;
let receiver: Receiver;

test.before(async () => {
  database = await relayTestDatabase();
  api = await startTestApi(database.url, { limits: PAGE_TEST_API_LIMITS });
  receiver = await startReceiver();
  relay = testRelay(database.url);
  await relay.start();
});

test.after.always(async () => {
  await relay?.stop();
  await receiver?.close();
  await api?.stop();
  await database?.drop();
});

const { browserTest, openTab, problemsOf } = useBrowser(test);

async function signedIn(companyId: string, role: 'webhook_admin' | 'webhook_viewer' = 'webhook_admin'): Promise<Page> {
  const page = await openTab(`${api.api.url}/reports/webhooks`);
  await signIn(page, await api.token(companyId, role, 'jane.admin@purple.example'));
  await untilReport(page);
  return page;
}

/**
 * A tab in a browser of the test's own, with the problems it reports (page errors,
 * console errors): for a test that stops the page's clock, which is its browser's.
 */
async function tabOfItsOwnBrowser(t: { teardown: (fn: () => Promise<void>) => void }): Promise<{ page: Page; problems: string[] }> {
  const browser = await launchBrowser();
  t.teardown(() => browser.close());
  const page = await browser.context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(error.message));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(message.text());
  });
  return { page, problems };
}

const storedSecret = async (webhookId: string) =>
  (await database.pool.query('select secret from webhooks_private.webhook_secrets where webhook_id = $1', [webhookId])).rows[0]?.secret;

browserTest('an admin creates a webhook through the form, sees its secret once, edits it, sends a test, rotates the secret and deletes it', async (t) => {
  const f = factories(database.pool);
  const company = await f.company('Purple Realty');
  const status = await f.status(company.id, 'Thank You Note');
  await f.status(company.id, 'Hot Lead');
  const page = await signedIn(company.id);

  // a wrong URL is refused beside the field, as the database would
  await page.click('#new-webhook');
  await page.waitForSelector('#setup-form');
  await page.fill('#setup-name', 'Thank-you notes');
  await page.fill('#setup-url', 'ftp://notes.example.com/in');
  await page.locator('#setup-url').blur();
  await untilText(page, '#error-url', /^Enter an absolute http:\/\/ or https:\/\/ URL/);
  t.is(await page.getAttribute('#setup-url', 'aria-invalid'), 'true');
  await page.check('input[name=action][value="contact.status_added"]');
  await page.click('#setup-submit');
  t.true(await page.isVisible('#error-url'));
  t.is((await database.pool.query('select count(*)::int as n from webhooks.webhooks where company_id = $1', [company.id])).rows[0].n, 0);

  // the status picker shows for a status action, with the company's statuses
  t.true(await page.isVisible('[data-field="status_id"]'));
  t.false(await page.isVisible('[data-field="user_id"]'));
  await page.press('#setup-status-search', 'ArrowDown');
  await untilText(page, '#setup-status-count', '2 match');
  t.deepEqual(await page.locator('#setup-status-options [role=option]').allTextContents(), ['Any status', 'Hot Lead', 'Thank You Note']);
  await choose(page, '#setup-status', 'thank', 'Thank You Note');
  t.is(await page.inputValue('#setup-status'), status.id);
  await page.fill('#setup-url', receiver.url('/notes'));
  t.true(await page.isHidden('#error-url'), 'the error goes once the URL is right');
  // fields from the real contact columns: first name, last name and email are chosen to start with
  t.true(await page.isChecked('input[name=field][value="email"]'));
  await page.uncheck('input[name=field][value="email"]');
  await page.check('input[name=field][value="street"]');
  await page.check('input[name=field][value="city"]');
  await page.click('#setup-submit');

  // the secret, once
  await page.waitForSelector('#secret-panel:not([hidden])');
  const secret = (await page.textContent('#secret-value'))!;
  const { rows: [webhook] } = await database.pool.query(
    `select id, name, url, fields, actions::text[] as actions, status_id from webhooks.webhooks where company_id = $1`, [company.id]);
  t.deepEqual({ ...webhook, id: undefined }, {
    id: undefined, name: 'Thank-you notes', url: receiver.url('/notes'),
    fields: ['first_name', 'last_name', 'street', 'city'], actions: ['contact.status_added'], status_id: status.id,
  });
  t.is(secret, await storedSecret(webhook.id));
  t.regex(await page.textContent('#secret-panel .warning') ?? '', /shown only this once/);
  t.is(await page.textContent('#flash'), 'Created · Thank-you notes');
  t.is(await page.textContent('#page-title'), 'Thank-you notes');
  await page.click('#copy-secret');
  await untilText(page, '#copy-secret', /^(Copied|Selected: press Ctrl\+C)$/);
  // said too: a button's new label is not announced
  t.regex(await page.textContent('#flash') ?? '', /^(The secret is copied\.|The secret is selected: press Ctrl\+C to copy it\.)$/);
  await page.click('#secret-done');
  t.true(await page.isHidden('#secret-panel'));
  t.is(await page.evaluate(() => document.activeElement?.id), 'page-title', 'the focus on the webhook\'s heading');
  t.is(await page.textContent('#secret-value'), '', 'gone from the page');
  await page.reload();
  await page.waitForSelector('#history:not([hidden]) #audit-list li');
  t.true(await page.isHidden('#secret-panel'), 'not shown again');

  // edit: the form holds the webhook as it is
  await page.click('#edit-webhook');
  await page.waitForSelector('#setup-form');
  t.is(await page.inputValue('#setup-name'), 'Thank-you notes');
  t.is(await page.inputValue('#setup-status'), status.id);
  t.true(await page.isChecked('input[name=field][value="street"]'));
  await page.fill('#setup-name', 'Handwritten thank-you notes');
  await page.check('input[name=field][value="postal_code"]');
  await choose(page, '#setup-status', '', 'Any status');
  // the filters: watched fields only for updates and saves
  t.false(await page.isVisible('[data-field="watch_fields"]'));
  await page.fill('#setup-ignore', 'encompass, api, encompass');
  // not JSON: said beside the box; JSON the database refuses: its words beside the box
  await page.fill('#setup-conditions', '{"field": "state"');
  await page.click('#setup-submit');
  await untilText(page, '#error-conditions', /^This is not JSON/);
  await page.fill('#setup-conditions', '{"field": "state", "op": "equals", "value": "VA"}');
  await page.click('#setup-submit');
  await untilText(page, '#error-conditions', /unknown operator "equals"/);
  await page.fill('#setup-conditions', '{"field": "state", "op": "in", "value": ["VA", "MD", "IL"]}');
  await page.click('#setup-submit');
  await untilText(page, '#flash', 'Saved · Handwritten thank-you notes');
  await untilText(page, '#page-title', 'Handwritten thank-you notes');
  const { rows: [edited] } = await database.pool.query(
    'select name, fields, status_id, ignore_sources, watch_fields, conditions from webhooks.webhooks where id = $1', [webhook.id]);
  t.deepEqual(edited, {
    name: 'Handwritten thank-you notes', fields: ['first_name', 'last_name', 'street', 'city', 'postal_code'], status_id: null,
    ignore_sources: ['encompass', 'api'], watch_fields: [], conditions: { field: 'state', op: 'in', value: ['VA', 'MD', 'IL'] },
  });
  // the form shows them again as saved
  await page.click('#edit-webhook');
  await page.waitForSelector('#setup-form');
  t.is(await page.inputValue('#setup-ignore'), 'encompass, api');
  t.deepEqual(JSON.parse(await page.inputValue('#setup-conditions')), { field: 'state', op: 'in', value: ['VA', 'MD', 'IL'] });
  await page.click('#setup-cancel');
  await page.waitForSelector('#history:not([hidden]) #send-test');

  // send a test: the relay delivers it, signed with the secret shown, and the page says how it went
  receiver.route('/notes', { secret, replies: [200] });
  await page.click('#send-test');
  await untilText(page, '#flash', 'Test delivered: the receiver answered 200.');
  const [request] = await receiver.waitFor(1, { path: '/notes' });
  t.true(request.verified, request.verifyError ?? '');
  const body = JSON.parse(request.body);
  t.is(body.type, 'webhook.test');
  t.deepEqual(body.data.contact, { id: 0, first_name: 'Ada', last_name: 'Lovelace', street: '12 Analytical Way', city: 'Springfield', postal_code: '62701' });
  await page.waitForSelector('#history-body tr[data-state="succeeded"]');
  const cells = (await page.locator('#history-body tr[data-state="succeeded"] > td').allInnerTexts()).map((c) => c.trim());
  t.deepEqual(cells.slice(1, 5), ['Test', 'Sample contact #0', 'Success', '200']);

  // rotate: a new secret, once
  await page.click('#rotate-secret');
  await untilText(page, '#confirm-text', /^Rotate the signing secret of "Handwritten thank-you notes"\?/);
  await page.click('#confirm-yes');
  await page.waitForSelector('#secret-panel:not([hidden])');
  const rotated = (await page.textContent('#secret-value'))!;
  t.not(rotated, secret);
  t.is(rotated, await storedSecret(webhook.id));
  t.regex(await page.textContent('#secret-note') ?? '', /^The new secret of "Handwritten thank-you notes"\. The previous one keeps working until /);

  // the history of changes, newest first, with who did it
  await page.waitForSelector('#audit-list li[data-action="webhook.secret_rotated"]');
  t.deepEqual(await page.locator('#audit-list li').evaluateAll((items) => items.map((li) => (li as HTMLElement).dataset.action)),
    ['webhook.secret_rotated', 'webhook.test', 'webhook.updated', 'webhook.created']);
  const changed = await page.textContent('#audit-list li[data-action="webhook.updated"]') ?? '';
  t.true(changed.includes('jane.admin@purple.example'));
  t.true(changed.includes('name: Thank-you notes → Handwritten thank-you notes'), changed);
  t.true(changed.includes('status: Thank You Note → any status'), changed);

  // Times Fired leaves the test out
  await page.click('.back');
  await page.waitForSelector(`tr[data-webhook-id="${webhook.id}"]`);
  t.is(await page.textContent(`tr[data-webhook-id="${webhook.id}"] .times-fired`), '0');

  // delete asks first; Cancel keeps it
  await page.click(`tr[data-webhook-id="${webhook.id}"] .webhook-link`);
  await page.waitForSelector('#delete-webhook');
  await page.click('#delete-webhook');
  await untilText(page, '#confirm-text', 'Delete "Handwritten thank-you notes" and its whole history? It stops firing at once. This cannot be undone.');
  await page.click('#confirm-no');
  t.true(await page.isHidden('#confirm'));
  t.is((await database.pool.query('select count(*)::int as n from webhooks.webhooks where id = $1', [webhook.id])).rows[0].n, 1);
  await page.click('#delete-webhook');
  await page.click('#confirm-yes');
  await untilText(page, '#flash', 'Deleted · Handwritten thank-you notes');
  await page.waitForSelector('#report:not([hidden]) #webhooks-body td.empty');
  t.is((await database.pool.query('select count(*)::int as n from webhooks.webhooks where id = $1', [webhook.id])).rows[0].n, 0);
  // the next view hides the message, and its text goes with it (a hidden message's
  // text, still in the page, once passed for a new one)
  await page.evaluate(() => { location.hash = '#/?next'; });
  await page.waitForSelector('#flash:empty', { state: 'attached' });
  t.is(await page.textContent('#flash'), '');
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('the form\'s checks and the database\'s refusals show beside the input concerned', async (t) => {
  const f = factories(database.pool);
  const company = await f.company();
  const user = await f.user(company.id, 'Jane Doe');
  const stranger = await f.user((await f.company()).id, 'Someone Else');
  const page = await signedIn(company.id);
  await page.click('#new-webhook');
  await page.waitForSelector('#setup-form');
  await page.fill('#setup-name', '   ');
  await page.fill('#setup-url', 'https://hooks.example.com/in');
  await page.click('#setup-submit');
  await untilText(page, '#error-name', 'Give the webhook a name.');
  await untilText(page, '#error-actions', 'Choose at least one action.');

  // a user picker for User assigned; a second action with it is refused beside the picker
  await page.fill('#setup-name', 'Jane’s contacts');
  await page.check('input[name=action][value="contact.user_assigned"]');
  t.true(await page.isVisible('[data-field="user_id"]'));
  await choose(page, '#setup-user', 'jane', 'Jane Doe');
  await page.check('input[name=action][value="contact.created"]');
  await page.click('#setup-submit');
  await untilText(page, '#error-user_id', 'A user applies to User assigned only: choose only that action, or Any user.');

  // what only the database knows: a user of another company (a tampered choice)
  await page.uncheck('input[name=action][value="contact.created"]');
  await page.evaluate((id) => { (document.querySelector('#setup-user') as HTMLInputElement).value = id; }, stranger.id);
  await page.click('#setup-submit');
  await untilText(page, '#error-user_id', `user ${stranger.id} is not a user of company ${company.id}`);
  t.true(await page.isHidden('#error'), 'not as a page error');
  t.is((await database.pool.query('select count(*)::int as n from webhooks.webhooks where company_id = $1', [company.id])).rows[0].n, 0);
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('the user picker finds a name by any of its words, what whitespace or punctuation starts: "cruz" finds "Mary Ann de la Cruz", "brien" "Conan O\'Brien", "jones" "Anna Smith-Jones"', async (t) => {
  const f = factories(database.pool);
  const company = await f.company();
  const cruz = await f.user(company.id, 'Mary Ann de la Cruz');
  await f.user(company.id, "Conan O'Brien");
  await f.user(company.id, 'Anna Smith-Jones');
  const page = await signedIn(company.id);
  await page.click('#new-webhook');
  await page.waitForSelector('#setup-form');
  await page.check('input[name=action][value="contact.user_assigned"]');
  for (const [typed, name] of [['  brien', "Conan O'Brien"], ['JONES', 'Anna Smith-Jones'], ['cruz', 'Mary Ann de la Cruz']]) {
    await page.fill('#setup-user-search', typed);
    await page.locator('#setup-user-options [role=option]').filter({ hasText: name }).waitFor();
    t.is(await page.textContent('#setup-user-count'), '1 match', typed);
    const shown = await page.locator('#setup-user-options [role=option]').allTextContents();
    t.deepEqual(shown.map((text) => text.replace(/ \(.*@example\.com\)$/, '')), ['Any user', name], typed);
  }
  await choose(page, '#setup-user', 'de la c', 'Mary Ann de la Cruz');
  t.is(await page.inputValue('#setup-user'), cruz.id);
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a condition too large for one request (API_MAX_BODY_BYTES) is refused beside its box, in the API\'s words', async (t) => {
  const f = factories(database.pool);
  const company = await f.company();
  const page = await signedIn(company.id);
  await page.click('#new-webhook');
  await page.waitForSelector('#setup-form');
  await page.fill('#setup-name', 'Every postal code');
  await page.fill('#setup-url', 'https://hooks.example.com/in');
  await page.check('input[name=action][value="contact.created"]');
  // valid JSON, and about 150 kB of it
  const codes = Array.from({ length: 15_000 }, (_, i) => String(10_000 + i).padStart(5, '0'));
  await page.fill('#setup-conditions', JSON.stringify({ field: 'postal_code', op: 'in', value: codes }));
  await page.click('#setup-submit');
  await untilText(page, '#error-conditions', /^request body is larger than 100000 bytes \(API_MAX_BODY_BYTES\)/);
  t.is(await page.getAttribute('#setup-conditions', 'aria-invalid'), 'true');
  t.true(await page.isHidden('#error'), `not as a page error: ${await page.textContent('#error')}`);
  t.false(await page.isDisabled('#setup-submit'), 'the form may be sent again');
  t.is((await database.pool.query('select count(*)::int as n from webhooks.webhooks where company_id = $1', [company.id])).rows[0].n, 0);
  // (the browser logs the refusal itself, HTTP 413)
  t.deepEqual(problemsOf(page).filter((problem) => !/status of 413 \(Payload Too Large\)/.test(problem)), []);
  await page.close();
});

browserTest('a webhook whose user the CRM deleted: Edit asks to choose again, and Any user chosen on purpose lets it be enabled', async (t) => {
  const f = factories(database.pool);
  const company = await f.company();
  const user = await f.user(company.id, 'Jane Doe');
  const hook = await f.webhook({ companyId: company.id, name: 'Jane’s assignments', actions: ['contact.user_assigned'], userId: user.id });
  await database.pool.query('delete from crm.users where id = $1', [user.id]);
  const page = await signedIn(company.id);
  const toggle = `tr[data-webhook-id="${hook.id}"] [data-action]`;
  // Enable as it is: refused, and the page says why
  await untilText(page, toggle, 'Enable');
  await page.click(toggle);
  await untilText(page, '#error', /which the CRM deleted: choose another, or none to fire for every one, before enabling it$/);
  await visit(page, `${api.api.url}/reports/webhooks#/webhooks/${hook.id}/edit`);
  await page.waitForSelector('#setup-form');
  t.is(await page.inputValue('#setup-user'), 'choose-again');
  t.is(await page.inputValue('#setup-user-search'), `Choose again: user ${user.id} (Jane Doe) was deleted`);
  // Save as it is: a choice is asked for, nothing is written
  await page.click('#setup-submit');
  await untilText(page, '#error-user_id', 'The user this webhook was filtered on was deleted: choose another, or Any user.');
  const mark = async () => (await database.pool.query(
    'select enabled, deleted_filter_target from webhooks.webhooks where id = $1', [hook.id])).rows[0];
  t.deepEqual(await mark(), { enabled: false, deleted_filter_target: `user ${user.id} (Jane Doe)` });
  // Any user, on purpose: saved, and the webhook may be enabled
  await choose(page, '#setup-user', '', 'Any user');
  await page.click('#setup-submit');
  await page.waitForSelector('#history:not([hidden])');
  t.deepEqual(await mark(), { enabled: false, deleted_filter_target: null });
  await visit(page, `${api.api.url}/reports/webhooks#/`);
  await untilText(page, toggle, 'Enable');
  await page.click(toggle);
  await untilText(page, toggle, 'Disable');
  t.deepEqual(await mark(), { enabled: true, deleted_filter_target: null });
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

// (Save sent the settings changed in the form alone, and put its change over another
// admin's made meanwhile without a word: the last Save won)
browserTest('Save over a change another admin made since the form opened: refused, said plainly, nothing saved; Reload webhook reads theirs, and Save then saves over it', async (t) => {
  const f = factories(database.pool);
  const company = await f.company();
  const status = await f.status(company.id, 'Thank You Note');
  const hook = await f.webhook({
    companyId: company.id, name: 'Letters', actions: ['contact.status_added'], statusId: status.id,
    url: 'https://letters.example.com/v1', fields: ['first_name', 'last_name'],
  });
  const page = await signedIn(company.id);
  await visit(page, `${api.api.url}/reports/webhooks#/webhooks/${hook.id}/edit`);
  await page.waitForSelector('#setup-form');
  await untilText(page, '#page-title', 'Edit Letters');
  // meanwhile, in another tab (or psql): a new URL, a condition, another field
  await database.pool.query(
    `update webhooks.webhooks set url = 'https://letters.example.com/v2', fields = '{first_name,last_name,email}',
            conditions = '{"field": "state", "op": "eq", "value": "VA"}' where id = $1`, [hook.id]);
  const theirs = async () => (await database.pool.query(
    'select name, url, fields, conditions, status_id::text from webhooks.webhooks where id = $1', [hook.id])).rows;
  const changed = [{
    name: 'Letters', url: 'https://letters.example.com/v2', fields: ['first_name', 'last_name', 'email'],
    conditions: { field: 'state', op: 'eq', value: 'VA' }, status_id: status.id,
  }];
  // this admin renames it, and changes nothing else
  await page.fill('#setup-name', 'Handwritten letters');
  await page.click('#setup-submit');
  await untilText(page, '#error', /^Not saved: someone else changed this webhook since you opened it\. Reload it to see their change, then make yours again\./);
  t.deepEqual(await theirs(), changed, 'nothing of this Save');
  t.is(await page.inputValue('#setup-name'), 'Handwritten letters', 'the form as typed');
  await page.click('#reload-webhook');
  await page.waitForFunction(() => (document.querySelector('#setup-url') as HTMLInputElement | null)?.value === 'https://letters.example.com/v2');
  t.true(await page.locator('#error').isHidden());
  t.is(await page.inputValue('#setup-name'), 'Letters');
  await page.fill('#setup-name', 'Handwritten letters');
  await page.click('#setup-submit');
  await page.waitForSelector('#history:not([hidden])');
  await untilText(page, '#flash', 'Saved · Handwritten letters');
  t.deepEqual(await theirs(), [{ ...changed[0], name: 'Handwritten letters' }]);

  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a Create whose answer is lost (a proxy\'s 502 after the server made the webhook) offers Try again, which answers the webhook made, with its secret: one webhook, not two', async (t) => {
  const f = factories(database.pool);
  const company = await f.company();
  const page = await signedIn(company.id);
  const creates: string[] = [];
  await page.route('**/graphql', async (route) => {
    const body = route.request().postData() ?? '';
    if (body.includes('mutation Create(')) {
      creates.push(JSON.parse(body).variables.idempotencyKey);
      if (creates.length === 1) {
        await route.fetch();
        await route.fulfill({ status: 502, contentType: 'text/html', body: '<html><body>Bad Gateway</body></html>' });
        return;
      }
    }
    await route.fallback();
  });
  await page.click('#new-webhook');
  await page.waitForSelector('#setup-form');
  await page.fill('#setup-name', 'Letters');
  await page.fill('#setup-url', 'https://letters.example.com/in');
  await page.check('input[name=action][value="contact.created"]');
  await page.click('#setup-submit');
  await untilText(page, '#error', /^The server could not answer \(HTTP 502/);
  t.is(await page.textContent('#error'), 'The server could not answer (HTTP 502 Bad Gateway). Try again in a moment. ' +
    'The webhook may have been created all the same: Try again answers it if so, and makes it if not (never a second one). Try again');
  const made = async () => (await database.pool.query('select id from webhooks.webhooks where company_id = $1', [company.id])).rows;
  t.is((await made()).length, 1, 'made, its answer lost');
  t.is(await page.inputValue('#setup-name'), 'Letters', 'the form as typed');
  await page.click('#error button.try-again');
  await untilText(page, '#flash', 'Created · Letters');
  t.is((await made()).length, 1, 'one webhook, not two');
  t.is(creates.length, 2);
  t.regex(creates[0]!, /^[0-9a-f]{32}$/);
  t.is(creates[1], creates[0], 'the same key, made once for the form');
  await page.waitForSelector('#secret-panel:not([hidden])');
  t.true((await page.textContent('#secret-panel'))!.includes(await storedSecret((await made())[0].id)), 'the secret the lost answer carried');

  // a new form, a new key: Create again makes another webhook
  await page.click('#new-webhook');
  await page.waitForSelector('#setup-form');
  await page.fill('#setup-name', 'Letters');
  await page.fill('#setup-url', 'https://letters.example.com/in');
  await page.check('input[name=action][value="contact.created"]');
  await page.click('#setup-submit');
  await untilText(page, '#flash', 'Created · Letters');
  t.is((await made()).length, 2);
  t.not(creates[2], creates[0]);
  t.deepEqual(problemsOf(page).filter((problem) => !/status of 502/.test(problem)), []);
  await page.close();
});

browserTest('a form changed after a Create whose answer was lost is refused under its key, said so, and Create again then makes the webhook as the form is now', async (t) => {
  const f = factories(database.pool);
  const company = await f.company();
  const page = await signedIn(company.id);
  let lost = true;
  await page.route('**/graphql', async (route) => {
    if (lost && route.request().postData()?.includes('mutation Create(')) {
      lost = false;
      await route.fetch();
      await route.fulfill({ status: 502, contentType: 'text/html', body: '<html><body>Bad Gateway</body></html>' });
      return;
    }
    await route.fallback();
  });
  await page.click('#new-webhook');
  await page.waitForSelector('#setup-form');
  await page.fill('#setup-name', 'Letters');
  await page.fill('#setup-url', 'https://letters.example.com/in');
  await page.check('input[name=action][value="contact.created"]');
  await page.click('#setup-submit');
  await untilText(page, '#error', /^The server could not answer \(HTTP 502/);
  const names = async () => (await database.pool.query('select name from webhooks.webhooks where company_id = $1 order by id', [company.id])).rows.map((row) => row.name);
  await page.fill('#setup-name', 'Letters by hand');
  await page.click('#setup-submit');
  await untilText(page, '#error', /^Not created: this form was sent before with other settings/);
  t.is(await page.textContent('#error'), 'Not created: this form was sent before with other settings, and that Create may have made the webhook. ' +
    'Look for it in the list of webhooks: Create again makes another, as the form is now.');
  t.deepEqual(await names(), ['Letters']);
  await page.click('#setup-submit');
  await untilText(page, '#flash', 'Created · Letters by hand');
  t.deepEqual(await names(), ['Letters', 'Letters by hand']);
  t.deepEqual(problemsOf(page).filter((problem) => !/status of 502/.test(problem)), []);
  await page.close();
});

browserTest('a Create sends its delivery settings with it, in one request: the API\'s refusal of one makes no webhook at all', async (t) => {
  const f = factories(database.pool);
  const company = await f.company();
  const page = await signedIn(company.id);
  const sent: string[] = [];
  // the form checks the boxes as the API does: a rate the API refuses is put in the
  // request on its way, as a page older or newer than the API would send it
  let tamper = true;
  await page.route('**/graphql', async (route) => {
    const body = route.request().postData() ?? '';
    const name = /(?:mutation|query) (\w+)/.exec(body)?.[1];
    if (name) sent.push(name);
    if (tamper && name === 'Create') {
      const request = JSON.parse(body);
      await route.continue({ postData: JSON.stringify({ ...request, variables: { ...request.variables, rateLimit: 20_000 } }) });
      return;
    }
    await route.fallback();
  });
  await page.click('#new-webhook');
  await page.waitForSelector('#setup-form');
  await page.fill('#setup-name', 'Paced');
  await page.fill('#setup-url', 'https://paced.example.com/in');
  await page.check('input[name=action][value="contact.created"]');
  await page.fill('#setup-max-in-flight', '3');
  await page.fill('#setup-rate-limit', '5');
  await page.fill('#setup-coalesce', '60');
  sent.length = 0;
  await page.click('#setup-submit');
  await untilText(page, '#error-rate_limit', /^rate_limit must be from 1 to 10000 requests per second/);
  const made = async () => (await database.pool.query(
    `select name, max_in_flight, rate_limit, extract(epoch from coalesce_window)::int as coalesce_seconds, ordered
     from webhooks.webhooks where company_id = $1`, [company.id])).rows;
  t.deepEqual(await made(), [], 'no webhook with the defaults: none at all');
  t.deepEqual(sent, ['Create']);
  tamper = false;
  sent.length = 0;
  await page.click('#setup-submit');
  await untilText(page, '#flash', 'Created · Paced');
  t.is(sent[0], 'Create');
  t.false(sent.includes('SaveLimits') || sent.includes('SaveDelivery'), 'no second request for the delivery settings');
  t.deepEqual(await made(), [{ name: 'Paced', max_in_flight: 3, rate_limit: 5, coalesce_seconds: 60, ordered: false }]);
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a Save whose second request fails (a proxy\'s 502 between them) is saved whole by Save again, not refused as another admin\'s change', async (t) => {
  const f = factories(database.pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, name: 'Letters', actions: ['contact.created'], url: 'https://letters.example.com/v1' });
  const page = await signedIn(company.id);
  await visit(page, `${api.api.url}/reports/webhooks#/webhooks/${hook.id}/edit`);
  await page.waitForSelector('#setup-form');
  await untilText(page, '#page-title', 'Edit Letters');
  // the webhook's own settings are saved; the request that follows, its requests per second, meets a proxy that fails once
  let failed = 0;
  await page.route('**/graphql', async (route) => {
    if (failed === 0 && route.request().postData()?.includes('SaveLimits')) {
      failed += 1;
      await route.fulfill({ status: 502, contentType: 'text/html', body: '<html><body>Bad Gateway</body></html>' });
      return;
    }
    await route.fallback();
  });
  await page.fill('#setup-name', 'Handwritten letters');
  await page.fill('#setup-rate-limit', '5');
  await page.click('#setup-submit');
  await untilText(page, '#error', /^The server could not answer \(HTTP 502/);
  t.is(failed, 1);
  t.is(await page.inputValue('#setup-name'), 'Handwritten letters', 'the form as typed');
  await page.click('#setup-submit');
  await untilText(page, '#flash', 'Saved · Handwritten letters');
  t.deepEqual((await database.pool.query('select name, rate_limit from webhooks.webhooks where id = $1', [hook.id])).rows,
    [{ name: 'Handwritten letters', rate_limit: 5 }]);

  // the same, with another admin's change between the failure and Save again: still refused
  await visit(page, `${api.api.url}/reports/webhooks#/webhooks/${hook.id}/edit`);
  await untilText(page, '#page-title', 'Edit Handwritten letters');
  failed = 0;
  await page.fill('#setup-name', 'Letters by hand');
  await page.fill('#setup-rate-limit', '6');
  await page.click('#setup-submit');
  await untilText(page, '#error', /^The server could not answer \(HTTP 502/);
  t.is(failed, 1);
  await database.pool.query(`update webhooks.webhooks set url = 'https://letters.example.com/v2' where id = $1`, [hook.id]);
  await page.click('#setup-submit');
  await untilText(page, '#error', /^Not saved: someone else changed this webhook since you opened it\./);
  t.deepEqual((await database.pool.query('select name, url, rate_limit from webhooks.webhooks where id = $1', [hook.id])).rows,
    [{ name: 'Letters by hand', url: 'https://letters.example.com/v2', rate_limit: 5 }], 'their URL stays; the rate of the failed request is not saved');
  t.deepEqual(problemsOf(page).filter((problem) => !/status of 502/.test(problem)), []);
  await page.close();
});

// (the version moved on with every write: a form open across a Disable in another tab,
// the relay's disable of a failing endpoint or a secret's rotation was refused on Save,
// though none of them is anything the form shows or its Save writes)
browserTest('Save over a Disable, an Enable, the relay\'s disable and a secret rotation made since the form opened: saved, and the webhook stays as they left it', async (t) => {
  const f = factories(database.pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, name: 'Letters', actions: ['contact.created'], url: 'https://letters.example.com/v1' });
  const page = await signedIn(company.id);
  await visit(page, `${api.api.url}/reports/webhooks#/webhooks/${hook.id}/edit`);
  await page.waitForSelector('#setup-form');
  await untilText(page, '#page-title', 'Edit Letters');
  // meanwhile: another admin disables it and enables it again, rotates its secret, and
  // the relay disables it (its write for a 410 Gone)
  await database.pool.query("select webhooks.disable_webhook($1, 'moving')", [hook.id]);
  await database.pool.query('select webhooks.enable_webhook($1)', [hook.id]);
  await database.pool.query('select webhooks.rotate_webhook_secret($1)', [hook.id]);
  await database.pool.query(`update webhooks.webhooks set enabled = false, disabled_at = now(), disabled_by = 'relay',
                                    disabled_reason = 'the endpoint answered 410 Gone' where id = $1`, [hook.id]);
  await page.fill('#setup-name', 'Handwritten letters');
  await page.click('#setup-submit');
  await page.waitForSelector('#history:not([hidden])');
  await untilText(page, '#flash', 'Saved · Handwritten letters');
  t.deepEqual((await database.pool.query('select name, url, enabled, disabled_by from webhooks.webhooks where id = $1', [hook.id])).rows,
    [{ name: 'Handwritten letters', url: 'https://letters.example.com/v1', enabled: false, disabled_by: 'relay' }]);
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a secret shown is gone from the page once the tab is signed out, by Sign out or by a token that expired: the next to sign in on the tab does not see it', async (t) => {
  const f = factories(database.pool);
  const company = await f.company();
  const other = await f.company();
  const hook = await f.webhook({ companyId: company.id, name: 'Sheet', actions: ['contact.created'] });
  await f.webhook({ companyId: other.id, name: 'Theirs', actions: ['contact.created'] });
  const page = await signedIn(company.id);
  const showSecret = async () => {
    await visit(page, `${api.api.url}/reports/webhooks#/webhooks/${hook.id}`);
    await page.click('#rotate-secret');
    await page.click('#confirm-yes');
    await page.waitForSelector('#secret-panel:not([hidden])');
    t.is(await page.textContent('#secret-value'), await storedSecret(hook.id));
  };

  // the token expires while the secret is shown: the next request finds it so
  await showSecret();
  const expired = await expiredToken(api.jwtSecret, company.id);
  await page.evaluate((token) => sessionStorage.setItem('bpd-webhooks.token', token), expired);
  await page.click('#range-presets [data-preset="7"]');
  await untilText(page, '#sign-in-error', /^This token expired on /);
  t.is(await page.textContent('#secret-value'), '', 'gone from the page');
  await signIn(page, await api.token(other.id));
  await page.waitForSelector('#error:not([hidden]), #history:not([hidden])');
  t.true(await page.isHidden('#secret-panel'), 'not shown to the next to sign in');

  // Sign out
  await page.click('#sign-out');
  await signIn(page, await api.token(company.id));
  await showSecret();
  await page.click('#sign-out');
  await page.waitForSelector('#sign-in:not([hidden])');
  t.is(await page.textContent('#secret-value'), '', 'gone from the page');
  await page.close();
});

browserTest('a secret issued just as the token expires is shown once its admin signs in again, not lost', async (t) => {
  const f = factories(database.pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, name: 'Sheet', actions: ['contact.created'] });
  const page = await signedIn(company.id);
  await visit(page, `${api.api.url}/reports/webhooks#/webhooks/${hook.id}`);
  await page.waitForSelector('#rotate-secret');
  // the rotation is the last request the token serves: it is found expired right after
  const expired = await expiredToken(api.jwtSecret, company.id);
  await page.route('**/graphql', async (route) => {
    // (fetched again once if the connection it reused was closed as it was taken: the
    // server ends a connection idle for its keep-alive, and the browser's own requests
    // retry that themselves; this one, made by the test's driver, did not)
    const response = await route.fetch().catch(() => route.fetch());
    if (route.request().postData()?.includes('rotateWebhookSecret')) {
      await page.evaluate((token) => sessionStorage.setItem('bpd-webhooks.token', token), expired);
    }
    await route.fulfill({ response });
  });
  await page.click('#rotate-secret');
  await page.click('#confirm-yes');
  await untilText(page, '#sign-in-error', /^This token expired on /);
  await signIn(page, await api.token(company.id));
  await page.waitForSelector('#secret-panel:not([hidden])');
  t.is(await page.textContent('#secret-value'), await storedSecret(hook.id));
  await page.close();
});

browserTest('a form filled while the token expired is kept for the admin of the same company who signs in again; not for another', async (t) => {
  const f = factories(database.pool);
  const company = await f.company();
  const other = await f.company();
  const page = await signedIn(company.id);
  const expire = async () => {
    const expired = await expiredToken(api.jwtSecret, company.id);
    await page.evaluate((token) => sessionStorage.setItem('bpd-webhooks.token', token), expired);
  };
  const fill = async () => {
    await visit(page, `${api.api.url}/reports/webhooks#/new`);
    await page.waitForSelector('#setup-form');
    await page.fill('#setup-name', 'Typed at length');
    await page.fill('#setup-url', receiver.url('/typed'));
    await page.check('input[name="action"][value="contact.created"]');
    await expire();
    await page.click('#setup-submit');
    await untilText(page, '#sign-in-error', /^This token expired on /);
  };

  await fill();
  await signIn(page, await api.token(company.id));
  await page.waitForSelector('#setup:not([hidden]) #setup-form');
  t.is(await page.inputValue('#setup-name'), 'Typed at length');
  await page.click('#setup-submit');
  await page.waitForSelector('#secret-panel:not([hidden])');
  const { rows } = await database.pool.query('select name, url from webhooks.webhooks where company_id = $1', [company.id]);
  t.deepEqual(rows, [{ name: 'Typed at length', url: receiver.url('/typed') }]);

  // another company's admin, signing in on the same tab, gets a form of their own
  await page.click('#secret-done');
  await fill();
  await signIn(page, await api.token(other.id));
  await page.waitForSelector('#setup:not([hidden]) #setup-form');
  t.is(await page.inputValue('#setup-name'), '');
  t.deepEqual(problemsOf(page).filter((p) => !p.includes('401')), []);
  await page.close();
});

browserTest('Send test says in words on the page, which it names as its description, why it is off and why the last test failed', async (t) => {
  const f = factories(database.pool);
  const company = await f.company('Plain Words Realty');
  const off = await f.webhook({ companyId: company.id, name: 'Switched off', actions: ['contact.created'], enabled: false });
  // one attempt: the receiver's refusal fails the test at once
  const failing = await f.webhook({
    companyId: company.id, name: 'Refused', actions: ['contact.created'], url: receiver.url('/refuses'), maxAttempts: 1,
  });
  receiver.route('/refuses', { replies: [{ status: 403, body: 'forbidden' }] });
  const page = await signedIn(company.id);
  /** Opens a webhook's page and waits until it is drawn whole (its title is set before its tools). */
  const open = async (webhook: { id: string; name: string }) => {
    await visit(page, `${api.api.url}/reports/webhooks#/webhooks/${webhook.id}`);
    await untilText(page, '#page-title', webhook.name);
    await page.waitForSelector('body:not([aria-busy]) #history:not([hidden]) #send-test');
  };

  // (a title shows on hover alone: no keyboard or touch reaches it, and a disabled
  // button takes no focus)
  await open(off);
  t.true(await page.isDisabled('#send-test'));
  const offWhy = await page.getAttribute('#send-test', 'aria-describedby');
  t.truthy(offWhy);
  t.is(await page.textContent(`#${offWhy}`), 'This webhook is disabled: enable it to send a test.');
  t.true(await page.isVisible(`#${offWhy}`));

  await open(failing);
  t.false(await page.isDisabled('#send-test'));
  // before a test, what it does
  t.is(await page.textContent(`#${await page.getAttribute('#send-test', 'aria-describedby')}`),
    'Sends one signed test delivery (webhook.test) with a sample contact.');
  await page.focus('#send-test');
  await page.keyboard.press('Enter');
  await untilText(page, '#flash', /^Test failed: /);
  // the keyboard's focus is on Send test, drawn again, not at the page's top
  await page.waitForSelector('body:not([aria-busy])');
  t.is(await page.evaluate(() => document.activeElement?.id), 'send-test');
  // (the tools are drawn again once the history has the failed test)
  const failedWhy = await page.getAttribute('#send-test', 'aria-describedby');
  t.truthy(failedWhy);
  await untilText(page, `#${failedWhy}`, /^The last test failed: .*403/);
  t.true(await page.isVisible(`#${failedWhy}`));
  // it stays by the button when the page's message goes (another view and back)
  await page.click('.back');
  await untilReport(page);
  await open(failing);
  t.true(await page.isHidden('#flash'));
  t.regex(await page.textContent(`#${await page.getAttribute('#send-test', 'aria-describedby')}`) ?? '', /^The last test failed: .*403/);
  // the test send in the history says, in words on the page, that it is not counted
  const badge = '#history-body .badge.test';
  await page.waitForSelector(badge);
  t.is(await page.getAttribute(badge, 'title'), null);
  const badgeWhy = await page.getAttribute(badge, 'aria-describedby');
  t.truthy(badgeWhy);
  t.is(await page.textContent(`#${badgeWhy}`), 'A test send is not counted in Times Fired.');
  t.true(await page.isVisible(`#${badgeWhy}`));
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('while a test\'s answer is awaited, Send test is unavailable and says why: a second press sends no second test, and the focus stays on it', async (t) => {
  const f = factories(database.pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, name: 'Slow', actions: ['contact.created'], url: receiver.url('/slow-test') });
  // the receiver answers once the test says so
  const { replies, opens: [answer] } = gatedReplies(1);
  receiver.route('/slow-test', { replies });
  // The page waits for a test's answer 30 s at most, by its own clock (docs/page.md),
  // and the relay's attempt ends at its request timeout (15 s), then a retry the
  // receiver answers at once: on a loaded machine more than that passed between the
  // press and the presses below, the wait was over, and they sent tests of their own.
  // The page's timers stopped from the press keep it waiting until the test has
  // pressed, however slow the machine; a clock is its browser's, every tab's, hence a
  // browser of this test's own
  const { page, problems } = await tabOfItsOwnBrowser(t);
  const sends: string[] = [];
  page.on('request', (request) => {
    if (request.postData()?.includes('mutation SendTest(')) sends.push(request.postData()!);
  });
  await page.clock.install();
  await visit(page, `${api.api.url}/reports/webhooks`);
  await signIn(page, await api.token(company.id, 'webhook_admin', 'jane.admin@purple.example'));
  await untilReport(page);
  await visit(page, `${api.api.url}/reports/webhooks#/webhooks/${hook.id}`);
  await page.waitForSelector('body:not([aria-busy]) #history:not([hidden]) #send-test');
  // (paused a moment ahead of the tab's clock, which runs behind the test's, never ahead)
  await page.clock.pauseAt(Date.now() + 1000);
  await page.focus('#send-test');
  await page.keyboard.press('Enter');
  await untilText(page, '#flash', /^Test sent to .*: waiting for the answer…$/);
  await page.waitForSelector('body:not([aria-busy]) #send-test');
  t.is(await page.getAttribute('#send-test', 'aria-disabled'), 'true', 'unavailable, and said so');
  t.like(await accessibleOf(page, '#send-test'), { name: 'Send test', description: 'Waiting for the receiver\'s answer to the test sent.' });
  t.is(await page.evaluate(() => document.activeElement?.id), 'send-test', 'the focus stays on it');
  await page.keyboard.press('Enter');
  await page.click('#send-test', { force: true });
  const tests = async () => (await database.pool.query(
    `select count(*)::int as n from webhooks.deliveries where webhook_id = $1 and action = 'webhook.test'`, [hook.id])).rows[0].n;
  t.is(await page.textContent('#flash'), `Test sent to ${hook.url}: waiting for the answer…`, 'still waiting');
  t.is(await tests(), 1, 'one test sent');
  answer();
  await page.clock.resume();
  await untilText(page, '#flash', 'Test delivered: the receiver answered 200.');
  // (said before the tools are drawn again)
  await untilText(page, '#send-test-why', 'Sends one signed test delivery (webhook.test) with a sample contact.');
  t.is(await page.getAttribute('#send-test', 'aria-disabled'), null);
  t.like(await accessibleOf(page, '#send-test'), { description: 'Sends one signed test delivery (webhook.test) with a sample contact.' });
  // (a press's request goes out before the page's next turn: long since made, by now)
  t.is(sends.length, 1, 'one test asked for');
  t.is(await tests(), 1);
  t.deepEqual(problems, []);
});

browserTest('Send test is unavailable from the press, before the API has answered: the view drawn again meanwhile (another Date Range) offers no second test', async (t) => {
  const f = factories(database.pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, name: 'Sent once', actions: ['contact.created'], url: receiver.url('/sent-once') });
  receiver.route('/sent-once', { replies: [200] });
  // The page gives up a request after 30 s by its own clock (ANSWER_WAIT_MS, page/api.js)
  // and Send test is then available again, as it should be: on a loaded machine more
  // than that passed between the press and the look at the view drawn again (a CI run's
  // failure, 2026-12-08). The page's timers stopped from the press keep the request
  // awaited until the test lets it go; a clock is its browser's, hence a browser of
  // this test's own (as the test above).
  const { page, problems } = await tabOfItsOwnBrowser(t);
  // the first request to send a test is held until the view has been drawn again; any
  // other goes on (a second test would be made, and counted below)
  const sends: string[] = [];
  let held!: (value: Route) => void;
  const heldSend = new Promise<Route>((resolve) => { held = resolve; });
  await page.route('**/graphql', async (route) => {
    if (route.request().postData()?.includes('mutation SendTest(')) {
      sends.push(route.request().postData()!);
      if (sends.length === 1) {
        held(route);
        return;
      }
    }
    await route.continue();
  });
  await page.clock.install();
  await visit(page, `${api.api.url}/reports/webhooks`);
  await signIn(page, await api.token(company.id, 'webhook_admin', 'jane.admin@purple.example'));
  await untilReport(page);
  await visit(page, `${api.api.url}/reports/webhooks#/webhooks/${hook.id}`);
  await page.waitForSelector('body:not([aria-busy]) #history:not([hidden]) #send-test');
  // (paused a moment ahead of the tab's clock, which runs behind the test's, never ahead)
  await page.clock.pauseAt(Date.now() + 1000);
  await page.focus('#send-test');
  await page.keyboard.press('Enter');
  const send = await heldSend;
  // at once: unavailable, said so, and the focus kept
  t.is(await page.getAttribute('#send-test', 'aria-disabled'), 'true', 'unavailable from the press');
  t.is(await page.textContent('#send-test-why'), 'Waiting for the receiver\'s answer to the test sent.');
  t.is(await page.evaluate(() => document.activeElement?.id), 'send-test', 'the focus stays on it');
  // another Date Range draws the view again, its tools too, while the request is held
  await page.click('#range-presets [data-preset="7"]');
  await page.waitForSelector('#range-presets [data-preset="7"][aria-pressed="true"]');
  await page.waitForSelector('body:not([aria-busy]) #history:not([hidden]) #send-test');
  t.is(await page.getAttribute('#send-test', 'aria-disabled'), 'true', 'still unavailable, drawn again');
  t.like(await accessibleOf(page, '#send-test'), { name: 'Send test', description: 'Waiting for the receiver\'s answer to the test sent.' });
  await page.focus('#send-test');
  await page.keyboard.press('Enter');
  await page.click('#send-test', { force: true });
  await page.clock.resume();
  await send.continue();
  await untilText(page, '#flash', 'Test delivered: the receiver answered 200.');
  await untilText(page, '#send-test-why', 'Sends one signed test delivery (webhook.test) with a sample contact.');
  t.is(await page.getAttribute('#send-test', 'aria-disabled'), null);
  // (a second request, sent on at once, was made before the first's answer was awaited)
  t.is(sends.length, 1, 'one test asked for');
  t.is((await database.pool.query(
    `select count(*)::int as n from webhooks.deliveries where webhook_id = $1 and action = 'webhook.test'`, [hook.id])).rows[0].n, 1, 'one test sent');
  t.deepEqual(problems, []);
});

browserTest('a test\'s answer awaited when its admin signs out is not shown to the next admin of the company', async (t) => {
  const f = factories(database.pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, name: 'Handed over', actions: ['contact.created'], url: receiver.url('/handed-over') });
  receiver.route('/handed-over', { replies: [200] });
  const page = await signedIn(company.id);
  // the page's first look at the test's state is held until the next admin is signed in
  let held!: (value: Route) => void;
  const heldPoll = new Promise<Route>((resolve) => { held = resolve; });
  await page.route('**/graphql', async (route) => {
    if (route.request().postData()?.includes('query Firing(')) held(route);
    else await route.continue();
  });
  await visit(page, `${api.api.url}/reports/webhooks#/webhooks/${hook.id}`);
  await page.waitForSelector('body:not([aria-busy]) #history:not([hidden]) #send-test');
  await page.click('#send-test');
  const poll = await heldPoll;
  await page.click('#sign-out');
  await page.waitForSelector('#sign-in:not([hidden])');
  await signIn(page, await api.token(company.id, 'webhook_admin', 'sam.admin@purple.example'));
  await untilReport(page);
  await until('the test delivered', async () => (await database.pool.query(
    `select state from webhooks.deliveries where webhook_id = $1 and action = 'webhook.test'`, [hook.id])).rows[0]?.state === 'succeeded');
  // the first admin's wait goes on: its answer (the test delivered) reaches the page
  const answered = page.waitForResponse((response) => response.request() === poll.request());
  await poll.continue();
  await (await answered).finished();
  // (the answer read and acted on: a few turns of the page's event loop)
  await page.evaluate(() => new Promise((resolve) => setTimeout(resolve, 100)));
  t.is(await page.textContent('#flash'), '', 'nothing of the admin before is said');
  await page.close();
});

browserTest('a viewer sees no New webhook, Edit, Send test, Rotate secret or Delete, but reads the history of changes', async (t) => {
  const f = factories(database.pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, name: 'Sheet', actions: ['contact.created'] });
  const page = await signedIn(company.id, 'webhook_viewer');
  t.true(await page.isHidden('#new-webhook'));
  await page.click(`tr[data-webhook-id="${hook.id}"] .webhook-link`);
  await page.waitForSelector('#audit-list li[data-action="webhook.created"]');
  t.is(await page.locator('#webhook-tools > *').count(), 0);
  t.is(await page.locator('#history button:visible, #history a.button-link').count(), 0);
  await visit(page, `${api.api.url}/reports/webhooks#/webhooks/${hook.id}/edit`);
  await untilText(page, '#error', 'This token may only read. Setting webhooks up needs an admin token.');
  t.true(await page.isHidden('#setup'));
  await page.close();
});

browserTest('the form sets how deliveries go: requests at once, per second, the merge window and order; bad numbers are refused beside their box', async (t) => {
  const f = factories(database.pool);
  const company = await f.company();
  const page = await signedIn(company.id);
  const settingsOf = async (id: string) => (await database.pool.query(
    `select max_in_flight, rate_limit, extract(epoch from coalesce_window)::int as coalesce_seconds, ordered
     from webhooks.webhooks where id = $1`, [id])).rows[0];

  // a new webhook with every delivery setting, the first tries refused by the form
  await page.click('#new-webhook');
  await page.waitForSelector('#setup-form');
  await page.fill('#setup-name', 'Letters');
  await page.fill('#setup-url', receiver.url('/letters'));
  await page.check('input[name=action][value="contact.updated"]');
  await page.fill('#setup-max-in-flight', '0');
  await page.fill('#setup-rate-limit', 'fast');
  await page.fill('#setup-coalesce', '7200');
  await page.click('#setup-submit');
  t.is(await page.textContent('#error-max_in_flight'), 'Requests at once: a whole number from 1 to 1,000, or empty.');
  t.is(await page.textContent('#error-rate_limit'), 'Requests per second: a whole number from 1 to 10,000, or empty.');
  t.is(await page.textContent('#error-coalesce_window'), 'Merge window: a whole number from 1 to 3,600, or empty.');
  t.is(await page.getAttribute('#setup-rate-limit', 'aria-invalid'), 'true');
  t.is((await database.pool.query('select count(*)::int as n from webhooks.webhooks where company_id = $1', [company.id])).rows[0].n, 0);

  await page.fill('#setup-max-in-flight', '4');
  await page.fill('#setup-rate-limit', '20');
  await page.fill('#setup-coalesce', '90');
  await page.check('#setup-ordered');
  await page.click('#setup-submit');
  await page.waitForSelector('#secret-panel:not([hidden])');
  t.is(await page.textContent('#flash'), 'Created · Letters');
  const { rows: [webhook] } = await database.pool.query('select id from webhooks.webhooks where company_id = $1', [company.id]);
  t.deepEqual(await settingsOf(webhook.id), { max_in_flight: 4, rate_limit: 20, coalesce_seconds: 90, ordered: true });

  // the edit form shows them; emptied boxes go back to the defaults
  await visit(page, `${api.api.url}/reports/webhooks#/webhooks/${webhook.id}/edit`);
  await page.waitForSelector('#setup-form');
  t.is(await page.inputValue('#setup-max-in-flight'), '4');
  t.is(await page.inputValue('#setup-rate-limit'), '20');
  t.is(await page.inputValue('#setup-coalesce'), '90');
  t.true(await page.isChecked('#setup-ordered'));
  await page.fill('#setup-rate-limit', '');
  await page.fill('#setup-coalesce', '');
  await page.uncheck('#setup-ordered');
  await page.click('#setup-submit');
  await untilText(page, '#flash', 'Saved · Letters');
  t.deepEqual(await settingsOf(webhook.id), { max_in_flight: 4, rate_limit: null, coalesce_seconds: null, ordered: false });

  // the history of changes says it in words
  await visit(page, `${api.api.url}/reports/webhooks#/webhooks/${webhook.id}`);
  await untilText(page, '#audit-list', /one at a time per contact: yes → no; merge window: 90 s → off.*requests per second: 20 → no limit/);

  // a save that leaves them as they are changes nothing of them
  await visit(page, `${api.api.url}/reports/webhooks#/webhooks/${webhook.id}/edit`);
  await page.waitForSelector('#setup-form');
  t.is(await page.inputValue('#setup-rate-limit'), '');
  await page.fill('#setup-name', 'Handwritten letters');
  await page.click('#setup-submit');
  await untilText(page, '#flash', 'Saved · Handwritten letters');
  const { rows: [last] } = await database.pool.query(
    `select details from webhooks.audit_log where webhook_id = $1 order by id desc limit 1`, [webhook.id]);
  t.deepEqual(Object.keys(last.details.changed), ['name']);
  t.deepEqual(await settingsOf(webhook.id), { max_in_flight: 4, rate_limit: null, coalesce_seconds: null, ordered: false });
  t.deepEqual(problemsOf(page), []);
});

browserTest('the Delete and Rotate secret questions take the keyboard: focus goes in when asked, Escape cancels, and focus goes back to the button that asked', async (t) => {
  const f = factories(database.pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, name: 'Keyboard notes', actions: ['contact.created'] });
  const page = await signedIn(company.id);
  await page.click(`tr[data-webhook-id="${webhook.id}"] .webhook-link`);
  await page.waitForSelector('#delete-webhook');
  const focused = () => page.evaluate(() => document.activeElement?.id ?? null);
  const secret = await storedSecret(webhook.id);

  for (const [button, question] of [['#delete-webhook', /^Delete "Keyboard notes"/], ['#rotate-secret', /^Rotate the signing secret/]] as const) {
    await page.focus(button);
    await page.keyboard.press('Enter');
    await untilText(page, '#confirm-text', question);
    t.true(await page.evaluate(() => document.getElementById('confirm')!.contains(document.activeElement)), 'focus is in the question');
    await page.keyboard.press('Escape');
    await page.waitForSelector('#confirm', { state: 'hidden' });
    t.is(await focused(), button.slice(1), 'Escape gives focus back to the button that asked');
    // Cancel does the same
    await page.keyboard.press('Enter');
    await page.waitForSelector('#confirm[open]');
    await page.click('#confirm-no');
    t.is(await focused(), button.slice(1), 'Cancel gives focus back');
  }
  // neither question, cancelled, did anything
  t.is((await database.pool.query('select count(*)::int as n from webhooks.webhooks where id = $1', [webhook.id])).rows[0].n, 1);
  t.is(await storedSecret(webhook.id), secret);

  // Rotate secret answered: focus is back on Rotate secret, drawn again with the new secret shown
  await page.focus('#rotate-secret');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#confirm[open]');
  // (Cancel has the focus first; Rotate secret is before it)
  await page.keyboard.press('Shift+Tab');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#secret-panel:not([hidden])');
  // said, not only shown: the focus stays on Rotate secret, away from the panel
  await untilText(page, '#flash', 'Rotated the signing secret of Keyboard notes: copy the new one below, shown only this once.');
  t.not(await storedSecret(webhook.id), secret);
  // (once the tools are drawn again, a moment after the panel)
  await page.waitForFunction(() => document.activeElement?.id === 'rotate-secret');
  t.is(await focused(), 'rotate-secret');
  // I have stored it, by keyboard: the panel goes, and the focus to the webhook's
  // heading, not to the page's body (where the next Tab starts at the page's top)
  await page.focus('#secret-done');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#secret-panel', { state: 'hidden' });
  t.is(await focused(), 'page-title');
  t.deepEqual(await accessibleOf(page, '#page-title'), { role: 'heading', name: 'Keyboard notes', description: '', ignored: false });
  t.deepEqual(problemsOf(page), []);
  await page.close();
});
