// A webhook's filters through GraphQL: createWebhook and updateWebhook take them, and
// a bad one comes back named, with the part at fault.
import test from 'ava';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { deliveriesOf, factories } from '../helpers/factories.ts';
import { inTransaction } from '../helpers/sql.ts';

const { db, api } = useTestDatabaseWithApi(test);
const make = () => factories(db().pool);

const WEBHOOK = 'id ignoreSources watchFields conditions';
const CREATE = `
  mutation Create($actions: [Action]!, $ignoreSources: [String], $watchFields: [String], $conditions: JSON) {
    createWebhook(input: { name: "Sync", url: "https://receiver.example.com/in", fields: ["email", "state"], actions: $actions,
                           ignoreSources: $ignoreSources, watchFields: $watchFields, conditions: $conditions }) {
      result { webhook { ${WEBHOOK} } }
    }
  }`;
const UPDATE = `
  mutation Update($id: BigInt!, $ignoreSources: [String], $watchFields: [String], $conditions: JSON, $clearConditions: Boolean) {
    updateWebhook(input: { id: $id, ignoreSources: $ignoreSources, watchFields: $watchFields, conditions: $conditions,
                           clearConditions: $clearConditions }) {
      result { ${WEBHOOK} }
    }
  }`;

const STATES = { field: 'state', op: 'in', value: ['VA', 'MD'] };

test('createWebhook takes the filters, and capture applies them', async (t) => {
  const f = make();
  const company = await f.company();
  const token = await api().token(company.id, 'webhook_admin', 'admin@example.com');
  const response = await api().gql(token, CREATE, {
    actions: ['CONTACT_UPDATED'], ignoreSources: ['encompass'], watchFields: ['email', 'phone'], conditions: STATES,
  });
  t.falsy(response.errors);
  const webhook = response.data.createWebhook.result.webhook;
  t.like(webhook, { ignoreSources: ['encompass'], watchFields: ['email', 'phone'], conditions: STATES });

  const va = await f.contact(company.id, { state: 'VA' });
  const dc = await f.contact(company.id, { state: 'DC' });
  const update = (source: string, id: string, set: string) => inTransaction(db().pool, `set local webhooks.source = '${source}'`,
    (c) => c.query(`update crm.contacts set ${set} where id = $1`, [id]));
  await update('encompass', va.id, "email = 'echo@example.com'");   // its own echo
  await update('api', va.id, "city = 'Hampton'");                   // not watched
  await update('api', dc.id, "email = 'dc@example.com'");           // not a state served
  await update('api', va.id, "email = 'va@example.com'");           // fires
  const rows = await deliveriesOf(db().pool, [webhook.id]);
  t.deepEqual(rows.map((r) => r.payload.data.contact), [{ id: Number(va.id), email: 'va@example.com', state: 'VA' }]);
});

test('updateWebhook changes the filters it is given, keeps the rest, clears conditions on request', async (t) => {
  const company = await make().company();
  const token = await api().token(company.id, 'webhook_admin', 'admin@example.com');
  const created = await api().gql(token, CREATE, { actions: ['CONTACT_UPDATED'], ignoreSources: ['api'], conditions: STATES });
  const id = created.data.createWebhook.result.webhook.id;

  const changed = await api().gql(token, UPDATE, { id, watchFields: ['city'] });
  t.deepEqual(changed.data.updateWebhook.result, { id, ignoreSources: ['api'], watchFields: ['city'], conditions: STATES });
  const emptied = await api().gql(token, UPDATE, { id, ignoreSources: [], conditions: { field: 'city', op: 'changed' } });
  t.deepEqual(emptied.data.updateWebhook.result,
    { id, ignoreSources: [], watchFields: ['city'], conditions: { field: 'city', op: 'changed' } });
  const cleared = await api().gql(token, UPDATE, { id, clearConditions: true });
  t.deepEqual(cleared.data.updateWebhook.result, { id, ignoreSources: [], watchFields: ['city'], conditions: null });
});

test('bad filters come back named, with the part at fault, and nothing changes', async (t) => {
  const company = await make().company();
  const token = await api().token(company.id, 'webhook_admin', 'admin@example.com');
  const refused = await api().gql(token, CREATE, {
    actions: ['CONTACT_UPDATED'], conditions: { all: [STATES, { field: 'state', op: 'equals', value: 'VA' }] },
  });
  t.is(refused.data?.createWebhook ?? null, null);
  t.like(refused.errors![0], {
    message: 'all[1].op: unknown operator "equals"; one of eq, ne, in, not_in, lt, lte, gt, gte, contains, starts_with, is_null, not_null, changed',
    extensions: { code: '23514', constraint: 'webhook_conditions_invalid', column: 'conditions' },
  });
  const badWatch = await api().gql(token, CREATE, { actions: ['CONTACT_UPDATED'], watchFields: ['shoe_size'] });
  t.like(badWatch.errors![0].extensions, { code: '23514', constraint: 'webhook_watch_field_unknown', column: 'watch_fields' });
  t.regex(badWatch.errors![0].message, /^watch_fields: unknown contact field "shoe_size"/);

  const created = await api().gql(token, CREATE, { actions: ['CONTACT_UPDATED'], conditions: STATES });
  const id = created.data.createWebhook.result.webhook.id;
  const lineBreak = await api().gql(token, UPDATE, { id, ignoreSources: ['api', 'encompass\r\nX-Injected: 1'] });
  t.like(lineBreak.errors![0], {
    message: 'ignore_sources: a source must not contain control characters (tabs, line breaks, escapes, …) nor line or paragraph separators (U+2028, U+2029), as source 2 does',
    extensions: { code: '23514', constraint: 'webhook_ignore_sources_invalid', column: 'ignore_sources' },
  });
  const badUpdate = await api().gql(token, UPDATE, { id, ignoreSources: [''], conditions: { field: 'birthday', op: 'gt', value: 'yesterday' } });
  t.like(badUpdate.errors![0].extensions, { code: '23514', column: 'ignore_sources', constraint: 'webhook_ignore_sources_invalid' });
  const badValue = await api().gql(token, UPDATE, { id, conditions: { not: { field: 'birthday', op: 'gt', value: 'yesterday' } } });
  t.like(badValue.errors![0], {
    message: 'not.value: must be a date written YYYY-MM-DD (birthday is a date)',
    extensions: { code: '23514', constraint: 'webhook_conditions_invalid', column: 'conditions' },
  });
  const { rows } = await db().pool.query('select ignore_sources, conditions from webhooks.webhooks where company_id = $1', [company.id]);
  t.deepEqual(rows, [{ ignore_sources: [], conditions: STATES }]);
});

test('a number in conditions beyond what JSON readers hold (1e400) is refused by name (JSON_NUMBER_OUT_OF_RANGE), as a variable or written in the query, not read as infinity and sent as null', async (t) => {
  const company = await make().company();
  const token = await api().token(company.id, 'webhook_admin', 'admin@example.com');
  const send = async (value: string) => {
    // (the request's text as a client writes it: JSON.stringify cannot write 1e400)
    const response = await fetch(`${api().api.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: `{"query": ${JSON.stringify(CREATE)}, "variables": {"actions": ["CONTACT_UPDATED"], "conditions": {"field": "id", "op": "gt", "value": ${value}}}}`,
    });
    return response.json() as Promise<{ data?: any; errors?: Array<{ message: string; extensions?: Record<string, unknown> }> }>;
  };
  for (const value of ['1e400', '-1e400', '[1, 2e308]']) {
    const refused = await send(value);
    t.is(refused.data?.createWebhook ?? null, null, value);
    t.like(refused.errors?.[0]?.extensions, { code: 'JSON_NUMBER_OUT_OF_RANGE', limit: Number.MAX_VALUE }, value);
    t.regex(refused.errors?.[0]?.message ?? '', /a JSON number beyond ±1\.7976931348623157e\+308 is not accepted: JSON readers \(this API's too\) take it as infinity$/, value);
  }
  const literal = await api().gql(token, `mutation { createWebhook(input: { name: "Sync", url: "https://receiver.example.com/in", fields: ["email"],
    actions: [CONTACT_UPDATED], conditions: { field: "id", op: "gt", value: 1e400 } }) { result { webhook { id } } } }`);
  t.like(literal.errors?.[0]?.extensions, { code: 'JSON_NUMBER_OUT_OF_RANGE' }, JSON.stringify(literal.errors));
  const { rows } = await db().pool.query('select count(*)::int as n from webhooks.webhooks where company_id = $1', [company.id]);
  t.is(rows[0].n, 0);
});

test('a number in conditions the API\'s JSON reader would not hold as written (1e-400 read as 0, 9007199254740993 as 9007199254740992) is refused by name (JSON_NUMBER_OUT_OF_RANGE), as a variable or written in the query, not stored as another number; one read back as written is taken', async (t) => {
  const company = await make().company();
  const token = await api().token(company.id, 'webhook_admin', 'admin@example.com');
  const send = async (value: string, ignoreSources = '[]') => {
    // (the request's text as a client writes it: JSON.stringify cannot write 1e-400)
    const response = await fetch(`${api().api.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: `{"query": ${JSON.stringify(CREATE)}, "variables": {"actions": ["CONTACT_UPDATED"], "ignoreSources": ${ignoreSources}, "conditions": {"field": "custom.amount", "op": "in", "value": ${value}}}}`,
    });
    return { status: response.status, body: await response.json() as { data?: any; errors?: Array<{ message: string; extensions?: Record<string, unknown> }> } };
  };
  for (const [value, readAs] of [['1e-400', '0'], ['-2e-324', '0'], ['[1, 9007199254740993]', '9007199254740992'], ['1.23456789e-320', '1.2347e-320'],
    ['0.12345678901234567890', '0.12345678901234568']] as const) {
    const { status, body } = await send(value);
    t.is(status, 400, value);
    t.is(body.data?.createWebhook ?? null, null, value);
    const number = value.startsWith('[') ? '9007199254740993' : value;
    t.deepEqual(body.errors?.[0]?.extensions, { code: 'JSON_NUMBER_OUT_OF_RANGE', number, readAs }, value);
    t.is(body.errors?.[0]?.message, `a JSON number JSON readers do not hold as written is not accepted: they (this API's too) read ${number} as ${readAs}`, value);
  }
  const literal = await api().gql(token, `mutation { createWebhook(input: { name: "Sync", url: "https://receiver.example.com/in", fields: ["email"],
    actions: [CONTACT_UPDATED], conditions: { field: "custom.amount", op: "gt", value: 1e-400 } }) { result { webhook { id } } } }`);
  t.deepEqual(literal.errors?.[0]?.extensions, { code: 'JSON_NUMBER_OUT_OF_RANGE', number: '1e-400', readAs: '0' }, JSON.stringify(literal.errors));
  const { rows } = await db().pool.query('select count(*)::int as n from webhooks.webhooks where company_id = $1', [company.id]);
  t.is(rows[0].n, 0);

  // read back as written: kept as sent, in a string too (a string holds any text)
  const taken = await send('[5e-324, 0.1, 1.10, 9007199254740992, -0, 1e21]', '["1e-400", "\\"9007199254740993"]');
  t.is(taken.status, 200, JSON.stringify(taken.body));
  const stored = await db().pool.query('select ignore_sources, conditions -> \'value\' as value from webhooks.webhooks where company_id = $1', [company.id]);
  t.deepEqual(stored.rows, [{ ignore_sources: ['1e-400', '"9007199254740993'], value: [5e-324, 0.1, 1.1, 9007199254740992, 0, 1e21] }]);
});
