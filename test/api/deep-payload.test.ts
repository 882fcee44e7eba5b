// A contact's jsonb may nest thousands of levels deep. Capture stores it and the relay
// sends it as it is; the API must still answer every query that selects the payload
// (api/deep-json.ts): nested deeper than it can serialise, a payload is served as its
// JSON text.
import test from 'ava';
import { MAX_SERVED_JSON_DEPTH, nestsDeeperThan, stringifyDeep } from '../../api/deep-json.ts';
import { MAX_QUERY_TEXT_NESTING, textNestsDeeperThan } from '../../api/limits.ts';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';

const { db, api } = useTestDatabaseWithApi(test);

const HISTORY = `query($id: BigInt!) { webhookById(id: $id) { history(first: 10) { nodes { id action payload } } } }`;

test('a payload nested 9,000 levels deep does not break the history: it is served as its JSON text, and the shallow ones beside it as JSON', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.updated'], fields: ['first_name', 'custom'] });
  const contact = await f.contact(company.id, { first_name: 'Deep' });
  // the writer's transaction succeeds: capture takes the value as it is
  await db().pool.query(
    `update crm.contacts set custom = jsonb_build_object('deep', (repeat('[', 9000) || repeat(']', 9000))::jsonb) where id = $1`,
    [contact.id]);
  const { rows } = await db().pool.query(
    `select action::text, payload::text as text from webhooks.deliveries where webhook_id = $1 order by id`, [hook.id]);
  t.deepEqual(rows.map((r) => r.action), ['contact.created', 'contact.updated']);

  const viewer = await api().token(company.id, 'webhook_viewer');
  const history = await api().gql(viewer, HISTORY, { id: hook.id });
  t.is(history.status, 200);
  t.is(history.errors, undefined);
  const [updated, created] = history.data.webhookById.history.nodes;
  t.is(created.payload.data.contact.first_name, 'Deep');
  t.is(typeof updated.payload, 'string');
  // the text is the payload as stored (Postgres writes spaces after ':' and ',')
  t.is(updated.payload, rows[1].text.replace(/([:,]) /g, '$1'));
  // and the same through the delivery itself
  const one = await api().gql(viewer, 'query($id: BigInt!) { deliveryById(id: $id) { payload } }', { id: updated.id });
  t.is(one.errors, undefined);
  t.is(one.data.deliveryById.payload, updated.payload);
});

test('payloads up to the depth limit are served as JSON; one level more as text', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  // payload = {"v": <n nested arrays>}: depth n + 1
  for (const n of [MAX_SERVED_JSON_DEPTH - 1, MAX_SERVED_JSON_DEPTH]) {
    await db().pool.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload)
       values ($1, $2, 'contact.created', $3::int, jsonb_build_object('v', (repeat('[', $3::int) || repeat(']', $3::int))::jsonb))`,
      [hook.id, company.id, n]);
  }
  const viewer = await api().token(company.id, 'webhook_viewer');
  const history = await api().gql(viewer, HISTORY, { id: hook.id });
  const payloads = history.data.webhookById.history.nodes.map((n: any) => n.payload);
  t.is(typeof payloads.find((p: unknown) => typeof p === 'object'), 'object');
  t.is(payloads.filter((p: unknown) => typeof p === 'string').length, 1);
});

test('stringifyDeep writes what JSON.stringify writes, at any depth', (t) => {
  const samples = [null, 1.5, 'a "q" \u2028', [], {}, { a: [1, { b: null, c: 'x' }], 'd e': true }, [[[]], {}]];
  for (const value of samples) t.is(stringifyDeep(value), JSON.stringify(value));
  const deep = JSON.parse('['.repeat(20_000) + ']'.repeat(20_000));
  t.is(stringifyDeep(deep).length, 40_000);
  t.true(nestsDeeperThan(deep, MAX_SERVED_JSON_DEPTH));
  t.false(nestsDeeperThan({ a: [[1]] }, 3));
  t.true(nestsDeeperThan({ a: [[1]] }, 2));
});

test('a JSON input nested deeper than the limit is refused by name (JSON_TOO_DEEP), as a variable or written in the query; one at the limit reaches the database\'s rules', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const admin = await api().token(company.id);
  const CREATE = `mutation($v: JSON) { createWebhook(input: { name: "deep", url: "https://deep.example.com", fields: ["email"],
                    actions: [CONTACT_CREATED], conditions: $v }) { result { secret } } }`;
  const nested = (n: number) => '['.repeat(n) + ']'.repeat(n);
  // a variable, sent as JSON text (a client's JSON.stringify could not write it either)
  const post = async (query: string, variablesText: string) => {
    const response = await fetch(`${api().api.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` },
      body: `{"query": ${JSON.stringify(query)}, "variables": ${variablesText}}`,
    });
    return (await response.json()) as { errors?: Array<{ message: string; extensions?: Record<string, unknown> }> };
  };
  // (a body nested past MAX_QUERY_TEXT_NESTING is refused before it is parsed, below)
  for (const n of [MAX_SERVED_JSON_DEPTH + 1, MAX_QUERY_TEXT_NESTING - 10]) {
    const refused = await post(CREATE, `{"v": ${nested(n)}}`);
    t.is(refused.errors?.[0]?.extensions?.code, 'JSON_TOO_DEEP', `variable nested ${n} levels: ${JSON.stringify(refused.errors)}`);
    t.regex(refused.errors?.[0]?.message ?? '', new RegExp(`nested deeper than ${MAX_SERVED_JSON_DEPTH} levels`));
  }
  // (a text nested past MAX_QUERY_TEXT_NESTING is refused before it is parsed, below)
  const literal = await api().gql(admin, CREATE.replace('conditions: $v', `conditions: ${nested(MAX_QUERY_TEXT_NESTING - 10)}`).replace('($v: JSON)', ''));
  t.is(literal.errors?.[0]?.extensions?.code, 'JSON_TOO_DEEP', `written in the query: ${JSON.stringify(literal.errors)}`);
  // at the limit: the value reaches the database, whose rule for conditions says what is wrong
  const atLimit = await post(CREATE, `{"v": ${nested(MAX_SERVED_JSON_DEPTH)}}`);
  t.is(atLimit.errors?.[0]?.extensions?.constraint, 'webhook_conditions_invalid', JSON.stringify(atLimit.errors));
  const { rows } = await db().pool.query('select count(*)::int as n from webhooks.webhooks where company_id = $1', [company.id]);
  t.is(rows[0].n, 0);
});

test('a query text nested past what GraphQL\'s parser can read is refused by name (QUERY_TOO_DEEP), not with the parser\'s stack overflow', async (t) => {
  const company = await factories(db().pool).company();
  const admin = await api().token(company.id);
  const nested = (n: number) => '['.repeat(n) + ']'.repeat(n);
  const texts = [
    `mutation { createWebhook(input: { name: "deep", url: "https://deep.example.com", fields: ["email"], actions: [CONTACT_CREATED], conditions: ${nested(3_000)} }) { result { secret } } }`,
    // (two levels a repetition: 600 levels in 7 kB, within API_MAX_QUERY_BYTES)
    `{ ${'webhooks { nodes { '.repeat(300)}id${' } }'.repeat(300)} }`,
  ];
  for (const query of texts) {
    const response = await fetch(`${api().api.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` },
      body: JSON.stringify({ query }),
    });
    const body = (await response.json()) as { errors?: Array<{ message: string; extensions?: Record<string, unknown> }> };
    t.is(response.status, 400, query.slice(0, 40));
    t.like(body.errors?.[0], { extensions: { code: 'QUERY_TOO_DEEP', limit: MAX_QUERY_TEXT_NESTING } }, JSON.stringify(body.errors));
    t.regex(body.errors?.[0]?.message ?? '', new RegExp(`query text nests brackets more than ${MAX_QUERY_TEXT_NESTING} levels deep`));
  }
});

test('the nesting of a query text counts brackets outside strings and comments only', (t) => {
  t.false(textNestsDeeperThan('{ a(b: [[1]]) { c } }', 4));
  t.true(textNestsDeeperThan('{ a(b: [[1]]) { c } }', 3));
  t.false(textNestsDeeperThan('{ a(b: "[[[[[[[[") }', 2));
  t.false(textNestsDeeperThan('{ a(b: "\\"[[[[ \\" [[[") }', 2), 'escaped quotes stay in the string');
  t.false(textNestsDeeperThan('{ a(b: """ [[[[ \\""" [[[[ """) }', 2), 'a block string, its escaped triple quote in it');
  t.false(textNestsDeeperThan('{ a # [[[[[[\n }', 1));
  t.true(textNestsDeeperThan('{'.repeat(50_000), 100));
});

// A body is parsed whole before anything looks at what it holds: 98 kB of one array
// nested 49,000 levels took JSON.parse 8 ms of the API's one thread (a flat one of the
// same size 0.5 ms), paid for each of a company's requests whether the variable was
// used or not, and no value the API takes nests that deep.
test('a body nested past MAX_QUERY_TEXT_NESTING is refused by name before it is parsed, used or not; one within it is parsed', async (t) => {
  const company = await factories(db().pool).company();
  const viewer = await api().token(company.id, 'webhook_viewer');
  const post = async (body: string) => {
    const response = await fetch(`${api().api.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${viewer}` },
      body,
    });
    return { status: response.status, body: (await response.json()) as { data?: unknown; errors?: Array<{ message: string; extensions?: Record<string, unknown> }> } };
  };
  const withVariable = (nesting: number) =>
    `{"query": "query { currentCompanyId }", "variables": {"unused": ${'['.repeat(nesting)}${']'.repeat(nesting)}}}`;
  for (const nesting of [MAX_QUERY_TEXT_NESTING, 49_000]) {
    const { status, body } = await post(withVariable(nesting));
    t.is(status, 400, `${nesting}`);
    t.false('data' in body, `${nesting}`);
    t.like(body.errors?.[0], {
      message: `request body nests brackets more than ${MAX_QUERY_TEXT_NESTING} levels deep: no request needs that many`,
      extensions: { code: 'JSON_TOO_DEEP', limit: MAX_QUERY_TEXT_NESTING },
    }, `${nesting}`);
  }
  // (the body's object and its variables are two levels of it)
  const { status, body } = await post(withVariable(MAX_QUERY_TEXT_NESTING - 2));
  t.is(status, 200);
  t.deepEqual(body, { data: { currentCompanyId: company.id } });
});
