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

/** "contact.status_added" → "Status added"; an unknown action is shown as it is. */
export function actionWords(action) {
  if (action === TEST_ACTION) return 'Test';
  return ACTION_WORDS[action] ?? action;
}

/** Whether a firing is a test send (not counted in Times Fired). */
export function isTest(action) {
  return action === TEST_ACTION;
}

/** "first_name" → "First name", "postal_code" → "Postal code" */
export function fieldWords(field) {
  const words = field.replace(/_/g, ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/**
 * The trigger(s) of a webhook in plain words: one line per action, with its filter.
 * webhook: { actions: string[], status: {name}|null, user: {name}|null }
 */
export function triggerLines(webhook) {
  return webhook.actions.map((action) => {
    const words = actionWords(action);
    if (action === 'contact.status_added' || action === 'contact.status_removed') {
      return `${words}: ${webhook.status ? webhook.status.name : 'any status'}`;
    }
    if (action === 'contact.user_assigned') {
      return `${words}: ${webhook.user ? webhook.user.name : 'any user'}`;
    }
    return words;
  });
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

// ---- the setup form ------------------------------------------------------------

// The database's own rule for a webhook URL (sql/10_config.sql, webhook_url_invalid),
// checked here first so that the form can say so beside the field at once.
const URL_RULE = /^https?:\/\/[^\s/?#@]+(:[0-9]+)?([/?#]\S*)?$/i;
const URL_MAX = 2048;

/** Why a URL would be refused, in words, or null when the database will take it. */
export function urlProblem(url) {
  const value = (url ?? '').trim();
  if (!value) return 'Enter the URL your receiver listens on.';
  if (value.length > URL_MAX) return `The URL is too long: at most ${formatCount(URL_MAX)} characters.`;
  if (!URL_RULE.test(value)) {
    return 'Enter an absolute http:// or https:// URL, like https://example.com/hooks/bpd (no spaces, no user name or password in it).';
  }
  return null;
}

/**
 * Checks the form's choices before they are sent. setup: { name, url, fields, actions,
 * statusId, userId }. Returns { field: words } for each field with a problem (empty: none).
 */
export function setupProblems(setup) {
  const problems = {};
  if (!setup.name.trim()) problems.name = 'Give the webhook a name.';
  const url = urlProblem(setup.url);
  if (url) problems.url = url;
  if (!setup.fields.length) problems.fields = 'Choose at least one contact field to send.';
  if (!setup.actions.length) problems.actions = 'Choose at least one action.';
  if (setup.statusId && !setup.actions.every((a) => STATUS_ACTIONS.includes(a))) {
    problems.status_id = 'A status applies to Status added and Status removed only: choose only those actions, or Any status.';
  }
  if (setup.userId && !(setup.actions.length === 1 && setup.actions[0] === USER_ACTION)) {
    problems.user_id = 'A user applies to User assigned only: choose only that action, or Any user.';
  }
  return problems;
}

// ---- the history of changes ----------------------------------------------------

const SETTING_WORDS = {
  name: 'name', url: 'URL', fields: 'fields', actions: 'actions', status_id: 'status', user_id: 'user',
  max_attempts: 'attempts', ignore_sources: 'ignored sources', watch_fields: 'watched fields', conditions: 'conditions',
};

function valueWords(key, value) {
  if (value === null || value === undefined) return key === 'status_id' ? 'any status' : key === 'user_id' ? 'any user' : 'none';
  if (key === 'actions' && Array.isArray(value)) return value.map(actionWords).join(', ');
  if (key === 'fields' && Array.isArray(value)) return value.map(fieldWords).join(', ');
  if (key === 'status_id') return `status #${value}`;
  if (key === 'user_id') return `user #${value}`;
  if (Array.isArray(value)) return value.join(', ') || 'none';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

/**
 * One entry of a webhook's audit trail in words: { what, detail } (detail may be '').
 * entry: { action, details }
 */
export function auditWords(entry) {
  const d = entry.details ?? {};
  switch (entry.action) {
    case 'webhook.created': return { what: 'Created', detail: d.url ? `posting to ${d.url}` : '' };
    case 'webhook.updated': {
      const changes = Object.entries(d.changed ?? {}).map(([key, change]) =>
        `${SETTING_WORDS[key] ?? fieldWords(key)}: ${valueWords(key, change.from)} → ${valueWords(key, change.to)}`);
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
