// The GraphQL operations of the page (relay/api/OPERATIONS.md), each returning plain
// objects in the page's own terms: actions as in SQL and payloads ("contact.created"),
// counts as numbers.
import { graphql } from './api.js';

/** GraphQL enum CONTACT_STATUS_ADDED → "contact.status_added" */
function actionName(value) {
  return value.replace(/^CONTACT_/, 'contact.').toLowerCase();
}

function webhookOf(node, names) {
  return {
    id: node.id ?? node.webhookId,
    name: node.name,
    url: node.url,
    actions: node.actions.map(actionName),
    status: node.statusId ? { id: node.statusId, name: names?.statusName ?? `status #${node.statusId}` } : null,
    user: node.userId ? { id: node.userId, name: names?.userName ?? `user #${node.userId}` } : null,
    createdAt: node.createdAt,
    enabled: node.enabled,
    disabledAt: node.disabledAt ?? null,
    disabledBy: node.disabledBy ?? null,
    disabledReason: node.disabledReason ?? null,
  };
}

const REPORT = /* GraphQL */ `
  query Report($since: Datetime, $until: Datetime) {
    currentCompanyName
    webhookReport(since: $since, until: $until) {
      nodes {
        webhookId name url actions statusId userId createdAt
        enabled disabledAt disabledBy disabledReason
        timesFired timesSucceeded timesFailed timesPending
      }
    }
    allWebhooks { nodes { id statusName userName } }
  }
`;

/** Every webhook of the company, newest first, with its counts for [from, to). */
export async function fetchReport({ from, to }) {
  const data = await graphql(REPORT, { since: from, until: to });
  const names = new Map(data.allWebhooks.nodes.map((n) => [n.id, n]));
  return {
    companyName: data.currentCompanyName,
    webhooks: data.webhookReport.nodes.map((node) => ({
      ...webhookOf(node, names.get(node.webhookId)),
      timesFired: Number(node.timesFired),
      timesSucceeded: Number(node.timesSucceeded),
      timesFailed: Number(node.timesFailed),
      timesPending: Number(node.timesPending),
    })),
  };
}

const FIRING_FIELDS = `
  id messageId action contactId state attempts
  lastStatusCode lastError lastAttemptAt completedAt createdAt nextAttemptAt payload
`;

const HISTORY = /* GraphQL */ `
  query History($id: BigInt!, $since: Datetime, $until: Datetime, $state: String, $first: Int!, $offset: Int!) {
    currentCompanyName
    webhookById(id: $id) {
      id name url actions statusId userId createdAt enabled disabledAt disabledBy disabledReason
      statusName userName
      all: history(since: $since, until: $until, first: 0) { totalCount }
      succeeded: history(since: $since, until: $until, state: "succeeded", first: 0) { totalCount }
      failed: history(since: $since, until: $until, state: "failed", first: 0) { totalCount }
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
  const node = data.webhookById;
  if (!node) return { companyName: data.currentCompanyName, webhook: null };
  return {
    companyName: data.currentCompanyName,
    webhook: webhookOf(node, node),
    counts: {
      all: node.all.totalCount,
      succeeded: node.succeeded.totalCount,
      failed: node.failed.totalCount,
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
        nodes { attempt attemptedAt durationMs statusCode error }
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
