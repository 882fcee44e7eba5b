// What a tenant may ask of a connection costs about a page however much it holds: no
// connection counts more than a cap of its rows (totalCount), nor orders or filters by
// a column no index of its table serves under the company's filter (which sorts or
// reads every row of the company, within the statement timeout, for one page). The
// whole schema walked as an admin sees it: a connection added later is checked too.
import test from 'ava';
import pg from 'pg';
import { getNamedType, isEnumType, isInputObjectType, isObjectType, type GraphQLSchema } from 'postgraphile/graphql';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';
import { asTheApi, rowsRead } from '../helpers/plans.ts';
import { apiSchema } from '../helpers/schema-inputs.ts';

const { db, api } = useTestDatabaseWithApi(test);

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

/** The webhook's first delivery, given `attempts` failed attempts (a delivery replayed by hand for days). */
async function replayedByHand(webhookId: string, companyId: string, attempts: number): Promise<{ id: string; created_at: Date }> {
  const { rows: [replayed] } = await db().pool.query(
    'select id, created_at from webhooks.delivery_history where webhook_id = $1 order by id limit 1', [webhookId]);
  await db().pool.query(
    `insert into webhooks.delivery_attempts (delivery_id, delivery_created_at, webhook_id, company_id, attempt, attempted_at,
                                             duration_ms, status_code)
     select $1, $2, $3, $4, n, $2::timestamptz + n * interval '1 second', 10, 500 from generate_series(1, $5::integer) n`,
    [replayed.id, replayed.created_at, webhookId, companyId, attempts]);
  return replayed;
}

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
  // few a webhook. Webhooks: few a company (webhooks.max_webhooks_per_company), and by
  // (company_id, created_at, id), the report's newest first.
  // (a webhook's deliveries are its deliveriesByWebhookId, a delivery's attempts its
  // deliveryAttemptsByDeliveryId: filtered by either, a company's list in id order read
  // every row of the webhook or the delivery, or of the company before them)
  const deliveries = { totalCount: false, orderBy: orders('ID', 'COMPANY_ID', 'CREATED_AT'), condition: ['companyId', 'id'] };
  const attempts = { totalCount: false, orderBy: orders('ID', 'COMPANY_ID', 'ATTEMPT'), condition: ['companyId', 'id'] };
  const webhooks = { totalCount: true, orderBy: orders('ID', 'COMPANY_ID', 'CREATED_AT'), condition: ['companyId', 'createdAt', 'id'] };
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
    // a page walks the company's index of names (sql/55_report.sql); a count would read all of it
    'Query.companyStatuses': { ...functionRows, totalCount: false },
    'Query.companyUsers': { ...functionRows, totalCount: false },
    'Query.retrySchedule': functionRows,
  });
});

test('a webhook\'s deliveries and a delivery\'s attempts are listed by default in an order their index gives, reading about a page', async (t) => {
  const schema = await apiSchema(api(), await api().token('1'));
  const defaultOrder = (type: string, field: string) =>
    (schema.getType(type) as import('postgraphile/graphql').GraphQLObjectType).getFields()[field]!.args.find((arg) => arg.name === 'orderBy')!.defaultValue;
  t.deepEqual(defaultOrder('Webhook', 'deliveriesByWebhookId'), ['CREATED_AT_ASC', 'ID_ASC']);
  t.deepEqual(defaultOrder('Delivery', 'deliveryAttemptsByDeliveryId'), ['ATTEMPT_ASC', 'ID_ASC']);
  t.deepEqual(defaultOrder('Webhook', 'history'), ['CREATED_AT_DESC', 'ID_DESC']);

  // what each order reads: a webhook of 3,000 deliveries over three days, written after
  // as many of another webhook of its company, one of them with 2,000 attempts (a
  // delivery replayed by hand for days)
  const f = factories(db().pool);
  const company = await f.company();
  const other = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  for (const webhookId of [other.id, hook.id]) {
    await db().pool.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at,
                                        last_status_code, created_at)
       select $1, $2, 'contact.created', d, '{}', 'failed', 1, now(), 500, now() - (d % 3) * interval '1 day'
       from generate_series(1, 3000) d`, [webhookId, company.id]);
  }
  // an attempt of each of the other webhook's, then the replayed delivery's
  await db().pool.query(
    `insert into webhooks.delivery_attempts (delivery_id, delivery_created_at, webhook_id, company_id, attempt, attempted_at,
                                             duration_ms, status_code)
     select id, created_at, webhook_id, company_id, 1, created_at, 10, 500 from webhooks.delivery_history where webhook_id = $1`,
    [other.id]);
  const replayed = await replayedByHand(hook.id, company.id, 2_000);
  await db().pool.query('analyze webhooks.delivery_history, webhooks.delivery_attempts');
  const client = await asTheApi(t, db().pool, company.id, {});
  const read = async (table: string, statement: string, id: string) => {
    const { rows: [row] } = await client.query(`explain (analyze, format json) ${statement}`, [id]);
    return rowsRead(row['QUERY PLAN'][0].Plan).get(table) ?? 0;
  };
  // a page of 10, as PostGraphile asks it (its order, then the key)
  const deliveries = (order: string) => read('delivery_history',
    `select id from webhooks.deliveries where webhook_id = $1 order by ${order} limit 11`, hook.id);
  const attempts = (order: string) => read('delivery_attempts',
    `select id from webhooks.delivery_attempts where delivery_id = $1 order by ${order} limit 11`, replayed.id);
  t.true(await deliveries('created_at, id') <= 11 + 3, `by time: ${await deliveries('created_at, id')}`);
  t.true(await attempts('attempt, id') <= 11 + 1, `by attempt: ${await attempts('attempt, id')}`);
  // the orders they had (the key): every row of the webhook or of the company before it,
  // every attempt of the delivery or of the company before it
  t.true(await deliveries('id') >= 3000, `by id: ${await deliveries('id')}`);
  t.true(await attempts('company_id, id, delivery_created_at') >= 2000, `by key: ${await attempts('company_id, id, delivery_created_at')}`);
});

test('an order no index serves is refused by name (ORDER_NOT_SERVED) where the schema offers it, and those served are answered', async (t) => {
  // each refused one sorted every row of the company, of the webhook or of the delivery
  // for a page: allDeliveries by createdAt (the order of a webhook's history), a
  // webhook's deliveries or a delivery's attempts by id or their key, the company's
  // attempts by attempt (above: 3,013 history rows and 2,000 attempts for a page of 10)
  const token = await api().token('1', 'webhook_viewer');
  const deliveries = (order: string) => `{ allDeliveries(first: 1, orderBy: ${order}) { nodes { id } } }`;
  const attempts = (order: string) => `{ allDeliveryAttempts(first: 1, orderBy: ${order}) { nodes { id } } }`;
  const webhooksDeliveries = (order: string) =>
    `{ allWebhooks(first: 1) { nodes { deliveriesByWebhookId(first: 1, orderBy: ${order}) { nodes { id } } } } }`;
  const deliverysAttempts = (order: string) =>
    `{ allDeliveries(first: 1) { nodes { deliveryAttemptsByDeliveryId(first: 1, orderBy: ${order}) { nodes { id } } } } }`;
  const history = (field: string, order: string) =>
    `{ allWebhooks(first: 1) { nodes { ${field}(first: 1, orderBy: ${order}) { nodes { id } } } } }`;
  for (const [query, found] of [
    [deliveries('CREATED_AT_ASC'), 'CREATED_AT_ASC'],
    [deliveries('[CREATED_AT_DESC, ID_DESC]'), 'CREATED_AT_DESC'],
    [attempts('[ATTEMPT_ASC, ID_ASC]'), 'ATTEMPT_ASC'],
    [webhooksDeliveries('ID_ASC'), 'ID_ASC'],
    [webhooksDeliveries('PRIMARY_KEY_DESC'), 'PRIMARY_KEY_DESC'],
    [webhooksDeliveries('[]'), 'NATURAL'],
    [deliverysAttempts('ID_DESC'), 'ID_DESC'],
    [deliverysAttempts('[COMPANY_ID_ASC, ATTEMPT_ASC]'), 'COMPANY_ID_ASC'],
    [history('history', 'CREATED_AT_ASC'), 'CREATED_AT_ASC'],
    [history('historyOldestFirst', 'ID_DESC'), 'ID_DESC'],
    // both ways: a cursor of such an order is tested on every row before it
    [webhooksDeliveries('[CREATED_AT_ASC, ID_DESC]'), 'ID_DESC'],
    [deliverysAttempts('[ATTEMPT_DESC, ID_ASC]'), 'ID_ASC'],
    ['{ allWebhooks(orderBy: [CREATED_AT_DESC, ID_ASC]) { nodes { id } } }', 'ID_ASC'],
    ['{ allAuditLogs(first: 1, orderBy: [AT_ASC, ID_DESC]) { nodes { id } } }', 'ID_DESC'],
  ] as const) {
    const refused = await api().gql(token, query);
    t.is(refused.data, undefined, query);
    t.like(refused.errors?.[0]?.extensions, { code: 'ORDER_NOT_SERVED', found }, query);
    t.regex(refused.errors?.[0]?.message ?? '', /sorts every row before a page: lead with one of |goes both ways: a page after a cursor would test every row before it/, query);
  }
  // as a variable too
  const asVariable = await api().gql(token, 'query($o: [DeliveryOrderBy!]) { allDeliveries(first: 1, orderBy: $o) { nodes { id } } }',
    { o: ['CREATED_AT_DESC'] });
  t.like(asVariable.errors?.[0]?.extensions, { code: 'ORDER_NOT_SERVED', found: 'CREATED_AT_DESC' });
  for (const query of [
    deliveries('ID_DESC'), deliveries('[COMPANY_ID_ASC, ID_ASC]'), deliveries('PRIMARY_KEY_ASC'), deliveries('[]'),
    attempts('ID_ASC'), attempts('NATURAL'),
    webhooksDeliveries('[CREATED_AT_DESC, ID_DESC]'), webhooksDeliveries('CREATED_AT_ASC'),
    deliverysAttempts('[ATTEMPT_DESC, ID_DESC]'),
    history('history', '[CREATED_AT_DESC, ID_DESC]'), history('historyOldestFirst', '[CREATED_AT_ASC, ID_ASC]'),
    // their defaults
    '{ allWebhooks(first: 1) { nodes { deliveriesByWebhookId(first: 1) { nodes { id } } history(first: 1) { nodes { id } } } } }',
    '{ allDeliveries(first: 1) { nodes { deliveryAttemptsByDeliveryId(first: 1) { nodes { id } } } } }',
  ]) {
    const served = await api().gql(token, query);
    t.is(served.errors, undefined, `${query}: ${JSON.stringify(served.errors)}`);
  }
});

/**
 * The statements the API sends to Postgres while `request` runs, as it sends them: every
 * client of this process, so a test that asks it runs serially (another test's requests
 * at the same moment, the other lists of the file's tests, were counted with it).
 */
async function statementsSent(request: () => Promise<unknown>): Promise<Array<{ text: string; values: unknown[] }>> {
  const sent: Array<{ text: string; values: unknown[] }> = [];
  const query = pg.Client.prototype.query;
  pg.Client.prototype.query = function (this: pg.Client, config: unknown, ...rest: unknown[]) {
    const statement = config as { text?: string; values?: unknown[] };
    if (typeof statement?.text === 'string') sent.push({ text: statement.text, values: statement.values ?? [] });
    return (query as (...args: unknown[]) => unknown).call(this, config, ...rest);
  } as typeof query;
  try {
    await request();
  } finally {
    pg.Client.prototype.query = query;
  }
  return sent;
}

test.serial('a webhook\'s deliveries, its history and a delivery\'s attempts after a cursor deep in the list read about a page: the cursor starts the index', async (t) => {
  // PostGraphile's cursor of a list in an order is a keyset on the order's columns; on
  // a column that may be null (a view's, as far as it knows) it is tested row by row
  // (created_at > $1 or created_at is not distinct from $1 and id > $2): a page of 10
  // after the 2,990th of a webhook's 3,000 deliveries read all 3,000 of them, and one
  // of its history after the 1,500th read 1,520
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, created_at)
     select $1, $2, 'contact.created', d, '{}', now() - (d % 3) * interval '1 day' - d * interval '1 second'
     from generate_series(1, 3000) d`, [hook.id, company.id]);
  const replayed = await replayedByHand(hook.id, company.id, 2_000);
  await db().pool.query('analyze webhooks.delivery_history, webhooks.delivery_attempts');
  const token = await api().token(company.id, 'webhook_viewer');
  const client = await asTheApi(t, db().pool, company.id, {});
  const deliveries = (order: string) => `query($id: BigInt!, $after: Cursor, $offset: Int) { webhookById(id: $id) {
    list: deliveriesByWebhookId(first: 10, offset: $offset, after: $after, orderBy: ${order}) { nodes { id } pageInfo { endCursor } } } }`;
  const attempts = (order: string) => `query($id: BigInt!, $after: Cursor, $offset: Int) { deliveryById(id: $id) {
    list: deliveryAttemptsByDeliveryId(first: 10, offset: $offset, after: $after, orderBy: ${order}) { nodes { id } pageInfo { endCursor } } } }`;
  const history = (field: string) => `query($id: BigInt!, $after: Cursor, $offset: Int) { webhookById(id: $id) {
    list: ${field}(first: 10, offset: $offset, after: $after) { nodes { id } pageInfo { endCursor } } } }`;
  for (const [query, id, deep, table, relation] of [
    [deliveries('[CREATED_AT_ASC, ID_ASC]'), hook.id, 2980, 'delivery_history', 'webhookById'],
    [deliveries('[CREATED_AT_ASC, ID_ASC]'), hook.id, 1500, 'delivery_history', 'webhookById'],
    [history('history'), hook.id, 1500, 'delivery_history', 'webhookById'],
    [history('historyOldestFirst'), hook.id, 1500, 'delivery_history', 'webhookById'],
    [deliveries('[CREATED_AT_DESC, ID_DESC]'), hook.id, 2980, 'delivery_history', 'webhookById'],
    [attempts('[ATTEMPT_ASC, ID_ASC]'), replayed.id, 1980, 'delivery_attempts', 'deliveryById'],
    [attempts('[ATTEMPT_DESC, ID_DESC]'), replayed.id, 1980, 'delivery_attempts', 'deliveryById'],
  ] as const) {
    const page = await api().gql(token, query, { id, offset: deep });
    const after = page.data[relation].list.pageInfo.endCursor;
    let next: any;
    const sent = (await statementsSent(async () => { next = await api().gql(token, query, { id, after }); }))
      .filter((statement) => statement.text.includes(table === 'delivery_history' ? '"webhooks"."webhooks_history' : '"webhooks"."delivery_attempts"')
        || (table === 'delivery_history' && statement.text.includes('"webhooks"."deliveries"')));
    t.is(next.errors, undefined, query);
    t.is(next.data[relation].list.nodes.length, 10, query);
    t.is(sent.length, 1, `${query}\n${sent.map((statement) => statement.text).join('\n')}`);
    const { rows: [row] } = await client.query(`explain (analyze, format json) ${sent[0]!.text}`, sent[0]!.values);
    const read = rowsRead(row['QUERY PLAN'][0].Plan).get(table) ?? 0;
    // a page and the row past it, and one more of each day's partition the merge reads
    t.true(read <= 11 + 3, `${query}: read ${read} rows for a page of 10 after a cursor`);
  }
});
