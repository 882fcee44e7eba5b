// The page's only way to the data: the GraphQL API at /graphql, with the admin's
// token as a bearer token. The token lives in sessionStorage: it survives a reload
// but is gone when the browser tab closes.
// First the transport (session, errors), then the operations the page runs.
import { inspectToken } from './format.js';

const TOKEN_KEY = 'bpd-webhooks.token';

export const session = {
  token: () => sessionStorage.getItem(TOKEN_KEY),
  save: (token) => sessionStorage.setItem(TOKEN_KEY, token),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/**
 * An error the page can explain. kind: 'signed-out' (no token), 'expired',
 * 'rejected' (the server does not accept the token), 'forbidden' (a read-only token
 * tried a change), 'network', 'api'.
 */
export class ApiError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

const GET_A_TOKEN = 'Get a new one with "npm run token -- --company <your company id>".';

/** Runs one GraphQL operation; resolves with its data or rejects with an ApiError. */
export async function graphql(query, variables = {}) {
  const token = session.token();
  if (!token) throw new ApiError('signed-out', 'Paste a token to sign in.');
  const seen = inspectToken(token);
  if (seen.problem === 'expired') throw new ApiError('expired', expiredWords(seen.claims));

  let response;
  try {
    response = await fetch('/graphql', {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/graphql-response+json, application/json',
        authorization: `Bearer ${token}`,
      },
      body: JSON.stringify({ query, variables }),
    });
  } catch {
    throw new ApiError('network', 'The server cannot be reached. Is "npm start" running?');
  }

  let body = null;
  try {
    body = await response.json();
  } catch {
    // a proxy's HTML error page, or an empty reply: judged by its status below
  }
  const errors = body?.errors ?? [];
  const message = errors.map((e) => e.message).join('; ');
  // the API answers 401 for a missing, malformed, forged or expired token, and only then
  if (response.status === 401) {
    if (/expired|"exp" claim/i.test(message)) throw new ApiError('expired', `This token has expired. ${GET_A_TOKEN}`);
    throw new ApiError('rejected', `The server does not accept this token${message ? ` (${message})` : ''}. ${GET_A_TOKEN}`);
  }
  if (errors.some((e) => e.extensions?.code === '42501')) {
    throw new ApiError('forbidden', 'This token may only read. Disabling, enabling and replaying need an admin token.');
  }
  if (errors.length) throw new ApiError('api', message);
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

/** GraphQL enum CONTACT_STATUS_ADDED → "contact.status_added" */
function actionName(value) {
  return value.replace(/^CONTACT_/, 'contact.').toLowerCase();
}

/** A row of webhookReport in the page's terms. */
function reportRowOf(node) {
  return {
    id: node.webhookId,
    name: node.name,
    url: node.url,
    actions: node.actions.map(actionName),
    status: node.statusId ? { id: node.statusId, name: node.statusName ?? `status #${node.statusId}` } : null,
    user: node.userId ? { id: node.userId, name: node.userName ?? `user #${node.userId}` } : null,
    createdAt: node.createdAt,
    enabled: node.enabled,
    disabledAt: node.disabledAt,
    disabledBy: node.disabledBy,
    disabledReason: node.disabledReason,
    ignoreSources: node.ignoreSources ?? [],
    watchFields: node.watchFields ?? [],
    conditions: node.conditions ?? null,
    timesFired: Number(node.timesFired),
    timesSucceeded: Number(node.timesSucceeded),
    timesFailed: Number(node.timesFailed),
    timesPending: Number(node.timesPending),
  };
}

const REPORT_FIELDS = `
  webhookId name url actions statusId statusName userId userName createdAt
  enabled disabledAt disabledBy disabledReason ignoreSources watchFields conditions
  timesFired timesSucceeded timesFailed timesPending
`;

const REPORT = /* GraphQL */ `
  query Report($since: Datetime, $until: Datetime) {
    currentCompanyName
    webhookReport(since: $since, until: $until) { nodes { ${REPORT_FIELDS} } }
  }
`;

/** Every webhook of the company, newest first, with its counts for [from, to). */
export async function fetchReport({ from, to }) {
  const data = await graphql(REPORT, { since: from, until: to });
  return { companyName: data.currentCompanyName, webhooks: data.webhookReport.nodes.map(reportRowOf) };
}

const FIRING_FIELDS = `
  id messageId action contactId state attempts
  lastStatusCode lastError lastAttemptAt completedAt createdAt nextAttemptAt payload
`;

// The webhook's line of the report gives the history its facts and the same counts
// as the table; "pending" is counted apart, as the report's pending includes firings
// being sent at this moment.
const HISTORY = /* GraphQL */ `
  query History($id: BigInt!, $since: Datetime, $until: Datetime, $state: String, $first: Int!, $offset: Int!) {
    currentCompanyName
    webhookReport(since: $since, until: $until) { nodes { ${REPORT_FIELDS} } }
    webhookById(id: $id) {
      pending: history(since: $since, until: $until, state: "pending", first: 0) { totalCount }
      page: history(since: $since, until: $until, state: $state, first: $first, offset: $offset) {
        totalCount
        nodes { ${FIRING_FIELDS} }
      }
    }
  }
`;

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
    payload: node.payload,
  };
}

/**
 * One page of a webhook's firings in [from, to), newest first, optionally only those
 * in one state; with the counts per outcome. webhook is null when it is not the
 * company's (or does not exist: the API does not say which).
 */
export async function fetchHistory({ webhookId, from, to, state, offset, first }) {
  const data = await graphql(HISTORY, { id: webhookId, since: from, until: to, state, first, offset });
  const row = data.webhookReport.nodes.find((node) => node.webhookId === webhookId);
  const node = data.webhookById;
  if (!row || !node) return { companyName: data.currentCompanyName, webhook: null };
  const webhook = reportRowOf(row);
  return {
    companyName: data.currentCompanyName,
    webhook,
    counts: {
      all: webhook.timesFired,
      succeeded: webhook.timesSucceeded,
      failed: webhook.timesFailed,
      pending: node.pending.totalCount,
    },
    totalCount: node.page.totalCount,
    firings: node.page.nodes.map(firingOf),
  };
}

const ATTEMPTS = /* GraphQL */ `
  query Attempts($id: BigInt!) {
    deliveryById(id: $id) {
      deliveryAttemptsByDeliveryId(orderBy: ATTEMPT_ASC) {
        nodes { attempt attemptedAt durationMs statusCode error responseBody }
      }
    }
  }
`;

/** Each HTTP attempt of one firing, first to last. */
export async function fetchAttempts(deliveryId) {
  const data = await graphql(ATTEMPTS, { id: deliveryId });
  return data.deliveryById?.deliveryAttemptsByDeliveryId.nodes ?? [];
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
