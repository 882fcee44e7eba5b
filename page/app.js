// Reports » Webhooks: the company's webhooks with their Times Fired for a Date Range,
// each webhook's firing history, Disable / Enable, Replay, and Backfill with its live
// progress; for admins, setting
// webhooks up (New webhook, Edit, Delete, Rotate secret, Send test); for everyone, a
// webhook's history of changes.
//
// Views follow the URL hash, so Back and reload work:
//   #/                         the report
//   #/new                      the New webhook form
//   #/webhooks/<id>?page=&outcome=   one webhook: its firings and its history of changes
//       (&after=<id>&at=<created at>: its page N starts after that firing; &before=…:
//       it ends before it. Next and Previous say so, Back, reload and links find the same page)
//   #/webhooks/<id>/edit       its edit form
import {
  ApiError, CHANGED_SINCE_RULE, cancelBackfill, createWebhook, deleteWebhook, fetchAttempts, fetchAuditLog, fetchBackfillContactsCount, fetchBackfills, fetchSetupFacts,
  fetchFiring, fetchHistory, fetchHistoryCount, fetchNames, fetchReport, fetchWebhook, fetchWebhookToEdit, newIdempotencyKey, replayDelivery, rotateSecret,
  saveDeliverySettings, searchChoices, sendTest, session, setWebhookEnabled, startBackfill, updateWebhook,
} from './api.js';
import { h, replace, setText } from './dom.js';
import {
  CHOOSE_AGAIN, CONTACT_ACTIONS, DEFAULT_PRESET, PRESETS, STATUS_ACTIONS, USER_ACTION, WATCHED_ACTIONS, actionWords, auditWords, backfillWords,
  conditionsText, deliverySettingsOf, failingLines, fieldLabel, formatCount, formatDate, formatStart, formatTime, inspectToken, isTest, nextTry,
  outcomeWords, parseConditions, presetDays, rangeInstants, rangeWords, setupProblems, sourceList, triggerLines,
  characterCount, urlProblem,
} from './format.js';

/** Firings a page of the history holds, unless the API's pages hold fewer (historyPageSize). */
const PAGE_SIZE = 50;
/** The last page whose offset a GraphQL Int (32 bits, signed) can say, at pageSize a
 *  page: a link to a page past it (typed, or from a history since dropped) asks for
 *  this one, which is past the end of any history and so lands on its last page. */
const maxPage = (pageSize) => Math.floor((2 ** 31 - 1) / pageSize) + 1;
/** How often the report asks for the progress of running backfills. */
const BACKFILL_REFRESH_MS = 1000;
const RANGE_KEY = 'bpd-webhooks.range';
/** The tab's title on the report (and while no one is signed in) */
const REPORT_TITLE = 'Webhooks · Reports · Big Purple Dot';
const OUTCOMES = [
  { id: 'all', label: 'All' },
  { id: 'succeeded', label: 'Success' },
  { id: 'failed', label: 'Failure' },
  { id: 'pending', label: 'Pending' },
];

const $ = (id) => document.getElementById(id);

// ---- state -------------------------------------------------------------------

/** The Date Range: a preset id, or 'custom' with its own days. */
let range = loadRange();
/** A viewer's token may only read: the page then offers no Disable, Enable or Replay. */
let readOnly = false;
/** A disabled webhook sends nothing, so its failed firings cannot be replayed until it is enabled. */
let replayBlocked = false;
/**
 * Firings a page of the history holds: PAGE_SIZE, or the most the API's pages may hold
 * where an operator set that lower (API_MAX_PAGE_SIZE): learnt from its refusal of a
 * larger page (PAGE_TOO_LARGE), which says it (docs/api-limits.md).
 */
let historyPageSize = PAGE_SIZE;
/**
 * The most firings a page of the history may lie from the end it is asked from when
 * asked by its number (an offset): the API's limit (MAX_OFFSET, 10,000), learnt from
 * its refusal of a page deeper (PAGE_TOO_DEEP), which says it; null until then. Such a
 * page is not asked again: the end of the history nearer to it is shown instead.
 */
let historyDepthLimit = null;
/** Bumped on every load, so that a slow, outdated answer never overwrites a newer one. */
let generation = 0;
/** A secret just issued ({ webhookId, secret, note }), shown once on that webhook's page. */
let issuedSecret = null;
/** A message set just before a change of view, kept across it. */
let keepFlash = false;
/**
 * The setup form shown when the token was found expired or refused ({ hash, companyId,
 * form }): its admin, signed in again for the same company, finds it as they left it,
 * rather than a new one to type again.
 */
let unsentForm = null;

function loadRange() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(RANGE_KEY) ?? 'null');
    if (saved?.preset === 'custom' && !rangeInstants(saved.fromDay, saved.toDay).error) return saved;
    if (PRESETS.some((p) => p.id === saved?.preset)) return { preset: saved.preset };
  } catch {
    // a damaged saved range falls back to the default
  }
  return { preset: DEFAULT_PRESET };
}

function rangeDays() {
  if (range.preset === 'custom') return { fromDay: range.fromDay, toDay: range.toDay };
  return presetDays(PRESETS.find((p) => p.id === range.preset).days);
}

function route() {
  const [path, query = ''] = location.hash.replace(/^#/, '').split('?');
  const params = new URLSearchParams(query);
  if (path === '/new') return { view: 'new' };
  const edit = path.match(/^\/webhooks\/(\d+)\/edit$/);
  // (an id past what a webhook's id can be names none: asked, the API refused it in its own terms)
  if (edit) return isId(edit[1]) ? { view: 'edit', webhookId: edit[1] } : { view: 'none', webhookId: edit[1] };
  const match = path.match(/^\/webhooks\/(\d+)$/);
  if (match && !isId(match[1])) return { view: 'none', webhookId: match[1] };
  if (match) {
    const outcome = OUTCOMES.some((o) => o.id === params.get('outcome')) ? params.get('outcome') : 'all';
    const page = Math.min(maxPage(historyPageSize), Math.max(1, Number.parseInt(params.get('page') ?? '1', 10) || 1));
    const named = page > 1 ? nextTo(params) : null;
    return {
      view: 'history', webhookId: match[1], outcome, page,
      next: named?.unreadable ? null : named, unreadableLink: Boolean(named?.unreadable),
    };
  }
  return { view: 'report' };
}

/** The largest id of a webhook or a firing (bigint) */
const MAX_ID = 2n ** 63n - 1n;

/** Whether digits are an id the database can hold: past bigint, no webhook or firing has it. */
function isId(digits) {
  return /^[0-9]{1,19}$/.test(digits) && BigInt(digits) <= MAX_ID;
}

/** What the page says of a webhook id that is not one of the company's. */
function noSuchWebhook(webhookId) {
  return `There is no webhook #${webhookId} in your company.`;
}

/** A firing's createdAt as the API gives it (to the microsecond), as a link may say it. */
const FIRING_TIME = /^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,6})?(Z|[+-]([0-9]{2}):([0-9]{2}))$/;

/**
 * Whether a link's time is one the API reads: a day of its month (no 30th of
 * February, which the browser would take for March 2nd), of the years 1 to 9999, a
 * time of day, an offset of hours and minutes as time zones have.
 */
function isFiringTime(text) {
  const parts = FIRING_TIME.exec(text);
  if (!parts) return false;
  const [year, month, day, hour, minute, second] = parts.slice(1, 7).map(Number);
  const date = new Date(Date.UTC(2000, month - 1, day));
  date.setUTCFullYear(year, month - 1, day);
  const offsetOk = parts[8] === 'Z' || (Number(parts[9]) <= 15 && Number(parts[10]) <= 59);
  return year >= 1 && date.getUTCMonth() === month - 1 && date.getUTCDate() === day
    && hour <= 23 && minute <= 59 && second <= 59 && offsetOk;
}

/**
 * The firing a page of the history is next to, as its link says it: { side, id,
 * createdAt }, side 'after' (the page starts after it: Next) or 'before' (it ends
 * before it: Previous); null when the link says none; { unreadable: true } when it
 * names one as no firing is named (a link typed or tampered with): the API refused
 * such a time or id, in its own terms, where the page can ask page N by its number.
 */
function nextTo(params) {
  if (!params.has('after') && !params.has('before')) return null;
  const side = params.has('after') ? 'after' : 'before';
  const id = params.get(side);
  const createdAt = params.get('at') ?? '';
  const readable = !(params.has('after') && params.has('before')) && isId(id) && isFiringTime(createdAt);
  return readable ? { side, id, createdAt } : { unreadable: true };
}

/** The link to a page of a webhook's history: page N, or page N next to a firing shown (after or before it, nextTo). */
function historyHash(webhookId, { page = 1, outcome = 'all', after = null, before = null } = {}) {
  const params = new URLSearchParams();
  if (page > 1) params.set('page', String(page));
  if (outcome !== 'all') params.set('outcome', outcome);
  const firing = page > 1 ? after ?? before : null;
  if (firing) {
    params.set(after ? 'after' : 'before', firing.id);
    params.set('at', firing.createdAt);
  }
  const query = params.toString();
  return `#/webhooks/${webhookId}${query ? `?${query}` : ''}`;
}

// ---- messages ----------------------------------------------------------------

// The message of what an action did, in a live region that is never hidden, only
// emptied (and then not drawn: style.css): a screen reader announces a change of a
// region it already follows; one shown with its words is new to it, and most said
// nothing of it.
function flash(text) {
  setText($('flash'), text);
}

// (its text goes: a message still in the page could be read, by a screen reader or a
// test, as if it had just been said)
function hideFlash() {
  $('flash').textContent = '';
}

/** Shows an error (none: hides it); with retry, a Try again button beside it that runs retry. */
function showError(text, retry = null) {
  const element = $('error');
  setText(element, text);
  element.hidden = !text;
  if (text && retry) {
    element.append(' ', h('button', {
      type: 'button',
      class: 'secondary try-again',
      onclick: () => {
        showError('');
        retry();
      },
    }, 'Try again'));
  }
}

function clearMessages() {
  hideFlash();
  showError('');
}

/** Whether a request's answer came after its admin signed out (api.js: graphql). */
const isSuperseded = (error) => error instanceof ApiError && error.kind === 'superseded';

/** Whether an error is of the token (none, expired, refused): the admin signs in again. */
const isTokenError = (error) => error instanceof ApiError && ['signed-out', 'expired', 'rejected'].includes(error.kind);

/**
 * Errors of the token send the admin back to sign in, with the reason. retry: what
 * Try again does when the server did not answer in time, could not be reached or
 * failed (a proxy's 502): worth another try once it is back. Until 2026-12-07 only
 * the first had it, and a view the server was down for stayed empty until a reload.
 */
function handleError(error, retry = null) {
  // (the answer of a request of the admin before: nothing of it shows to the next)
  if (isSuperseded(error)) return;
  if (isTokenError(error)) {
    keepUnsentForm();
    session.clear();
    showSignIn(error.message);
    return;
  }
  const passing = error instanceof ApiError && ['no-answer', 'network', 'server'].includes(error.kind);
  showError(error instanceof Error ? error.message : String(error), passing ? retry : null);
}

/**
 * An action on what the view shows, refused by the database for what it finds now (the
 * webhook disabled or deleted meanwhile, in another tab or by the relay; a firing being
 * sent): the view is read again, so that it shows what is, and the refusal is said
 * above it. Left as it was, the view offered again what had just been refused (an
 * Active webhook's Replay, Send test and Backfill, each refused again). Any other error
 * as handleError says it; a view that could not be read again says so instead.
 */
async function refusedAction(error) {
  if (!(error instanceof ApiError && error.kind === 'api')) {
    handleError(error);
    return;
  }
  await render();
  if (!$('app').hidden && $('error').hidden) showError(error.message);
}

// ---- sign in -----------------------------------------------------------------

const TOKEN_PROBLEMS = {
  missing: 'Paste a token first: the admin token you were given for your company. Ask whoever runs webhooks for your company if you have none.',
  malformed: 'That is not a token: a token is three parts separated by dots (eyJ….eyJ….…). Copy the whole token you were given.',
};

function showSignIn(message = '') {
  // what was shown or asked was the signed-in admin's: the next to sign in on this tab
  // (another company's, perhaps) must not find it on the page, a secret least of all
  // (one issued but not shown yet waits for its own company's sign-in: render)
  hideSecret();
  clearMessages();
  closeConfirm();
  testFailures.clear();
  // and the view: shown again only once the next sign-in's own answer has replaced it
  // (until then, or for good if it never came, it was the one before's on view)
  showView(null);
  showCompany('');
  $('page-title').textContent = 'Webhooks';
  $('page-subtitle').textContent = '';
  document.title = REPORT_TITLE;
  $('app').hidden = true;
  $('who').hidden = true;
  $('sign-in').hidden = false;
  const error = $('sign-in-error');
  error.textContent = message;
  error.hidden = !message;
  // (the message is the box's description; the box is at fault only for what was pasted in it: signIn)
  $('token').removeAttribute('aria-invalid');
  $('token').focus();
}

async function signIn(event) {
  event.preventDefault();
  const seen = inspectToken($('token').value);
  if (seen.problem === 'missing' || seen.problem === 'malformed') {
    showSignIn(TOKEN_PROBLEMS[seen.problem]);
    $('token').setAttribute('aria-invalid', 'true');
    return;
  }
  session.save(seen.token);
  $('token').value = '';
  await render();
}

function signOut() {
  unsentForm = null;
  session.clear();
  location.hash = '#/';
  showSignIn();
}

/** The company's name in the top bar, whole (a long one wraps: style.css). */
function showCompany(name) {
  setText($('who-name'), name ?? '');
}

// ---- the Date Range control --------------------------------------------------

function renderRangeControl() {
  const presets = [...PRESETS, { id: 'custom', label: 'Custom' }];
  replace($('range-presets'), presets.map((preset) => h('button', {
    type: 'button',
    'aria-pressed': String(range.preset === preset.id),
    dataset: { preset: preset.id },
    onclick: () => choosePreset(preset.id),
  }, preset.label)));
  const custom = range.preset === 'custom';
  $('range-custom').hidden = !custom;
  const { fromDay, toDay } = rangeDays();
  $('range-from').value = fromDay;
  $('range-to').value = toDay;
  markRangeRefused(false);
}

/** The custom days marked at fault, the page's error (why) their description; or neither. */
function markRangeRefused(refused) {
  for (const input of [$('range-from'), $('range-to')]) {
    if (refused) {
      input.setAttribute('aria-invalid', 'true');
      input.setAttribute('aria-describedby', 'error');
    } else {
      input.removeAttribute('aria-invalid');
      input.removeAttribute('aria-describedby');
    }
  }
}

function choosePreset(id) {
  if (id === 'custom') {
    // start from the days shown now; counts reload when Apply is pressed
    range = { preset: 'custom', ...rangeDays() };
    renderRangeControl();
    $('range-from').focus();
    return;
  }
  range = { preset: id };
  sessionStorage.setItem(RANGE_KEY, JSON.stringify(range));
  void render();
}

function applyCustomRange(event) {
  event.preventDefault();
  const fromDay = $('range-from').value;
  const toDay = $('range-to').value;
  const checked = rangeInstants(fromDay, toDay);
  if (checked.error) {
    showError(checked.error);
    markRangeRefused(true);
    $('range-from').focus();
    return;
  }
  range = { preset: 'custom', fromDay, toDay };
  sessionStorage.setItem(RANGE_KEY, JSON.stringify(range));
  void render();
}

// ---- the report --------------------------------------------------------------

/** Active; Failing with how, since when and what comes next; or Disabled with since when and why. */
function statusCell(webhook) {
  const failing = failingLines(webhook);
  if (failing.length) {
    return [h('span', { class: 'badge bad' }, 'Failing'), ...failing.map((line) => h('div', { class: 'reason failing' }, line))];
  }
  if (webhook.enabled) return h('span', { class: 'badge ok' }, 'Active');
  return [
    h('span', { class: 'badge off' }, 'Disabled'),
    webhook.disabledAt ? h('div', { class: 'reason nowrap' }, `since ${formatDate(webhook.disabledAt)}`) : null,
    webhook.disabledReason ? h('div', { class: 'reason' }, webhook.disabledReason) : null,
  ];
}

/** A URL with line-break opportunities after its slashes, so a long one wraps where it reads well. */
function breakableUrl(url) {
  return url.split(/(?<=[^/]\/)(?!\/)/).flatMap((part, i) => (i ? [h('wbr'), part] : [part]));
}

/**
 * A control's name for a screen reader: its word and what it acts on ("Disable
 * Letters"). A list of a page's buttons read "Disable, Disable, Backfill, …", one
 * a webhook or firing, with nothing to tell which.
 */
const acting = (word, on) => ({ 'aria-label': `${word} ${on}` });

function webhookRow(webhook, backfill) {
  const here = `tr[data-webhook-id="${webhook.id}"]`;
  // the row comes back from the server as it is now, and the tally with it
  const toggle = toggleButton(webhook, null, `${here} [data-action]`, async () => {
    if (!(await redrawWebhookRow(webhook.id))) await render();
  });
  return h('tr', { dataset: { webhookId: webhook.id }, class: webhook.enabled ? '' : 'is-disabled' },
    // (the row's header, its webhook: a screen reader says it with any cell of the row;
    // a cell, not a th, so that the row's cells stay one kind)
    h('td', { role: 'rowheader' }, h('div', { class: 'name' }, h('a', { href: historyHash(webhook.id), class: 'webhook-link' }, webhook.name))),
    h('td', {}, h('ul', { class: 'triggers' }, triggerLines(webhook).map((line) => h('li', { title: line }, line)))),
    h('td', { class: 'nowrap' }, formatDate(webhook.createdAt)),
    h('td', { class: 'url' }, h('code', {}, breakableUrl(webhook.url))),
    h('td', {}, statusCell(webhook)),
    h('td', { class: 'num' }, h('a', {
      class: 'times-fired',
      href: historyHash(webhook.id),
      // (the number as the cell shows it: "12345" was read where "12,345" shows)
      'aria-label': `Times Fired: ${formatCount(webhook.timesFired)}. Show the history of ${webhook.name}`,
    }, formatCount(webhook.timesFired)),
    webhook.timesFailed ? h('a', {
      class: 'failed-count',
      href: historyHash(webhook.id, { outcome: 'failed' }),
      ...acting(`${formatCount(webhook.timesFailed)} failed:`, `show the failures of ${webhook.name}`),
    }, `${formatCount(webhook.timesFailed)} failed`) : null),
    h('td', { class: 'actions' }, readOnly ? null : toggle, h('div', { class: 'backfill' }, backfillCell(webhook, backfill))),
  );
}

/**
 * The report drawn last: its webhooks by id as drawn, their latest backfills, its Date
 * Range (instants, days); null before the first. A row changed on the page (Disable,
 * Enable) is drawn again from its own line of the report, while the report is on view.
 */
let reportShown = null;

/** The report's tally: active and disabled, and the Date Range of Times Fired. */
function showTally() {
  const webhooks = [...reportShown.webhooks.values()];
  const active = webhooks.filter((w) => w.enabled).length;
  const { fromDay, toDay } = reportShown.days;
  $('page-subtitle').textContent =
    `${formatCount(active)} active, ${formatCount(webhooks.length - active)} disabled · Times Fired ${rangeWords(fromDay, toDay)}`;
}

/**
 * What the report says once, above its table, in words on the page that the controls
 * it concerns name as their description (as HISTORY_NOTES): shown when a row needs it.
 */
const REPORT_NOTES = {
  backfill: {
    id: 'backfill-what', words: 'Backfill sends every contact of your company to its webhook, once each.',
    shows: (webhook) => !readOnly && webhook.enabled,
  },
};

function reportNotes(webhooks) {
  return Object.values(REPORT_NOTES).filter((note) => webhooks.some(note.shows))
    .map((note) => h('p', { class: 'reason history-note', id: note.id }, note.words));
}

async function renderReport(instants, days, mine) {
  $('page-title').textContent = 'Webhooks';
  document.title = REPORT_TITLE;
  const [report, backfills] = await Promise.all([fetchReport(instants), fetchBackfills()]);
  if (mine !== generation) return;
  showCompany(report.companyName);
  reportShown = { webhooks: new Map(report.webhooks.map((w) => [w.id, w])), backfills, instants, days };
  showTally();
  replace($('report-notes'), ...reportNotes(report.webhooks));
  replace($('webhooks-body'), report.webhooks.length
    ? report.webhooks.map((webhook) => webhookRow(webhook, backfills.get(webhook.id)))
    : h('tr', {}, h('td', { colspan: 7, class: 'empty' }, readOnly
      ? 'Your company has no webhooks yet. An admin of your company can set one up here.'
      : 'Your company has no webhooks yet. Press "New webhook" to set one up.')));
  showView('report');
  followBackfills(backfills, mine);
}

/**
 * Draws a webhook's row of the report on view again, from its own line of the report
 * for the Date Range shown; the rest of the report as it is. Every page of the
 * report and the counts of every webhook were asked again for one change (a company of
 * 1,200 webhooks: 14 requests and 1,200 rows redrawn a click). False when there is no
 * such row to draw (another view, the webhook gone): the caller renders the view.
 */
async function redrawWebhookRow(webhookId) {
  const shown = reportShown;
  const mine = generation;
  if (!shown?.webhooks.has(webhookId) || route().view !== 'report') return false;
  const { webhook } = await fetchWebhook(webhookId, shown.instants);
  // (another view or Date Range meanwhile: it draws itself)
  if (mine !== generation || shown !== reportShown) return true;
  const row = document.querySelector(`tr[data-webhook-id="${webhookId}"]`);
  if (!webhook || !row) return false;
  shown.webhooks.set(webhookId, webhook);
  row.replaceWith(webhookRow(webhook, shown.backfills.get(webhookId)));
  showTally();
  // (the first webhook enabled brings the note its Backfill names)
  replace($('report-notes'), ...reportNotes([...shown.webhooks.values()]));
  return true;
}

// ---- backfill ----------------------------------------------------------------

let backfillTimer;

/**
 * While a backfill of the report runs (or its snapshots are on their way), asks again
 * every BACKFILL_REFRESH_MS for the latest backfill of those webhooks alone, and
 * redraws their backfill cells, for as long as this view is the current one. (A
 * backfill started meanwhile in another tab shows with the report's next drawing.)
 */
function followBackfills(latest, mine) {
  clearTimeout(backfillTimer);
  const going = [...latest.values()].filter(stillGoing).map((backfill) => backfill.webhookId);
  if (!going.length) return;
  backfillTimer = setTimeout(async () => {
    if (mine !== generation) return;
    try {
      const asked = await fetchBackfills(going);
      if (mine !== generation) return;
      const now = new Map(latest);
      // (a webhook deleted meanwhile has none)
      for (const webhookId of going) {
        if (asked.has(webhookId)) now.set(webhookId, asked.get(webhookId));
        else now.delete(webhookId);
      }
      // (each webhook as its row is drawn now: one enabled or disabled meanwhile, redrawWebhookRow)
      for (const webhookId of going) {
        const webhook = reportShown.webhooks.get(webhookId);
        const cell = document.querySelector(`tr[data-webhook-id="${webhookId}"] .backfill`);
        if (webhook && cell) redrawBackfill(cell, webhook, latest.get(webhookId), now.get(webhookId));
      }
      reportShown.backfills = now;
      followBackfills(now, mine);
    } catch (error) {
      if (mine === generation) handleError(error);
    }
  }, BACKFILL_REFRESH_MS);
}

/** Queued or sending: what is queued is not all sent yet. */
function stillGoing(backfill) {
  return backfill.state === 'running' || backfill.sent < backfill.queued;
}

/**
 * A backfill cell as its webhook's latest backfill is now. Only what changed is
 * drawn again, and a bar that moved on moves in place: the cells were drawn anew every
 * second, every row's, and a button focused in one (Cancel backfill, another row's
 * Backfill) was taken from under the keyboard before Enter could press it.
 */
function redrawBackfill(cell, webhook, before, now) {
  if (JSON.stringify(before ?? null) === JSON.stringify(now ?? null)) return;
  const bar = cell.querySelector('progress');
  const sameButtons = before && now && before.id === now.id && before.state === now.state && stillGoing(before) && stillGoing(now);
  if (bar && sameButtons) showProgress(bar, cell.querySelector('.backfill-words'), now);
  else replace(cell, backfillCell(webhook, now));
}

/**
 * A backfill under way, on its bar and in words: sent of those to send (of its total
 * while it runs), or counting. A company's contacts are counted 10,000 a step while
 * the first snapshots go (docs/backfill.md): those sent meanwhile are said too.
 */
function showProgress(bar, words, backfill) {
  const of = backfill.state === 'running' ? backfill.total : backfill.queued;
  const text = of !== null
    ? `Backfill: ${formatCount(backfill.sent)} of ${formatCount(of)} sent`
    : backfill.sent > 0 ? `Backfill: ${formatCount(backfill.sent)} sent, counting contacts…`
    : `Backfill: counting contacts…`;
  bar.setAttribute('max', String(of ?? 1));
  if (of === null) bar.removeAttribute('value');
  else bar.setAttribute('value', String(Math.min(backfill.sent, of)));
  bar.setAttribute('aria-label', text);
  words.textContent = text;
}

/** Progress (running, or its last snapshots on their way), the last outcome, and the admin's buttons. */
function backfillCell(webhook, backfill) {
  const parts = [];
  if (backfill && stillGoing(backfill)) {
    const bar = h('progress');
    const words = h('div', { class: 'reason backfill-words' });
    showProgress(bar, words, backfill);
    parts.push(bar, words);
    if (!readOnly && backfill.state === 'running') {
      const cancel = h('button', {
        type: 'button', class: 'secondary', dataset: { action: 'cancel-backfill' }, ...acting('Cancel backfill of', webhook.name),
        onclick: () => cancelWebhookBackfill(webhook, backfill, cancel),
      }, 'Cancel backfill');
      parts.push(cancel);
    }
    return parts;
  }
  if (backfill) {
    const when = formatDate(backfill.finishedAt);
    // (its snapshots that failed said, not counted among those received)
    const failed = backfill.failed > 0 ? `; ${formatCount(backfill.failed)} failed, shown in its history` : '';
    parts.push(h('div', { class: 'reason backfill-words' }, backfill.state === 'done'
      ? `Backfilled ${formatCount(backfill.queued)} contacts on ${when}${failed}`
      : backfill.state === 'failed'
        ? `Backfill stopped on ${when} after ${formatCount(backfill.queued)}: ${backfill.error}`
        : `Backfill cancelled on ${when} after ${formatCount(backfill.queued)}`));
  }
  if (!readOnly) {
    // why the button is off, in words on the page that the button names as its
    // description: a title shows on hover alone, and a disabled button takes no focus;
    // what it does, said once above the report (REPORT_NOTES), not under every row's
    const why = webhook.enabled ? null
      : h('div', { class: 'reason', id: `backfill-off-${webhook.id}` }, 'Enable this webhook to backfill it.');
    const start = h('button', {
      type: 'button', class: 'secondary', dataset: { action: 'backfill' }, ...acting('Backfill', webhook.name),
      disabled: !webhook.enabled,
      'aria-describedby': why?.id ?? REPORT_NOTES.backfill.id,
      onclick: () => askBackfill(webhook, start),
    }, 'Backfill');
    parts.push(start, why);
  }
  return parts;
}

/**
 * The keyboard's focus, after a button's action drew its view again: on the first
 * control found of `selectors` (the same button drawn anew, or what took its place),
 * when it went with the button it was on (drawn anew, or hidden with its view). Left
 * on the page's body, the next Tab started at the page's top. A focus moved elsewhere
 * meanwhile stays where it is.
 */
function focusAgain(...selectors) {
  const at = document.activeElement;
  if (at && at !== document.body && at.isConnected && at.checkVisibility()) return;
  for (const selector of selectors) {
    const control = document.querySelector(selector);
    if (control) {
      control.focus();
      return;
    }
  }
}

/** Backfill asks first, saying how many contacts go where (backfillContactsCount). */
async function askBackfill(webhook, button) {
  clearMessages();
  try {
    const contacts = await fetchBackfillContactsCount();
    askConfirm({
      title: `Backfill "${webhook.name}"?`,
      text: backfillWords(webhook, contacts),
      yes: 'Start backfill',
      action: () => startWebhookBackfill(webhook, button),
    });
  } catch (error) {
    handleError(error);
  }
}

async function startWebhookBackfill(webhook, button) {
  clearMessages();
  button.disabled = true;
  try {
    await startBackfill(webhook.id);
    flash(`Backfill started · ${webhook.name}`);
    await render();
    const row = `tr[data-webhook-id="${webhook.id}"]`;
    focusAgain(`${row} [data-action=cancel-backfill]`, `${row} [data-action=backfill]`);
  } catch (error) {
    button.disabled = false;
    await refusedAction(error);
    // (a Backfill found off, the webhook disabled meanwhile, takes no focus: its row's Enable)
    focusAgain(`tr[data-webhook-id="${webhook.id}"] [data-action=backfill]:enabled`, `tr[data-webhook-id="${webhook.id}"] [data-action]`);
  }
}

async function cancelWebhookBackfill(webhook, backfill, button) {
  clearMessages();
  button.disabled = true;
  try {
    await cancelBackfill(backfill.id);
    flash(`Backfill cancelled · ${webhook.name}`);
    await render();
    focusAgain(`tr[data-webhook-id="${webhook.id}"] [data-action=backfill]`);
  } catch (error) {
    button.disabled = false;
    await refusedAction(error);
    focusAgain(`tr[data-webhook-id="${webhook.id}"] [data-action]`);
  }
}

/**
 * Disable / Enable, of the report's row and of the webhook's page: the one mutation, then
 * the place drawn again as the server has it (redraw), and the focus on the button drawn
 * in its place (focusAt) unless it was moved meanwhile. `id`: the button's, or null.
 */
function toggleButton(webhook, id, focusAt, redraw) {
  const word = webhook.enabled ? 'Disable' : 'Enable';
  const button = h('button', {
    type: 'button', class: webhook.enabled ? 'secondary danger' : 'secondary', id,
    dataset: { action: webhook.enabled ? 'disable' : 'enable' },
    ...acting(word, webhook.name),
    onclick: () => toggleWebhook(webhook, button, focusAt, redraw),
  }, word);
  return button;
}

async function toggleWebhook(webhook, button, focusAt, redraw) {
  clearMessages();
  button.disabled = true;
  try {
    const updated = await setWebhookEnabled(webhook.id, !webhook.enabled);
    flash(`Webhook Status: ${updated.enabled ? 'Enable' : 'Disable'} · ${webhook.name}`);
    await redraw();
  } catch (error) {
    button.disabled = false;
    await refusedAction(error);
  }
  focusAgain(focusAt);
}

// ---- the history -------------------------------------------------------------

function outcomeBadge(state) {
  const tone = { succeeded: 'ok', failed: 'bad' }[state] ?? 'wait';
  return h('span', { class: `badge ${tone}` }, outcomeWords(state));
}

/** Attempts first to last: by number, and by id within one (nothing keeps two from sharing a number). */
const byNumber = (a, b) => a.attempt - b.attempt || (BigInt(a.id) < BigInt(b.id) ? -1 : BigInt(a.id) > BigInt(b.id) ? 1 : 0);

/**
 * The attempts shown, first to last; a button for the earlier ones not shown yet, a
 * page (pageSize) of them, named with its firing (which) for a screen reader.
 */
function attemptsTable(attempts, total, pageSize, showEarlier, which, totalIsAtLeast = false) {
  if (!attempts.length) return h('p', { class: 'muted' }, 'Not attempted yet.');
  const hidden = total - attempts.length;
  // (past the API's count: at least that many earlier, as long as the pages come full)
  const earlier = totalIsAtLeast || hidden > pageSize
    ? `${formatCount(pageSize)} earlier attempts`
    : `the ${formatCount(hidden)} earlier attempt${hidden === 1 ? '' : 's'}`;
  const outOf = totalIsAtLeast ? (hidden > 0 ? ` (of ${formatCount(hidden)}+)` : '')
    : hidden > pageSize ? ` (of ${formatCount(hidden)})` : '';
  return h('div', {},
    hidden > 0 || totalIsAtLeast
      ? h('button', {
        type: 'button', class: 'link-button earlier-attempts', onclick: showEarlier,
        ...acting(`Show ${earlier}`, `of ${which}${outOf}`),
      }, `Show ${earlier}${outOf}`)
      : null,
    h('table', { class: 'attempts' },
      h('caption', { class: 'visually-hidden' }, `Attempts of ${which}`),
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, '#'), h('th', { scope: 'col' }, 'Time'), h('th', { scope: 'col', class: 'num' }, 'Took'),
        h('th', { scope: 'col', class: 'num' }, 'Status'), h('th', { scope: 'col' }, 'Error / response'))),
      h('tbody', {}, attempts.map((a) => h('tr', {},
        h('td', {}, String(a.attempt)),
        h('td', { class: 'nowrap' }, formatTime(a.attemptedAt)),
        h('td', { class: 'num' }, `${formatCount(a.durationMs)} ms`),
        h('td', { class: 'num' }, a.statusCode ?? '—'),
        h('td', {},
          // (a succeeded attempt's error is a note: a 302's Location not followed)
          a.error ? h('div', { class: a.succeeded ? 'note-text' : 'error-text' }, a.error) : null,
          a.responseBody ? h('code', { class: 'response' }, a.responseBody) : null))))));
}

/**
 * The details under a firing, loaded when first opened: the payload as sent and its
 * attempts. which: the firing as its buttons name it ("firing #1525, Nov 26, …").
 */
function detailsRow(firing, which) {
  const attempts = h('div', { class: 'attempts-list' }, h('p', { class: 'muted' }, 'Loading attempts…'));
  const payload = h('pre', { class: 'payload muted' }, 'Loading…');
  const row = h('tr', { class: 'details-row', hidden: true },
    h('td', { colspan: 9 }, h('div', { class: 'details' },
      h('div', {}, h('h3', {}, 'Payload sent'), payload),
      h('div', {}, h('h3', {}, 'Attempts'), attempts))));
  // the attempts shown so far by id, and how many the firing has: the latest page when
  // first opened, each earlier page on request, asked after the earliest shown (a new
  // attempt meanwhile moves no page)
  const shown = new Map();
  const earliest = () => [...shown.values()].reduce((a, b) => (byNumber(a, b) <= 0 ? a : b));
  let total = 0;
  // the API counts a firing's attempts up to a cap: past it, total is a least
  let totalIsAtLeast = false;
  // how many a page brings: the API's, learnt from the first, which is full when there are more
  let pageSize = 0;
  let loading = false;
  const more = () => {
    if (loading) return;
    loading = true;
    fetchAttempts(firing.id, shown.size === 0 ? null : earliest())
      .then((page) => {
        if (page.payload !== undefined) {
          payload.classList.remove('muted');
          // its text as sent, not written out again: a value parsed and written by the
          // page lost a number's digits past JavaScript's precision
          payload.textContent = page.payload ?? '—';
        }
        for (const a of page.attempts) shown.set(a.id, a);
        total = Math.max(page.total ?? total, shown.size);
        if (page.totalIsAtLeast !== undefined) totalIsAtLeast = page.totalIsAtLeast;
        pageSize = Math.max(pageSize, page.attempts.length);
        // (nothing before the earliest, or a page short of full past the count: all are shown)
        if (page.attempts.length === 0 || (totalIsAtLeast && page.attempts.length < pageSize)) {
          total = shown.size;
          totalIsAtLeast = false;
        }
        const ordered = [...shown.values()].sort(byNumber);
        replace(attempts, attemptsTable(ordered, total, pageSize, more, which, totalIsAtLeast));
      })
      .catch((error) => {
        // (a token found expired here is as anywhere else: not a firing's problem)
        if (isTokenError(error)) handleError(error);
        else if (shown.size === 0) replace(attempts, h('p', { class: 'error-text' }, error.message));
        else showError(error.message);
      })
      .finally(() => { loading = false; });
  };
  row.load = () => {
    if (shown.size === 0) more();
  };
  return row;
}

/**
 * The contact as its payload names it (the API's contactName), and its number. The name is CRM data, isolated
 * (bdi): a bidi control in it (a last name ending in U+202E) would otherwise reorder
 * the number after it ("#1234" shown as "4321#").
 */
function contactCell(firing) {
  const id = h('span', { class: 'contact-id' }, `#${firing.contactId}`);
  if (isTest(firing.action)) return h('div', { class: 'contact' }, 'Sample contact ', id);
  return h('div', { class: 'contact' }, h('bdi', {}, firing.contactName || 'Contact'), ' ', id);
}

/** When a pending firing goes: at its next try, or (an ordered webhook) once the firing of the same contact before it has ended, or (a backfill's snapshot) once its webhook is enabled. */
function pendingReason(firing) {
  return firing.heldBack
    ? h('div', { class: 'reason', 'aria-describedby': HISTORY_NOTES.heldBack.id }, 'waiting for an earlier firing of this contact')
    : h('div', { class: 'reason nowrap' }, nextTry(firing.nextAttemptAt));
}

/**
 * What a page of a history's firings says once, above them, in words on the page that
 * the lines they concern name as their description (aria-describedby): a title shows on
 * hover alone, which no keyboard or touch reaches, and a disabled button takes no focus.
 * Each is shown when a firing of the page needs it (shows).
 */
const HISTORY_NOTES = {
  replayOff: {
    id: 'replay-off', words: 'This webhook is disabled: enable it to replay a failed firing.',
    shows: (firing) => replayBlocked && !readOnly && firing.state === 'failed',
  },
  heldBack: {
    id: 'one-at-a-time', words: 'This webhook sends the firings of one contact one at a time, in order.',
    shows: (firing) => firing.state === 'pending' && firing.heldBack,
  },
  testSend: {
    id: 'test-not-counted', words: 'A test send is not counted in Times Fired.',
    shows: (firing) => isTest(firing.action),
  },
};

function historyNotes(firings) {
  return Object.values(HISTORY_NOTES).filter((note) => firings.some(note.shows))
    .map((note) => h('p', { class: 'reason history-note', id: note.id }, note.words));
}

function firingRows(firing) {
  // (the firing by its number, as the page's messages name it, and its time, as its row shows it)
  const which = `firing #${firing.id}, ${formatTime(firing.createdAt)}`;
  const details = detailsRow(firing, which);
  const show = h('button', {
    type: 'button',
    class: 'link-button',
    'aria-expanded': 'false',
    ...acting('Show', which),
    onclick: () => {
      details.hidden = !details.hidden;
      show.setAttribute('aria-expanded', String(!details.hidden));
      show.textContent = details.hidden ? 'Show' : 'Hide';
      show.setAttribute('aria-label', acting(show.textContent, which)['aria-label']);
      if (!details.hidden) details.load();
    },
  }, 'Show');
  const replayButton = firing.state === 'failed' && !readOnly
    ? h('button', {
      type: 'button',
      class: 'secondary',
      ...acting('Replay', which),
      disabled: replayBlocked,
      'aria-describedby': replayBlocked ? HISTORY_NOTES.replayOff.id : null,
      onclick: () => replayFiring(firing, replayButton),
    }, 'Replay')
    : null;
  const row = h('tr', { dataset: { deliveryId: firing.id, state: firing.state } },
    // (the row's header, its time, as the webhook's name heads a row of the report)
    h('td', { class: 'nowrap', role: 'rowheader' }, formatTime(firing.createdAt)),
    h('td', { class: 'nowrap' }, isTest(firing.action)
      ? h('span', { class: 'badge test', 'aria-describedby': HISTORY_NOTES.testSend.id }, actionWords(firing.action))
      : actionWords(firing.action)),
    h('td', {}, contactCell(firing)),
    h('td', {}, outcomeBadge(firing.state), firing.state === 'pending' ? pendingReason(firing) : null),
    h('td', { class: 'num' }, firing.lastStatusCode ?? '—'),
    h('td', {}, firing.lastError
      ? h('div', { class: `${firing.state === 'succeeded' ? 'note-text' : 'error-text'} last-error` }, firing.lastError)
      : null),
    h('td', { class: 'num' }, String(firing.attempts)),
    h('td', {}, show),
    h('td', { class: 'actions' }, replayButton),
  );
  return [row, details];
}

async function replayFiring(firing, button) {
  clearMessages();
  button.disabled = true;
  try {
    await replayDelivery(firing.id);
    flash(`Replay: firing #${firing.id} is queued to be sent again.`);
    await render();
    // (no longer failed, it has no Replay: its Show; under Failure, it is gone from the table)
    focusAgain(`#history-body tr[data-delivery-id="${firing.id}"] [aria-expanded]`, '#history-table');
  } catch (error) {
    button.disabled = false;
    await refusedAction(error);
    focusAgain(`#history-body tr[data-delivery-id="${firing.id}"] [aria-expanded]`, '#history-table');
  }
}

/**
 * Set by a link that brings other firings of the history on view (the pager, an outcome
 * filter), for the keyboard's focus to go to the table they are drawn in: the link
 * itself is drawn anew with them, and the focus was left on the page's body, the next
 * Tab at its top.
 */
let focusFirings = false;
const toFirings = () => { focusFirings = true; };

function renderOutcomeFilter(where, counts, why = {}) {
  replace($('outcome-filter'), OUTCOMES.map((outcome) => h('a', {
    href: historyHash(where.webhookId, { outcome: outcome.id }),
    onclick: toFirings,
    'aria-current': outcome.id === where.outcome ? 'true' : false,
    // (its word and count apart: "Failure1" was read as one word)
    'aria-label': `${outcome.label}: ${formatCount(counts[outcome.id])}`,
    ...(why[outcome.id] ? { 'aria-describedby': why[outcome.id] } : {}),
    dataset: { outcome: outcome.id },
  }, outcome.label, h('span', { class: 'count' }, formatCount(counts[outcome.id])))));
}

/**
 * Why Failure counts more than the report's "N failed", the link that opens it: Failure
 * lists failed test sends, which the report (Times Fired) leaves out. An admin who
 * clicked "3 failed" saw "Failure 4" and no word of why. (Fewer, the firings before
 * the kept history, the subtitle says.) Null: they agree, or Failure counts fewer.
 */
function failureCountNote(webhook, counts) {
  if (counts.failed <= webhook.timesFailed) return null;
  return h('p', { class: 'reason history-note', id: 'failure-with-tests' },
    `Failure counts failed test sends too, which Times Fired leaves out: its "${formatCount(webhook.timesFailed)} failed" counts firings alone.`);
}

/**
 * First, Previous, Next and Last. Next is the page after the last firing shown, and
 * Previous (but to the first page) the page before the first one shown: each costs
 * what the first page costs at any depth, and stays put while new firings arrive
 * (an offset read every firing before the page, row by row). First and Last are asked
 * at their own ends.
 */
function renderPager(where, total, firings) {
  const pages = Math.max(1, Math.ceil(total / historyPageSize));
  const first = total === 0 ? 0 : (where.page - 1) * historyPageSize + 1;
  const last = Math.min(total, where.page * historyPageSize);
  // (a link's name is its word: a screen reader read its arrow too, "left-pointing
  // double angle quotation mark First"; one that goes nowhere is a link unavailable,
  // not a word among the links)
  const arrow = (symbol) => h('span', { 'aria-hidden': 'true' }, symbol);
  const link = (label, page, enabled, rel, next = {}) => enabled
    ? h('a', { href: historyHash(where.webhookId, { page, outcome: where.outcome, ...next }), rel, class: 'page-link', onclick: toFirings }, label)
    : h('span', { class: 'page-link', role: 'link', 'aria-disabled': 'true' }, label);
  replace($('pager'),
    link([arrow('«'), ' First'], 1, where.page > 1, 'first'),
    link([arrow('‹'), ' Previous'], where.page - 1, where.page > 1, 'prev', { before: firings[0] }),
    h('span', { class: 'page-info', id: 'page-info' }, total === 0 ? 'No firings' :
      `${formatCount(first)}–${formatCount(last)} of ${formatCount(total)} · page ${formatCount(where.page)} of ${formatCount(pages)}`),
    link(['Next ', arrow('›')], where.page + 1, where.page < pages, 'next', { after: firings.at(-1) }),
    link(['Last ', arrow('»')], pages, where.page < pages, 'last'),
  );
}

/** How many firings the history on view held when last shown ({ key, total }): which end a page of it is nearer. */
let historySeen = null;
const historyKey = (where, instants) => JSON.stringify([where.webhookId, where.outcome, instants.from, instants.to]);

/**
 * Where a page of a history of `total` firings (null: not known) is asked when no
 * firing of the page before says it (First, Last, a link to page N, another date
 * range): `offset` firings from its newest, or, nearer its oldest end, from there
 * (fromOldest). An offset is read and thrown away row by row, so the Last page of a
 * webhook of millions asked from the newest end read them all; from its own end it
 * costs what the first does. A page in the middle asked so still reads up to half of
 * the history: Next and Previous ask theirs next to a firing shown (renderPager). A
 * page past the end is asked as the last, which the view then goes to.
 */
function pagePlace(page, pageSize, total) {
  const pages = total === null ? null : Math.ceil(total / pageSize);
  const at = pages !== null && pages > 0 ? Math.min(page, pages) : page;
  const fromNewest = (at - 1) * pageSize;
  if (total === null || fromNewest >= total) return { offset: fromNewest, first: pageSize, fromOldest: false };
  const end = Math.min(at * pageSize, total);
  if (total - end >= fromNewest) return { offset: fromNewest, first: pageSize, fromOldest: false };
  return { offset: total - end, first: end - fromNewest, fromOldest: true };
}

/**
 * The history's page, at the API's page size (a larger page refused teaches it:
 * historyPageSize). Next to a firing of the page before (where.next, from Next or
 * Previous): the firings after it (or before it, asked oldest first), whatever the
 * page's depth; unless the history shown last was of another date range (changed on
 * this page): page N of the new range is then asked by its number. Else from the end it is nearer
 * (pagePlace): the history's size known from its last view, else asked first
 * (historyCount: about as cheap for millions as for ten). Asked from the oldest end of
 * a history that has grown or shrunk since, the page is asked again for its new size,
 * once. A page by its number deeper than the API allows from both ends (PAGE_TOO_DEEP:
 * historyDepthLimit) is not shown: tooDeep says which end is shown instead.
 */
async function fetchHistoryPage(where, instants) {
  const key = historyKey(where, instants);
  const state = where.outcome === 'all' ? null : where.outcome;
  const next = where.next && (historySeen === null || historySeen.key === key) ? where.next : null;
  for (let again = 0; ; again++) {
    const pageSize = historyPageSize;
    const page = Math.min(where.page, maxPage(pageSize));
    try {
      if (next) {
        const history = await fetchHistory({
          webhookId: where.webhookId, ...instants, state, offset: 0, first: pageSize, fromOldest: next.side === 'before', after: next,
        });
        if (history.webhook) historySeen = { key, total: history.totalCount };
        return { ...history, next };
      }
      let total = historySeen?.key === key ? historySeen.total : null;
      if (page > 1 && total === null) total = await fetchHistoryCount({ webhookId: where.webhookId, ...instants, state });
      const place = pagePlace(page, pageSize, total);
      if (historyDepthLimit !== null && place.offset > historyDepthLimit) return tooDeep(page, place, pageSize, total);
      let history;
      try {
        history = await fetchHistory({ webhookId: where.webhookId, ...instants, state, ...place });
      } catch (error) {
        if (!(error instanceof ApiError && error.code === 'PAGE_TOO_DEEP' && error.limit && total !== null)) throw error;
        historyDepthLimit = error.limit;
        return tooDeep(page, place, pageSize, total);
      }
      if (!history.webhook) return history;
      historySeen = { key, total: history.totalCount };
      if (place.fromOldest && history.totalCount !== total && again === 0) continue;
      return history;
    } catch (error) {
      if (!(error instanceof ApiError && error.code === 'PAGE_TOO_LARGE' && error.limit && error.limit < pageSize)) throw error;
      historyPageSize = error.limit;
    }
  }
}

/**
 * A page asked by its number (a link typed, or page N of another Date Range) that lies
 * deeper than historyDepthLimit from both ends: what is shown instead, the end of the
 * history nearer to it (place.fromOldest: the last page), and why. Next and Previous
 * reach every page, each asked next to a firing shown.
 */
function tooDeep(page, place, pageSize, total) {
  const last = Math.max(1, Math.ceil(total / pageSize));
  return { tooDeep: { page, end: place.fromOldest ? last : 1, endWords: place.fromOldest ? 'last' : 'first' } };
}

async function renderHistory(where, instants, days, mine) {
  const history = await fetchHistoryPage(where, instants);
  if (mine !== generation) return;
  if (history.tooDeep) {
    const { page, end, endWords } = history.tooDeep;
    flash(`Page ${formatCount(page)} lies more than ${formatCount(historyDepthLimit)} firings from both ends of this history: ` +
      `a page that deep is found by Next › and ‹ Previous alone, not by its number. Its ${endWords} page is shown instead.`);
    keepFlash = true;
    location.replace(historyHash(where.webhookId, { page: end, outcome: where.outcome }));
    return;
  }
  showCompany(history.companyName);
  const webhook = history.webhook;
  if (!webhook) {
    showError(noSuchWebhook(where.webhookId));
    showView(null);
    return;
  }
  const pages = Math.ceil(history.totalCount / historyPageSize);
  if (where.page > pages && pages > 0) {
    // a page past the end (an old link, a shorter range): its last page instead
    location.replace(historyHash(where.webhookId, { page: pages, outcome: where.outcome }));
    return;
  }
  // next to a firing: nothing after it (its day dropped since, or the last firings
  // gone) is the last page; less than a page before it, the first
  if (history.next?.side === 'after' && history.firings.length === 0 && pages > 0) {
    location.replace(historyHash(where.webhookId, { page: pages, outcome: where.outcome }));
    return;
  }
  if (history.next?.side === 'before' && history.firings.length < historyPageSize) {
    location.replace(historyHash(where.webhookId, { outcome: where.outcome }));
    return;
  }
  replayBlocked = !webhook.enabled;
  setText($('page-title'), webhook.name);
  document.title = `${webhook.name} · Webhooks · Big Purple Dot`;
  const beforeKept = history.keptSince && new Date(instants.from) < new Date(history.keptSince);
  $('page-subtitle').textContent = `History of its firings ${rangeWords(days.fromDay, days.toDay)}` + (beforeKept
    ? `. Firings before ${formatStart(history.keptSince)} are no longer kept, so they are not listed here; Times Fired still includes them.`
    : '');
  replace($('history-facts'),
    h('div', {}, h('dt', {}, 'Triggered by'), h('dd', {}, triggerLines(webhook).join(' · '))),
    h('div', {}, h('dt', {}, 'Posts to'), h('dd', { class: 'url' }, h('code', {}, breakableUrl(webhook.url)))),
    h('div', {}, h('dt', {}, 'Status'), h('dd', {}, statusCell(webhook))),
    h('div', {}, h('dt', {}, 'Times Fired'), h('dd', {}, formatCount(webhook.timesFired))),
  );
  const failureNote = failureCountNote(webhook, history.counts);
  renderOutcomeFilter(where, history.counts, { failed: failureNote?.id });
  replace($('history-notes'), failureNote, ...historyNotes(history.firings));
  replace($('history-body'), history.firings.length
    ? history.firings.flatMap(firingRows)
    : h('tr', {}, h('td', { colspan: 9, class: 'empty' }, where.outcome === 'all'
      ? 'No firings in this date range.'
      : `No firings with the outcome ${OUTCOMES.find((o) => o.id === where.outcome).label} in this date range.`)));
  renderPager(where, history.totalCount, history.firings);
  // the table's name, which a screen reader says as the focus comes to it: whose firings, which of them
  setText($('history-caption'), `Firings of ${webhook.name}: ${$('page-info').textContent}`);
  renderTools(webhook);
  if (where.unreadableLink) flash(`This link names no firing the page can find, so page ${formatCount(where.page)} is shown by its number.`);
  showView('history');
  if (focusFirings) {
    focusFirings = false;
    // (the view is scrolled to its top once drawn, as any new page)
    $('history-table').focus({ preventScroll: true });
  }
  showIssuedSecret(webhook.id);
  await renderAudit(webhook.id, mine);
}

// ---- views ------------------------------------------------------------------

/** No view, only a message (none: the message to come), and the page's heading as on the report. */
function showNoView(message) {
  showView(null);
  $('page-title').textContent = 'Webhooks';
  $('page-subtitle').textContent = '';
  document.title = REPORT_TITLE;
  showError(message);
}

/** Shows one of the views (report, history, setup), or none. */
function showView(name) {
  for (const id of ['report', 'history', 'setup']) $(id).hidden = id !== name;
  // the Date Range concerns the counts only
  $('range').hidden = name === 'setup';
  $('new-webhook').hidden = readOnly || name === 'setup';
}

// ---- one webhook: its tools --------------------------------------------------

function renderTools(webhook) {
  if (readOnly) {
    replace($('webhook-tools'));
    return;
  }
  toolsOf = webhook;
  const why = h('div', { class: 'reason', id: 'send-test-why' }, sendTestWords(webhook));
  // while its test is sent and its answer awaited the button is unavailable but keeps
  // the focus (aria-disabled, not disabled, which would drop the focus of the keyboard
  // that pressed it): a second press sent a second test, and two waits said their
  // answers in turn
  const testButton = h('button', {
    type: 'button', class: 'secondary', id: 'send-test', disabled: !webhook.enabled,
    'aria-disabled': webhook.enabled && testsAwaited.has(webhook.id) ? 'true' : false,
    'aria-describedby': why.id,
    onclick: () => {
      if (!testsAwaited.has(webhook.id)) void sendTestFor(webhook);
    },
  }, 'Send test');
  // Disable / Enable as the report's row has them: the page says "enable it to send a
  // test" and "enable it to replay", which the report's table alone offered to do
  const toggle = toggleButton(webhook, 'toggle-webhook', '#toggle-webhook', render);
  replace($('webhook-tools'),
    h('a', { href: `#/webhooks/${webhook.id}/edit`, class: 'secondary button-link', id: 'edit-webhook' }, 'Edit'),
    toggle,
    h('span', { class: 'tool-with-reason' }, testButton, why),
    h('button', {
      type: 'button', class: 'secondary', id: 'rotate-secret',
      onclick: () => askConfirm({
        title: 'Rotate the signing secret?',
        text: `Rotate the signing secret of "${webhook.name}"? A new secret is shown once; the current one keeps working for 24 hours, time to update your receiver.`,
        yes: 'Rotate secret', action: () => rotateFor(webhook),
      }),
    }, 'Rotate secret'),
    h('button', {
      type: 'button', class: 'secondary danger', id: 'delete-webhook',
      onclick: () => askConfirm({
        title: 'Delete this webhook?',
        text: `Delete "${webhook.name}" and its whole history? It stops firing at once. This cannot be undone.`,
        yes: 'Delete webhook', action: () => deleteFor(webhook),
      }),
    }, 'Delete'),
  );
}

let confirmAction = null;
// the button that asked the question: the keyboard's focus goes back to it once the
// question is answered or cancelled, not to the top of the page
let confirmAsker = null;

/**
 * Asks in the page, in a modal dialog (not window.confirm, which takes no style, says
 * nothing more to a screen reader, and some embedded browsers block): its title is its
 * name, its text (what will happen) its description. The focus goes to Cancel, the
 * answer that changes nothing; Escape cancels.
 */
function askConfirm({ title, text, yes, action }) {
  setText($('confirm-title'), title);
  setText($('confirm-text'), text);
  $('confirm-yes').textContent = yes;
  confirmAction = action;
  confirmAsker = document.activeElement instanceof HTMLElement && document.activeElement !== document.body
    ? document.activeElement : null;
  if (!$('confirm').open) $('confirm').showModal();
  $('confirm-no').focus();
}

/** Takes the question away, as when its view is left (the focus goes with the view). */
function closeConfirm() {
  confirmAction = null;
  confirmAsker = null;
  if ($('confirm').open) $('confirm').close();
}

/** Focus back on the button that asked; after a redraw of its view, on its new self (same id, or same row and action). */
function focusAsker(asker) {
  const row = asker?.closest?.('tr[data-webhook-id]');
  const target = asker?.isConnected ? asker
    : asker?.id ? document.getElementById(asker.id)
      : row && asker.dataset.action
        ? document.querySelector(`tr[data-webhook-id="${row.dataset.webhookId}"] [data-action="${asker.dataset.action}"]`) : null;
  target?.focus();
}

/** Cancel, or Escape: nothing done, and the focus back where it was. */
function cancelConfirm() {
  const asker = confirmAsker;
  closeConfirm();
  focusAsker(asker);
}

$('confirm-yes').addEventListener('click', async () => {
  const action = confirmAction;
  const asker = confirmAsker;
  closeConfirm();
  if (action) await action();
  // unless the action put the focus somewhere itself (Backfill, on its Cancel backfill);
  // Delete leaves the webhook's page: no button to go back to
  const at = document.activeElement;
  if (!at || at === document.body || !at.isConnected) focusAsker(asker);
});

// Escape: the dialog's cancel, taken here so that the focus goes back to the asker
$('confirm').addEventListener('cancel', (event) => {
  event.preventDefault();
  cancelConfirm();
});
// closed by the browser itself all the same (a second Escape at once may be). The
// event comes a moment after the closing: one of a question closed before is stale when
// the next question is open by then
$('confirm').addEventListener('close', () => {
  if (confirmAction && !$('confirm').open) cancelConfirm();
});

async function deleteFor(webhook) {
  clearMessages();
  try {
    await deleteWebhook(webhook.id);
    flash(`Deleted · ${webhook.name}`);
    keepFlash = true;
    location.hash = '#/';
  } catch (error) {
    await refusedAction(error);
  }
}

async function rotateFor(webhook) {
  clearMessages();
  try {
    const rotated = await rotateSecret(webhook.id);
    holdSecret(webhook.id, rotated.secret,
      `The new secret of "${webhook.name}". The previous one keeps working until ${formatTime(rotated.previousSecretExpiresAt)}.`);
    // said, not only shown: the focus goes back to Rotate secret, not to the panel
    flash(`Rotated the signing secret of ${webhook.name}: copy the new one below, shown only this once.`);
    await render();
  } catch (error) {
    await refusedAction(error);
  }
}

/**
 * Keeps a secret just issued for its webhook's page to show, once. It is the company's
 * of the token that asked for it: a token found expired right after (the page's next
 * request) leaves it for the same company's next sign-in, and it is never shown to
 * another's (render).
 */
function holdSecret(webhookId, secret, note) {
  issuedSecret = { webhookId, secret, note, companyId: inspectToken(session.token()).claims?.company_id };
}

/** Takes a secret off the page: its panel hidden, its text gone. */
function hideSecret() {
  $('secret-panel').hidden = true;
  $('secret-value').textContent = '';
}

/** And none waiting to be shown. */
function forgetSecret() {
  issuedSecret = null;
  hideSecret();
}

/**
 * I have stored it: the panel goes, and the keyboard's focus, gone with its button, to
 * the webhook's heading, which a screen reader reads (left on the page's body, the next
 * Tab started at the page's top).
 */
function secretStored() {
  forgetSecret();
  $('page-title').focus();
}

/** The secret issued to this webhook, once: the panel keeps it until dismissed or left. */
function showIssuedSecret(webhookId) {
  if (!issuedSecret || issuedSecret.webhookId !== webhookId) return;
  $('secret-value').textContent = issuedSecret.secret;
  setText($('secret-note'), issuedSecret.note);
  $('copy-secret').textContent = 'Copy';
  $('secret-panel').hidden = false;
  issuedSecret = null;
}

async function copySecret() {
  const text = $('secret-value').textContent;
  try {
    await navigator.clipboard.writeText(text);
    $('copy-secret').textContent = 'Copied';
    // (and said: a screen reader does not announce a button's new label)
    flash('The secret is copied.');
  } catch {
    // no clipboard (a page not served over https or localhost): select it for Ctrl+C
    getSelection().selectAllChildren($('secret-value'));
    $('copy-secret').textContent = 'Selected: press Ctrl+C';
    flash('The secret is selected: press Ctrl+C to copy it.');
  }
}

// A test's outcome is awaited here for at most this long; the history shows it later anyway.
const TEST_WAIT_MS = 30_000;
const TEST_POLL_MS = 500;

// Why the last test of each webhook (by id) failed, as its tools say it by Send test
// until its next test is sent; a test the API refused to send counts too (ten already
// on their way, a webhook disabled meanwhile). Forgotten at sign-in, with the rest of
// the admin before's page
const testFailures = new Map();
// The webhooks (by id) whose test is being sent or its answer awaited (sendTestFor),
// from the press on: marked only once the API had answered the send, a view drawn
// meanwhile (another Date Range, a wait before ending) offered Send test again, and a
// second press sent a second test
const testsAwaited = new Set();
// The webhook whose tools are drawn (renderTools), for Send test's state said in place
let toolsOf = null;

/** Why Send test is off, or why the webhook's last test failed, else what it does. */
function sendTestWords(webhook) {
  // in words on the page that the button names as its description (as Backfill's): a
  // title shows on hover alone, which no keyboard or touch reaches, and a disabled
  // button takes no focus
  if (!webhook.enabled) return 'This webhook is disabled: enable it to send a test.';
  if (testsAwaited.has(webhook.id)) return 'Waiting for the receiver\'s answer to the test sent.';
  return testFailures.get(webhook.id) ?? 'Sends one signed test delivery (webhook.test) with a sample contact.';
}

/**
 * Send test on the page, when it is this webhook's, as its test is now: its
 * unavailability and its words changed in place, the keyboard's focus left on it.
 */
function showSendTestState(webhookId) {
  const button = $('send-test');
  if (!button || !toolsOf || toolsOf.id !== webhookId) return;
  if (toolsOf.enabled && testsAwaited.has(webhookId)) button.setAttribute('aria-disabled', 'true');
  else button.removeAttribute('aria-disabled');
  setText($('send-test-why'), sendTestWords(toolsOf));
}

async function sendTestFor(webhook) {
  clearMessages();
  // the wait is this admin's: ended, unsaid, by a sign-out (its polls between requests too)
  const era = session.era();
  // unavailable at once, with the press: before any answer, and in any view drawn meanwhile
  testsAwaited.add(webhook.id);
  showSendTestState(webhook.id);
  try {
    let firing;
    try {
      firing = await sendTest(webhook.id);
    } catch (error) {
      if (error instanceof ApiError && error.kind === 'api') testFailures.set(webhook.id, `The test was not sent: ${error.message}`);
      throw error;
    }
    testFailures.delete(webhook.id);
    flash(`Test sent to ${webhook.url}: waiting for the answer…`);
    await render();
    focusAgain('#send-test');
    const deadline = Date.now() + TEST_WAIT_MS;
    let now = firing;
    while (now && (now.state === 'pending' || now.state === 'in_flight') && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, TEST_POLL_MS));
      if (session.era() !== era) return;
      now = await fetchFiring(firing.id);
    }
    testsAwaited.delete(webhook.id);
    // (gone meanwhile, with its webhook deleted in another tab: the view says what is)
    if (!now) {
      await render();
      return;
    }
    const failure = now.lastError ?? `the receiver answered ${now.lastStatusCode}`;
    if (now.state === 'failed') testFailures.set(webhook.id, `The last test failed: ${failure}.`);
    if (now.state === 'succeeded') flash(`Test delivered: the receiver answered ${now.lastStatusCode}.`);
    else if (now.state === 'failed') flash(`Test failed: ${failure}.`);
    else flash('The test is still waiting to be sent: deliveries may be paused or behind (if it stays so, tell whoever runs webhooks for your company). It shows in the history once sent.');
    await render();
    focusAgain('#send-test');
  } catch (error) {
    testsAwaited.delete(webhook.id);
    await refusedAction(error);
    focusAgain('#send-test');
  } finally {
    testsAwaited.delete(webhook.id);
    // (a wait ended with no view drawn after it, a network's error: Send test available again)
    showSendTestState(webhook.id);
  }
}

// ---- one webhook: its history of changes ---------------------------------------

/** The ids a setting (status_id, user_id) was changed from and to in these entries, each once. */
function namedIds(entries, key) {
  const changes = entries.map((entry) => entry.details?.changed?.[key]).filter(Boolean);
  return [...new Set(changes.flatMap((change) => [change.from, change.to]).filter((id) => id !== null && id !== undefined).map(String))];
}

async function renderAudit(webhookId, mine) {
  const { entries, older } = await fetchAuditLog(webhookId);
  // the statuses and users the changes shown name, by id, and only when one does: a
  // brokerage has 20,000 users, and every page of them was asked to name one
  const ids = { statuses: namedIds(entries, 'status_id'), users: namedIds(entries, 'user_id') };
  const names = ids.statuses.length || ids.users.length ? await fetchNames(ids) : { statuses: new Map(), users: new Map() };
  if (mine !== generation) return;
  replace($('audit-list'), entries.length
    ? entries.map((entry) => {
      const { what, detail } = auditWords(entry, names);
      return h('li', { dataset: { action: entry.action } },
        h('span', { class: 'nowrap' }, formatTime(entry.at)),
        h('span', { class: 'actor' }, entry.actor),
        h('span', {}, h('strong', {}, what), detail ? ` · ${detail}` : ''));
    })
    : h('li', { class: 'muted' }, 'No changes recorded.'));
  if (older) {
    $('audit-list').append(h('li', { class: 'muted' }, `The latest ${formatCount(entries.length)} changes; older ones are not shown.`));
  }
}

// ---- the setup form ----------------------------------------------------------

const FORM_FIELDS = ['name', 'url', 'actions', 'status_id', 'user_id', 'fields', 'watch_fields', 'ignore_sources', 'conditions',
  'max_in_flight', 'rate_limit', 'coalesce_window'];
/** The inputs whose own value a problem concerns (marked aria-invalid) */
const TEXT_FIELDS = ['name', 'url', 'status_id', 'user_id', 'ignore_sources', 'conditions', 'max_in_flight', 'rate_limit', 'coalesce_window'];
/** A new webhook's deliveries: the engine's cap, no pacing, no merging, no order kept */
const DEFAULT_DELIVERY = { maxInFlight: null, rateLimit: null, coalesceSeconds: null, ordered: false };

function fieldError(name) {
  return h('p', { class: 'field-error', id: `error-${name}`, role: 'alert', hidden: true });
}

/** A field's first input (a box, a picker, a textarea, a group's first box): what its error concerns, and focuses. */
function inputOf(form, name) {
  return form.querySelector(`[data-field="${name}"] :is(input:not([type=hidden]), select, textarea)`);
}

function setFieldError(form, name, text) {
  const error = form.querySelector(`#error-${name}`);
  if (!error) return false;
  setText(error, text ?? '');
  error.hidden = !text;
  const input = inputOf(form, name);
  if (input && TEXT_FIELDS.includes(name)) {
    input.setAttribute('aria-invalid', String(Boolean(text)));
  }
  return true;
}

function checkboxes(name, values, chosen, words) {
  return h('div', { class: 'choices' }, values.map((value) => h('label', {},
    h('input', { type: 'checkbox', name, value, checked: chosen.includes(value) }),
    words(value))));
}

function readSetup(form) {
  const checked = (name) => [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((input) => input.value);
  const actions = checked('action');
  const parsed = parseConditions(form.querySelector('#setup-conditions').value);
  return {
    name: form.querySelector('#setup-name').value,
    url: form.querySelector('#setup-url').value.trim(),
    fields: checked('field'),
    actions,
    // a picker counts only while an action it narrows is chosen
    statusId: actions.some((a) => STATUS_ACTIONS.includes(a)) ? form.querySelector('#setup-status').value : '',
    userId: actions.includes(USER_ACTION) ? form.querySelector('#setup-user').value : '',
    // watched fields narrow updates and saves only: without those actions there are none
    watchFields: actions.some((a) => WATCHED_ACTIONS.includes(a)) ? checked('watch') : [],
    ignoreSources: sourceList(form.querySelector('#setup-ignore').value),
    conditions: parsed.problem ? null : parsed.conditions,
    conditionsProblem: parsed.problem ?? null,
    delivery: {
      max_in_flight: form.querySelector('#setup-max-in-flight').value,
      rate_limit: form.querySelector('#setup-rate-limit').value,
      coalesce_window: form.querySelector('#setup-coalesce').value,
      ordered: form.querySelector('#setup-ordered').checked,
    },
  };
}

/** Shows the status and user pickers only while an action they narrow is chosen. */
function syncPickers(form) {
  const actions = [...form.querySelectorAll('input[name="action"]:checked')].map((input) => input.value);
  form.querySelector('[data-field="status_id"]').hidden = !actions.some((a) => STATUS_ACTIONS.includes(a));
  form.querySelector('[data-field="user_id"]').hidden = !actions.includes(USER_ACTION);
  form.querySelector('[data-field="watch_fields"]').hidden = !actions.some((a) => WATCHED_ACTIONS.includes(a));
}

/** A whole-number box of the Delivery settings: its label, its hint, its error */
function numberField(name, id, label, value, placeholder, hint) {
  return h('div', { class: 'field', dataset: { field: name } },
    h('label', { for: id }, label),
    h('input', {
      type: 'text', id, name, inputmode: 'numeric', size: 8, value: value === null ? '' : String(value), placeholder,
      'aria-describedby': `hint-${name} error-${name}`,
    }),
    h('p', { class: 'hint', id: `hint-${name}` }, hint),
    fieldError(name));
}

/**
 * What the picker holds, chosen, when the CRM deleted the user or status (kind) the
 * webhook was filtered on: it names what went, and Save asks for another or Any.
 */
function chooseAgain(webhook, kind) {
  if (!webhook?.deletedFilterTarget) return null;
  const users = webhook.actions.includes(USER_ACTION);
  if ((kind === 'user') !== users) return null;
  return `Choose again: ${webhook.deletedFilterTarget} was deleted`;
}

/** How long typing pauses before a picker asks its search: one request for a word typed, not one a key. */
const SEARCH_PAUSE_MS = 150;

const PICKERS = {
  user: {
    field: 'user_id', id: 'setup-user', label: 'Which user', any: 'Any user',
    option: (u) => (u.email ? `${u.name} (${u.email})` : u.name),
    none: (typed) => (typed ? `No user's name (or a word of it) or email starts with “${typed}”` : 'The company has no users'),
  },
  status: {
    field: 'status_id', id: 'setup-status', label: 'Which status', any: 'Any status',
    option: (s) => s.name,
    none: (typed) => (typed ? `No status's name (or a word of it) starts with “${typed}”` : 'The company has no statuses'),
  },
};

/** What a picker's search found, in words: how many, and "keep typing" when more match. */
function foundWords(picker, result, typed) {
  if (result.found.length === 0) return picker.none(typed);
  return result.more ? `${result.found.length} shown: more match, keep typing to narrow` : `${result.found.length} match`;
}

/**
 * The picker of a user or a status (kind) of the company: a company may have 20,000
 * users, so it searches as one types (searchChoices: a prefix of the name, of any of
 * its words, or of the email, at most the API's 20) rather than list them all. The
 * combobox pattern of ARIA: a labelled text box (role combobox), its list of options
 * (listbox), the option the arrows are on named as the box's aria-activedescendant,
 * Enter to choose it, Escape to leave the list; the count found said politely. The choice (its id; '' for Any;
 * CHOOSE_AGAIN) is in a hidden input of its own, what Save reads: a text typed and
 * left without choosing goes back to the name of the choice, which stays as it was.
 * current: { id, name } chosen before (null: Any); again: the words of a choice to
 * make again (chooseAgain). searchMax: the most characters a search takes.
 */
function picker(kind, current, again, searchMax) {
  const p = PICKERS[kind];
  const listId = `${p.id}-options`;
  const countId = `${p.id}-count`;
  let chosen = again ? { id: CHOOSE_AGAIN, text: again }
    : current ? { id: String(current.id), text: current.name } : { id: '', text: p.any };
  let options = [];
  let active = -1;
  // each search asked counts one, and an answer is drawn only if no later one was asked
  let asked = 0;
  let pause = null;
  const box = h('input', {
    type: 'text', id: `${p.id}-search`, role: 'combobox', 'aria-autocomplete': 'list', 'aria-expanded': 'false',
    'aria-controls': listId, autocomplete: 'off', spellcheck: 'false', value: chosen.text, size: 50,
    'aria-describedby': `${countId} error-${p.field}`,
  });
  boundedBox(box, searchMax);
  const list = h('ul', {
    id: listId, role: 'listbox', class: 'picker-options', 'aria-label': p.label, hidden: true,
    // (the box keeps the focus: a click on an option, or on the list's scroll bar, does not leave it first)
    onmousedown: (event) => event.preventDefault(),
  });
  const count = h('p', { class: 'hint', id: countId, 'aria-live': 'polite' },
    kind === 'user' ? 'Type the start of a name or an email to search.' : 'Type the start of a name to search.');
  const value = h('input', { type: 'hidden', id: p.id, name: kind, value: chosen.id });

  const onOption = (index) => {
    active = index;
    [...list.children].forEach((item, i) => item.setAttribute('aria-selected', String(i === index)));
    const item = list.children[index];
    if (item) {
      box.setAttribute('aria-activedescendant', item.id);
      item.scrollIntoView({ block: 'nearest' });
    }
  };
  const close = () => {
    clearTimeout(pause);
    asked++;
    list.hidden = true;
    box.setAttribute('aria-expanded', 'false');
    box.removeAttribute('aria-activedescendant');
    active = -1;
  };
  const pick = (option) => {
    chosen = option;
    value.value = option.id;
    box.value = option.text;
    close();
  };
  const putBack = () => {
    box.value = chosen.text;
    close();
  };
  const draw = (result, typed) => {
    options = [{ id: '', text: p.any, words: p.any },
      ...result.found.map((row) => ({ id: String(row.id), text: row.name, words: p.option(row) }))];
    replace(list, options.map((option, i) => h('li', {
      id: `${p.id}-option-${i}`, role: 'option', 'aria-selected': 'false', dataset: { value: option.id },
      onclick: () => pick(option),
    }, option.words)));
    list.hidden = false;
    box.setAttribute('aria-expanded', 'true');
    box.removeAttribute('aria-activedescendant');
    active = -1;
    setText(count, foundWords(p, result, typed));
  };
  const search = async (typed) => {
    clearTimeout(pause);
    const mine = ++asked;
    try {
      const result = await searchChoices(kind, typed);
      if (mine === asked) draw(result, typed);
    } catch (error) {
      if (mine === asked && !isSuperseded(error)) setText(count, `The search failed: ${error.message}`);
    }
  };
  box.addEventListener('input', () => {
    clearTimeout(pause);
    pause = setTimeout(() => void search(box.value.trim()), SEARCH_PAUSE_MS);
  });
  box.addEventListener('keydown', (event) => {
    const open = !list.hidden;
    if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
      event.preventDefault();
      // closed: the list opens, of what is typed (of the first ones, on the choice's name)
      if (!open) void search(box.value === chosen.text ? '' : box.value.trim());
      else onOption(Math.max(0, Math.min(options.length - 1, active + (event.key === 'ArrowDown' ? 1 : -1))));
    } else if (event.key === 'Enter' && open) {
      // a choice, not the form sent
      event.preventDefault();
      if (active >= 0) pick(options[active]);
    } else if (event.key === 'Escape' && (open || box.value !== chosen.text)) {
      event.preventDefault();
      putBack();
    }
  });
  box.addEventListener('blur', putBack);
  return h('div', { class: 'field picker', dataset: { field: p.field } },
    h('label', { for: box.id }, p.label), box, list, count, value, fieldError(p.field));
}

/**
 * A box that takes at most max characters as the database counts them (characterCount,
 * code points), not as maxlength does (UTF-16 units: two for an emoji, so a name of 101
 * emoji, which the database takes, was cut to 100). What is typed or pasted past max is
 * cut to what fits, as maxlength would; maxlength stays as the ceiling of anything else,
 * at twice max (no character takes more than two units).
 */
function boundedBox(input, max) {
  input.maxLength = max * 2;
  input.addEventListener('beforeinput', (event) => {
    if (!event.inputType.startsWith('insert')) return;
    const text = event.data ?? event.dataTransfer?.getData('text/plain') ?? '';
    const { value, selectionStart: start, selectionEnd: end } = input;
    const room = max - characterCount(value) + characterCount(value.slice(start, end));
    if (characterCount(text) <= room) return;
    event.preventDefault();
    const fits = [...text].slice(0, Math.max(0, room)).join('');
    if (!fits) return;
    input.setRangeText(fits, start, end, 'end');
    input.dispatchEvent(new Event('input', { bubbles: true }));
  });
  return input;
}

/**
 * The setup form. bounds: the most characters the API takes of its name, its URL and
 * a picker's search (fetchSetupFacts): each box takes no more (boundedBox), where what
 * was typed past them was sent whole and refused.
 */
function setupForm({ webhook, fields, delivery, bounds }) {
  const editing = Boolean(webhook);
  const chosenFields = webhook?.fields ?? ['first_name', 'last_name', 'email'].filter((f) => fields.includes(f));
  const url = h('input', {
    type: 'text', id: 'setup-url', name: 'url', value: webhook?.url ?? '', inputmode: 'url', autocomplete: 'off',
    spellcheck: 'false', placeholder: 'https://example.com/hooks/bpd', 'aria-describedby': 'hint-url error-url', size: 70,
  });
  boundedBox(url, bounds.url);
  const form = h('form', { id: 'setup-form', class: 'setup-form card', novalidate: true },
    h('div', { class: 'field', dataset: { field: 'name' } },
      h('label', { for: 'setup-name' }, 'Name'),
      boundedBox(h('input', { type: 'text', id: 'setup-name', name: 'name', value: webhook?.name ?? '', size: 50, 'aria-describedby': 'error-name' }), bounds.name),
      fieldError('name')),
    h('div', { class: 'field', dataset: { field: 'url' } },
      h('label', { for: 'setup-url' }, 'URL'),
      url,
      h('p', { class: 'hint', id: 'hint-url' }, 'Where to send: your receiver\'s address. Each request is a signed JSON POST.'),
      fieldError('url')),
    h('fieldset', { dataset: { field: 'actions' }, 'aria-describedby': 'error-actions' },
      h('legend', {}, 'Send when'),
      checkboxes('action', CONTACT_ACTIONS, webhook?.actions ?? [], actionWords),
      fieldError('actions')),
    picker('status', webhook?.status ?? null, chooseAgain(webhook, 'status'), bounds.search),
    picker('user', webhook?.user ?? null, chooseAgain(webhook, 'user'), bounds.search),
    h('fieldset', { dataset: { field: 'fields' }, 'aria-describedby': 'error-fields' },
      h('legend', {}, 'Contact fields to send'),
      h('p', { class: 'hint' }, 'The contact\'s id is always sent.'),
      checkboxes('field', fields.filter((f) => f !== 'id'), chosenFields, fieldLabel),
      fieldError('fields')),
    h('fieldset', { class: 'filters' },
      h('legend', {}, 'Filters (optional)'),
      h('div', {
        class: 'field', dataset: { field: 'watch_fields' }, role: 'group', 'aria-labelledby': 'label-watch',
        'aria-describedby': 'hint-watch error-watch_fields',
      },
        h('span', { class: 'label', id: 'label-watch' }, 'Only when one of these fields changes'),
        h('p', { class: 'hint', id: 'hint-watch' }, 'For Contact updated and Contact saved in BPD. None ticked: any change.'),
        checkboxes('watch', fields.filter((f) => f !== 'id'), webhook?.watchFields ?? [], fieldLabel),
        fieldError('watch_fields')),
      h('div', { class: 'field', dataset: { field: 'ignore_sources' } },
        h('label', { for: 'setup-ignore' }, 'Ignore changes from'),
        h('input', {
          type: 'text', id: 'setup-ignore', name: 'ignore', value: (webhook?.ignoreSources ?? []).join(', '),
          size: 50, placeholder: 'encompass, api', 'aria-describedby': 'hint-ignore error-ignore_sources',
        }),
        h('p', { class: 'hint', id: 'hint-ignore' }, 'Sources, separated by commas: their changes never fire this webhook (e.g. an integration that writes contacts back).'),
        fieldError('ignore_sources')),
      h('div', { class: 'field', dataset: { field: 'conditions' } },
        h('label', { for: 'setup-conditions' }, 'Only for contacts that match'),
        h('textarea', {
          id: 'setup-conditions', name: 'conditions', rows: 4, spellcheck: 'false',
          placeholder: '{"field": "state", "op": "in", "value": ["VA", "MD"]}', 'aria-describedby': 'hint-conditions error-conditions',
        }, conditionsText(webhook?.conditions)),
        h('p', { class: 'hint', id: 'hint-conditions' }, 'A condition in JSON: {"all": […]}, {"any": […]}, {"not": …} or {"field", "op", "value"} (docs/filters.md). Empty: every contact.'),
        fieldError('conditions'))),
    h('fieldset', { class: 'delivery' },
      h('legend', {}, 'Delivery (optional)'),
      numberField('max_in_flight', 'setup-max-in-flight', 'Requests at once', delivery.maxInFlight, 'default',
        'At most this many requests to this URL at the same time, all relays together. Empty: the engine\'s default (32 unless your operator changed it).'),
      numberField('rate_limit', 'setup-rate-limit', 'Requests per second', delivery.rateLimit, 'no limit',
        'Paces deliveries for a receiver that limits its rate. Empty: as fast as they come.'),
      numberField('coalesce_window', 'setup-coalesce', 'Merge a contact\'s updates within (seconds)', delivery.coalesceSeconds, 'off',
        'Contact updated / Contact saved wait this long, and later changes of the same contact join them: one message with the latest values. At most 3600. Empty: every change is sent.'),
      h('label', { class: 'check' },
        h('input', { type: 'checkbox', id: 'setup-ordered', name: 'ordered', checked: delivery.ordered }),
        'Send each contact\'s changes one at a time, in the order they happened')),
    h('div', { class: 'form-buttons' },
      h('button', { type: 'submit', class: 'primary', id: 'setup-submit' }, editing ? 'Save changes' : 'Create webhook'),
      h('a', { href: editing ? historyHash(webhook.id) : '#/', id: 'setup-cancel' }, 'Cancel')),
  );
  // a new webhook's form makes its Create key once: kept until the form is saved, for
  // each Create of it (Try again after an answer lost), never another form's
  if (!editing) form.idempotencyKey = newIdempotencyKey();
  syncPickers(form);
  form.addEventListener('change', (event) => {
    if (event.target.name === 'action') syncPickers(form);
  });
  // the URL is checked as the database checks it once the admin leaves the field, then
  // as they type; so is one found wrong by Create: its error goes as it is put right,
  // not when the field is left (the line went from under a pointer pressed on the
  // boxes below, which then missed the box)
  let urlTouched = false;
  url.addEventListener('blur', () => {
    urlTouched = true;
    setFieldError(form, 'url', urlProblem(url.value, bounds.url));
  });
  url.addEventListener('input', () => {
    if (urlTouched || url.getAttribute('aria-invalid') === 'true') setFieldError(form, 'url', urlProblem(url.value, bounds.url));
  });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    void submitSetup(form, webhook, bounds);
  });
  return form;
}

/**
 * Of the inputs that may be long, the one that takes most of a request: what a request
 * the API found too large to read (API_MAX_BODY_BYTES, 100 kB unless set) is said
 * beside. A condition of a thousand postal codes, most likely.
 */
function largestInput(setup) {
  const sizes = [
    ['conditions', JSON.stringify(setup.conditions ?? null).length],
    ['ignore_sources', JSON.stringify(setup.ignoreSources).length],
    ['name', JSON.stringify(setup.name).length],
    ['url', JSON.stringify(setup.url).length],
  ];
  return sizes.reduce((largest, size) => (size[1] > largest[1] ? size : largest))[0];
}

/**
 * Of the settings Save sends, those the admin changed from the webhook as the form
 * loaded it; the others undefined, which the API leaves as they are now. Sent whole,
 * Save put back what another admin (or a DBA) had changed meanwhile in settings this
 * admin never touched: a new URL, a condition. A filter the CRM deleted (Choose again)
 * counts as changed, so that the choice made clears its mark.
 */
function changedSettings(setup, loaded) {
  const same = (a, b) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
  const sameSet = (a, b) => same([...a].sort(), [...b].sort());
  const sameChoice = (id, kind) => String(id || '') === String(loaded[kind]?.id ?? '') && !chooseAgain(loaded, kind);
  return {
    ...setup,
    name: same(setup.name, loaded.name) ? undefined : setup.name,
    url: same(setup.url, loaded.url) ? undefined : setup.url,
    fields: sameSet(setup.fields, loaded.fields) ? undefined : setup.fields,
    actions: sameSet(setup.actions, loaded.actions) ? undefined : setup.actions,
    statusId: sameChoice(setup.statusId, 'status') ? undefined : setup.statusId,
    userId: sameChoice(setup.userId, 'user') ? undefined : setup.userId,
    watchFields: sameSet(setup.watchFields, loaded.watchFields) ? undefined : setup.watchFields,
    ignoreSources: same(setup.ignoreSources, loaded.ignoreSources) ? undefined : setup.ignoreSources,
    conditions: same(setup.conditions, loaded.conditions) ? undefined : setup.conditions,
  };
}

async function submitSetup(form, webhook, bounds) {
  clearMessages();
  const setup = readSetup(form);
  const problems = setupProblems(setup, bounds);
  for (const name of FORM_FIELDS) setFieldError(form, name, problems[name]);
  if (Object.keys(problems).length) {
    const first = form.querySelector('[aria-invalid=true], .field-error:not([hidden])')?.closest('[data-field]');
    if (first) inputOf(form, first.dataset.field)?.focus();
    return;
  }
  const submit = form.querySelector('#setup-submit');
  submit.disabled = true;
  const delivery = deliverySettingsOf(setup.delivery);
  try {
    if (webhook) {
      // A Save is up to three requests. Once one of them is saved, the webhook is as
      // this form made it, at the version that write gave it: a Save again (its next
      // request failed: a proxy's 502, a token that expired) sends its settings whole
      // over that version, and its delivery settings over those saved. Over the version
      // read, it was refused as if another admin had changed the webhook meanwhile.
      const again = form.writtenVersion !== undefined;
      const updated = await updateWebhook(webhook.id, {
        ...(again ? setup : changedSettings(setup, webhook)),
        expectedVersion: again ? form.writtenVersion : webhook.version,
      });
      form.writtenVersion = updated.version;
      await saveDeliverySettings(webhook.id, delivery, form.loadedDelivery, (saved, version) => {
        form.loadedDelivery = { ...form.loadedDelivery, ...saved };
        form.writtenVersion = version;
      });
      flash(`Saved · ${setup.name.trim()}`);
      keepFlash = true;
      location.hash = historyHash(webhook.id);
    } else {
      // (the form's key, made with it: a Create sent again, Try again after an answer
      // lost, answers the webhook the first made rather than making a second)
      const created = await createWebhook(setup, delivery, form.idempotencyKey);
      // (none: answered again after its secret was rotated, which showed the new one)
      if (created.secret) holdSecret(created.webhook.id, created.secret, `The secret of "${created.webhook.name}".`);
      flash(`Created · ${created.webhook.name}`);
      keepFlash = true;
      location.hash = historyHash(created.webhook.id);
    }
  } catch (error) {
    submit.disabled = false;
    // another admin (or a DBA) changed the webhook since the form read it: nothing was
    // saved, said above the form as it was typed, with the webhook to read again
    if (error instanceof ApiError && error.rule === CHANGED_SINCE_RULE) {
      showChangedSince();
      return;
    }
    // the database's refusal of one input goes beside that input; so does the API's of
    // a request too large to read (HTTP 413), beside the input that made it so
    const field = error instanceof ApiError
      ? error.field ?? (error.code === 'REQUEST_TOO_LARGE' ? largestInput(setup) : null) : null;
    if (field && setFieldError(form, field, error.message)) {
      inputOf(form, field)?.focus();
      return;
    }
    // a Create without its answer (none in time, a connection dropped, a proxy's 502)
    // may have made the webhook all the same: sent again under the form's key, it
    // answers that one, so Try again is safe (the form stays as typed)
    if (!webhook && error instanceof ApiError && ['no-answer', 'network', 'server'].includes(error.kind)) {
      handleError(new ApiError(error.kind, `${error.message} The webhook may have been created all the same: ` +
        'Try again answers it if so, and makes it if not (never a second one).'), () => form.requestSubmit());
      return;
    }
    // the form's key was sent before with what the form had then: changed since, a
    // Create under it is refused, and that first Create may have made the webhook. Said
    // so; the form takes a new key, so that Create, pressed again once the admin has
    // looked, makes the webhook as the form has it now
    if (!webhook && error instanceof ApiError && error.rule === 'idempotency_key_reused') {
      form.idempotencyKey = newIdempotencyKey();
      showError('Not created: this form was sent before with other settings, and that Create may have made the webhook. ' +
        'Look for it in the list of webhooks: Create again makes another, as the form is now.');
      return;
    }
    // (the form stays as typed: Try again sends it as it is then)
    handleError(error, () => form.requestSubmit());
  }
}

/**
 * Save refused for a change made since the form read the webhook: said plainly, with
 * Reload webhook, which reads it again into the form (what was typed here is lost: the
 * admin makes the change again over the other's).
 */
function showChangedSince() {
  showError('Not saved: someone else changed this webhook since you opened it. Reload it to see their change, then make yours again.');
  $('error').append(' ', h('button', {
    type: 'button',
    class: 'secondary',
    id: 'reload-webhook',
    onclick: () => {
      showError('');
      render();
    },
  }, 'Reload webhook'));
}

async function renderSetup(where, mine) {
  if (readOnly) {
    showError('This token may only read. Setting webhooks up needs an admin token.');
    showView(null);
    return;
  }
  const [{ fields, bounds }, { found, delivery }] = await Promise.all([
    fetchSetupFacts(),
    where.view === 'edit' ? fetchWebhookToEdit(where.webhookId) : { found: null, delivery: DEFAULT_DELIVERY },
  ]);
  if (mine !== generation) return;
  const webhook = found?.webhook ?? null;
  if (found) showCompany(found.companyName);
  if (where.view === 'edit' && (!webhook || !delivery)) {
    showError(noSuchWebhook(where.webhookId));
    showView(null);
    return;
  }
  setText($('page-title'), webhook ? `Edit ${webhook.name}` : 'New webhook');
  document.title = `${webhook ? 'Edit webhook' : 'New webhook'} · Webhooks · Big Purple Dot`;
  $('page-subtitle').textContent = webhook
    ? 'Changes apply to events from now on; firings already made keep what they sent.'
    : 'Where to send which contact fields when what happens. The signing secret is shown once, after Create.';
  const form = takeUnsentForm() ?? setupForm({ webhook, fields, delivery, bounds });
  // what Save compares against: only a change of these is sent
  form.loadedDelivery ??= delivery;
  replace($('setup'), form);
  showView('setup');
  $('setup-name').focus();
}

/** Keeps the setup form on view, if any, for its admin's next sign-in (unsentForm). */
function keepUnsentForm() {
  const form = $('setup').hidden ? null : $('setup-form');
  unsentForm = form
    ? { hash: location.hash, companyId: inspectToken(session.token()).claims?.company_id, form }
    : null;
}

/** The form kept for this view and this token's company, once; null for any other. */
function takeUnsentForm() {
  const kept = unsentForm;
  unsentForm = null;
  const companyId = inspectToken(session.token()).claims?.company_id;
  return kept && kept.hash === location.hash && companyId !== undefined && String(kept.companyId) === String(companyId)
    ? kept.form : null;
}

// ---- rendering the current view ----------------------------------------------

async function render() {
  if (!session.token()) {
    showSignIn();
    return;
  }
  $('sign-in').hidden = true;
  $('app').hidden = false;
  $('who').hidden = false;
  const { claims } = inspectToken(session.token());
  readOnly = claims?.role === 'webhook_viewer';
  // a secret issued to another company's admin on this tab is not this one's to see
  if (issuedSecret && String(issuedSecret.companyId) !== String(claims?.company_id)) issuedSecret = null;
  // what read-only means, in words on the page that the badge names as its description
  $('who-role').hidden = !readOnly;
  $('who-role-why').hidden = !readOnly;
  $('new-webhook').hidden = readOnly;
  showError('');
  renderRangeControl();
  const days = rangeDays();
  const instants = rangeInstants(days.fromDay, days.toDay);
  const where = route();
  if (where.view !== 'new' && where.view !== 'edit') unsentForm = null;
  const mine = ++generation;
  document.body.setAttribute('aria-busy', 'true');
  try {
    if (where.view === 'none') showNoView(noSuchWebhook(where.webhookId));
    else if (where.view === 'history') await renderHistory(where, instants, days, mine);
    else if (where.view === 'new' || where.view === 'edit') await renderSetup(where, mine);
    else await renderReport(instants, days, mine);
  } catch (error) {
    if (mine !== generation) return;
    // the view on the page is the one before this link or this Date Range: left, it
    // would pass for their answer (last month's counts under Last 7 days, another
    // webhook's history and its Replay buttons under this one's link)
    showNoView('');
    handleError(error, () => void render());
  } finally {
    if (mine === generation) {
      document.body.removeAttribute('aria-busy');
      // (a history that did not come takes no focus when another view comes later)
      focusFirings = false;
    }
  }
}

$('sign-in-form').addEventListener('submit', signIn);
$('sign-out').addEventListener('click', signOut);
$('range').addEventListener('submit', applyCustomRange);
$('copy-secret').addEventListener('click', copySecret);
$('secret-done').addEventListener('click', secretStored);
$('confirm-no').addEventListener('click', cancelConfirm);
window.addEventListener('hashchange', () => {
  if (!keepFlash) hideFlash();
  keepFlash = false;
  closeConfirm();
  if (!issuedSecret) forgetSecret();
  // a new view or page starts at its top, also when its link was at the bottom; the
  // keyboard's focus, gone with the link followed, on its heading, which a screen
  // reader reads (unless the view put it where it is typed in, or on its firings)
  void render().then(() => {
    window.scrollTo({ top: 0 });
    focusAgain('#page-title');
  });
});
// Enter signs in (a pasted token is one line); Shift+Enter still makes a new line
$('token').addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey) {
    event.preventDefault();
    $('sign-in-form').requestSubmit();
  }
});
void render();
