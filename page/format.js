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

/** "contact.status_added" → "Status added"; an unknown action is shown as it is. */
export function actionWords(action) {
  return ACTION_WORDS[action] ?? action;
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
  lines.push(...conditionLines(webhook.conditions));
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
  const v = Array.isArray(value) ? value.map(String) : String(value);
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

/** 10000 → "10,000" */
export function formatCount(n) {
  return numberFormat.format(n);
}

/** The contact of a firing as the payload carried it: its name, else its email, else "Contact". */
export function contactLabel(contactId, payload) {
  const contact = payload?.data?.contact ?? {};
  const name = [contact.first_name, contact.last_name].filter(Boolean).join(' ');
  return { name: name || contact.email || 'Contact', id: contactId };
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

function localMidnight(day) {
  const [y, m, d] = day.split('-').map(Number);
  return new Date(y, m - 1, d);
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
  const to = new Date(lastDay.getFullYear(), lastDay.getMonth(), lastDay.getDate() + 1);
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
 * (unverified: the server decides) or why it cannot be a token at all.
 */
export function inspectToken(token, nowSeconds = Date.now() / 1000) {
  const trimmed = (token ?? '').trim().replace(/^Bearer\s+/i, '');
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
  if (typeof claims.exp === 'number' && claims.exp <= nowSeconds) {
    return { problem: 'expired', token: trimmed, claims };
  }
  return { token: trimmed, claims };
}
