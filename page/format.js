// Pure functions that turn API data into the words and numbers the page shows.
// No DOM here: everything takes values and returns strings or plain objects.

/** What each action means, in the words of the BPD help article. */
const ACTION_WORDS = {
  'contact.created': 'Contact created',
  'contact.updated': 'Contact updated (outside BPD)',
  'contact.saved': 'Contact saved in BPD',
  'contact.deleted': 'Contact deleted',
  'contact.first_company_user_assigned': 'First company user assigned',
  'contact.status_added': 'Status added',
  'contact.status_removed': 'Status removed',
  'contact.user_assigned': 'User assigned',
};

/** The actions a webhook may subscribe to, in the order the setup form lists them. */
export const CONTACT_ACTIONS = Object.keys(ACTION_WORDS);

/** Actions that a status picker narrows down, and the one a user picker does. */
export const STATUS_ACTIONS = ['contact.status_added', 'contact.status_removed'];
export const USER_ACTION = 'contact.user_assigned';

/** What a test send shows as its action in the history. */
const TEST_ACTION = 'webhook.test';

/**
 * What a firing that no action of a webhook makes shows as its action in the history:
 * a test send, a backfill's copy of a contact (docs/backfill.md), which showed as
 * "contact.snapshot" among rows in words until 2026-12-07. Not choices of the form.
 */
const SENT_ALONE_WORDS = { [TEST_ACTION]: 'Test', 'contact.snapshot': 'Backfill snapshot' };

/** "contact.status_added" → "Status added"; an unknown action is shown as it is. */
export function actionWords(action) {
  return ACTION_WORDS[action] ?? SENT_ALONE_WORDS[action] ?? action;
}

/** Whether a firing is a test send (not counted in Times Fired). */
export function isTest(action) {
  return action === TEST_ACTION;
}

// The bidi controls (Unicode's Bidi_Control), as the database's class has them
// (webhooks_private.bidi_controls(), sql/10_config.sql).
const BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * A name from the CRM (a status's, a user's) as the page quotes it among its own
 * words, without bidi controls: one in it ("VIP" U+202E) reordered the words after it,
 * a webhook's other triggers, what else a change changed. The database refuses them
 * in what a tenant names for the engine (a webhook, a disable reason); the CRM's
 * names are the CRM's, and so are the values a filter compares them with.
 */
export function crmName(name) {
  return String(name).replace(BIDI_CONTROLS, '');
}

// The characters that show nothing of themselves, as the database's class has them
// (webhooks_private.invisible_characters(), sql/10_config.sql: soft hyphen, zero-width
// space and joiners, word joiner, byte order mark, variation selectors, tags, …),
// less its bidi controls (BIDI_CONTROLS: taken out of the lines they are in, crmName).
const INVISIBLE = /[\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200d\u2060-\u2065\u206a-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\u{1bca0}-\u{1bca3}\u{1d173}-\u{1d17a}\u{e0000}-\u{e0fff}]/gu;

/**
 * A condition's value as the page shows it: each character that shows nothing marked
 * by its code ("Par" U+200B "is" → "Par[U+200B]is"). Such a value looks like another
 * ("Paris") that it never equals, and a webhook that never fires would look right.
 * Marked rather than refused when the webhook is saved: a condition is compared with
 * the CRM's own text, which may hold them (a joiner in Persian or Hindi spelling, or
 * in an emoji; a soft hyphen pasted from a document), and a value must hold them to
 * match it; nor taken out, which would show the value it is not.
 */
function markInvisible(text) {
  return String(text).replace(INVISIBLE, (character) =>
    `[U+${character.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')}]`);
}

/**
 * Conditions as JSON for the page to show (the setup form's box, the history of
 * changes), with each character that shows nothing written as its JSON escape
 * (\u200b; one beyond the first plane as its two halves), which reads back as the
 * same value (markInvisible says why). Empty for none.
 */
export function conditionsText(conditions, indent = 2) {
  if (conditions === null || conditions === undefined) return '';
  return JSON.stringify(conditions, null, indent).replace(INVISIBLE, (character) =>
    [...Array(character.length).keys()].map((i) => `\\u${character.charCodeAt(i).toString(16).padStart(4, '0')}`).join(''));
}

/** A contact field as a form labels it: "first_name" → "First name", "custom.tier" → "Tier" */
export function fieldLabel(field) {
  const words = fieldWords(field);
  return words.charAt(0).toUpperCase() + words.slice(1);
}
/**
 * The trigger(s) of a webhook in plain words: one line per action, with its filter,
 * then one line per filter of the webhook (docs/filters.md):
 * "Contact updated (outside BPD)", "when email or phone changes", "state is VA or MD",
 * "not from encompass".
 * webhook: { actions: string[], status: {name}|null, user: {name}|null,
 *            watchFields?: string[], conditions?: object|null, ignoreSources?: string[] }
 */
export function triggerLines(webhook) {
  const lines = webhook.actions.map((action) => {
    const words = actionWords(action);
    if (action === 'contact.status_added' || action === 'contact.status_removed') {
      return `${words}: ${webhook.status ? webhook.status.name : 'any status'}`;
    }
    if (action === 'contact.user_assigned') {
      return `${words}: ${webhook.user ? webhook.user.name : 'any user'}`;
    }
    return words;
  });
  const watched = webhook.watchFields ?? [];
  if (watched.length && webhook.actions.some((a) => a === 'contact.updated' || a === 'contact.saved')) {
    lines.push(`when ${orList(watched.map(fieldWords))} changes`);
  }
  // (a condition's values are the CRM's text: "VA" U+202E reordered the rest of its line,
  // and on the webhook's page, where the lines are one, every filter after it)
  lines.push(...conditionLines(webhook.conditions).map(crmName));
  const ignored = webhook.ignoreSources ?? [];
  if (ignored.length) lines.push(`not from ${orList(ignored)}`);
  return lines;
}

/** ["VA", "MD", "DC"] → "VA, MD or DC" */
function orList(items) {
  return items.length > 1 ? `${items.slice(0, -1).join(', ')} or ${items.at(-1)}` : String(items[0] ?? '');
}

/** "postal_code" → "postal code"; "custom.tier" → "tier" */
function fieldWords(field) {
  return String(field).replace(/^custom\./, '').replaceAll('_', ' ');
}

const ORDER_WORDS = {
  number: { lt: 'is under', lte: 'is at most', gt: 'is over', gte: 'is at least' },
  date: { lt: 'is before', lte: 'is on or before', gt: 'is after', gte: 'is on or after' },
  text: { lt: 'comes before', lte: 'is at most', gt: 'comes after', gte: 'is at least' },
};

/** One leaf of a condition in words: "state is VA or MD", "email changes". */
function leafWords({ field, op, value }) {
  const f = fieldWords(field);
  const v = Array.isArray(value) ? value.map(markInvisible) : markInvisible(value);
  switch (op) {
    case 'eq': return `${f} is ${v}`;
    case 'ne': return `${f} is not ${v}`;
    case 'in': return `${f} is ${orList(v)}`;
    case 'not_in': return v.length > 1 ? `${f} is none of ${v.join(', ')}` : `${f} is not ${v[0]}`;
    case 'lt': case 'lte': case 'gt': case 'gte': {
      const kind = typeof value === 'number' ? 'number' : /^\d{4}-\d\d-\d\d/.test(v) ? 'date' : 'text';
      return `${f} ${ORDER_WORDS[kind][op]} ${v}`;
    }
    case 'contains': return `${f} contains "${v}"`;
    case 'starts_with': return `${f} starts with "${v}"`;
    case 'is_null': return `${f} is empty`;
    case 'not_null': return `${f} is set`;
    case 'changed': return `${f} changes`;
    default: return `${f} ${op} ${JSON.stringify(value)}`;
  }
}

/** A condition in words; nested all/any go in parentheses. */
function conditionWords(condition, nested = false) {
  const wrap = (text) => (nested ? `(${text})` : text);
  if (!condition || typeof condition !== 'object' || Array.isArray(condition)) return JSON.stringify(condition);
  if (Array.isArray(condition.all)) return wrap(condition.all.map((c) => conditionWords(c, true)).join(' and '));
  if (Array.isArray(condition.any)) return wrap(condition.any.map((c) => conditionWords(c, true)).join(' or '));
  if ('not' in condition) return `not (${conditionWords(condition.not)})`;
  if (typeof condition.field === 'string') return leafWords(condition);
  return JSON.stringify(condition);
}

/** A webhook's conditions as lines: each part of a top-level "all" on a line of its own. */
function conditionLines(conditions) {
  if (conditions === null || conditions === undefined) return [];
  if (Array.isArray(conditions?.all)) return conditions.all.map((c) => conditionWords(c));
  return [conditionWords(conditions)];
}

const dateFormat = new Intl.DateTimeFormat('en-US', { year: 'numeric', month: 'short', day: 'numeric' });
const timeFormat = new Intl.DateTimeFormat('en-US', {
  year: 'numeric', month: 'short', day: 'numeric', hour: 'numeric', minute: '2-digit', second: '2-digit',
});
const numberFormat = new Intl.NumberFormat('en-US');

/** "Nov 28, 2026" */
export function formatDate(iso) {
  return dateFormat.format(new Date(iso));
}

/** "Nov 28, 2026, 11:43:25 PM" */
export function formatTime(iso) {
  return timeFormat.format(new Date(iso));
}

/**
 * Where something starts, in the browser's time: "Nov 28, 2026" when that is a
 * midnight of its, else "Nov 27, 2026, 7:00:00 PM". The engine's days are UTC days,
 * whose midnight is another hour elsewhere: said as a day alone, it named the day
 * before (or that day) as if whole.
 */
export function formatStart(iso) {
  const at = new Date(iso);
  const midnight = at.getHours() === 0 && at.getMinutes() === 0 && at.getSeconds() === 0 && at.getMilliseconds() === 0;
  return midnight ? formatDate(iso) : formatTime(iso);
}

/**
 * When a pending firing is tried next: "next try Nov 28, 2026, 11:43:25 PM", or, for a
 * backfill's snapshot held while its webhook is disabled (no next try: the API says
 * null), that it waits for the webhook to be enabled.
 */
export function nextTry(nextAttemptAt) {
  return nextAttemptAt == null ? 'waiting for the webhook to be enabled' : `next try ${formatTime(nextAttemptAt)}`;
}

/**
 * Why an enabled webhook shows as Failing (its receiver's last attempts all failed),
 * as lines: how many in a row since when, until when its deliveries wait for the next
 * try, and when the relay will disable it unless one succeeds. Empty when healthy.
 */
export function failingLines(webhook) {
  if (!webhook.enabled || !webhook.failuresInARow) return [];
  const attempts = webhook.failuresInARow === 1 ? '1 failed attempt' : `${formatCount(webhook.failuresInARow)} failed attempts in a row`;
  return [
    `${attempts} since ${formatTime(webhook.failingSince)}`,
    webhook.pausedUntil ? `Deliveries wait for the next try at ${formatTime(webhook.pausedUntil)}` : null,
    webhook.disablesAt ? `Will be disabled ${formatTime(webhook.disablesAt)} unless an attempt succeeds` : null,
  ].filter((line) => line !== null);
}

/** 10000 → "10,000" */
export function formatCount(n) {
  return numberFormat.format(n);
}

/**
 * What a backfill of the webhook sends, as Backfill asks before it starts: how many
 * contacts ({ count, more }: more than count when the API's count stopped at its cap),
 * to which URL.
 */
export function backfillWords(webhook, { count, more }) {
  const contacts = `${more ? 'more than ' : ''}${formatCount(count)} contact${count === 1 && !more ? '' : 's'} of your company`;
  const sent = webhook.conditions ? `those of the ${contacts} that pass its conditions` : contacts;
  return `Sends ${sent} to ${webhook.url}, once each, as contact.snapshot deliveries beside its live ones.`;
}

/** A delivery's state as the page words it. */
export function outcomeWords(state) {
  return { succeeded: 'Success', failed: 'Failure', pending: 'Pending', in_flight: 'Sending' }[state] ?? state;
}

// ---- date ranges -------------------------------------------------------------
// A range is chosen by whole local days and sent to the API as [from, to): from the
// first day's midnight to the midnight after the last day.

export const PRESETS = [
  { id: '7', days: 7, label: 'Last 7 days' },
  { id: '30', days: 30, label: 'Last 30 days' },
  { id: '90', days: 90, label: 'Last 90 days' },
];
export const DEFAULT_PRESET = '30';

/** A Date → "YYYY-MM-DD" in local time, the value of an <input type="date">. */
export function isoDay(date) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

/** "YYYY-MM-DD" → that day's first moment, local time. */
function localMidnight(day) {
  const [y, m, d] = day.split('-').map(Number);
  return dayOf(y, m - 1, d);
}

/** new Date(y, m, d), also for the years 0 to 99, which it takes for 1900 to 1999. */
function dayOf(y, m, d) {
  const date = new Date(2000, m, d);
  date.setFullYear(y, m, d);
  return date;
}

/** An instant the API takes (22_outbox.sql, requested_times): its year 0001 to 9999, written as four digits. */
function askable(date) {
  return /^(?!0000)\d{4}-/.test(date.toISOString());
}

/** The first and last day ("YYYY-MM-DD") of the last `days` days, today included. */
export function presetDays(days, now = new Date()) {
  const first = new Date(now.getFullYear(), now.getMonth(), now.getDate() - (days - 1));
  return { fromDay: isoDay(first), toDay: isoDay(now) };
}

/**
 * Checks a chosen range of days and turns it into the instants the API filters on.
 * Returns { from, to } (ISO strings, to exclusive) or { error } in words.
 */
export function rangeInstants(fromDay, toDay) {
  if (!fromDay || !toDay) return { error: 'Choose both a start and an end date.' };
  const from = localMidnight(fromDay);
  const lastDay = localMidnight(toDay);
  if (Number.isNaN(from.getTime()) || Number.isNaN(lastDay.getTime())) return { error: 'Those dates are not valid.' };
  if (lastDay < from) return { error: 'The end date is before the start date.' };
  const to = dayOf(lastDay.getFullYear(), lastDay.getMonth(), lastDay.getDate() + 1);
  if (!askable(from) || !askable(to)) return { error: 'Choose days from the year 1 to 9999.' };
  return { from: from.toISOString(), to: to.toISOString() };
}

/** "Nov 1 – Nov 28, 2026" for the heading of the counts. */
export function rangeWords(fromDay, toDay) {
  const from = localMidnight(fromDay);
  const to = localMidnight(toDay);
  const short = new Intl.DateTimeFormat('en-US', { month: 'short', day: 'numeric' });
  const start = from.getFullYear() === to.getFullYear() ? short.format(from) : dateFormat.format(from);
  return `${start} – ${dateFormat.format(to)}`;
}

// ---- tokens ------------------------------------------------------------------

/**
 * What the page can tell about a pasted token before asking the server: its claims
 * (unverified: the server decides, its expiry too, by its own clock: page/api.js) or
 * why it cannot be a token at all.
 */
export function inspectToken(token) {
  // a token has no white space: what a wrapped line gains when it is copied goes (sent
  // as it was, a line break made the request fail as if the server could not be reached)
  const trimmed = (token ?? '').trim().replace(/^Bearer\s+/i, '').replace(/\s+/g, '');
  if (!trimmed) return { problem: 'missing' };
  const parts = trimmed.split('.');
  if (parts.length !== 3) return { problem: 'malformed' };
  let claims;
  try {
    const json = atob(parts[1].replace(/-/g, '+').replace(/_/g, '/'));
    claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(json, (c) => c.charCodeAt(0))));
  } catch {
    return { problem: 'malformed' };
  }
  // (claims are an object: JSON such as null is no token's)
  if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) return { problem: 'malformed' };
  return { token: trimmed, claims };
}

// ---- the setup form ------------------------------------------------------------

// The database's own rule for a webhook URL (sql/10_config.sql, webhook_url_invalid),
// checked here first so that the form can say so beside the field at once.
const URL_RULE = /^https?:\/\/(\[[0-9a-f:.]+\]|([^\][\s/?#@:<>\\^|%\u0001-\u001f\u007f]|%[0-9a-f]{2})+)(:[0-9]*)?([/?#]\S*)?$/i;

/**
 * How many characters the database counts in a text (char_length: code points), where
 * JavaScript's length counts UTF-16 units, two for an emoji or any character past U+FFFF.
 */
export const characterCount = (text) => [...text].length;

/**
 * Why a URL would be refused, in words, or null when the database will take it.
 * urlMax: the most characters it takes, as the API gives it (inputBounds.url, the
 * database's webhooks_private.webhook_url_max()).
 */
export function urlProblem(url, urlMax) {
  const value = (url ?? '').trim();
  if (!value) return 'Enter the URL your receiver listens on.';
  if (characterCount(value) > urlMax) return `The URL is too long: at most ${formatCount(urlMax)} characters.`;
  if (!URL_RULE.test(value)) {
    return 'Enter an absolute http:// or https:// URL, like https://example.com/hooks/bpd (no spaces, no user name or password in it, a port of digits).';
  }
  // the URL standard's own parser, as the relay's: a host ending in a number must be an
  // IPv4 address (the database refuses the rest too, webhooks_private.host_is_bad_number)
  try {
    new URL(value);
  } catch {
    return 'This URL cannot be read: a host that ends in a number must be an IPv4 address, like 203.0.113.9.';
  }
  return null;
}

/**
 * Checks the form's choices before they are sent. setup: { name, url, fields, actions,
 * statusId, userId }; bounds: the API's inputBounds (fetchSetupFacts). Returns { field: words } for each field with a problem (empty: none).
 */
/**
 * A picker's value while the user or status a webhook was filtered on is deleted and
 * nothing has been chosen in its place (deletedFilterTarget): Save asks for a choice,
 * another or Any, rather than take the picker's Any for one (the API keeps such a
 * webhook disabled until its admin chooses).
 */
export const CHOOSE_AGAIN = 'choose-again';

export function setupProblems(setup, bounds) {
  const problems = {};
  if (!setup.name.trim()) problems.name = 'Give the webhook a name.';
  const url = urlProblem(setup.url, bounds.url);
  if (url) problems.url = url;
  if (!setup.fields.length) problems.fields = 'Choose at least one contact field to send.';
  if (!setup.actions.length) problems.actions = 'Choose at least one action.';
  if (setup.statusId === CHOOSE_AGAIN) {
    problems.status_id = 'The status this webhook was filtered on was deleted: choose another, or Any status.';
  } else if (setup.statusId && !setup.actions.every((a) => STATUS_ACTIONS.includes(a))) {
    problems.status_id = 'A status applies to Status added and Status removed only: choose only those actions, or Any status.';
  }
  if (setup.userId === CHOOSE_AGAIN) {
    problems.user_id = 'The user this webhook was filtered on was deleted: choose another, or Any user.';
  } else if (setup.userId && !(setup.actions.length === 1 && setup.actions[0] === USER_ACTION)) {
    problems.user_id = 'A user applies to User assigned only: choose only that action, or Any user.';
  }
  if (setup.conditionsProblem) problems.conditions = setup.conditionsProblem;
  for (const [name, words, max] of DELIVERY_LIMITS) {
    if (!wholeNumberIn(setup.delivery?.[name] ?? '', max)) problems[name] = `${words}: a whole number from 1 to ${max.toLocaleString('en-US')}, or empty.`;
  }
  return problems;
}

/** The delivery settings' bounds, as the database's CHECK constraints have them. */
const DELIVERY_LIMITS = [
  ['max_in_flight', 'Requests at once', 1000],
  ['rate_limit', 'Requests per second', 10000],
  ['coalesce_window', 'Merge window', 3600],
];

/** Empty, or a whole number from 1 to max (as typed: digits only). */
function wholeNumberIn(text, max) {
  const trimmed = String(text).trim();
  return trimmed === '' || (/^\d{1,6}$/.test(trimmed) && Number(trimmed) >= 1 && Number(trimmed) <= max);
}

/**
 * The delivery settings as the API takes them, from the form's text:
 * { max_in_flight, rate_limit, coalesce_window (seconds), ordered } →
 * { maxInFlight, rateLimit, coalesceSeconds, ordered }, an empty box being null.
 */
export function deliverySettingsOf(delivery) {
  const number = (text) => (String(text).trim() === '' ? null : Number(String(text).trim()));
  return {
    maxInFlight: number(delivery.max_in_flight),
    rateLimit: number(delivery.rate_limit),
    coalesceSeconds: number(delivery.coalesce_window),
    ordered: Boolean(delivery.ordered),
  };
}

// ---- the history of changes ----------------------------------------------------

const SETTING_WORDS = {
  name: 'name', url: 'URL', fields: 'fields', actions: 'actions', status_id: 'status', user_id: 'user',
  max_attempts: 'attempts', ignore_sources: 'ignored sources', watch_fields: 'watched fields', conditions: 'conditions',
  max_in_flight: 'requests at once', rate_limit: 'requests per second', coalesce_window: 'merge window',
  ordered: 'one at a time per contact',
};

/** What an unset (null) setting means */
const UNSET_WORDS = {
  status_id: 'any status', user_id: 'any user', max_in_flight: 'the default', rate_limit: 'no limit', coalesce_window: 'off',
};

function valueWords(key, value, names) {
  if (value === null || value === undefined) return UNSET_WORDS[key] ?? 'none';
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (key === 'coalesce_window') return intervalWords(value);
  if (key === 'actions' && Array.isArray(value)) return value.map(actionWords).join(', ');
  if ((key === 'fields' || key === 'watch_fields') && Array.isArray(value)) return value.map(fieldLabel).join(', ');
  if (key === 'status_id') return names.statuses?.get(String(value)) ?? `status #${value}`;
  if (key === 'user_id') return names.users?.get(String(value)) ?? `user #${value}`;
  if (Array.isArray(value)) return value.join(', ') || 'none';
  if (key === 'conditions') return conditionsText(value, 0);
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

/** A Postgres interval as JSON gives it, "00:01:30" → "90 s"; another shape as it is */
function intervalWords(text) {
  const parts = /^(\d+):(\d\d):(\d\d)$/.exec(String(text));
  return parts ? `${formatCount(Number(parts[1]) * 3600 + Number(parts[2]) * 60 + Number(parts[3]))} s` : String(text);
}

/**
 * One entry of a webhook's audit trail in words: { what, detail } (detail may be '').
 * entry: { action, details }; names: { statuses, users }, Maps of id → name (a status
 * or user gone since is named by its id).
 */
export function auditWords(entry, names = {}) {
  const d = entry.details ?? {};
  switch (entry.action) {
    case 'webhook.created': return { what: 'Created', detail: d.url ? `posting to ${d.url}` : '' };
    case 'webhook.updated': {
      // (a value may quote the CRM's text, a condition's: crmName)
      const changes = Object.entries(d.changed ?? {}).map(([key, change]) => crmName(
        `${SETTING_WORDS[key] ?? fieldWords(key)}: ${valueWords(key, change.from, names)} → ${valueWords(key, change.to, names)}`));
      return { what: 'Changed', detail: changes.join('; ') };
    }
    case 'webhook.deleted': return { what: 'Deleted', detail: '' };
    case 'webhook.disabled': return { what: 'Disabled', detail: d.reason ?? '' };
    case 'webhook.enabled': return { what: 'Enabled', detail: '' };
    case 'webhook.secret_rotated': return { what: 'Rotated the signing secret', detail: 'the previous one worked 24 hours more' };
    case 'webhook.replayed': {
      const n = Number(d.deliveries ?? 1);
      return { what: n === 1 ? 'Replayed 1 firing' : `Replayed ${formatCount(n)} firings`, detail: '' };
    }
    case 'webhook.backfill_started': return { what: 'Started a backfill', detail: '' };
    case 'webhook.backfill_cancelled': return { what: 'Cancelled a backfill', detail: '' };
    case 'webhook.test': return { what: 'Sent a test', detail: d.message_id ? `message ${d.message_id}` : '' };
    default: return { what: entry.action, detail: '' };
  }
}

/** The actions a list of watched fields narrows (the others fire whatever changed). */
export const WATCHED_ACTIONS = ['contact.updated', 'contact.saved'];

/** "encompass, api ,, " → ["encompass", "api"] */
export function sourceList(text) {
  return [...new Set((text ?? '').split(',').map((s) => s.trim()).filter(Boolean))];
}

/**
 * The conditions box: empty is none (null); else it must be JSON (the database judges
 * the rest, and says which part is wrong). Returns { conditions } or { problem }.
 */
export function parseConditions(text) {
  const value = (text ?? '').trim();
  if (!value) return { conditions: null };
  let conditions;
  try {
    conditions = JSON.parse(value);
  } catch (error) {
    return { problem: `This is not JSON (${error.message}). Write a condition like {"field": "state", "op": "in", "value": ["VA", "MD"]}, or leave the box empty.` };
  }
  const number = firstNumberNotHeld(value);
  if (number !== undefined) {
    return { problem: `The number ${number.length > 100 ? `${number.slice(0, 100)}…` : number} cannot be kept as written: JSON readers (this page's too) read it as ${numberReadAs(number)}.` };
  }
  return { conditions };
}

/** a JSON number: its sign, whole digits, fraction digits and exponent */
const JSON_NUMBER = /^(-?)([0-9]+)(?:[.]([0-9]+))?(?:[eE]([+-]?[0-9]+))?$/;

/** A decimal number's value as text: its digits without zeros at either end, then the power of ten of the last; "0" for zero. */
function decimalValue(text) {
  const [, sign, whole, fraction = '', exponent = '0'] = JSON_NUMBER.exec(text) ?? [];
  const digits = `${whole}${fraction}`.replace(/^0+/, '');
  if (digits === '') return '0';
  const significant = digits.replace(/0+$/, '');
  return `${sign}${significant}e${Number(exponent) - fraction.length + digits.length - significant.length}`;
}

/**
 * What JSON.parse reads a JSON number's text as (a double) when that is another number
 * (1e-400 as 0, 9007199254740993 as 9007199254740992, 1e400 as infinity), else
 * undefined. The database refuses such a number in conditions, and the API a number so
 * sent (api/deep-json.ts, jsonNumberReadAs: the same rule): the page would have sent
 * the number it read, a condition "gt 1e-400" as "gt 0".
 */
function numberReadAs(text) {
  // (at most 15 characters without an exponent: at most 15 significant digits, from
  // 1e-14 to 1e15, which a double holds as written, asked without writing it again)
  if (text.length <= 15 && !text.includes('e') && !text.includes('E')) return undefined;
  const read = Number(text);
  // (NaN: no number)
  if (Number.isNaN(read) || !JSON_NUMBER.test(text) || String(read) === text) return undefined;
  if (!Number.isFinite(read)) return read > 0 ? 'infinity' : '-infinity';
  return decimalValue(text) === decimalValue(String(read).replace('e+', 'e')) ? undefined : String(read);
}

/** The first number of a JSON text that JSON.parse does not read as written, or undefined (strings skipped: their numbers are text). */
function firstNumberNotHeld(text) {
  const inNumber = (c) => (c >= '0' && c <= '9') || c === '-' || c === '+' || c === '.' || c === 'e' || c === 'E';
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
    } else if (c === '-' || (c >= '0' && c <= '9')) {
      let end = i + 1;
      while (end < text.length && inNumber(text[end])) end++;
      const number = text.slice(i, end);
      if (numberReadAs(number) !== undefined) return number;
      i = end - 1;
    }
  }
  return undefined;
}
