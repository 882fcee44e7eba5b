// Reports » Webhooks as a keyboard, screen-reader or touch user meets it, in headless
// Chromium against the real API: what each control is called and described as (the
// browser's own accessibility tree), where the keyboard's focus goes, what is
// announced, and how large a finger's target is.
import test from 'ava';
import type { Page } from 'playwright-core';
import { accessibleOf, choose, PAGE_TEST_API_LIMITS, signIn, untilReport, untilText, useBrowser, visit } from '../helpers/browser.ts';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';
import { fire, fireMany } from '../helpers/report-data.ts';

const { db, api } = useTestDatabaseWithApi(test, { limits: PAGE_TEST_API_LIMITS });
const { browserTest, openTab, problemsOf } = useBrowser(test);

async function signedIn(companyId: string): Promise<Page> {
  const page = await openTab(`${api().api.url}/reports/webhooks`);
  await signIn(page, await api().token(companyId, 'webhook_admin', 'jane.admin@purple.example'));
  await untilReport(page);
  return page;
}

/** Opens a webhook's page and waits until it is drawn whole. */
async function openHistory(page: Page, webhook: { id: string; name: string }): Promise<void> {
  await visit(page, `${api().api.url}/reports/webhooks#/webhooks/${webhook.id}`);
  await untilText(page, '#page-title', webhook.name);
  await page.waitForSelector('body:not([aria-busy]) #history:not([hidden])');
}

/** The id of the element that has the keyboard's focus, else its tag */
const focused = (page: Page) => page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName || null);

browserTest('Backfill and Send test say what they do in words on the page, once, which they name as their description: not in a title', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const letters = await f.webhook({ companyId: company.id, name: 'Letters', actions: ['contact.created'] });
  await f.webhook({ companyId: company.id, name: 'Sheet', actions: ['contact.created'] });
  const page = await signedIn(company.id);

  // (a title shows on hover alone: no keyboard or touch user ever sees it)
  const backfill = `tr[data-webhook-id="${letters.id}"] [data-action=backfill]`;
  t.is(await page.getAttribute(backfill, 'title'), null);
  const said = await accessibleOf(page, backfill);
  t.is(said.name, 'Backfill Letters');
  t.is(said.description, 'Backfill sends every contact of your company to its webhook, once each.');
  const backfillWhy = await page.getAttribute(backfill, 'aria-describedby');
  t.true(await page.isVisible(`#${backfillWhy}`));
  // said once above the table, not under every row's button
  t.is(await page.locator(`#report :text("${said.description}")`).count(), 1);
  t.is(await page.locator('#webhooks-body [aria-describedby]').evaluateAll(
    (buttons) => new Set(buttons.map((b) => b.getAttribute('aria-describedby'))).size), 1);

  await openHistory(page, letters);
  t.is(await page.getAttribute('#send-test', 'title'), null);
  const test = await accessibleOf(page, '#send-test');
  t.is(test.description, 'Sends one signed test delivery (webhook.test) with a sample contact.');
  t.true(await page.isVisible(`#${await page.getAttribute('#send-test', 'aria-describedby')}`));
  t.is(await page.locator('#app [title]:visible').count(), 0, 'nothing said in a title alone');
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('Next, Previous and an outcome filter take the keyboard to the firings they bring: the table, named with the page it holds', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const contact = await f.contact(company.id);
  const webhook = await f.webhook({ companyId: company.id, name: 'Paged', actions: ['contact.created'] });
  await fireMany(db().pool, webhook, contact, 60);
  const page = await signedIn(company.id);
  t.is((await accessibleOf(page, '#webhooks-table')).name, 'Webhooks');
  await openHistory(page, webhook);
  t.is((await accessibleOf(page, '#history-table')).name, 'Firings of Paged: 1–50 of 60 · page 1 of 2');

  // (the pager is redrawn with the page: the link that had the focus is gone with it)
  await page.focus('#pager [rel=next]');
  await page.keyboard.press('Enter');
  await untilText(page, '#page-info', '51–60 of 60 · page 2 of 2');
  await page.waitForSelector('body:not([aria-busy])');
  t.is(await focused(page), 'history-table');
  t.is((await accessibleOf(page, '#history-table')).name, 'Firings of Paged: 51–60 of 60 · page 2 of 2');
  // the next Tab is the page's first firing's first control
  await page.keyboard.press('Tab');
  t.regex((await accessibleOf(page, ':focus')).name, /^Show firing #/);

  await page.focus('#pager [rel=prev]');
  await page.keyboard.press('Enter');
  await untilText(page, '#page-info', '1–50 of 60 · page 1 of 2');
  await page.waitForSelector('body:not([aria-busy])');
  t.is(await focused(page), 'history-table');

  await page.focus('#outcome-filter [data-outcome="failed"]');
  await page.keyboard.press('Enter');
  await untilText(page, '#page-info', '1–6 of 6 · page 1 of 1');
  await page.waitForSelector('body:not([aria-busy])');
  t.is(await focused(page), 'history-table');
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('the setup form\'s errors are their inputs\' descriptions, and the first input at fault takes the focus, whichever it is', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  await f.status(company.id, 'Thank You Note');
  const page = await signedIn(company.id);
  await page.click('#new-webhook');
  await page.waitForSelector('#setup-form');

  await page.focus('#setup-submit');
  await page.keyboard.press('Enter');
  await untilText(page, '#error-actions', 'Choose at least one action.');
  t.is(await focused(page), 'setup-name');
  t.is((await accessibleOf(page, '#setup-name')).description, 'Give the webhook a name.');
  // a group of boxes says its error as the group's description
  const actions = await accessibleOf(page, '[data-field="actions"]');
  t.is(actions.role, 'group');
  t.is(actions.name, 'Send when');
  t.is(actions.description, 'Choose at least one action.');

  await page.fill('#setup-name', 'Notes');
  await page.fill('#setup-url', 'https://receiver.example.com/notes');
  // the URL's error goes as the URL is put right, not as the field is left: the line
  // it took went from under the pointer between its press and its release, and the
  // box pressed was not ticked
  t.true(await page.isHidden('#error-url'));
  await page.check('input[name=action][value="contact.created"]');
  await page.check('input[name=action][value="contact.status_added"]');
  await choose(page, '#setup-status', 'thank', 'Thank You Note');
  await page.fill('#setup-conditions', '{"field": "state"');
  await page.focus('#setup-submit');
  await page.keyboard.press('Enter');
  await untilText(page, '#error-status_id', /^A status applies to Status added and Status removed only/);
  t.is(await focused(page), 'setup-status-search');
  t.regex((await accessibleOf(page, '#setup-status-search')).description, /A status applies to Status added and Status removed only/);
  t.is(await page.getAttribute('#setup-status-search', 'aria-invalid'), 'true');

  // the conditions' box, a textarea, is the first at fault once the status is right
  await choose(page, '#setup-status', '', 'Any status');
  await page.focus('#setup-submit');
  await page.keyboard.press('Enter');
  await untilText(page, '#error-conditions', /^This is not JSON/);
  t.is(await focused(page), 'setup-conditions');
  t.regex((await accessibleOf(page, '#setup-conditions')).description, /This is not JSON/);
  t.is((await db().pool.query('select count(*)::int as n from webhooks.webhooks where company_id = $1', [company.id])).rows[0].n, 0);
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('what an action did is said in a live region that is there before its words: a screen reader hears the change of a region it already follows', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, name: 'Announced', actions: ['contact.created'] });
  const page = await signedIn(company.id);
  // (a region hidden until its words arrive is new to the screen reader with them:
  // most say nothing of a status region that appears)
  const region = await accessibleOf(page, '#flash');
  t.false(region.ignored, 'in the accessibility tree while it says nothing');
  t.is(region.role, 'status');
  t.is(await page.textContent('#flash'), '');
  t.true(await page.isHidden('#flash'), 'and nothing to see');

  await page.focus(`tr[data-webhook-id="${webhook.id}"] [data-action=disable]`);
  await page.keyboard.press('Enter');
  await untilText(page, '#flash', 'Webhook Status: Disable · Announced');
  t.true(await page.isVisible('#flash'));
  // a new view says nothing of the last one's action, and the region stays
  await page.click(`tr[data-webhook-id="${webhook.id}"] .webhook-link`);
  await untilText(page, '#page-title', 'Announced');
  t.is(await page.textContent('#flash'), '');
  t.false((await accessibleOf(page, '#flash')).ignored);
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

/**
 * The controls on view smaller than 24 × 24 CSS pixels (WCAG 2.5.8), with their size:
 * too small for a finger to hit surely. A box in a label is hit by its label too.
 */
const smallTargets = (page: Page) => page.evaluate(() => [...document.querySelectorAll('a, button, input, select, textarea, summary')]
  .map((control) => control.closest('label') ?? control)
  .map((element) => ({ element, box: element.getBoundingClientRect() }))
  .filter(({ box }) => box.width > 0 && box.height > 0 && (box.width < 24 || box.height < 24))
  .map(({ element, box }) => `${element.getAttribute('aria-label') ?? element.textContent?.trim()}: ${Math.round(box.width)}×${Math.round(box.height)}`));

browserTest('every control is a target of at least 24 by 24 pixels for a finger: the report, a history\'s rows, its pager and its tools', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const contact = await f.contact(company.id);
  const webhook = await f.webhook({ companyId: company.id, name: 'Touched', actions: ['contact.created'] });
  await fireMany(db().pool, webhook, contact, 60);
  const failed = await fire(db().pool, { webhook, contact, action: 'contact.created', daysAgo: 0, outcome: 'failed', attempts: 2, statusCode: 500 });
  const page = await signedIn(company.id);
  t.deepEqual(await smallTargets(page), []);
  await openHistory(page, webhook);
  // a firing opened, with its attempts
  await page.click(`#history-body tr[data-delivery-id="${failed}"] button[aria-expanded]`);
  await page.waitForSelector('#history-body .details-row:not([hidden]) table.attempts');
  t.deepEqual(await smallTargets(page), []);
  // (and the attempts' table is named with its firing, as its buttons are)
  t.regex((await accessibleOf(page, '#history-body table.attempts')).name, new RegExp(`^Attempts of firing #${failed}, `));
  await visit(page, `${api().api.url}/reports/webhooks#/new`);
  await page.waitForSelector('#setup-form');
  t.deepEqual(await smallTargets(page), []);
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('the pager\'s and the back link\'s names are their words, without their arrows; a page link that goes nowhere says it is unavailable', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const contact = await f.contact(company.id);
  const webhook = await f.webhook({ companyId: company.id, name: 'Arrows', actions: ['contact.created'] });
  await fireMany(db().pool, webhook, contact, 60);
  const page = await signedIn(company.id);
  await openHistory(page, webhook);
  t.is((await accessibleOf(page, '#pager [rel=next]')).name, 'Next');
  t.is((await accessibleOf(page, '#pager [rel=last]')).name, 'Last');
  t.is((await accessibleOf(page, '#history .back')).name, 'All webhooks');
  // on page 1, First and Previous go nowhere: said so, not plain text among links
  const first = await accessibleOf(page, '#pager [aria-disabled]');
  t.deepEqual([first.role, first.name], ['link', 'First']);
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('Replay, Backfill and Cancel backfill pressed with the keyboard leave its focus in their row, drawn again, not at the page\'s top', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const contact = await f.contact(company.id);
  const webhook = await f.webhook({ companyId: company.id, name: 'Replayed', actions: ['contact.created'] });
  const failed = await fire(db().pool, { webhook, contact, action: 'contact.created', daysAgo: 1, outcome: 'failed', attempts: 1, statusCode: 500 });
  const page = await signedIn(company.id);
  const row = `tr[data-webhook-id="${webhook.id}"]`;

  await page.focus(`${row} [data-action=backfill]`);
  await page.keyboard.press('Enter');
  // it asks first (Cancel has the focus; Start backfill is before it)
  await page.waitForSelector('#confirm[open]');
  await page.keyboard.press('Shift+Tab');
  await page.keyboard.press('Enter');
  await untilText(page, '#flash', 'Backfill started · Replayed');
  await page.waitForSelector('body:not([aria-busy])');
  t.is((await accessibleOf(page, ':focus')).name, 'Cancel backfill of Replayed');
  await page.keyboard.press('Enter');
  await untilText(page, '#flash', 'Backfill cancelled · Replayed');
  await page.waitForSelector('body:not([aria-busy])');
  t.is((await accessibleOf(page, ':focus')).name, 'Backfill Replayed');

  await openHistory(page, webhook);
  const firing = `#history-body tr[data-delivery-id="${failed}"]`;
  await page.focus(`${firing} button:has-text("Replay")`);
  await page.keyboard.press('Enter');
  await untilText(page, '#flash', `Replay: firing #${failed} is queued to be sent again.`);
  await page.waitForSelector(`body:not([aria-busy]) ${firing}[data-state="pending"]`);
  // (its Replay is gone with its failure: the focus is on its Show)
  t.regex((await accessibleOf(page, ':focus')).name, new RegExp(`^Show firing #${failed},`));
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a token or a Date Range refused says why as the description of the input at fault, which is marked invalid and has the focus', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const page = await openTab(`${api().api.url}/reports/webhooks`);
  await page.fill('#token', 'not a token');
  await page.focus('#sign-in-form button[type=submit]');
  await page.keyboard.press('Enter');
  await untilText(page, '#sign-in-error', /^That is not a token/);
  t.is(await focused(page), 'token');
  t.regex((await accessibleOf(page, '#token')).description, /^That is not a token/);
  t.is(await page.getAttribute('#token', 'aria-invalid'), 'true');
  await signIn(page, await api().token(company.id));
  await untilReport(page);

  await page.click('#range-presets [data-preset="custom"]');
  await page.fill('#range-from', '2026-11-20');
  await page.fill('#range-to', '2026-11-10');
  await page.focus('#range button[type=submit]');
  await page.keyboard.press('Enter');
  await untilText(page, '#error', 'The end date is before the start date.');
  t.is(await focused(page), 'range-from');
  for (const input of ['#range-from', '#range-to']) {
    t.is((await accessibleOf(page, input)).description, 'The end date is before the start date.', input);
    t.is(await page.getAttribute(input, 'aria-invalid'), 'true', input);
  }
  // put right, neither is at fault any longer
  await page.fill('#range-to', '2026-11-30');
  await page.click('#range button[type=submit]');
  await page.waitForSelector('#range-from:not([aria-invalid="true"])');
  t.is(await page.getAttribute('#range-to', 'aria-invalid'), null);
  t.is((await accessibleOf(page, '#range-to')).description, '');
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a row of the report is headed by its webhook, a row of a history by its firing\'s time: a screen reader says which row a cell is of', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const contact = await f.contact(company.id);
  const webhook = await f.webhook({ companyId: company.id, name: 'Headed', actions: ['contact.created'] });
  const failed = await fire(db().pool, { webhook, contact, action: 'contact.created', daysAgo: 1, outcome: 'failed', attempts: 1, statusCode: 500 });
  const page = await signedIn(company.id);
  const heading = await accessibleOf(page, `tr[data-webhook-id="${webhook.id}"] > :first-child`);
  t.deepEqual([heading.role, heading.name], ['rowheader', 'Headed']);
  t.is(await page.locator('#webhooks-body [role=rowheader], #webhooks-body th').count(), 1, 'one a row');
  // and a cell by its column's header: the last column holds Backfill (and its progress,
  // Cancel backfill) beside Disable, each said with that header
  const actions = await page.evaluate((id) => {
    const cell = document.querySelector(`tr[data-webhook-id="${id}"] [data-action=backfill]`)!.closest('td')!;
    return cell.cellIndex;
  }, webhook.id);
  const header = await accessibleOf(page, `#webhooks-table thead th:nth-child(${actions + 1})`);
  // (the headers' capitals are their style's, which Chromium's name keeps)
  t.deepEqual([header.role, header.name.toLowerCase()], ['columnheader', 'actions']);
  await openHistory(page, webhook);
  const time = await accessibleOf(page, `#history-body tr[data-delivery-id="${failed}"] > :first-child`);
  t.is(time.role, 'rowheader');
  t.is(time.name, (await page.textContent(`#history-body tr[data-delivery-id="${failed}"] > :first-child`)) ?? '');
  t.deepEqual(problemsOf(page), []);
  await page.close();
});

browserTest('a link to another view, followed with the keyboard, leaves the focus on the new view\'s heading, which a screen reader reads, not on the page\'s body', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, name: '<b>Headed</b> notes', actions: ['contact.created'] });
  const page = await signedIn(company.id);
  const onHeading = () => page.waitForFunction(() => document.activeElement?.id === 'page-title');

  await page.focus(`tr[data-webhook-id="${webhook.id}"] .webhook-link`);
  await page.keyboard.press('Enter');
  await untilText(page, '#page-title', '<b>Headed</b> notes');
  await onHeading();
  const heading = await accessibleOf(page, ':focus');
  t.deepEqual([heading.role, heading.name], ['heading', '<b>Headed</b> notes']);

  await page.focus('#history .back');
  await page.keyboard.press('Enter');
  await untilReport(page);
  await onHeading();
  t.is((await accessibleOf(page, ':focus')).name, 'Webhooks');
  // (a view that puts the focus where it is typed in keeps it there: the form's first box)
  await page.focus('#new-webhook');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.activeElement?.id === 'setup-name');
  t.deepEqual(problemsOf(page), []);
  await page.close();
});
