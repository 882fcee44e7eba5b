// The page's only way to the data: the GraphQL API at /graphql, with the admin's
// token as a bearer token. The token lives in sessionStorage: it survives a reload
// but is gone when the browser tab closes.
// First the transport (session, errors), then the operations the page runs.
import { crmName, inspectToken } from './format.js';

const TOKEN_KEY = 'bpd-webhooks.token';

/** The rule of updateWebhook's refusal of a change made over another made since the form read the webhook (sql/45_admin.sql). */
export const CHANGED_SINCE_RULE = 'webhook_changed_since';

// Counts sign-ins and sign-outs on this page: an answer to a request sent before the
// last of them is the admin before's, and must not show to the next one (their
// "Test delivered…", a form's saved, in the same company's page)
let signIns = 0;

export const session = {
  token: () => sessionStorage.getItem(TOKEN_KEY),
  save: (token) => {
    signIns++;
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  clear: () => {
    signIns++;
    sessionStorage.removeItem(TOKEN_KEY);
  },
  /** Which sign-in is current: compared with one taken before, whether the admin is still the one then signed in. */
  era: () => signIns,
};

/**
 * An error the page can explain. kind: 'signed-out' (no token), 'superseded' (the
 * answer came after its admin signed out: nothing of it is shown), 'expired',
 * 'rejected' (the server does not accept the token), 'forbidden' (a read-only token
 * tried a change), 'network', 'no-answer' (none within ANSWER_WAIT_MS), 'server' (it,
 * or a proxy before it, failed: HTTP 5xx), 'api'.
 */
export class ApiError extends Error {
  /**
   * field: the input the database blamed (extensions.column), rule: the rule it broke
   * (extensions.constraint); code and limit: a limit of the API's that the request
   * went past (extensions.code and .limit: PAGE_TOO_LARGE, REQUEST_TOO_LARGE, docs/api-limits.md)
   */
  constructor(kind, message, { field = null, rule = null, code = null, limit = null } = {}) {
    super(message);
    this.kind = kind;
    this.field = field;
    this.rule = rule;
    this.code = code;
    this.limit = limit;
  }
}

// (in words an admin can act on: who issues tokens is the operator's business, and
// how, docs/page.md)
const GET_A_TOKEN = 'Ask whoever runs webhooks for your company for a new admin token.';

// a request refused for its company's turn (429), or ended by the database to break a
// deadlock (TRY_AGAIN), is sent again this many times
const MAX_REFUSALS = 5;

/**
 * How long the page waits for the server's answer to one request, body and all: a
 * hung proxy, or a server that accepts and never replies, would otherwise keep the
 * page busy for good, with nothing said. Longer than the API's own statement timeout
 * (docs/api-limits.md), so that a slow answer the server will give is not cut off.
 */
export const ANSWER_WAIT_MS = 30_000;

const NO_ANSWER = `The server did not answer within ${ANSWER_WAIT_MS / 1000} seconds. ` +
  'A change you asked for may or may not have been made; try again, or reload the page to see.';

/** The wait a 429 asks for (its Retry-After, in seconds), from a quarter second to five. */
function retryAfterMs(response) {
  const seconds = Number(response.headers.get('retry-after'));
  return Math.min(5_000, Math.max(250, Number.isFinite(seconds) ? seconds * 1000 : 1000));
}

/**
 * Runs one GraphQL operation; resolves with its data or rejects with an ApiError. Its
 * answer, or its failure, that comes after a sign-out or sign-in is the admin before's:
 * rejected as 'superseded', which the page shows nothing of.
 */
export async function graphql(query, variables = {}) {
  const era = session.era();
  let data;
  try {
    data = await answer(query, variables);
  } catch (error) {
    if (session.era() !== era) throw new ApiError('superseded', 'Signed out before the answer came.');
    throw error;
  }
  if (session.era() !== era) throw new ApiError('superseded', 'Signed out before the answer came.');
  return data;
}

async function answer(query, variables) {
  const token = session.token();
  if (!token) throw new ApiError('signed-out', 'Paste a token to sign in.');
  // whether the token expired is the API's to say, by its clock: judged by the
  // browser's, a laptop whose clock ran ahead refused the last minutes of a valid token
  // (and one behind sent expired tokens all the same)

  let response;
  let body = null;
  for (let refusals = 0; ; refusals++) {
    const bounded = new AbortController();
    // (a timer of the page's own, rather than AbortSignal.timeout: one clock for all of
    // the page's waits)
    const timer = setTimeout(() => bounded.abort(), ANSWER_WAIT_MS);
    try {
      response = await fetch('/graphql', {
        signal: bounded.signal,
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/graphql-response+json, application/json',
          authorization: `Bearer ${token}`,
        },
        body: JSON.stringify({ query, variables }),
      });
    } catch {
      clearTimeout(timer);
      if (bounded.signal.aborted) throw new ApiError('no-answer', NO_ANSWER);
      throw new ApiError('network', 'The server cannot be reached. Check your network connection and try again; ' +
        'if it stays out of reach, tell whoever runs webhooks for your company.');
    }
    // 429: the company's requests had their turns taken, or its new texts their time
    // to be planned (docs/api-limits.md). The server refuses before running anything,
    // so a change is safe to send again: after Retry-After, a few times, and only then
    // is the refusal shown
    if (response.status === 429 && refusals < MAX_REFUSALS) {
      clearTimeout(timer);
      await new Promise((resolve) => setTimeout(resolve, retryAfterMs(response)));
      continue;
    }
    body = null;
    try {
      body = await response.json();
    } catch {
      // a proxy's HTML error page, or an empty reply: judged by its status below
      if (bounded.signal.aborted) throw new ApiError('no-answer', NO_ANSWER);
    } finally {
      clearTimeout(timer);
    }
    // TRY_AGAIN: the database ended the request to break a deadlock, and kept nothing
    // of it (docs/api.md): sent again at once, a few times
    if (!body?.errors?.some((e) => e.extensions?.code === 'TRY_AGAIN') || refusals >= MAX_REFUSALS) break;
  }

  const errors = body?.errors ?? [];
  const message = errors.map((e) => e.message).join('; ');
  // the API answers 401 for a missing, malformed, forged or expired token, and only then
  if (response.status === 401) {
    // (the API names the claim it refused: "exp", for a token expired by its clock or
    // living longer than it accepts; jose's words for an expired one)
    const expired = errors.some((e) => e.extensions?.claim === 'exp' && /"exp" claim timestamp check failed|expired/i.test(e.message));
    if (expired) {
      const { claims } = inspectToken(token);
      throw new ApiError('expired', typeof claims?.exp === 'number' ? expiredWords(claims) : `This token has expired. ${GET_A_TOKEN}`);
    }
    throw new ApiError('rejected', `The server does not accept this token${message ? ` (${message})` : ''}. ${GET_A_TOKEN}`);
  }
  if (errors.some((e) => e.extensions?.code === '42501')) {
    throw new ApiError('forbidden', 'This token may only read. Changing webhooks needs an admin token.');
  }
  // the server or a proxy before it failed (a 502 page, the API's own "internal error"):
  // said as such, not as a refusal of what was asked. An error the API named (a code)
  // is its answer, whatever the status
  if (response.status >= 500 && !errors.some((e) => e.extensions?.code)) {
    const why = message ? `: ${message}` : response.statusText ? ` ${response.statusText}` : '';
    throw new ApiError('server', `The server could not answer (HTTP ${response.status}${why}). Try again in a moment.`);
  }
  if (errors.length) {
    const blamed = errors.find((e) => e.extensions?.column) ?? errors[0];
    const limit = Number(blamed.extensions?.limit);
    throw new ApiError('api', message, {
      field: blamed.extensions?.column ?? null,
      rule: blamed.extensions?.constraint ?? null,
      code: blamed.extensions?.code ?? null,
      limit: Number.isSafeInteger(limit) && limit > 0 ? limit : null,
    });
  }
  if (!response.ok || !body?.data) throw new ApiError('api', `The server answered ${response.status} ${response.statusText}.`);
  return body.data;
}

function expiredWords(claims) {
  const when = new Date(claims.exp * 1000).toLocaleString('en-US');
  return `This token expired on ${when}. ${GET_A_TOKEN}`;
}

// ---- the operations ------------------------------------------------------------
// The page's GraphQL operations (docs/api.md), each returning plain
// objects in the page's own terms: actions as in SQL and payloads ("contact.created"),
// counts as numbers.

/** GraphQL enum CONTACT_STATUS_ADDED → "contact.status_added", WEBHOOK_TEST → "webhook.test" */
function actionName(value) {
  return value.replace(/^(CONTACT|WEBHOOK)_/, (_, prefix) => `${prefix}.`).toLowerCase();
}

/** "contact.status_added" → the GraphQL enum CONTACT_STATUS_ADDED */
function actionEnum(action) {
  return action.replace('.', '_').toUpperCase();
}

/** A row of webhookReport in the page's terms. */
function reportRowOf(node) {
  return {
    id: node.webhookId,
    name: node.name,
    url: node.url,
    actions: node.actions.map(actionName),
    fields: node.fields,
    status: node.statusId ? { id: node.statusId, name: crmName(node.statusName ?? `status #${node.statusId}`) } : null,
    user: node.userId ? { id: node.userId, name: crmName(node.userName ?? `user #${node.userId}`) } : null,
    createdAt: node.createdAt,
    enabled: node.enabled,
    disabledAt: node.disabledAt,
    disabledBy: node.disabledBy,
    disabledReason: node.disabledReason,
    deletedFilterTarget: node.deletedFilterTarget ?? null,
    ignoreSources: node.ignoreSources ?? [],
    watchFields: node.watchFields ?? [],
    conditions: node.conditions ?? null,
    timesFired: Number(node.timesFired),
    timesSucceeded: Number(node.timesSucceeded),
    timesFailed: Number(node.timesFailed),
    timesPending: Number(node.timesPending),
    failuresInARow: node.failuresInARow ?? 0,
    failingSince: node.failingSince,
    pausedUntil: node.pausedUntil,
    disablesAt: node.disablesAt,
  };
}

const COUNT_FIELDS = 'timesFired timesSucceeded timesFailed timesPending';
const ROW_FIELDS = `
  webhookId name url actions fields statusId statusName userId userName createdAt
  enabled disabledAt disabledBy disabledReason deletedFilterTarget ignoreSources watchFields conditions
  failuresInARow failingSince pausedUntil disablesAt
`;
const REPORT_FIELDS = `${ROW_FIELDS} ${COUNT_FIELDS}`;

// The report's counts are asked once, of every webhook at once (webhookReportCounts),
// and its rows page by page without them (withCounts: false): each page of
// webhookReport with its counts counted every webhook of the company again (a company
// may have more than a page, webhooks.max_webhooks_per_company; docs/api.md)
const REPORT_PAGE = `pageInfo { hasNextPage endCursor } nodes { ${ROW_FIELDS} }`;
export const REPORT = /* GraphQL */ `
  query Report($since: Datetime, $until: Datetime) {
    currentCompanyName
    webhookReportCounts(since: $since, until: $until)
    webhookReport(withCounts: false) { ${REPORT_PAGE} }
  }
`;
// The page after one is asked after its last row (afterCreatedAt, afterId), which
// reads that page's webhooks alone; a cursor (after) is an offset, and each page read
// and sorted every webhook of the company (docs/api.md)
const MORE_REPORT = /* GraphQL */ `
  query MoreReport($afterCreatedAt: Datetime, $afterId: BigInt) {
    webhookReport(withCounts: false, afterCreatedAt: $afterCreatedAt, afterId: $afterId) { ${REPORT_PAGE} }
  }
`;

/**
 * Every node of a connection: its first page as given, then each next page asked with
 * `next(cursor, lastNode)` (the page's end cursor and its last node) until the last. A connection gives the API's default page unless
 * asked for more (API_DEFAULT_PAGE_SIZE, 100), and a company may have more webhooks
 * (webhooks.max_webhooks_per_company) than that: the rest were missing from the page.
 */
async function allNodes(first, next) {
  const nodes = [...first.nodes];
  for (let page = first; page.pageInfo.hasNextPage;) {
    page = await next(page.pageInfo.endCursor, page.nodes.at(-1));
    nodes.push(...page.nodes);
  }
  return nodes;
}

/** Every webhook of the company, newest first, with its counts for [from, to). */
export async function fetchReport({ from, to }) {
  const data = await graphql(REPORT, { since: from, until: to });
  const nodes = await allNodes(data.webhookReport, async (_cursor, last) =>
    (await graphql(MORE_REPORT, { afterCreatedAt: last.createdAt, afterId: last.webhookId })).webhookReport);
  const counts = data.webhookReportCounts ?? {};
  // (none: a webhook made after the counts were asked, which has fired nothing yet)
  const none = { fired: 0, succeeded: 0, failed: 0, pending: 0 };
  // by id: a webhook made between two pages moves the later ones down by one
  const webhooks = new Map(nodes.map((node) => {
    const counted = counts[node.webhookId] ?? none;
    return [node.webhookId, reportRowOf({
      ...node, timesFired: counted.fired, timesSucceeded: counted.succeeded, timesFailed: counted.failed, timesPending: counted.pending,
    })];
  }));
  return { companyName: data.currentCompanyName, webhooks: [...webhooks.values()] };
}

const WEBHOOK = /* GraphQL */ `
  query Webhook($id: BigInt!, $since: Datetime, $until: Datetime) {
    currentCompanyName
    webhookReport(webhookId: $id, since: $since, until: $until) { nodes { ${REPORT_FIELDS} } }
  }
`;

/**
 * One webhook of the company as the report has it, with its counts for [from, to)
 * (none: of all time) (null: not the company's): for its edit form, and its row of
 * the report drawn again after a change of it.
 */
export async function fetchWebhook(webhookId, { from = null, to = null } = {}) {
  const data = await graphql(WEBHOOK, { id: webhookId, since: from, until: to });
  const node = data.webhookReport.nodes.find((n) => n.webhookId === webhookId);
  return { companyName: data.currentCompanyName, webhook: node ? reportRowOf(node) : null };
}

const FIRING_FIELDS = `
  id messageId action contactId state attempts
  lastStatusCode lastError lastAttemptAt completedAt createdAt nextAttemptAt heldBack contactName
`;

// The webhook's line of the report (asked for that webhook alone) gives the history
// its facts and Times Fired, the table's count. Each outcome filter counts what it
// lists (historyCounts, the four at once: four historyCount fields counted the same
// days four times): test sends too, which the history shows and Times Fired leaves
// out (until 2026-12-07 the filters had the report's counts, "Failure 0" over a failed
// test listed under it); "pending" apart from "in flight", as the report's pending
// includes firings being sent at this moment. The page of firings is
// asked of `history` (newest first) or, for a page nearer the history's oldest end, of
// `historyOldestFirst`: an offset past the rest of the history would have the
// database read every row before the page (docs/api.md). The page next to one shown is
// asked after a row of it (afterCreatedAt, afterId), which costs what the first page
// costs at any depth.
const historyQuery = (connection) => /* GraphQL */ `
  query History($id: BigInt!, $since: Datetime, $until: Datetime, $state: String, $first: Int!, $offset: Int!,
                $afterCreatedAt: Datetime, $afterId: BigInt) {
    currentCompanyName
    keptSince
    webhookReport(since: $since, until: $until, webhookId: $id) { nodes { ${REPORT_FIELDS} } }
    webhookById(id: $id) {
      counts: historyCounts(since: $since, until: $until) { total succeeded failed pending }
      page: ${connection}(since: $since, until: $until, state: $state, afterCreatedAt: $afterCreatedAt, afterId: $afterId,
                          first: $first, offset: $offset) {
        nodes { ${FIRING_FIELDS} }
      }
    }
  }
`;
const HISTORY = historyQuery('history');
const HISTORY_FROM_OLDEST = historyQuery('historyOldestFirst');

const HISTORY_COUNT = /* GraphQL */ `
  query HistoryCount($id: BigInt!, $since: Datetime, $until: Datetime, $state: String) {
    webhookById(id: $id) { total: historyCount(since: $since, until: $until, state: $state) }
  }
`;

/** How many firings a webhook's history holds in [from, to), in one state or all (null: not the company's webhook). */
export async function fetchHistoryCount({ webhookId, from, to, state }) {
  const node = (await graphql(HISTORY_COUNT, { id: webhookId, since: from, until: to, state })).webhookById;
  return node ? Number(node.total) : null;
}

function firingOf(node) {
  return {
    id: node.id,
    messageId: node.messageId,
    action: actionName(node.action),
    contactId: node.contactId,
    state: node.state,
    attempts: node.attempts,
    lastStatusCode: node.lastStatusCode,
    lastError: node.lastError,
    lastAttemptAt: node.lastAttemptAt,
    completedAt: node.completedAt,
    createdAt: node.createdAt,
    nextAttemptAt: node.nextAttemptAt,
    heldBack: node.heldBack,
    // (the name alone: a row's payload is read when it is opened, fetchAttempts)
    contactName: node.contactName,
  };
}

/**
 * One page of a webhook's firings in [from, to), newest first, optionally only those
 * in one state; with the counts per outcome. fromOldest: offset and first count from
 * the history's oldest end. after ({ id, createdAt }: a firing as fetchHistory gives
 * it): the page starts after that firing, in the order asked (newest first: the
 * older ones; fromOldest: the newer ones). webhook is null when it is not the
 * company's (or does not exist: the API does not say which).
 */
export async function fetchHistory({ webhookId, from, to, state, offset, first, fromOldest = false, after = null }) {
  const data = await graphql(fromOldest ? HISTORY_FROM_OLDEST : HISTORY, {
    id: webhookId, since: from, until: to, state, first, offset,
    afterCreatedAt: after?.createdAt ?? null, afterId: after?.id ?? null,
  });
  const row = data.webhookReport.nodes.find((node) => node.webhookId === webhookId);
  const node = data.webhookById;
  if (!row || !node) return { companyName: data.currentCompanyName, webhook: null };
  const webhook = reportRowOf(row);
  // what each outcome filter lists, test sends included (webhook.timesFired leaves them out)
  const counts = {
    all: Number(node.counts.total),
    succeeded: Number(node.counts.succeeded),
    failed: Number(node.counts.failed),
    pending: Number(node.counts.pending),
  };
  return {
    companyName: data.currentCompanyName,
    webhook,
    // where the kept history starts (null: nothing dropped yet): firings created
    // before it are gone, though Times Fired still includes them
    keptSince: data.keptSince,
    counts,
    // (the outcome's own count: one more count of the same was asked until 2026-12-07)
    totalCount: counts[state ?? 'all'],
    // newest first, however asked
    firings: (fromOldest ? [...node.page.nodes].reverse() : node.page.nodes).map(firingOf),
  };
}

const ATTEMPTS = /* GraphQL */ `
  query Attempts($id: BigInt!, $afterAttempt: Int, $afterId: BigInt, $first: Boolean!) {
    deliveryById(id: $id) @include(if: $first) { payloadText }
    deliveryAttemptsCount(deliveryId: $id) @include(if: $first)
    deliveryAttemptsCountedUpTo @include(if: $first)
    deliveryAttemptsLatestFirst(deliveryId: $id, afterAttempt: $afterAttempt, afterId: $afterId) {
      nodes { id attempt attemptedAt durationMs statusCode error responseBody succeeded }
    }
  }
`;

/**
 * HTTP attempts of one firing, latest first: the latest page, or with after ({ attempt,
 * id }: an attempt as this gives it) the page of those before it. A page deep in a
 * firing's attempts costs what the first does (an offset read every attempt before
 * it: docs/api.md). The page's attempts come first to last within it. A page is the
 * API's default (API_DEFAULT_PAGE_SIZE, 100), never more: a page asked larger than an
 * operator's API_MAX_PAGE_SIZE was refused, and with it the firing's attempts (as the
 * history of changes, below). With the first page, the firing's payload as sent (the
 * history's rows carry the contact's name alone): its text as the relay sent it
 * (payloadText), not its value, which parsed here lost a number's digits past
 * JavaScript's precision; and how many attempts it has in all (total; undefined with
 * a later page), counted up to the API's cap: past it, total is the cap and
 * totalIsAtLeast true (a delivery replayed thousands of times: the count read every
 * attempt).
 */
export async function fetchAttempts(deliveryId, after = null) {
  const first = after === null;
  const data = await graphql(ATTEMPTS, { id: deliveryId, afterAttempt: after?.attempt ?? null, afterId: after?.id ?? null, first });
  return {
    attempts: [...(data.deliveryAttemptsLatestFirst?.nodes ?? [])].reverse(),
    total: first ? Math.min(data.deliveryAttemptsCount ?? 0, data.deliveryAttemptsCountedUpTo) : undefined,
    totalIsAtLeast: first ? (data.deliveryAttemptsCount ?? 0) > data.deliveryAttemptsCountedUpTo : undefined,
    payload: first ? data.deliveryById?.payloadText ?? null : undefined,
  };
}

const DISABLE = /* GraphQL */ `
  mutation Disable($id: BigInt!) {
    disableWebhook(input: { id: $id }) { result { id enabled disabledAt disabledBy disabledReason } }
  }
`;
const ENABLE = /* GraphQL */ `
  mutation Enable($id: BigInt!) {
    enableWebhook(input: { id: $id }) { result { id enabled disabledAt disabledBy disabledReason } }
  }
`;

/** Disables or enables a webhook; resolves with its new status fields. */
export async function setWebhookEnabled(webhookId, enabled) {
  const data = await graphql(enabled ? ENABLE : DISABLE, { id: webhookId });
  return (enabled ? data.enableWebhook : data.disableWebhook).result;
}

const REPLAY = /* GraphQL */ `
  mutation Replay($id: BigInt!) {
    replayDelivery(input: { id: $id }) { result { ${FIRING_FIELDS} } }
  }
`;

/** Puts a firing back in the outbox (same message id); resolves with it, pending. */
export async function replayDelivery(deliveryId) {
  const data = await graphql(REPLAY, { id: deliveryId });
  return firingOf(data.replayDelivery.result);
}

// ---- setting webhooks up ---------------------------------------------------------

const SETUP_FACTS = /* GraphQL */ `query SetupFacts { contactFields inputBounds }`;

/**
 * What the setup form is made of: the contact fields a webhook may send (what it offers
 * to tick), and the most characters the API takes of what is typed into its boxes
 * (bounds: { name, url, search }, the database's own: webhooks.input_bounds).
 */
export async function fetchSetupFacts() {
  const data = await graphql(SETUP_FACTS);
  return { fields: data.contactFields, bounds: data.inputBounds };
}

// The setup form's pickers search as one types: a company may have 20,000 users, and
// the form read every one of them, a page of the API at a time (200 requests, each of
// which read all of them; past 10,000 the API refused the page, PAGE_TOO_DEEP, and the
// form did not open), for a list nobody could use
const SEARCH = {
  user: /* GraphQL */ `query SearchUsers($search: String) { companyChoicesUpTo found: companyUsersMatching(search: $search) { id name email } }`,
  status: /* GraphQL */ `query SearchStatuses($search: String) { companyChoicesUpTo found: companyStatusesMatching(search: $search) { id name } }`,
};

/**
 * The company's users or statuses (kind: 'user' or 'status') whose name, one of its
 * words (what whitespace or punctuation starts) or a user's email starts with search,
 * whatever the case (empty: the first ones by name): at
 * most the API's companyChoicesUpTo of them, and more: true when more match.
 */
export async function searchChoices(kind, search) {
  const data = await graphql(SEARCH[kind], { search });
  return {
    found: data.found.slice(0, data.companyChoicesUpTo).map((row) => ({ ...row, name: crmName(row.name) })),
    more: data.found.length > data.companyChoicesUpTo,
  };
}

const NAMED = /* GraphQL */ `
  query Named($users: [BigInt]!, $statuses: [BigInt]!) {
    companyUsersNamed(ids: $users) { id name }
    companyStatusesNamed(ids: $statuses) { id name }
  }
`;

/**
 * The names of the company's users and statuses of these ids: { users, statuses },
 * Maps of id → name (an id not the company's, or not there, has none). The history
 * of changes asks those its entries name, not every one of the company.
 */
export async function fetchNames({ users = [], statuses = [] }) {
  const data = await graphql(NAMED, { users, statuses });
  const byId = (rows) => new Map(rows.map((row) => [String(row.id), crmName(row.name)]));
  return { users: byId(data.companyUsersNamed), statuses: byId(data.companyStatusesNamed) };
}

const WEBHOOK_FIELDS = 'id name url fields actions statusId userId ignoreSources watchFields conditions enabled createdAt';

const CREATE = /* GraphQL */ `
  mutation Create($name: String!, $url: String!, $fields: [String]!, $actions: [Action]!, $statusId: BigInt, $userId: BigInt,
                  $ignoreSources: [String], $watchFields: [String], $conditions: JSON,
                  $maxInFlight: Int, $rateLimit: Int, $coalesceWindow: IntervalInput, $ordered: Boolean, $idempotencyKey: String) {
    createWebhook(input: { name: $name, url: $url, fields: $fields, actions: $actions, statusId: $statusId, userId: $userId,
                           ignoreSources: $ignoreSources, watchFields: $watchFields, conditions: $conditions,
                           maxInFlight: $maxInFlight, rateLimit: $rateLimit, coalesceWindow: $coalesceWindow, ordered: $ordered,
                           idempotencyKey: $idempotencyKey }) {
      result { secret webhook { ${WEBHOOK_FIELDS} } }
    }
  }
`;

/**
 * A key for one Create and its retries (createWebhook): 32 hex digits, random. Made by
 * getRandomValues, which pages served over plain http have too (randomUUID is for
 * secure contexts only).
 */
export function newIdempotencyKey() {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (byte) => byte.toString(16).padStart(2, '0')).join('');
}

/**
 * Creates a webhook with how its deliveries go, in one request (one transaction: a
 * delivery setting refused makes no webhook). setup: { name, url, fields, actions (as in
 * SQL), statusId, userId, ignoreSources, watchFields, conditions (an object, or null for
 * none) }; delivery: { maxInFlight, rateLimit, coalesceSeconds, ordered } (null: the
 * default); idempotencyKey: the form's (newIdempotencyKey), the same on each retry, so
 * that a Create sent again after its answer was lost answers the webhook the first made
 * (with its secret) instead of making a second.
 * Resolves with { webhook, secret }: the secret is never readable again.
 */
export async function createWebhook(setup, delivery, idempotencyKey) {
  const data = await graphql(CREATE, {
    name: setup.name,
    url: setup.url,
    fields: setup.fields,
    actions: setup.actions.map(actionEnum),
    statusId: setup.statusId || null,
    userId: setup.userId || null,
    ignoreSources: setup.ignoreSources,
    watchFields: setup.watchFields,
    conditions: setup.conditions,
    maxInFlight: delivery?.maxInFlight ?? null,
    rateLimit: delivery?.rateLimit ?? null,
    coalesceWindow: delivery?.coalesceSeconds == null ? null : { seconds: delivery.coalesceSeconds },
    ordered: delivery?.ordered ?? null,
    idempotencyKey: idempotencyKey ?? null,
  });
  const { webhook, secret } = data.createWebhook.result;
  return { webhook: { ...webhook, actions: webhook.actions.map(actionName) }, secret };
}

const UPDATE = /* GraphQL */ `
  mutation Update($id: BigInt!, $name: String, $url: String, $fields: [String], $actions: [Action],
                  $statusId: BigInt, $userId: BigInt, $clearStatusId: Boolean!, $clearUserId: Boolean!,
                  $ignoreSources: [String], $watchFields: [String], $conditions: JSON, $clearConditions: Boolean!,
                  $expectedVersion: Int) {
    updateWebhook(input: { id: $id, name: $name, url: $url, fields: $fields, actions: $actions,
                           statusId: $statusId, userId: $userId, clearStatusId: $clearStatusId, clearUserId: $clearUserId,
                           ignoreSources: $ignoreSources, watchFields: $watchFields,
                           conditions: $conditions, clearConditions: $clearConditions,
                           expectedVersion: $expectedVersion }) {
      result { ${WEBHOOK_FIELDS} version }
    }
  }
`;

/**
 * Saves a webhook's settings (the same shape as createWebhook's): those given, an empty
 * picker or filter clearing it; those left undefined stay as the database has them
 * (null to the API). setup.expectedVersion: the webhook's version as the form read it;
 * if another change was made since, nothing is saved and the API refuses it
 * (CHANGED_SINCE_RULE), so that one admin's Save does not undo another's.
 */
export async function updateWebhook(webhookId, setup) {
  const given = (key) => setup[key] !== undefined;
  const data = await graphql(UPDATE, {
    id: webhookId,
    name: setup.name ?? null,
    url: setup.url ?? null,
    fields: setup.fields ?? null,
    actions: setup.actions?.map(actionEnum) ?? null,
    statusId: setup.statusId || null,
    userId: setup.userId || null,
    clearStatusId: given('statusId') && !setup.statusId,
    clearUserId: given('userId') && !setup.userId,
    ignoreSources: setup.ignoreSources ?? null,
    watchFields: setup.watchFields ?? null,
    conditions: setup.conditions ?? null,
    clearConditions: setup.conditions === null,
    expectedVersion: setup.expectedVersion ?? null,
  });
  return data.updateWebhook.result;
}

const DELIVERY_SETTINGS = /* GraphQL */ `
  query DeliverySettings($id: BigInt!) {
    webhookById(id: $id) { maxInFlight rateLimit ordered coalesceWindow { seconds minutes hours } version }
  }
`;

/**
 * What the edit form of a webhook loads: the webhook (fetchWebhook, with its version,
 * which Save gives back so that a change made since is not overwritten: updateWebhook)
 * and how its deliveries go, { maxInFlight, rateLimit, coalesceSeconds, ordered } (null:
 * the default: the engine's cap, no pacing, no coalescing); null both, not the company's.
 * The version is read with the delivery settings, before the rest: a change between
 * the two reads leaves the form a version older than what it shows, and its Save is
 * refused; read after it (or beside it, in any order), the form could show the settings
 * before a change with the version after it, and Save would undo that change without a word.
 */
export async function fetchWebhookToEdit(webhookId) {
  const w = (await graphql(DELIVERY_SETTINGS, { id: webhookId })).webhookById;
  if (!w) return { found: null, delivery: null };
  const found = await fetchWebhook(webhookId);
  return { found: found.webhook ? { ...found, webhook: { ...found.webhook, version: w.version } } : found, delivery: deliverySettingsOf(w) };
}

function deliverySettingsOf(w) {
  if (!w) return null;
  const window = w.coalesceWindow;
  return {
    maxInFlight: w.maxInFlight,
    rateLimit: w.rateLimit,
    // the window is at most an hour (the database's rule), so these three say it all
    coalesceSeconds: window ? Math.round((window.hours ?? 0) * 3600 + (window.minutes ?? 0) * 60 + (window.seconds ?? 0)) : null,
    ordered: w.ordered,
  };
}

const SAVE_LIMITS = /* GraphQL */ `
  mutation SaveLimits($id: BigInt!, $maxInFlight: Int, $rateLimit: Int, $clearMaxInFlight: Boolean!, $clearRateLimit: Boolean!) {
    updateWebhook(input: { id: $id, maxInFlight: $maxInFlight, rateLimit: $rateLimit,
                           clearMaxInFlight: $clearMaxInFlight, clearRateLimit: $clearRateLimit }) { result { id version } }
  }
`;

const SAVE_DELIVERY = /* GraphQL */ `
  mutation SaveDelivery($id: BigInt!, $window: IntervalInput, $ordered: Boolean) {
    setWebhookDelivery(input: { id: $id, coalesceWindow: $window, ordered: $ordered }) { result { id version } }
  }
`;

/**
 * Saves how a webhook's deliveries go (the shape fetchWebhookToEdit gives; null: the
 * default): those that differ from `before` (as the form had them) alone, so that what
 * another admin changed meanwhile in the others stays. A setting of setWebhookDelivery
 * left out (its variable not given) stays as the database has it. They take two
 * requests: after each one saved, written(settings saved, the webhook's version now),
 * so that a Save whose second request fails knows what its first one did.
 */
export async function saveDeliverySettings(webhookId, settings, before, written = () => {}) {
  const cap = settings.maxInFlight !== before.maxInFlight;
  const rate = settings.rateLimit !== before.rateLimit;
  if (cap || rate) {
    const data = await graphql(SAVE_LIMITS, {
      id: webhookId,
      maxInFlight: cap ? settings.maxInFlight : null,
      rateLimit: rate ? settings.rateLimit : null,
      clearMaxInFlight: cap && settings.maxInFlight === null,
      clearRateLimit: rate && settings.rateLimit === null,
    });
    written({ maxInFlight: settings.maxInFlight, rateLimit: settings.rateLimit }, data.updateWebhook.result.version);
  }
  const window = settings.coalesceSeconds !== before.coalesceSeconds;
  const ordered = settings.ordered !== before.ordered;
  if (!window && !ordered) return;
  const variables = { id: webhookId };
  if (window) variables.window = settings.coalesceSeconds === null ? null : { seconds: settings.coalesceSeconds };
  if (ordered) variables.ordered = settings.ordered;
  const data = await graphql(SAVE_DELIVERY, variables);
  written({ coalesceSeconds: settings.coalesceSeconds, ordered: settings.ordered }, data.setWebhookDelivery.result.version);
}

const DELETE = /* GraphQL */ `
  mutation Delete($id: BigInt!) { deleteWebhook(input: { id: $id }) { result { id name } } }
`;

/** Deletes a webhook and its history. */
export async function deleteWebhook(webhookId) {
  return (await graphql(DELETE, { id: webhookId })).deleteWebhook.result;
}

const ROTATE = /* GraphQL */ `
  mutation Rotate($id: BigInt!) { rotateWebhookSecret(input: { id: $id }) { result { secret previousSecretExpiresAt } } }
`;

/** A new signing secret, shown this once; the previous one keeps working until previousSecretExpiresAt. */
export async function rotateSecret(webhookId) {
  return (await graphql(ROTATE, { id: webhookId })).rotateWebhookSecret.result;
}

const SEND_TEST = /* GraphQL */ `
  mutation SendTest($id: BigInt!) { sendTestWebhook(input: { id: $id }) { result { ${FIRING_FIELDS} } } }
`;

/** Queues one signed webhook.test delivery with a sample contact; resolves with it, pending. */
export async function sendTest(webhookId) {
  return firingOf((await graphql(SEND_TEST, { id: webhookId })).sendTestWebhook.result);
}

const FIRING = /* GraphQL */ `
  query Firing($id: BigInt!) { deliveryById(id: $id) { ${FIRING_FIELDS} } }
`;

/** One firing as it is now, or null. */
export async function fetchFiring(deliveryId) {
  const node = (await graphql(FIRING, { id: deliveryId })).deliveryById;
  return node ? firingOf(node) : null;
}

const AUDIT = /* GraphQL */ `
  query Audit($id: BigInt!) {
    webhookById(id: $id) { auditLog { pageInfo { hasNextPage } nodes { id at actor action details } } }
  }
`;

/**
 * The webhook's history of changes, newest first (the API's default page of them, 100),
 * and whether there are older ones (the API counts none: a log kept for good may be long).
 */
export async function fetchAuditLog(webhookId) {
  const log = (await graphql(AUDIT, { id: webhookId })).webhookById?.auditLog;
  return { older: log?.pageInfo.hasNextPage ?? false, entries: log?.nodes ?? [] };
}

// ---- backfill ------------------------------------------------------------------

const BACKFILLS = /* GraphQL */ `
  query Backfills($webhookIds: [BigInt], $after: Cursor) {
    latestBackfills(webhookIds: $webhookIds, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes { id webhookId state total queued unfinished failed createdAt finishedAt error }
    }
  }
`;

/** A backfill in the page's terms: counts as numbers; sent = queued and finished. */
function backfillOf(node) {
  const queued = Number(node.queued);
  return {
    id: node.id,
    webhookId: node.webhookId,
    state: node.state,
    total: node.total === null ? null : Number(node.total),
    queued,
    sent: queued - Number(node.unfinished),
    failed: Number(node.failed),
    createdAt: node.createdAt,
    finishedAt: node.finishedAt,
    error: node.error,
  };
}

/**
 * The latest backfill of each webhook of the company, by webhook id; of the webhooks
 * in webhookIds alone (null: of all). latestBackfills reads one backfill a webhook,
 * however many the company has run (all of them, every page of allBackfills, until
 * 2026-12-06). The report asks for every webhook's; its progress bars, every second,
 * for those of the backfills still going (every webhook's, every page, until
 * 2026-12-06). A company of more webhooks than the API's page (API_DEFAULT_PAGE_SIZE)
 * has more pages.
 */
export async function fetchBackfills(webhookIds = null) {
  const ask = async (after) => (await graphql(BACKFILLS, { webhookIds, after })).latestBackfills;
  const nodes = await allNodes(await ask(null), ask);
  return new Map(nodes.map((node) => [node.webhookId, backfillOf(node)]));
}

const START_BACKFILL = /* GraphQL */ `
  mutation StartBackfill($id: BigInt!) { startBackfill(input: { webhookId: $id }) { result } }
`;

/** Starts a backfill of a webhook; resolves with its id. */
export async function startBackfill(webhookId) {
  const data = await graphql(START_BACKFILL, { id: webhookId });
  return data.startBackfill.result;
}

const BACKFILL_CONTACTS_COUNT = /* GraphQL */ `
  query BackfillContactsCount { backfillContactsCount backfillContactsCountedUpTo }
`;

/**
 * How many contacts a backfill of the company examines, as Backfill asks before it
 * starts: { count, more }, more when there are more than count (the API counts up to a
 * cap, backfillContactsCountedUpTo, and reads no more).
 */
export async function fetchBackfillContactsCount() {
  const data = await graphql(BACKFILL_CONTACTS_COUNT);
  const counted = Number(data.backfillContactsCount);
  const upTo = data.backfillContactsCountedUpTo;
  return { count: Math.min(counted, upTo), more: counted > upTo };
}

const CANCEL_BACKFILL = /* GraphQL */ `
  mutation CancelBackfill($id: BigInt!) { cancelBackfill(input: { id: $id }) { result { id state } } }
`;

/** Cancels a running backfill. */
export async function cancelBackfill(backfillId) {
  await graphql(CANCEL_BACKFILL, { id: backfillId });
}
