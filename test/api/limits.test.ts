// Every GraphQL request is bounded (api/limits.ts): a request over a limit is refused
// before it runs, with a code that names the limit, and the server keeps serving.
// The tests that lock a table as a DBA would, or hold an API's one connection and time
// what waits for it, run serially (ava runs them before the others): every other test's
// reads of a locked table would wait behind the lock (one ran into the statement
// timeout so in a CI run), and the other tests' load would stretch the times judged.
import { request } from 'node:http';
import test from 'ava';
import { getIntrospectionQuery } from 'postgraphile/graphql';
import { authenticatorUrl } from '../../api/authenticator.ts';
import { DEFAULT_LIMITS, LONGEST_LIST, PAYLOAD_VALUES } from '../../api/limits.ts';
import { startApi } from '../../api/server.ts';
import { signToken } from '../../api/auth.ts';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';
import { scrape } from '../helpers/prometheus.ts';
import { until } from '../helpers/until.ts';

const { db, api } = useTestDatabaseWithApi(test);

const DELIVERIES = 301;
/** How long a request of this file waits for its answer: a request that hangs fails, naming itself. */
const ANSWER_WITHIN_MS = 30_000;

/** A company with two webhooks and DELIVERIES deliveries on the first. */
async function busyCompany() {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, created_at)
     select $1, $2, 'contact.created', n, jsonb_build_object('n', n), now() - n * interval '1 second'
     from generate_series(1, $3::int) n`,
    [hook.id, company.id, DELIVERIES]);
  return { company, hook, viewer: await api().token(company.id, 'webhook_viewer') };
}

// the query of the report that brought the API down
const NESTED = `{ allDeliveries { nodes { webhookByWebhookId { deliveriesByWebhookId { nodes {
  webhookByWebhookId { deliveriesByWebhookId { nodes { id } } } } } } } } }`;

test('the nested query over hundreds of deliveries is refused as too deep, and the API keeps serving', async (t) => {
  const { viewer } = await busyCompany();
  const refused = await api().gql(viewer, NESTED);
  t.is(refused.data, undefined);
  t.is(refused.errors?.length, 1);
  t.is(refused.errors?.[0].extensions?.code, 'QUERY_TOO_DEEP');
  t.is(refused.errors?.[0].extensions?.limit, DEFAULT_LIMITS.maxDepth);
  t.regex(refused.errors![0].message, /too deep: \d+ levels, at most 8 \(API_MAX_DEPTH\)/);
  // the same server answers the next request
  const after = await api().gql(viewer, '{ allDeliveries(first: 1) { nodes { id } } }');
  t.is(after.data?.allDeliveries.nodes.length, 1);
});

test('a query within the depth whose pages multiply past the node limit is refused as too costly, variables counted', async (t) => {
  const { viewer } = await busyCompany();
  const WIDE = `query($n: Int) { allDeliveries(first: $n) { nodes { webhookByWebhookId {
    deliveriesByWebhookId(first: $n) { nodes { id } } } } } }`;
  const refused = await api().gql(viewer, WIDE, { n: 500 });
  t.is(refused.data, undefined);
  t.is(refused.errors?.[0].extensions?.code, 'QUERY_TOO_COSTLY');
  t.is(refused.errors?.[0].extensions?.limit, DEFAULT_LIMITS.maxNodes);
  t.true((refused.errors?.[0].extensions?.found as number) > DEFAULT_LIMITS.maxNodes);
  t.regex(refused.errors![0].message, /API_MAX_NODES/);
  // the same document with small pages is fine
  const small = await api().gql(viewer, WIDE, { n: 3 });
  t.is(small.errors, undefined);
  t.is(small.data.allDeliveries.nodes.length, 3);
  t.is(small.data.allDeliveries.nodes[0].webhookByWebhookId.deliveriesByWebhookId.nodes.length, 3);
});

test('aliases do not escape the node limit', async (t) => {
  const { viewer } = await busyCompany();
  const aliases = Array.from({ length: 10 }, (_, i) => `a${i}: allDeliveries(first: 1000) { nodes { id } }`).join('\n');
  const refused = await api().gql(viewer, `{ ${aliases} }`);
  t.is(refused.errors?.[0].extensions?.code, 'QUERY_TOO_COSTLY');
  t.is(refused.errors?.[0].extensions?.limit, DEFAULT_LIMITS.maxNodes);
});

test('fields that each plan a read of their own are at most API_MAX_PLANNED_FIELDS a request, however few values they answer', async (t) => {
  const { viewer, hook } = await busyCompany();
  // 500 aliases of a one-row page of history, 31 kB and about 1,500 values, held the
  // server's one thread for 4 to 8 s while it planned them (every company's requests
  // waited), and the planning grows with the square of the fields
  const since = (i: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString();
  const histories = (n: number) => `query($id: BigInt!) { webhookById(id: $id) { ${Array.from({ length: n }, (_, i) =>
    `a${i}: history(since: "${since(i)}", first: 1) { nodes { id } }`).join(' ')} } }`;
  // (refused while the document is validated, so before any of it is planned)
  // (200 of them, 12 kB, within the text's limit)
  const refused = await api().gql(viewer, histories(200), { id: hook.id });
  t.is(refused.data, undefined);
  t.is(refused.errors?.length, 1);
  t.is(refused.errors?.[0].extensions?.code, 'QUERY_TOO_COSTLY');
  t.is(refused.errors?.[0].extensions?.limit, DEFAULT_LIMITS.maxPlannedFields);
  // webhookById, and each alias's history and its nodes
  t.is(refused.errors?.[0].extensions?.found, 1 + 2 * 200);
  t.regex(refused.errors![0].message, /API_MAX_PLANNED_FIELDS/);

  // top-level fields count each, arguments or not; leaves of a row do not
  const roots = Array.from({ length: DEFAULT_LIMITS.maxPlannedFields + 1 }, (_, i) => `a${i}: currentCompanyId`).join(' ');
  t.is((await api().gql(viewer, `{ ${roots} }`)).errors?.[0].extensions?.found, DEFAULT_LIMITS.maxPlannedFields + 1);
  const leaves = Array.from({ length: 100 }, (_, i) => `a${i}: name`).join(' ');
  t.is((await api().gql(viewer, `{ allWebhooks(first: 2) { nodes { ${leaves} } } }`)).errors, undefined);
  // so do fragments, spread by spread
  const spread = await api().gql(viewer, `query($id: BigInt!) { webhookById(id: $id) { ...H ...H ...H ...H ...H ...H } }
    fragment H on Webhook { ${Array.from({ length: 10 }, (_, i) => `h${i}: historyCount(since: "${since(i)}")`).join(' ')} }`, { id: hook.id });
  t.is(spread.errors?.[0].extensions?.found, 1 + 60);
  // the page's own requests stay far within it, and so does a fair number of aliases
  const within = await api().gql(viewer, histories(Math.floor((DEFAULT_LIMITS.maxPlannedFields - 1) / 2)), { id: hook.id });
  t.is(within.errors, undefined);
  t.is(within.data.webhookById.a0.nodes.length, 1);
  const whole = await api().gql(viewer, getIntrospectionQuery());
  t.is(whole.errors, undefined);
});

test('fields as written are at most API_MAX_FIELDS a request, each alias and each spread of a fragment counted', async (t) => {
  const { viewer, hook } = await busyCompany();
  // 9,000 aliases of a webhook's name, 95 kB and well within the node count, held the
  // server's one thread for about half a second while they were planned and answered
  // (some 30 µs a field, for every company)
  const names = (n: number) => `query($id: BigInt!) { webhookById(id: $id) { ${Array.from({ length: n }, (_, i) => `a${i}: name`).join(' ')} } }`;
  const refused = await api().gql(viewer, names(DEFAULT_LIMITS.maxFields), { id: hook.id });
  t.is(refused.data, undefined);
  t.is(refused.errors?.length, 1);
  t.is(refused.errors?.[0].extensions?.code, 'QUERY_TOO_COSTLY');
  t.is(refused.errors?.[0].extensions?.limit, DEFAULT_LIMITS.maxFields);
  // webhookById and its aliases
  t.is(refused.errors?.[0].extensions?.found, 1 + DEFAULT_LIMITS.maxFields);
  t.regex(refused.errors![0].message, /API_MAX_FIELDS/);
  // one fewer is served
  const served = await api().gql(viewer, names(DEFAULT_LIMITS.maxFields - 1), { id: hook.id });
  t.is(served.errors, undefined);
  t.is(served.data.webhookById.a0, hook.name);
  // a fragment counts its fields each time it is spread
  const spread = await api().gql(viewer, `query($id: BigInt!) { webhookById(id: $id) { ${'...N '.repeat(DEFAULT_LIMITS.maxFields / 4)} } }
    fragment N on Webhook { a: name b: name c: name d: name }`, { id: hook.id });
  t.is(spread.errors?.[0].extensions?.found, 1 + DEFAULT_LIMITS.maxFields);
});

test('a query text over API_MAX_QUERY_BYTES is refused before it is parsed; variables count only toward the body', async (t) => {
  const { viewer } = await busyCompany();
  // 95 kB of text took 100 to 500 ms of the server's one thread to parse, validate and
  // plan, whatever it asked; the page's texts are under 2 kB, the whole schema's
  // introspection under 3 kB
  const unclosed = `{ currentCompanyId ${'x '.repeat(DEFAULT_LIMITS.maxQueryBytes)}`;
  const refused = await post(api().api.url, viewer, JSON.stringify({ query: unclosed }), true);
  t.is(refused.status, 413);
  const error = JSON.parse(refused.body).errors[0];
  // (not the parser's "Syntax Error": it never ran)
  t.is(error.extensions.code, 'QUERY_TOO_LARGE');
  t.is(error.extensions.limit, DEFAULT_LIMITS.maxQueryBytes);
  t.regex(error.message, /API_MAX_QUERY_BYTES/);
  // bytes, not characters: a comment of two-byte characters half the limit long
  const start = `{ currentCompanyId } #${(DEFAULT_LIMITS.maxQueryBytes - 22) % 2 ? ' ' : '  '}`;
  const chars = (DEFAULT_LIMITS.maxQueryBytes - Buffer.byteLength(start)) / 2;
  const twoByte = await api().gql(viewer, start + 'é'.repeat(chars + 1));
  t.is(twoByte.errors?.[0].extensions?.code, 'QUERY_TOO_LARGE');
  t.true((start + 'é'.repeat(chars + 1)).length < DEFAULT_LIMITS.maxQueryBytes);
  const exactly = start + 'é'.repeat(chars);
  t.is(Buffer.byteLength(exactly), DEFAULT_LIMITS.maxQueryBytes);
  t.is((await api().gql(viewer, exactly)).errors, undefined);
  // variables many times the text's limit, within the body's, are served
  const padded = await post(api().api.url, viewer, JSON.stringify({
    query: '{ allWebhooks { totalCount } }', variables: { pad: 'x'.repeat(DEFAULT_LIMITS.maxBodyBytes - 1_000) },
  }), true);
  t.is(padded.status, 200, padded.body.slice(0, 300));
  t.deepEqual(JSON.parse(padded.body), { data: { allWebhooks: { totalCount: 2 } } });
});

test('a document over the limit of fields or of fields planned is refused before GraphQL\'s own rules run over it: one refusal, whatever they would find', async (t) => {
  const { viewer, hook } = await busyCompany();
  // GraphQL's rule that fields of one name can be merged compares every pair of them:
  // 900 copies of `webhookById(id: 1) { id }` (18 kB, refused for its fields) held the
  // server's one thread for 150 to 350 ms, on each text a comment apart, before
  // the refusal; here fields of one name that cannot be merged show the rule ran
  const conflicting = (n: number) => Array.from({ length: n }, (_, i) => `h: historyCount(since: $s${i % 2})`).join(' ');
  const tooMany = await api().gql(viewer, `query($id: BigInt!, $s0: Datetime, $s1: Datetime) { webhookById(id: $id) {
    ${'id '.repeat(DEFAULT_LIMITS.maxFields)} ${conflicting(100)} } }`, { id: hook.id });
  t.is(tooMany.status, 400);
  t.is(tooMany.data, undefined);
  t.is(tooMany.errors?.length, 1);
  t.is(tooMany.errors?.[0].extensions?.code, 'QUERY_TOO_COSTLY');
  t.is(tooMany.errors?.[0].extensions?.limit, DEFAULT_LIMITS.maxFields);
  t.is(tooMany.errors?.[0].extensions?.found, 1 + DEFAULT_LIMITS.maxFields + 100);
  // so is one over the fields planned, and so is one whose fragment comes first
  const planned = await api().gql(viewer, `fragment H on Webhook { ${conflicting(DEFAULT_LIMITS.maxPlannedFields)} }
    query($id: BigInt!, $s0: Datetime, $s1: Datetime) { webhookById(id: $id) { ...H } }`, { id: hook.id });
  t.is(planned.errors?.length, 1);
  t.is(planned.errors?.[0].extensions?.code, 'QUERY_TOO_COSTLY');
  t.is(planned.errors?.[0].extensions?.limit, DEFAULT_LIMITS.maxPlannedFields);
  // GraphQL's rule stops comparing past a budget of its own, and its refusal is named
  // as ours are: 24 pages of one name, each with 38 fields of one name, are within
  // the limits (961 fields, 49 planned) and past that budget
  const merged = await api().gql(viewer, `query($id: BigInt!) { webhookById(id: $id) {
    ${`deliveriesByWebhookId(first: 1) { nodes { ${'id '.repeat(38)} } } `.repeat(24)} } }`, { id: hook.id });
  t.is(merged.status, 400);
  t.is(merged.errors?.length, 1);
  t.is(merged.errors?.[0].extensions?.code, 'QUERY_TOO_COSTLY');
  t.regex(merged.errors![0].message, /Validation aborted/);
  // within the limits, GraphQL's rules say what they find
  const within = await api().gql(viewer, `query($id: BigInt!, $s0: Datetime, $s1: Datetime) { webhookById(id: $id) { ${conflicting(4)} } }`, { id: hook.id });
  t.true((within.errors?.length ?? 0) >= 1);
  t.regex(within.errors![0].message, /Fields "h" conflict/);
});

test('fragments spread again and again do not escape the limit of fields', async (t) => {
  const { viewer, company } = await busyCompany();
  // each fragment spreads the next twice: 18 fragments select 2^17 fields in 800 bytes,
  // which the planner expanded one by one (seconds of the server's one thread)
  const LEVELS = 18;
  const fragments = (levels: number) => Array.from({ length: levels }, (_, i) =>
    `fragment F${i} on Query { ${i + 1 < levels ? `...F${i + 1} ...F${i + 1}` : 'currentCompanyId'} }`).join('\n');
  const refused = await api().gql(viewer, `{ ...F0 }\n${fragments(LEVELS)}`);
  t.is(refused.data, undefined);
  t.is(refused.errors?.length, 1);
  t.is(refused.errors?.[0].extensions?.code, 'QUERY_TOO_COSTLY');
  t.is(refused.errors?.[0].extensions?.limit, DEFAULT_LIMITS.maxFields);
  t.is(refused.errors?.[0].extensions?.found, 2 ** (LEVELS - 1));
  t.regex(refused.errors![0].message, /API_MAX_FIELDS/);
  // a fragment spread a few times is fine
  const few = await api().gql(viewer, `{ ...F0 }\n${fragments(3)}`);
  t.is(few.errors, undefined);
  t.deepEqual(few.data, { currentCompanyId: company.id });
});

test('introspection is asked once a request: aliases of __schema or __type are refused as too costly', async (t) => {
  const { viewer } = await busyCompany();
  // each alias answers about 30 kB from the schema alone, and counts six values:
  // 1,500 of them in 98 kB were a 44 MB answer and seconds of the server's one thread
  const INTROSPECTION = '__schema { types { fields { type { fields { name } } } } }';
  const fragment = 'fragment T on Query { __type(name: "Webhook") { name } }';
  for (const query of [
    `{ a: ${INTROSPECTION} b: ${INTROSPECTION} }`,
    `{ a: __type(name: "Webhook") { name } b: __type(name: "Delivery") { name } }`,
    `{ ${INTROSPECTION} ...T }\n${fragment}`,
    `mutation { a: sendTestWebhook(input: { id: "0" }) { query { ${INTROSPECTION} } }
                b: sendTestWebhook(input: { id: "0" }) { query { __typename } } c: sendTestWebhook(input: { id: "0" }) { query { __type(name: "Webhook") { name } } } }`,
  ]) {
    const refused = await api().gql(viewer, query);
    t.is(refused.data, undefined, query);
    t.is(refused.errors?.length, 1, query);
    t.is(refused.errors?.[0].extensions?.code, 'QUERY_TOO_COSTLY', query);
    t.is(refused.errors?.[0].extensions?.limit, 1, query);
    t.is(refused.errors?.[0].extensions?.found, 2, query);
    t.regex(refused.errors![0].message, /__schema, __type/, query);
  }
  // once is served: the whole schema, as GraphiQL asks for it, with the data beside it
  const whole = await api().gql(viewer, getIntrospectionQuery());
  t.is(whole.errors, undefined);
  t.true(whole.data.__schema.types.length > 50);
  const beside = await api().gql(viewer, `{ currentCompanyId __type(name: "Webhook") { name } __typename a: __typename }`);
  t.is(beside.errors, undefined);
  t.is(beside.data.__type.name, 'Webhook');
});

test('a list that is not a connection counts as many rows as it may hold: replayFailed\'s deliveries', async (t) => {
  const { company, hook } = await busyCompany();
  await db().pool.query(
    `update webhooks.deliveries set state = 'failed', attempts = 1, completed_at = now(), last_status_code = 500
     where webhook_id = $1`, [hook.id]);
  const admin = await api().token(company.id, 'webhook_admin');
  // each delivery replayed with its webhook's history: DELIVERIES x DELIVERIES payloads,
  // which the count took for one list's worth (a 10 kB payload each held the
  // server's thread for seconds, building an answer too long for a string)
  const REPLAY = `mutation($id: BigInt!, $n: Int) { replayFailed(input: { webhookId: $id, since: "2000-01-01T00:00:00Z" }) {
    result { id webhookByWebhookId { history(first: $n) { nodes { payload } } } } } }`;
  const refused = await api().gql(admin, REPLAY, { id: hook.id, n: DELIVERIES });
  t.is(refused.data, undefined);
  t.is(refused.errors?.[0].extensions?.code, 'QUERY_TOO_COSTLY');
  t.true((refused.errors?.[0].extensions?.found as number) > LONGEST_LIST * DELIVERIES);
  // refused before it ran: nothing was replayed
  const { rows } = await db().pool.query(`select count(*)::int as n from webhooks.deliveries where webhook_id = $1 and state = 'failed'`, [hook.id]);
  t.is(rows[0].n, DELIVERIES);
  // what a list of the deliveries themselves holds is served
  const replayed = await api().gql(admin, `mutation($id: BigInt!) { replayFailed(input: { webhookId: $id, since: "2000-01-01T00:00:00Z" }) {
    result { id messageId } } }`, { id: hook.id });
  t.is(replayed.errors, undefined);
  t.is(replayed.data.replayFailed.result.length, DELIVERIES);
  // the list's most is the most replayFailed replays
  const most = await db().pool.query('select webhooks_private.replay_max_deliveries() as n');
  t.is(most.rows[0].n, LONGEST_LIST);
});

test('a payload counts as PAYLOAD_VALUES values: a page of payloads as large as one page may hold is refused, the page\'s own page of history is served', async (t) => {
  const { hook, viewer } = await busyCompany();
  // payloads may be max_payload_bytes each (1 MiB by default): 300 of them were 300 MB
  // in one answer, held in the API's memory for every company
  // (its text as sent, payloadText, as much as its value)
  const history = (field: string) => `query($id: BigInt!, $n: Int) { webhookById(id: $id) { history(first: $n) { nodes { id ${field} } } } }`;
  const HISTORY = history('payload');
  for (const field of ['payload', 'payloadText']) {
    const refused = await api().gql(viewer, history(field), { id: hook.id, n: 300 });
    t.is(refused.data, undefined, field);
    t.is(refused.errors?.[0].extensions?.code, 'QUERY_TOO_COSTLY', field);
    t.true((refused.errors?.[0].extensions?.found as number) > 300 * PAYLOAD_VALUES, field);
  }
  // the same rows without their payloads, and the Reports page's page of 50 with them
  const ids = await api().gql(viewer, `query($id: BigInt!) { webhookById(id: $id) { history(first: 300) { nodes { id } } } }`, { id: hook.id });
  t.is(ids.errors, undefined);
  t.is(ids.data.webhookById.history.nodes.length, 300);
  const page = await api().gql(viewer, HISTORY, { id: hook.id, n: 50 });
  t.is(page.errors, undefined);
  t.is(page.data.webhookById.history.nodes.length, 50);
  t.true(Math.floor(DEFAULT_LIMITS.maxNodes / PAYLOAD_VALUES) >= 50);
});

test('the payloads of one answer are at most API_ANSWER_PAYLOAD_BYTES of JSON text, its first whatever its size: the rest are refused by name, the answer\'s other fields served', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  // payloads of 60,000 keys, about 1 MB of text each: a payload is parsed from
  // Postgres's text, walked for its depth and written out again on the API's one
  // thread, and 100 payloads of 20,000 keys (28 MB) held it for 2.2 to 3 s, every
  // company's requests waiting, although they were within the node count
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, created_at)
     select $1, $2, 'contact.created', n, (select jsonb_object_agg('k' || k, k) from generate_series(1, 60000) k),
            now() - n * interval '1 second'
     from generate_series(1, 8) n`, [hook.id, company.id]);
  const { rows: [{ bytes }] } = await db().pool.query(
    `select octet_length(payload::text) as bytes from webhooks.deliveries where webhook_id = $1 limit 1`, [hook.id]);
  const viewer = await api().token(company.id, 'webhook_viewer');
  const holds = Math.max(1, Math.floor(DEFAULT_LIMITS.answerPayloadBytes / bytes));
  // the payloads as values, and as their text as sent (payloadText), are held to the
  // same bytes: the text read and held for a page of them is the same
  for (const field of ['payload', 'payloadText'] as const) {
    const page = await api().gql(viewer, `query($id: BigInt!) { webhookById(id: $id) { history(first: 8) { nodes { id ${field} } } } }`, { id: hook.id });
    // (a fresh-clone run had no page here, its errors unseen: they are named if so)
    t.truthy(page.data?.webhookById, `${field}: no page: ${JSON.stringify(page.errors)}`);
    if (!page.data?.webhookById) return;
    const nodes = page.data.webhookById.history.nodes as Array<Record<string, unknown>>;
    t.is(nodes.length, 8, field);
    const served = nodes.filter((node) => node[field] !== null);
    // as many as the budget holds (4 of them)
    t.is(served.length, holds, field);
    t.true(served.length < 8, field);
    const first = field === 'payload' ? served[0]![field] as Record<string, number> : JSON.parse(served[0]![field] as string);
    t.is(first.k60000, 60000, field);
    if (field === 'payloadText') t.is(Buffer.byteLength(served[0]![field] as string), bytes);
    t.is(page.errors?.length, 8 - served.length, field);
    for (const error of page.errors ?? []) {
      t.is(error.extensions?.code, 'PAYLOADS_TOO_LARGE', field);
      t.is(error.extensions?.limit, DEFAULT_LIMITS.answerPayloadBytes, field);
      t.regex(error.message, /API_ANSWER_PAYLOAD_BYTES/);
    }
  }
  // asked both ways, each row's payload counts twice: half as many rows are served
  const both = await api().gql(viewer, `query($id: BigInt!) { webhookById(id: $id) { history(first: 8) { nodes { id payload payloadText } } } }`, { id: hook.id });
  const bothNodes = both.data.webhookById.history.nodes as Array<{ payload: unknown; payloadText: unknown }>;
  t.is(bothNodes.filter((node) => node.payload !== null).length + bothNodes.filter((node) => node.payloadText !== null).length, holds);
  const nodes = bothNodes as unknown as Array<{ id: string }>;
  // one payload at a time is served, whatever its size
  const one = await api().gql(viewer, `query($id: BigInt!) { deliveryById(id: $id) { payload } }`, { id: nodes[7]!.id });
  t.is(one.errors, undefined);
  t.is(Object.keys(one.data.deliveryById.payload).length, 60000);
});

test('first and last above the page maximum are refused as literals and as variables', async (t) => {
  const { viewer } = await busyCompany();
  const over = DEFAULT_LIMITS.maxPageSize + 1;
  for (const [query, variables] of [
    [`{ allDeliveries(first: ${over}) { nodes { id } } }`, {}],
    [`{ allDeliveries(last: ${over}) { nodes { id } } }`, {}],
    ['query($n: Int) { allDeliveries(first: $n) { nodes { id } } }', { n: over }],
  ] as const) {
    const refused = await api().gql(viewer, query, variables);
    t.is(refused.data, undefined, query);
    t.is(refused.errors?.[0].extensions?.code, 'PAGE_TOO_LARGE', query);
    t.regex(refused.errors![0].message, /at most 1000 \(API_MAX_PAGE_SIZE\)/);
  }
});

test('a negative first, last or offset is refused by name, as a literal and as a variable, nested too', async (t) => {
  const { viewer } = await busyCompany();
  for (const [query, variables, argument] of [
    ['{ allDeliveries(first: -1) { nodes { id } } }', {}, 'first'],
    ['{ allDeliveries(last: -5) { nodes { id } } }', {}, 'last'],
    ['{ allDeliveries(first: 10, offset: -1) { nodes { id } } }', {}, 'offset'],
    ['query($n: Int) { allDeliveries(first: $n) { nodes { id } } }', { n: -1 }, 'first'],
    ['query($n: Int) { allWebhooks { nodes { history(first: 5, offset: $n) { nodes { id } } } } }', { n: -3 }, 'offset'],
    ['{ allWebhooks { nodes { history(first: -1) { nodes { id } } } } }', {}, 'first'],
  ] as const) {
    const refused = await api().gql(viewer, query, variables);
    t.is(refused.data, undefined, query);
    t.is(refused.errors?.[0].extensions?.code, 'PAGE_ARGUMENT_NEGATIVE', query);
    t.regex(refused.errors![0].message, new RegExp(`^${argument}: -\\d+ is negative`), query);
  }
  // zero is a page of nothing
  const none = await api().gql(viewer, '{ allDeliveries(first: 0, offset: 0) { nodes { id } } }');
  t.is(none.errors, undefined);
  t.deepEqual(none.data.allDeliveries, { nodes: [] });
});

test('a page deeper than 10,000 rows into its list (offset, a function\'s row-number cursor, or both) is refused by name; 10,000 is served', async (t) => {
  // each is read and thrown away row by row: offset 240,000 of a company's deliveries
  // read 240,000 rows before its page, within the statement timeout
  const { viewer, hook } = await busyCompany();
  const natural = (rows: number) => Buffer.from(JSON.stringify(['natural', rows])).toString('base64');
  // a function's rows are paged by the row's number: after is an offset too
  const { data } = await api().gql(viewer, '{ retrySchedule(first: 1) { pageInfo { endCursor } } }');
  t.deepEqual(JSON.parse(Buffer.from(data.retrySchedule.pageInfo.endCursor, 'base64').toString()), ['natural', 1]);
  for (const [query, variables, found] of [
    ['{ allDeliveries(first: 10, offset: 10001) { nodes { id } } }', {}, 10_001],
    ['query($n: Int) { allWebhooks { nodes { history(first: 5, offset: $n) { nodes { id } } } } }', { n: 240_000 }, 240_000],
    ['query($c: Cursor, $id: BigInt!) { webhookById(id: $id) { auditLog(first: 5, offset: 5000, after: $c) { nodes { at } } } }',
      { c: natural(5_001), id: hook.id }, 10_001],
    ['query($c: Cursor) { retrySchedule(first: 5, after: $c) { totalCount } }', { c: natural(20_000) }, 20_000],
  ] as const) {
    const refused = await api().gql(viewer, query, variables);
    t.is(refused.data, undefined, query);
    t.like(refused.errors?.[0].extensions, { code: 'PAGE_TOO_DEEP', limit: 10_000, found }, `${query}: ${JSON.stringify(refused.errors)}`);
    t.regex(refused.errors![0].message, /deeper than a page may start: at most 10000 rows in/, query);
  }
  for (const [query, variables] of [
    ['{ allDeliveries(first: 1, offset: 10000) { nodes { id } } }', {}],
    ['query($c: Cursor) { retrySchedule(first: 5, after: $c) { nodes { attempt } } }', { c: natural(10_000) }],
  ] as const) {
    const served = await api().gql(viewer, query, variables);
    t.is(served.errors, undefined, query);
  }
});

test('a connection without first or last returns the default page; first, last and cursors still page', async (t) => {
  const { viewer, hook } = await busyCompany();
  const all = await api().gql(viewer, '{ allDeliveries { pageInfo { hasNextPage } nodes { id } } }');
  t.is(all.errors, undefined);
  t.is(all.data.allDeliveries.nodes.length, DEFAULT_LIMITS.defaultPageSize);
  t.true(all.data.allDeliveries.pageInfo.hasNextPage);

  const big = await api().gql(viewer, '{ allDeliveries(first: 300) { nodes { id } } }');
  t.is(big.data.allDeliveries.nodes.length, 300);
  const last = await api().gql(viewer, '{ allDeliveries(last: 5) { nodes { id } } }');
  t.is(last.errors, undefined);
  t.is(last.data.allDeliveries.nodes.length, 5);

  // a webhook's history, as the page reads it: a page, then the next by cursor
  const HISTORY = `query($id: BigInt!, $after: Cursor) { webhookById(id: $id) {
    history(first: 25, after: $after) { pageInfo { hasNextPage endCursor } nodes { id payload } } } }`;
  const first = await api().gql(viewer, HISTORY, { id: hook.id });
  t.is(first.errors, undefined);
  t.is(first.data.webhookById.history.nodes.length, 25);
  const next = await api().gql(viewer, HISTORY, { id: hook.id, after: first.data.webhookById.history.pageInfo.endCursor });
  t.is(next.data.webhookById.history.nodes.length, 25);
  const seen = new Set(first.data.webhookById.history.nodes.map((n: any) => n.id));
  t.false(next.data.webhookById.history.nodes.some((n: any) => seen.has(n.id)));
  // history without first: the default page
  const unpaged = await api().gql(viewer, '{ allWebhooks(first: 10) { nodes { history { nodes { id } } } } }');
  t.is(unpaged.errors, undefined);
  t.deepEqual(unpaged.data.allWebhooks.nodes.map((n: any) => n.history.nodes.length).sort(), [0, DEFAULT_LIMITS.defaultPageSize]);
});

/** POSTs raw bytes to /graphql; chunked when length is not given. */
function post(url: string, token: string, body: string, sendLength: boolean): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = request(`${url}/graphql`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${token}`,
        ...(sendLength ? { 'content-length': Buffer.byteLength(body) } : {}),
      },
      signal: AbortSignal.timeout(ANSWER_WITHIN_MS),
    }, (res) => {
      answered = true;
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, body: text }));
      res.on('error', (error) => reject(new Error(`the answer (${res.statusCode}) was cut off: ${error.message}`)));
    });
    // the server may answer and close before the whole body is written: its answer
    // still comes (an error of the write alone settles nothing); a connection that
    // closes with no answer, or no answer in time, fails the test instead of holding it
    req.on('error', (error: NodeJS.ErrnoException) => {
      if (error.name === 'AbortError') reject(new Error(`no answer within ${ANSWER_WITHIN_MS / 1000} s`));
      else if (error.code !== 'EPIPE' && error.code !== 'ECONNRESET') reject(error);
    });
    req.on('close', () => {
      if (!answered) reject(new Error(`the connection closed with no answer (${body.length} bytes sent with${sendLength ? '' : 'out'} a length)`));
    });
    // (a body given to end() alone is sent with its length, by node)
    if (sendLength) {
      req.end(body);
    } else {
      req.write(body);
      req.end();
    }
  });
}

test('a request the API cannot take as one operation is refused with a code that says so: a batch, a body that is no object, variables that are no object, JSON that does not parse, a media type or an answer type it does not serve, a method other than POST', async (t) => {
  const { viewer } = await busyCompany();
  const one = { query: '{ currentCompanyId }' };
  // (grafserv said what was wrong, with no code)
  const bodies: Array<[string, string]> = [
    ['a batch', JSON.stringify([one, one])],
    ['a string', JSON.stringify(one.query)],
    ['variables in a list', JSON.stringify({ ...one, variables: [1] })],
    ['JSON cut short', '{"query":'],
    ['no query', JSON.stringify({ variables: {} })],
  ];
  for (const [what, body] of bodies) {
    const refused = await post(api().api.url, viewer, body, true);
    t.is(refused.status, 400, what);
    const { errors } = JSON.parse(refused.body);
    t.is(errors.length, 1, what);
    t.is(errors[0].extensions.code, 'BAD_REQUEST', what);
  }
  const headers = { authorization: `Bearer ${viewer}` };
  const form = await fetch(`${api().api.url}/graphql`, { method: 'POST', headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded' }, body: 'query=%7B+currentCompanyId+%7D', signal: AbortSignal.timeout(ANSWER_WITHIN_MS) });
  t.is(form.status, 415);
  t.is((await form.json()).errors[0].extensions.code, 'UNSUPPORTED_MEDIA_TYPE');
  const html = await fetch(`${api().api.url}/graphql`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json', accept: 'text/plain' }, body: JSON.stringify(one), signal: AbortSignal.timeout(ANSWER_WITHIN_MS) });
  t.is(html.status, 406);
  t.is((await html.json()).errors[0].extensions.code, 'NOT_ACCEPTABLE');
  const get = await fetch(`${api().api.url}/graphql?query=%7B+currentCompanyId+%7D`, { headers, signal: AbortSignal.timeout(ANSWER_WITHIN_MS) });
  t.is(get.status, 405);
  t.is((await get.json()).errors[0].extensions?.code, 'METHOD_NOT_ALLOWED');
  // and one operation is served
  t.is((await post(api().api.url, viewer, JSON.stringify(one), true)).status, 200);
});

test('a request body over the limit is answered 413, with or without a length', async (t) => {
  const { viewer } = await busyCompany();
  const body = JSON.stringify({ query: `{ currentCompanyId }`, variables: { pad: 'x'.repeat(DEFAULT_LIMITS.maxBodyBytes) } });
  const said = await post(api().api.url, viewer, body, true);
  t.is(said.status, 413);
  t.is(JSON.parse(said.body).errors[0].extensions.code, 'REQUEST_TOO_LARGE');
  const chunked = await post(api().api.url, viewer, body, false);
  t.is(chunked.status, 413);
  t.is(JSON.parse(chunked.body).errors[0].extensions.code, 'REQUEST_TOO_LARGE');
  // and a body within it is served
  const fine = await post(api().api.url, viewer, JSON.stringify({ query: '{ currentCompanyId }' }), false);
  t.is(fine.status, 200);
});

/** An API of its own over this file's database, with its own pool size and statement
 *  timeout; `post` sends a GraphQL request with a bearer token and returns its body. */
async function shortApi(t: { teardown: (fn: () => Promise<void>) => void },
  options: { poolSize: number; statementTimeoutMs: number; poolWaitMs?: number; operationsReuseMs?: number }) {
  const jwtSecret = 'limits-test-secret-of-enough-length';
  const running = await startApi({
    databaseUrl: await authenticatorUrl(db().url, 'authenticator-for-tests'),
    jwtSecret,
    port: 0,
    poolSize: options.poolSize,
    reportCountsEveryMs: 0,
    limits: { statementTimeoutMs: options.statementTimeoutMs, ...(options.poolWaitMs ? { poolWaitMs: options.poolWaitMs } : {}) },
    ...(options.operationsReuseMs ? { operationsReuseMs: options.operationsReuseMs } : {}),
  });
  t.teardown(() => running.stop());
  return {
    url: running.url,
    token: (companyId: string, role: 'webhook_admin' | 'webhook_viewer') => signToken(jwtSecret, { companyId, role }),
    async post(token: string, query: string): Promise<any> {
      const response = await fetch(`${running.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ query }),
        signal: AbortSignal.timeout(ANSWER_WITHIN_MS),
      });
      return response.json();
    },
  };
}

test('SQL that runs past the statement timeout is cancelled and named', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const short = await shortApi(t, { poolSize: 2, statementTimeoutMs: 300 });
  const locker = await db().pool.connect();
  try {
    // an admin's change waits for a row another transaction holds: the wait is cut short
    await locker.query('begin');
    await locker.query('select 1 from webhooks.webhooks where id = $1 for update', [hook.id]);
    const body = await short.post(await short.token(company.id, 'webhook_admin'),
      `mutation { disableWebhook(input: { id: "${hook.id}" }) { result { enabled } } }`);
    t.is(body.errors?.[0].extensions?.code, 'QUERY_TIMEOUT');
    t.regex(body.errors[0].message, /API_STATEMENT_TIMEOUT_MS/);
  } finally {
    await locker.query('rollback');
    locker.release();
  }
  const { rows: [row] } = await db().pool.query('select enabled from webhooks.webhooks where id = $1', [hook.id]);
  t.true(row.enabled);
});

/** A company with a webhook (an admin's change to it will hold a connection) and another company. */
async function companyAndNeighbour() {
  const f = factories(db().pool);
  const company = await f.company();
  const other = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  return { company, other, hook };
}

/** Whether a statement like `pattern` waits on a lock. */
async function waitingOnLock(pattern: string): Promise<boolean> {
  return (await db().pool.query(
    `select 1 from pg_stat_activity
     where datname = current_database() and wait_event_type = 'Lock' and query like $1 and pid <> pg_backend_pid()`,
    [pattern],
  )).rowCount! > 0;
}

test.serial('time a request waits for one of the API\'s connections is not taken from the statement timeout of its SQL', async (t) => {
  const { company, other, hook } = await companyAndNeighbour();
  const TIMEOUT_MS = 1_000;
  // one connection: a request waits for it while another holds it
  const short = await shortApi(t, { poolSize: 1, statementTimeoutMs: TIMEOUT_MS });
  const rowLocker = await db().pool.connect();
  const tableLocker = await db().pool.connect();
  try {
    // an admin's change waits for a row a DBA holds, keeping the one connection for its
    // whole timeout
    await rowLocker.query('begin');
    await rowLocker.query('select 1 from webhooks.webhooks where id = $1 for update', [hook.id]);
    await tableLocker.query('begin');
    await tableLocker.query('lock table webhooks.delivery_history in access exclusive mode');
    const held = short.post(await short.token(company.id, 'webhook_admin'), `mutation { disableWebhook(input: { id: "${hook.id}" }) { result { enabled } } }`);
    await until('the change has the connection, waiting on the row', () => waitingOnLock('%disable_webhook%'));
    // another company's report of two fields, two statements one after the other, asked
    // meanwhile: its first waits that long for the connection, its second then waits a
    // moment on another DBA's lock
    let answered = false;
    const started = performance.now();
    const report = short.post(await short.token(other.id, 'webhook_viewer'), '{ a: allWebhooks(first: 1) { nodes { id } } b: allDeliveries(first: 1) { nodes { id } } }')
      .finally(() => { answered = true; });
    t.is((await held).errors?.[0].extensions?.code, 'QUERY_TIMEOUT', 'the change ran into its own timeout');
    await until('the report\'s second statement waits on the lock, or the report is answered',
      async () => answered || await waitingOnLock('%deliver%'));
    await tableLocker.query('rollback');
    const answer = await report;
    const took = performance.now() - started;
    t.true(took >= TIMEOUT_MS / 2, `the report waited for the connection: answered after ${Math.round(took)} ms`);
    t.deepEqual(answer, { data: { a: { nodes: [] }, b: { nodes: [] } } }, 'and its SQL then had its own time');
  } finally {
    await rowLocker.query('rollback');
    await tableLocker.query('rollback');
    rowLocker.release();
    tableLocker.release();
  }
});

test.serial('a request that waits API_POOL_WAIT_MS for a connection is refused by name; the next one runs once a connection is free', async (t) => {
  const { company, other, hook } = await companyAndNeighbour();
  // (long enough for a loaded machine's scrapes to see the statement wait)
  const POOL_WAIT_MS = 2_000;
  // one connection, held by an admin's change waiting on a DBA's row lock (for up to
  // its 30 s timeout: far longer than the refusal may take on a loaded machine); the
  // metrics' own question to the database answered once, before, and kept a minute,
  // so that scrapes wait for no connection
  const short = await shortApi(t, { poolSize: 1, statementTimeoutMs: 30_000, poolWaitMs: POOL_WAIT_MS, operationsReuseMs: 60_000 });
  const waiting = async () => (await scrape(short.url)).get('bpd_webhooks_api_connections_waiting');
  await scrape(short.url);   // (its question may wait for the pool's first connection)
  t.is(await waiting(), 0);
  const locker = await db().pool.connect();
  let held: Promise<any> | undefined;
  try {
    await locker.query('begin');
    await locker.query('select 1 from webhooks.webhooks where id = $1 for update', [hook.id]);
    held = short.post(await short.token(company.id, 'webhook_admin'), `mutation { disableWebhook(input: { id: "${hook.id}" }) { result { enabled } } }`);
    await until('the change has the connection, waiting on the row', () => waitingOnLock('%disable_webhook%'));
    const viewer = await short.token(other.id, 'webhook_viewer');
    const started = performance.now();
    let answered = false;
    const asked = short.post(viewer, '{ allWebhooks { nodes { id } } }').finally(() => { answered = true; });
    await until('the metrics show the statement waiting for a connection', async () => answered || await waiting() === 1);
    t.false(answered, 'seen waiting before it was refused');
    const refused = await asked;
    const took = performance.now() - started;
    t.deepEqual(refused.errors?.map((e: any) => e.extensions?.code), ['DATABASE_BUSY']);
    t.regex(refused.errors[0].message, /^every database connection of the API was in use for 2000 ms \(API_POOL_WAIT_MS\)/);
    t.is(await waiting(), 0);
    t.true(took >= POOL_WAIT_MS && took < 15_000, `refused after ${Math.round(took)} ms, long before the change's timeout`);
    await locker.query('rollback');
    t.deepEqual((await held).data, { disableWebhook: { result: { enabled: false } } }, 'the change that held the connection went on');
    t.deepEqual(await short.post(viewer, '{ allWebhooks { nodes { id } } }'), { data: { allWebhooks: { nodes: [] } } });
  } finally {
    await locker.query('rollback');
    locker.release();
    await held?.catch(() => undefined);
  }
});

test.serial('the statement timeout bounds the SQL of the whole request, however many fields it asks', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  // (a timeout long beside what each field costs to set up, which a loaded machine
  // stretches: 8 fields of 400 ms once took 3.4 s with the bound in place)
  const TIMEOUT_MS = 1_500;
  const FIELDS = 8;
  const short = await shortApi(t, { poolSize: 2, statementTimeoutMs: TIMEOUT_MS });
  const locker = await db().pool.connect();
  try {
    // every read of the deliveries waits for a DBA's lock: each field's statement would
    // wait its own timeout, one after the other (FIELDS x TIMEOUT_MS)
    await locker.query('begin');
    await locker.query('lock table webhooks.delivery_history in access exclusive mode');
    const viewer = await short.token(company.id, 'webhook_viewer');
    const started = performance.now();
    const body = await short.post(viewer,
      `{ ${Array.from({ length: FIELDS }, (_, i) => `d${i}: allDeliveries(first: 1, offset: ${i}) { nodes { id } }`).join(' ')} }`);
    const elapsed = performance.now() - started;
    t.deepEqual(body.errors?.map((e: any) => e.extensions?.code), Array(FIELDS).fill('QUERY_TIMEOUT'));
    t.true(elapsed < (FIELDS / 2) * TIMEOUT_MS, `answered in ${Math.round(elapsed)} ms`);
  } finally {
    await locker.query('rollback');
    locker.release();
  }
});
