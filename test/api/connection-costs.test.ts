// What a tenant may ask of a connection costs about a page however much it holds: no
// connection counts more than a cap of its rows (totalCount), nor orders or filters by
// a column no index of its table serves under the company's filter (which sorts or
// reads every row of the company, within the statement timeout, for one page). The
// whole schema walked as an admin sees it: a connection added later is checked too.
import test from 'ava';
import { getNamedType, isEnumType, isInputObjectType, isObjectType, type GraphQLSchema } from 'postgraphile/graphql';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { apiSchema } from '../helpers/schema-inputs.ts';

const { api } = useTestDatabaseWithApi(test);

/** Each connection of the schema (Type.field) with what it offers: totalCount, its orders, its condition's fields. */
function connections(schema: GraphQLSchema): Record<string, { totalCount: boolean; orderBy: string[]; condition: string[] }> {
  const found: Record<string, { totalCount: boolean; orderBy: string[]; condition: string[] }> = {};
  for (const type of Object.values(schema.getTypeMap())) {
    if (!isObjectType(type) || type.name.startsWith('__')) continue;
    for (const field of Object.values(type.getFields())) {
      const returns = getNamedType(field.type);
      if (!isObjectType(returns) || !('pageInfo' in returns.getFields())) continue;
      const arg = (name: string) => field.args.find((candidate) => candidate.name === name);
      const orderBy = arg('orderBy') && getNamedType(arg('orderBy')!.type);
      const condition = arg('condition') && getNamedType(arg('condition')!.type);
      found[`${type.name}.${field.name}`] = {
        totalCount: 'totalCount' in returns.getFields(),
        orderBy: orderBy && isEnumType(orderBy) ? orderBy.getValues().map((value) => value.name).sort() : [],
        condition: condition && isInputObjectType(condition) ? Object.keys(condition.getFields()).sort() : [],
      };
    }
  }
  return found;
}

/** NATURAL, PRIMARY_KEY and each column, both ways. */
const orders = (...columns: string[]) =>
  ['NATURAL', ...['PRIMARY_KEY', ...columns].flatMap((column) => [`${column}_ASC`, `${column}_DESC`])].sort();

test('a delivery\'s attempts have no totalCount: it read every attempt of the delivery (deliveryAttemptsCount counts up to a cap)', async (t) => {
  const token = await api().token('1', 'webhook_viewer');
  for (const query of [
    '{ deliveryById(id: "1") { deliveryAttemptsByDeliveryId { totalCount } } }',
    '{ deliveryAttemptsLatestFirst(deliveryId: "1") { totalCount } }',
    '{ allDeliveryAttempts { totalCount } }',
  ]) {
    const response = await api().gql(token, query);
    t.is(response.errors?.[0]?.extensions?.code, 'GRAPHQL_VALIDATION_FAILED', query);
    t.regex(response.errors?.[0]?.message ?? '', /Cannot query field "totalCount" on type "DeliveryAttemptConnection"/, query);
  }
  const counted = await api().gql(token, '{ deliveryAttemptsCount(deliveryId: "1") deliveryAttemptsCountedUpTo }');
  t.deepEqual(counted.data, { deliveryAttemptsCount: 0, deliveryAttemptsCountedUpTo: 1000 });
});

test('every connection of the schema, as an admin sees it, and what bounds it: its totalCount, its orders and its conditions', async (t) => {
  const found = connections(await apiSchema(api(), await api().token('1')));
  // Deliveries: history's (company_id, id) and (webhook_id, company_id, created_at, id)
  // indexes (created_at: the history's own order, by day partitions). Attempts: the
  // (company_id, id) key and (delivery_id, attempt). Audit rows: (company_id, at, id) and
  // (webhook_id, at, id). Backfills: (company_id, id) and (webhook_id, created_at), a
  // few a webhook. Webhooks are few a company (webhooks.max_webhooks_per_company).
  const deliveries = { totalCount: false, orderBy: orders('ID', 'COMPANY_ID', 'CREATED_AT'), condition: ['companyId', 'id', 'webhookId'] };
  const attempts = { totalCount: false, orderBy: orders('ID', 'COMPANY_ID', 'ATTEMPT'), condition: ['companyId', 'deliveryId', 'id'] };
  const webhooks = { totalCount: true, orderBy: orders('ID', 'COMPANY_ID'), condition: ['companyId', 'id'] };
  const backfills = { totalCount: true, orderBy: orders('ID', 'COMPANY_ID', 'CREATED_AT'), condition: ['companyId', 'createdAt', 'id', 'webhookId'] };
  const auditLogs = { totalCount: false, orderBy: orders('ID', 'COMPANY_ID', 'AT'), condition: ['at', 'companyId', 'id', 'webhookId'] };
  // a function's rows: ordered and filtered by the function alone
  const functionRows = { totalCount: true, orderBy: [], condition: [] };
  t.deepEqual(found, {
    'Query.allDeliveries': deliveries,
    'Webhook.deliveriesByWebhookId': deliveries,
    // the function's own order (sql/55_report.sql) by default; its totalCount counts the
    // range's rows one by one, historyCount the same from the report's counts
    'Webhook.history': { ...deliveries, condition: [] },
    'Webhook.historyOldestFirst': { ...deliveries, condition: [] },
    'Query.allDeliveryAttempts': attempts,
    'Delivery.deliveryAttemptsByDeliveryId': attempts,
    'Query.deliveryAttemptsLatestFirst': { ...attempts, orderBy: [], condition: [] },
    'Query.allWebhooks': webhooks,
    'Query.allBackfills': backfills,
    'Webhook.backfillsByWebhookId': backfills,
    'Query.latestBackfills': functionRows,
    'Query.allAuditLogs': auditLogs,
    'Webhook.auditLog': { ...functionRows, totalCount: false },
    'Query.webhookReport': functionRows,
    'Query.companyStatuses': functionRows,
    'Query.companyUsers': functionRows,
    'Query.retrySchedule': functionRows,
  });
});
