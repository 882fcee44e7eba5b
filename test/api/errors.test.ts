// Bad input gets an error that names the field and the problem, never "an internal
// error", and nothing is written.
import test from 'ava';
import { QUOTED_MAX, shortened } from '../../api/errors.ts';
import { RATE_UNBOUNDED, useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';
import { apiSchema, inputsOfType, type Ids, type SchemaInput } from '../helpers/schema-inputs.ts';
import { until } from '../helpers/until.ts';

const { db, api } = useTestDatabaseWithApi(test, { limits: RATE_UNBOUNDED });

const CREATE = `
  mutation Create($name: String, $url: String, $fields: [String], $actions: [Action], $statusId: BigInt, $userId: BigInt) {
    createWebhook(input: { name: $name, url: $url, fields: $fields, actions: $actions, statusId: $statusId, userId: $userId }) {
      result { secret webhook { id } }
    }
  }`;

const valid = { name: 'Hook', url: 'https://receiver.example.com/in', fields: ['email'], actions: ['CONTACT_CREATED'] };

async function webhookCount(companyId: string): Promise<number> {
  const { rows } = await db().pool.query('select count(*)::int as n from webhooks.webhooks where company_id = $1', [companyId]);
  return rows[0].n;
}

test('each bad webhook configuration is refused with its rule, its field and a message that says what is wrong', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const other = await f.company();
  const otherStatus = await f.status(other.id);
  const otherUser = await f.user(other.id);
  const ownStatus = await f.status(company.id);
  const token = await api().token(company.id);

  const cases: Array<[string, Record<string, unknown>, { constraint: string; column: string }, RegExp]> = [
    ['bad URL', { url: 'ftp://files.example.com/x' }, { constraint: 'webhook_url_invalid', column: 'url' }, /^webhook url must start with http:\/\/ or https:\/\/, got 'ftp:\/\/'$/],
    ['URL without host', { url: 'https://' }, { constraint: 'webhook_url_invalid', column: 'url' }, /^webhook url must have a host after https:\/\/$/],
    ['empty name', { name: '  ' }, { constraint: 'webhook_name_required', column: 'name' }, /name must not be empty/],
    ['name with a bidi override', { name: 'Invoice\u202eslx.exe' }, { constraint: 'webhook_name_bidi_controls', column: 'name' }, /name must not contain bidi controls/],
    ['name that shows nothing', { name: '\u200b\u200b' }, { constraint: 'webhook_name_invisible', column: 'name' }, /name must have a character that shows/],
    ['unknown field', { fields: ['email', 'shoe_size'] }, { constraint: 'webhook_field_unknown', column: 'fields' }, /unknown contact field 'shoe_size'; known fields: .*first_name/],
    ['no fields', { fields: [] }, { constraint: 'webhook_fields_empty', column: 'fields' }, /at least one contact field/],
    ['no actions', { actions: [] }, { constraint: 'webhook_actions_empty', column: 'actions' }, /at least one action/],
    ['status of another company', { actions: ['CONTACT_STATUS_ADDED'], statusId: otherStatus.id }, { constraint: 'webhook_status_other_company', column: 'status_id' }, new RegExp(`status ${otherStatus.id} is not a status of company ${company.id}`)],
    ['status that does not exist', { actions: ['CONTACT_STATUS_ADDED'], statusId: '999999999' }, { constraint: 'webhook_status_other_company', column: 'status_id' }, /status 999999999 is not a status of company/],
    ['status filter on a non-status action', { actions: ['CONTACT_CREATED'], statusId: ownStatus.id }, { constraint: 'webhook_status_needs_status_actions', column: 'status_id' }, /status_id filters status actions only/],
    ['user of another company', { actions: ['CONTACT_USER_ASSIGNED'], userId: otherUser.id }, { constraint: 'webhook_user_other_company', column: 'user_id' }, new RegExp(`user ${otherUser.id} is not a user of company ${company.id}`)],
  ];
  for (const [name, input, extensions, message] of cases) {
    const response = await api().gql(token, CREATE, { ...valid, ...input });
    t.is(response.errors?.length, 1, name);
    const [error] = response.errors!;
    t.like(error.extensions, { code: '23514', ...extensions }, name);
    t.regex(error.message, message, name);
    t.deepEqual(error.path, ['createWebhook'], name);
    t.is(response.data?.createWebhook, null, name);
  }
  t.is(await webhookCount(company.id), 0, 'nothing was written');
});

test('an unknown action is refused by GraphQL, naming the value and the enum', async (t) => {
  const company = await factories(db().pool).company();
  const token = await api().token(company.id);
  const response = await api().gql(token, CREATE, { ...valid, actions: ['CONTACT_CREATED', 'CONTACT_EXPLODED'] });
  t.is(response.errors?.length, 1);
  t.regex(response.errors![0].message, /Value "CONTACT_EXPLODED" does not exist in "Action" enum/);
  t.is(response.data, undefined, 'refused before anything ran');
  t.is(await webhookCount(company.id), 0);
});

test('the same rules guard updates; a missing webhook says so', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const token = await api().token(company.id);
  const update = 'mutation($id: BigInt!, $url: String, $fields: [String]) { updateWebhook(input: { id: $id, url: $url, fields: $fields }) { result { url } } }';

  const badUrl = await api().gql(token, update, { id: hook.id, url: 'not a url' });
  t.like(badUrl.errors?.[0].extensions, { code: '23514', constraint: 'webhook_url_invalid', column: 'url' });
  const badField = await api().gql(token, update, { id: hook.id, fields: ['nope'] });
  t.like(badField.errors?.[0].extensions, { code: '23514', constraint: 'webhook_field_unknown', column: 'fields' });
  const missing = await api().gql(token, update, { id: '987654321', url: 'https://x.example.com' });
  t.like(missing.errors?.[0], { message: 'webhook 987654321 not found', extensions: { code: 'P0002', constraint: 'webhook_not_found', column: 'id' } });

  const { rows: [row] } = await db().pool.query('select url, fields from webhooks.webhooks where id = $1', [hook.id]);
  t.deepEqual(row, { url: hook.url, fields: hook.fields });
});

test('a malformed date names the problem instead of an internal error', async (t) => {
  const company = await factories(db().pool).company();
  const token = await api().token(company.id);
  const response = await api().gql(token, '{ webhookReport(since: "yesterday-ish") { totalCount } }');
  t.is(response.errors?.length, 1);
  t.notRegex(response.errors![0].message, /An error occurred \(logged with hash/);
  t.regex(response.errors![0].message, /^since is not a time Postgres reads: invalid input syntax for type timestamp with time zone: "yesterday-ish"/);
  t.like(response.errors![0].extensions, { code: '22007', constraint: 'datetime_invalid', column: 'since' });
});

test('a refusal quotes at most the first 100 characters of what was sent: a time Postgres does not read, a zone it does not know, a time that is no text', async (t) => {
  const company = await factories(db().pool).company();
  const token = await api().token(company.id);
  const report = 'query Report($since: Datetime) { webhookReport(since: $since) { nodes { name } } }';
  const long = 'x'.repeat(90_000);
  const cases: Array<[string, unknown, string]> = [
    // Postgres's message quoted all of it: 90,104 characters of the answer were the caller's
    ['a time Postgres does not read', `2026-01-01${long}`, '22007'],
    ['a zone Postgres does not know', `2026-01-01 00:00:00 ${long}`, '22023'],
    ['a time that is no text', [long], '22007'],
  ];
  for (const [name, since, code] of cases) {
    const refused = await api().gql(token, report, { since });
    t.like(refused.errors?.[0]?.extensions, { constraint: 'datetime_invalid', column: 'since' }, name);
    t.true(refused.errors![0].message.length < 300, `${name}: ${refused.errors![0].message.length} characters (${code})`);
    t.regex(refused.errors![0].message, /x{50,100}…/, name);
  }
});

test('the database\'s refusals quote a caller\'s text as the API\'s own do: the same cut (QUOTED_MAX)', async (t) => {
  for (const length of [QUOTED_MAX - 1, QUOTED_MAX, QUOTED_MAX + 1, 10 * QUOTED_MAX]) {
    const text = 'é'.repeat(length);
    const { rows: [{ quoted }] } = await db().pool.query('select webhooks_private.quoted_part($1) as quoted', [text]);
    t.is(quoted, shortened(text), `${length} characters`);
  }
});

test('a refusal of a field or a variable GraphQL cannot take quotes at most the first 100 characters of the value; a URL\'s quotes none of it', async (t) => {
  const company = await factories(db().pool).company();
  const token = await api().token(company.id);
  const long = 'x'.repeat(40_000);
  const cases: Array<[string, string, Record<string, unknown>, Record<string, unknown>]> = [
    // 15,167 characters for a field of 15,000: the database's message quoted all of it
    ['an unknown field', CREATE, { ...valid, fields: [long] }, { constraint: 'webhook_field_unknown', column: 'fields' }],
    // GraphQL's own words quoted it twice: 180,087 characters for a value of 90,000
    ['an action that is none', CREATE, { ...valid, actions: [long] }, { code: 'GRAPHQL_VALIDATION_FAILED' }],
    // (GraphQL's own words until the API named an Int it cannot take: int_invalid)
    ['text for a number', 'query Q($n: Int) { webhookReport(first: $n) { nodes { name } } }', { n: long }, { code: '22P02', constraint: 'int_invalid', column: 'first' }],
  ];
  for (const [name, query, variables, named] of cases) {
    const refused = await api().gql(token, query, variables);
    t.like(refused.errors?.[0]?.extensions, named, name);
    t.true(refused.errors![0].message.length < 400, `${name}: ${refused.errors![0].message.length} characters`);
    t.regex(refused.errors![0].message, /x{50}/, name);
    t.notRegex(refused.errors![0].message, /x{101}/, name);
  }
  // (its message was 2,190 characters, the URL's first 2,100, and then its first 100: a
  // token in its path with them; test/sql/config.test.ts has each refusal of a URL)
  const url = await api().gql(token, CREATE, { ...valid, url: `https://receiver.example.com/${long}` });
  t.like(url.errors?.[0], { message: 'webhook url must be at most 2048 characters, got 40029', extensions: { constraint: 'webhook_url_invalid', column: 'url' } });
});

test('a report or a history asked for a time before 1970 or after 9999 names the argument and the range (requested_time_range), not "An error occurred" or a bare overflow', async (t) => {
  // Postgres's own ends (4714-11-24 BC, 294276) failed deep in the counting with
  // "timestamp out of range" (22008) and no argument named
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await f.contact(company.id);
  await db().pool.query('call webhooks.roll_up_report_counts()');
  const token = await api().token(company.id, 'webhook_viewer');
  const REPORT = 'query($since: Datetime, $until: Datetime) { webhookReport(since: $since, until: $until) { nodes { timesFired } } }';
  const HISTORY = 'query($id: BigInt!, $since: Datetime, $until: Datetime) { webhookById(id: $id) { history(since: $since, until: $until) { nodes { id } } } }';
  const COUNT = 'query($id: BigInt!, $since: Datetime, $until: Datetime) { webhookById(id: $id) { historyCount(since: $since, until: $until) } }';
  for (const at of ['4714-11-24 00:00:00+00 BC', '1969-12-31T23:59:59Z', '10000-01-01T00:00:00Z', '294276-12-31T23:59:59Z']) {
    for (const [what, query] of [['report', REPORT], ['history', HISTORY], ['historyCount', COUNT]] as const) {
      for (const column of ['since', 'until'] as const) {
        const response = await api().gql(token, query, { id: hook.id, [column]: at });
        const name = `${what} ${column} ${at}`;
        t.is(response.errors?.length, 1, name);
        t.like(response.errors?.[0]?.extensions, { code: '22008', constraint: 'requested_time_range', column }, name);
        t.regex(response.errors?.[0]?.message ?? '', new RegExp(`^${column} must be from 1970-01-01 to 9999-12-31 \\(UTC\\), or open \\(null\\), got `), name);
      }
    }
  }
  // the years between, and open ends: answered
  for (const [since, until] of [['1970-01-01T00:00:00Z', '9999-12-31T23:59:59Z'], ['-infinity', 'infinity'], [null, null]]) {
    const response = await api().gql(token, `query($id: BigInt!, $since: Datetime, $until: Datetime) {
        webhookReport(since: $since, until: $until, webhookId: $id) { nodes { timesFired } }
        webhookById(id: $id) { history(since: $since, until: $until) { nodes { id } } historyCount(since: $since, until: $until) } }`,
    { id: hook.id, since, until });
    t.is(response.errors, undefined, `[${since}, ${until})`);
    t.like(response.data, { webhookReport: { nodes: [{ timesFired: '1' }] }, webhookById: { historyCount: '1' } }, `[${since}, ${until})`);
  }
});

test('a time whose year has a sign, is past 9999 or is before Christ is refused the same way (requested_time_range), not as Postgres\'s parser would (a time zone displacement out of range, 22009, or a bare "timestamp out of range")', async (t) => {
  // ISO 8601 writes a year outside 0000 to 9999 with a sign (JavaScript's toISOString
  // does: -271821-04-20T00:00:00.000Z); Postgres read that sign as a time zone
  // displacement and refused the text before the engine's own rule saw it, as it
  // refused a year past its 294276 or before its 4714 BC
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const token = await api().token(company.id, 'webhook_admin');
  const REPORT = 'query($since: Datetime, $until: Datetime) { webhookReport(since: $since, until: $until) { nodes { timesFired } } }';
  const HISTORY = 'query($id: BigInt!, $since: Datetime, $until: Datetime) { webhookById(id: $id) { history(since: $since, until: $until) { nodes { id } } } }';
  const COUNT = 'query($id: BigInt!, $since: Datetime, $until: Datetime) { webhookById(id: $id) { historyCount(since: $since, until: $until) } }';
  const REPLAY = 'mutation($input: ReplayFailedInput!) { replayFailed(input: $input) { result { id } } }';
  const refusedAs = (response: Awaited<ReturnType<ReturnType<typeof api>['gql']>>, column: string, at: string, name: string) => {
    t.is(response.errors?.length, 1, name);
    t.like(response.errors?.[0]?.extensions, { code: '22008', constraint: 'requested_time_range', column }, name);
    const signed = /^\s*[+-]/.test(at) ? ' (a year is written without a sign)' : '';
    t.is(response.errors?.[0]?.message,
      `${column} must be from 1970-01-01 to 9999-12-31 (UTC), or open (null), got ${JSON.stringify(at)}${signed}`, name);
  };
  for (const at of ['-4712-01-01T00:00:00Z', '+294276-01-01T00:00:00Z', '-271821-04-20T00:00:00.000Z', '+002026-01-01T00:00:00Z',
    ' -0001-01-01', '294277-01-01T00:00:00Z', '99999999999999999999-01-01', '5000-01-01 BC', '2026-01-01 00:00:00+00 bc', '0000-01-01']) {
    for (const [what, query] of [['report', REPORT], ['history', HISTORY], ['historyCount', COUNT]] as const) {
      for (const column of ['since', 'until'] as const) {
        refusedAs(await api().gql(token, query, { id: hook.id, [column]: at }), column, at, `${what} ${column} ${at}`);
      }
    }
    refusedAs(await api().gql(token, REPLAY, { input: { webhookId: hook.id, since: at } }), 'since', at, `replayFailed ${at}`);
  }
  // written in the query itself, as in a variable
  const literal = await api().gql(token, '{ webhookReport(until: "+294276-01-01T00:00:00Z") { totalCount } }');
  refusedAs(literal, 'until', '+294276-01-01T00:00:00Z', 'a literal');
  const byDefault = await api().gql(token, 'query($at: Datetime = "-4712-01-01T00:00:00Z") { webhookReport(since: $at) { totalCount } }');
  refusedAs(byDefault, 'since', '-4712-01-01T00:00:00Z', "a variable's default");
  const replayLiteral = await api().gql(token,
    'mutation($id: BigInt!) { replayFailed(input: { webhookId: $id, since: "-4712-01-01T00:00:00Z" }) { result { id } } }', { id: hook.id });
  refusedAs(replayLiteral, 'since', '-4712-01-01T00:00:00Z', 'replayFailed, a literal');
  // what Postgres reads is left to it, and its refusal named after the argument: a month that is none is no time at all
  const month = await api().gql(token, REPORT, { since: '2026-13-01' });
  t.like(month.errors?.[0], { message: 'since is not a time Postgres reads: date/time field value out of range: "2026-13-01"',
    extensions: { code: '22008', constraint: 'datetime_invalid', column: 'since' } });
  // and the years between, a year written with a leading zero, open ends: answered
  for (const at of ['1970-01-01T00:00:00Z', '02026-01-01T00:00:00Z', '9999-12-31T23:59:59Z', '-infinity', 'infinity']) {
    const response = await api().gql(token, REPORT, { since: at });
    t.is(response.errors, undefined, at);
  }
});

test('a NUL in text and a number beyond bigint are refused naming the rule and the field, not "An error occurred" nor Postgres\'s bare message', async (t) => {
  const company = await factories(db().pool).company();
  const token = await api().token(company.id);

  const nul = await api().gql(token, CREATE, { ...valid, name: 'Hook\u0000' });
  t.is(nul.errors?.length, 1);
  t.is(nul.errors![0].message, 'name must not contain a NUL character (U+0000): Postgres text cannot hold one');
  t.like(nul.errors![0].extensions, { code: '22021', constraint: 'nul_character', column: 'name' });
  t.is(nul.status, 400, 'refused before anything ran: no data');
  t.is(nul.data, undefined);
  // written in the query's text as an escape, as in a variable
  const literal = await api().gql(token, 'mutation { createWebhook(input: { name: "Hook\\u0000", url: "https://x.example.com", fields: ["email"], actions: [CONTACT_CREATED] }) { result { secret } } }');
  t.like(literal.errors?.[0]?.extensions, { code: '22021', constraint: 'nul_character', column: 'name' }, JSON.stringify(literal.errors));

  const huge = await api().gql(token, 'query($id: BigInt!) { webhookById(id: $id) { id } }', { id: '99999999999999999999' });
  t.is(huge.errors?.length, 1);
  t.is(huge.errors![0].message, 'id must be from -9223372036854775808 to 9223372036854775807 (bigint), got "99999999999999999999"');
  t.like(huge.errors![0].extensions, { code: '22003', constraint: 'bigint_range', column: 'id' });

  const hugeArgument = await api().gql(token, CREATE, { ...valid, actions: ['CONTACT_STATUS_ADDED'], statusId: '9223372036854775808' });
  t.like(hugeArgument.errors?.[0].extensions, { code: '22003', constraint: 'bigint_range', column: 'statusId' });
  t.is(await webhookCount(company.id), 0);
});

test('a time zone offset out of range, an interval past what Postgres holds and a NUL in a JSON argument are refused naming the rule and the field', async (t) => {
  // each was masked as an internal error, then passed with Postgres's message alone
  // (22009, 22015, 22P05): Postgres reading the caller's text, naming nothing
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const token = await api().token(company.id);
  const HISTORY = 'query($id: BigInt!, $since: Datetime) { webhookById(id: $id) { history(since: $since) { nodes { id } } } }';
  // (a year written with a sign, which Postgres reads as such an offset, is refused by
  // name before: requested_time_range, above)
  const offset = await api().gql(token, HISTORY, { id: hook.id, since: '2026-01-01T00:00:00+99:00' });
  t.is(offset.errors?.length, 1);
  t.is(offset.errors![0].message, 'since is not a time Postgres reads: time zone displacement out of range: "2026-01-01T00:00:00+99:00"');
  t.like(offset.errors![0].extensions, { code: '22009', constraint: 'datetime_invalid', column: 'since' });

  const WINDOW = 'mutation($id: BigInt!, $window: IntervalInput) { setWebhookDelivery(input: { id: $id, coalesceWindow: $window, ordered: false }) { result { id } } }';
  const window = await api().gql(token, WINDOW, { id: hook.id, window: { seconds: 1e18 } });
  t.is(window.errors?.length, 1);
  t.regex(window.errors![0].message, /^coalesceWindow is beyond what an interval holds: /);
  t.like(window.errors![0].extensions, { code: '22015', constraint: 'interval_range', column: 'coalesceWindow' });

  const UPDATE = 'mutation($id: BigInt!, $conditions: JSON) { updateWebhook(input: { id: $id, conditions: $conditions }) { result { id } } }';
  for (const conditions of [{ field: 'city', op: 'eq', value: 'Spring\u0000field' }, { field: 'custom.a\u0000', op: 'is_null' }, { ['a\u0000']: 1 }]) {
    const response = await api().gql(token, UPDATE, { id: hook.id, conditions });
    t.is(response.errors?.length, 1);
    t.is(response.errors![0].message, 'conditions must not contain a NUL character (U+0000): Postgres text cannot hold one');
    t.like(response.errors![0].extensions, { code: '22021', constraint: 'nul_character', column: 'conditions' });
  }
  const { rows: [row] } = await db().pool.query('select conditions, coalesce_window from webhooks.webhooks where id = $1', [hook.id]);
  t.deepEqual(row, { conditions: null, coalesce_window: null }, 'nothing was changed');
});

test('a cursor that is not one of ours, or of another order, and offset with last are refused with a code, as every page argument is', async (t) => {
  // their messages came through, but with no extensions.code for a client to act on
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await f.contact(company.id);
  const token = await api().token(company.id);
  const HISTORY = 'query($id: BigInt!, $after: Cursor) { webhookById(id: $id) { history(after: $after) { nodes { id } } } }';
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64');
  const { data: { webhookReport: { pageInfo: { endCursor: reportCursor } } } } =
    await api().gql(token, '{ webhookReport(first: 1) { pageInfo { endCursor } } }');
  for (const [name, variables] of [
    ['not base64 JSON', { after: 'garbage' }],
    ['not a list', { after: b64({ a: 1 }) }],
    ['a list of another order', { after: b64(['natural', 1]) }],
    ['the report\'s cursor', { after: reportCursor }],
  ] as const) {
    const response = await api().gql(token, HISTORY, { id: hook.id, ...variables });
    t.is(response.errors?.length, 1, name);
    t.regex(response.errors![0].message, /cursor/, name);
    t.is(response.errors![0].extensions?.code, 'INVALID_CURSOR', name);
  }
  const before = await api().gql(token, '{ allWebhooks(before: "Zm9v") { nodes { id } } }');
  t.is(before.errors![0].extensions?.code, 'INVALID_CURSOR');
  const both = await api().gql(token, '{ allWebhooks(last: 1, offset: 1) { nodes { id } } }');
  t.regex(both.errors![0].message, /Cannot use 'offset' with 'last'/);
  t.is(both.errors![0].extensions?.code, 'PAGE_ARGUMENTS_CONFLICT');
});

test('a missing webhook named by webhookId is refused naming webhook_id, the argument the caller gave', async (t) => {
  const company = await factories(db().pool).company();
  const token = await api().token(company.id);
  const calls: Array<[string, string]> = [
    ['startBackfill', 'mutation { startBackfill(input: { webhookId: "987654321" }) { result } }'],
    ['replayFailed', 'mutation { replayFailed(input: { webhookId: "987654321", since: "2000-01-01T00:00:00Z" }) { result { id } } }'],
  ];
  for (const [name, mutation] of calls) {
    const response = await api().gql(token, mutation);
    t.like(response.errors?.[0], { message: 'webhook 987654321 not found', extensions: { code: 'P0002', constraint: 'webhook_not_found', column: 'webhook_id' } }, name);
  }
});

test('a mutation given no id at all says so in its not-found refusal, not "webhook  not found"', async (t) => {
  const token = await api().token((await factories(db().pool).company()).id);
  for (const [mutation, what, constraint, column] of [
    ['updateWebhook', 'webhook', 'webhook_not_found', 'id'], ['deleteWebhook', 'webhook', 'webhook_not_found', 'id'],
    ['sendTestWebhook', 'webhook', 'webhook_not_found', 'id'], ['startBackfill', 'webhook', 'webhook_not_found', 'webhook_id'],
    ['replayDelivery', 'delivery', 'delivery_not_found', 'id'], ['cancelBackfill', 'backfill', 'backfill_not_found', 'id'],
  ]) {
    const response = await api().gql(token, `mutation { ${mutation}(input: {}) { __typename } }`);
    t.like(response.errors?.[0], { message: `${what} (no id given) not found`, extensions: { code: 'P0002', constraint, column } }, mutation);
  }
});

test.serial('a request the database ends to break a deadlock says to send it again (TRY_AGAIN), not "An error occurred"; and it may', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await f.contact(company.id);
  const { rows: [delivery] } = await db().pool.query('select id from webhooks.deliveries where webhook_id = $1', [hook.id]);
  const token = await api().token(company.id);
  const REPLAY = 'mutation($id: BigInt!) { replayDelivery(input: { id: $id }) { result { id state } } }';

  // A DBA's transaction holds the delivery's result and then wants the webhook, which
  // the replay holds while it waits for that result. Postgres ends whichever of the
  // two checks for a deadlock once both wait: the replay, unless its one check came
  // before the DBA asked (a busy machine), when the DBA's is ended and the replay
  // goes through; then once more.
  let refused: Awaited<ReturnType<ReturnType<typeof api>['gql']>> | undefined;
  for (let round = 1; round <= 5 && !refused; round++) {
    await db().pool.query(`update webhooks.deliveries set state = 'failed', attempts = 1, completed_at = now(), last_status_code = 500 where id = $1`, [delivery.id]);
    const dba = await db().pool.connect();
    try {
      await dba.query('begin');
      await dba.query('select 1 from webhooks.delivery_results where delivery_id = $1 for update', [delivery.id]);
      const replay = api().gql(token, REPLAY, { id: delivery.id });
      await until('the replay waits for the DBA', async () => (await db().pool.query(
        `select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and query like '%replay_delivery%'`)).rows[0].n === 1);
      const dbaGoesOn = await dba.query('select 1 from webhooks.webhooks where id = $1 for update', [hook.id]).then(() => true, () => false);
      await dba.query('rollback');
      const answer = await replay;
      if (dbaGoesOn) refused = answer;
    } finally {
      await dba.query('rollback');
      dba.release();
    }
  }
  t.like(refused?.errors?.[0], { extensions: { code: 'TRY_AGAIN', sqlstate: '40P01' } }, JSON.stringify(refused?.errors));
  t.regex(refused?.errors?.[0].message ?? '', /deadlock.*nothing .* was kept.*send it again/);
  await db().pool.query(`update webhooks.deliveries set state = 'failed', attempts = 1, completed_at = now(), last_status_code = 500 where id = $1`, [delivery.id]);
  const again = await api().gql(token, REPLAY, { id: delivery.id });
  t.like(again.data?.replayDelivery?.result, { id: delivery.id, state: 'pending' });
});

/** A company with a webhook, a delivery and an attempt of it: the ids a walked operation is given. */
async function sceneWithIds(): Promise<{ companyId: string; hookId: string; ids: Ids; token: string }> {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await f.contact(company.id);
  const { rows: [delivery] } = await db().pool.query('select id from webhooks.deliveries where webhook_id = $1', [hook.id]);
  const token = await api().token(company.id);
  return { companyId: company.id, hookId: hook.id, ids: { Webhook: hook.id, Delivery: delivery.id, default: hook.id }, token };
}

/** Sends value to the input (a list of one where the input is a list) and expects one error, with these extensions and message. */
async function refusedThere(t: import('ava').ExecutionContext, token: string, input: SchemaInput, value: unknown,
  extensions: Record<string, unknown>, message?: RegExp | string) {
  const name = `${input.where} ${JSON.stringify(value)}`;
  const response = await api().gql(token, input.operation, { v: input.list ? [value] : value });
  t.is(response.errors?.length, 1, `${name}: ${JSON.stringify(response.errors ?? response.data)}`);
  t.like(response.errors?.[0]?.extensions, { column: input.name, ...extensions }, `${name}: ${JSON.stringify(response.errors)}`);
  if (typeof message === 'string') t.is(response.errors?.[0]?.message, message, name);
  else if (message) t.regex(response.errors?.[0]?.message ?? '', message, name);
}

test('every Datetime input of the schema, found by walking it, refuses a year written with a sign, past 9999, zero or BC by name (requested_time_range for since and until, else datetime_range), and names the argument or field of any time Postgres does not read (datetime_invalid)', async (t) => {
  // Before, only since and until were checked: the rest (the lists' conditions, the
  // attempt's key, …) got Postgres's 22009 "time zone displacement out of range" or a
  // bare 22008 "timestamp out of range", naming nothing
  const { ids, token } = await sceneWithIds();
  const inputs = inputsOfType(await apiSchema(api(), token), 'Datetime', ids);
  // the walk finds what a hand list would have held, and more
  for (const where of ['Query.webhookReport(since)', 'Query.webhookReport(until)', 'Webhook.history(since)', 'Webhook.historyCount(until)',
    'Mutation.replayFailed(input.since)', 'Query.deliveryAttemptByCompanyIdAndIdAndDeliveryCreatedAt(deliveryCreatedAt)',
    'Query.allBackfills(condition.createdAt)', 'Query.allAuditLogs(condition.at)']) {
    t.true(inputs.some((input) => input.where === where), where);
  }
  for (const input of inputs) {
    const requested = input.name === 'since' || input.name === 'until';
    for (const at of ['-4712-01-01T00:00:00Z', '+294276-01-01T00:00:00Z', '+002026-01-01T00:00:00Z', '294277-01-01',
      '10000-01-01T00:00:00Z', '5000-01-01 BC', '2026-01-01 00:00:00+00 bc', '0000-01-01']) {
      const signed = /^[+-]/.test(at) ? ' (a year is written without a sign)' : '';
      await refusedThere(t, token, input, at,
        { code: '22008', constraint: requested ? 'requested_time_range' : 'datetime_range' },
        requested ? `${input.name} must be from 1970-01-01 to 9999-12-31 (UTC), or open (null), got ${JSON.stringify(at)}${signed}`
          : `${input.name} must be a time of the years 1 to 9999, got ${JSON.stringify(at)}${signed}`);
    }
    // what Postgres's parser refuses otherwise, once it has read it: named after the input all the same
    for (const [at, code, said] of [['2026-13-01', '22008', 'date/time field value out of range'], ['yesterday-ish', '22007', 'invalid input syntax'],
      ['2026-01-01T00:00:00+99:00', '22009', 'time zone displacement out of range'], ['2026-01-01 00:00 Mars/Base', '22023', 'time zone "mars/base" not recognized']] as const) {
      await refusedThere(t, token, input, at, { code, constraint: 'datetime_invalid' },
        new RegExp(`^${input.name} is not a time Postgres reads: ${said.replace(/[/"]/g, (c) => `\\${c}`)}`));
    }
    // and a value that is no text at all
    await refusedThere(t, token, input, 20260101, { code: '22007', constraint: 'datetime_invalid' }, /must be a time written as text/);
  }
  // and the times between are answered, wherever they are sent (the row a page of a
  // history starts after with its id, which it is named by together)
  const withItsId = (operation: string) => operation.replace(/\bafterCreatedAt: \$v\b/, 'afterCreatedAt: $v, afterId: "1"');
  t.true(inputs.some((input) => withItsId(input.operation) !== input.operation), 'Webhook.history(afterCreatedAt)');
  for (const input of inputs.filter((input) => !input.operation.startsWith('mutation'))) {
    for (const at of ['1970-01-01T00:00:00Z', '2026-01-01T00:00:00.123456+05:30', '9999-12-31T23:59:59Z', 'infinity']) {
      const response = await api().gql(token, withItsId(input.operation), { v: at });
      t.is(response.errors, undefined, `${input.where} ${at}: ${JSON.stringify(response.errors)}`);
    }
  }
});

test('every String input of the schema, and every JSON input\'s keys and strings, refuses a NUL character and a lone UTF-16 surrogate by name (nul_character, lone_surrogate), before anything is written', async (t) => {
  // A NUL reached Postgres, which refused it with 22021 and its own words, naming no
  // field; a lone surrogate was stored as U+FFFD in a name, a URL or a disable reason,
  // and refused as "invalid input syntax for type json" (22P02) in conditions
  const { companyId, ids, token } = await sceneWithIds();
  const schema = await apiSchema(api(), token);
  const inputs = [...inputsOfType(schema, 'String', ids), ...inputsOfType(schema, 'JSON', ids)];
  for (const where of ['Mutation.createWebhook(input.name)', 'Mutation.updateWebhook(input.url)', 'Mutation.createWebhook(input.ignoreSources)',
    'Mutation.disableWebhook(input.reason)', 'Webhook.history(state)', 'Webhook.historyCount(state)',
    'Mutation.createWebhook(input.conditions)', 'Mutation.updateWebhook(input.conditions)']) {
    t.true(inputs.some((input) => input.where === where), where);
  }
  const before = await db().pool.query('select id, name, url, disabled_reason, ignore_sources, conditions from webhooks.webhooks where company_id = $1', [companyId]);
  for (const input of inputs) {
    const json = input.variableType === 'JSON';
    const text = (s: string) => (json ? { field: 'city', op: 'eq', value: s } : s);
    await refusedThere(t, token, input, text('Spring\u0000field'), { code: '22021', constraint: 'nul_character' },
      `${input.name} must not contain a NUL character (U+0000): Postgres text cannot hold one`);
    for (const [lone, unit] of [['Spring\ud800field', 'D800'], ['field\udfff', 'DFFF'], ['\udc00\ud83d\ude00', 'DC00']] as const) {
      await refusedThere(t, token, input, text(lone), { code: '22021', constraint: 'lone_surrogate' },
        `${input.name} must not contain a lone UTF-16 surrogate (U+${unit}, not half of a pair): it is no character`);
    }
    if (json) {
      await refusedThere(t, token, input, { all: [{ field: 'custom.a\u0000b', op: 'is_null' }] }, { constraint: 'nul_character' });
      await refusedThere(t, token, input, { ['\ud800']: 1 }, { constraint: 'lone_surrogate' });
    }
  }
  const after = await db().pool.query('select id, name, url, disabled_reason, ignore_sources, conditions from webhooks.webhooks where company_id = $1', [companyId]);
  t.deepEqual(after.rows, before.rows, 'nothing was written');
  // a pair of surrogates is one character (an emoji), and is kept
  const emoji = await api().gql(token, CREATE, { ...valid, name: 'Hook \ud83d\ude00' });
  t.is(emoji.errors, undefined, JSON.stringify(emoji.errors));
  const { rows: [made] } = await db().pool.query('select name from webhooks.webhooks where id = $1', [emoji.data.createWebhook.result.webhook.id]);
  t.is(made.name, 'Hook \u{1f600}');
});

test('every BigInt input of the schema refuses a value that is no bigint by name (bigint_invalid, bigint_range), as Postgres would read it', async (t) => {
  // Postgres refused them with 22P02 "invalid input syntax for type bigint" or 22003
  // "value … is out of range for type bigint", naming no argument; an object was read
  // as the text "[object Object]"
  const { ids, token } = await sceneWithIds();
  const inputs = inputsOfType(await apiSchema(api(), token), 'BigInt', ids);
  for (const where of ['Query.webhookById(id)', 'Query.webhookReport(webhookId)', 'Query.allDeliveries(condition.id)',
    'Mutation.startBackfill(input.webhookId)', 'Mutation.createWebhook(input.statusId)', 'Mutation.updateWebhook(input.id)']) {
    t.true(inputs.some((input) => input.where === where), where);
  }
  for (const input of inputs) {
    for (const big of ['99999999999999999999', '9223372036854775808', '-9223372036854775809', '0x8000000000000000']) {
      await refusedThere(t, token, input, big, { code: '22003', constraint: 'bigint_range' },
        `${input.name} must be from -9223372036854775808 to 9223372036854775807 (bigint), got ${JSON.stringify(big)}`);
    }
    for (const bad of ['abc', '1.5', '', '1e3', '1__0', '_1', '12 3', 1.5, true, { a: 1 }]) {
      await refusedThere(t, token, input, bad, { code: '22P02', constraint: 'bigint_invalid' }, new RegExp(`^${input.name} must be an integer`));
    }
  }
  // what Postgres reads as a bigint is answered as before
  for (const id of [ids.Webhook, ` ${ids.Webhook} `, `+${ids.Webhook}`, '0x10', '0o17', '0b101', '1_000', '-1', '9223372036854775807', '-9223372036854775808', 12]) {
    const response = await api().gql(token, 'query($id: BigInt!) { webhookById(id: $id) { id } }', { id });
    t.is(response.errors, undefined, `${JSON.stringify(id)}: ${JSON.stringify(response.errors)}`);
  }
});

test('every Int input of the schema refuses a value past 32 bits, or no whole number, by name (int_range, int_invalid), and nothing is written', async (t) => {
  // GraphQL's Int refused them with its own words ("Int cannot represent non 32-bit
  // signed integer value: 3000000000") and the code of a malformed document
  // (GRAPHQL_VALIDATION_FAILED), naming neither the argument nor the rule: a rateLimit
  // of 3000000000 read as a query the client wrote wrong
  const { companyId, ids, token } = await sceneWithIds();
  const before = await db().pool.query('select * from webhooks.webhooks where company_id = $1 order by id', [companyId]);
  const inputs = inputsOfType(await apiSchema(api(), token), 'Int', ids);
  for (const where of ['Mutation.createWebhook(input.rateLimit)', 'Mutation.createWebhook(input.maxInFlight)',
    'Mutation.updateWebhook(input.rateLimit)', 'Mutation.updateWebhook(input.maxInFlight)',
    'Mutation.updateWebhook(input.expectedVersion)', 'Mutation.replayFailed(input.maxDeliveries)']) {
    t.true(inputs.some((input) => input.where === where), where);
  }
  for (const input of inputs) {
    // (an IntervalInput's parts are Ints too; one the interval cannot hold is refused
    // as the interval first, naming it: interval_range, the 'IntervalInput' test below)
    const intervalPart = ['years', 'months', 'days', 'hours', 'minutes'].includes(input.name);
    for (const [big, written] of [[3000000000, '3000000000'], [2147483648, '2147483648'], [-2147483649, '-2147483649'], [1e20, '100000000000000000000']] as const) {
      if (intervalPart) {
        const response = await api().gql(token, input.operation, { v: big });
        t.is(response.errors?.length, 1, input.where);
        t.true(['int_range', 'interval_range'].includes(response.errors?.[0]?.extensions?.constraint as string), `${input.where} ${big}: ${JSON.stringify(response.errors)}`);
        continue;
      }
      await refusedThere(t, token, input, big, { code: '22003', constraint: 'int_range' },
        `${input.name} must be a whole number from -2147483648 to 2147483647, got ${written}`);
    }
    for (const bad of ['abc', '', '42', 2.5, true, { a: 1 }]) {
      await refusedThere(t, token, input, bad, { code: '22P02', constraint: 'int_invalid' },
        new RegExp(`^${input.name} must be a whole number written as a JSON number \\(42\\), got `));
    }
  }
  const after = await db().pool.query('select * from webhooks.webhooks where company_id = $1 order by id', [companyId]);
  t.deepEqual(after.rows, before.rows, 'nothing was written');
  // within 32 bits, each goes on to the argument's own bound, named by the engine
  const UPDATE = 'mutation($v: Int) { updateWebhook(input: { id: "ID", rateLimit: $v }) { result { rateLimit } } }'.replace('ID', ids.Webhook!);
  const past = await api().gql(token, UPDATE, { v: 2147483647 });
  t.like(past.errors?.[0]?.extensions, { code: '23514', constraint: 'webhook_rate_limit_range', column: 'rate_limit' });
  const kept = await api().gql(token, UPDATE, { v: 20 });
  t.is(kept.errors, undefined, JSON.stringify(kept.errors));
  t.is(kept.data.updateWebhook.result.rateLimit, 20);
});

test('a BigInt sent as a JSON number JSON readers do not hold as written (9007199254740993) is refused by name (JSON_NUMBER_OUT_OF_RANGE), not read as another id', async (t) => {
  // grafserv's JSON.parse read it as 9007199254740992, and the API answered that webhook
  const { token } = await sceneWithIds();
  const response = await fetch(`${api().api.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: '{"query": "query($id: BigInt!) { webhookById(id: $id) { id } }", "variables": {"id": 9007199254740993}}',
  });
  t.is(response.status, 400);
  t.deepEqual(await response.json(), { errors: [{
    message: 'a JSON number JSON readers do not hold as written is not accepted: they (this API\'s too) read 9007199254740993 as 9007199254740992',
    extensions: { code: 'JSON_NUMBER_OUT_OF_RANGE', number: '9007199254740993', readAs: '9007199254740992' },
  }] });
});

test('a cursor that is ours in form but holds values no cursor of ours has (crafted base64) is refused as INVALID_CURSOR naming the argument, not with Postgres\'s bare message', async (t) => {
  // A keyset cursor's values went to Postgres as the order's columns: "abc" for an id
  // was 22P02, a 20-digit one 22003, a time Postgres does not read 22007/22008/22009,
  // a NUL 22021; a natural cursor of 1e300 rows "bigint out of range" (22003)
  const { hookId, token } = await sceneWithIds();
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64');
  const unb64 = (cursor: string) => JSON.parse(Buffer.from(cursor, 'base64').toString()) as unknown[];
  const cases: Array<[string, string, Record<string, unknown>]> = [
    ['history', 'query($id: BigInt!, $after: Cursor) { webhookById(id: $id) { history(first: 1, after: $after) { pageInfo { endCursor } } } }', { id: hookId }],
    ['allDeliveries', 'query($after: Cursor) { allDeliveries(first: 1, after: $after) { pageInfo { endCursor } } }', {}],
    ['a webhook\'s deliveries by time', 'query($id: BigInt!, $after: Cursor) { webhookById(id: $id) { deliveriesByWebhookId(first: 1, after: $after, orderBy: [CREATED_AT_ASC, ID_ASC]) { pageInfo { endCursor } } } }', { id: hookId }],
    ['allWebhooks before', 'query($before: Cursor) { allWebhooks(last: 1, before: $before) { pageInfo { startCursor } } }', {}],
  ];
  for (const [name, query, variables] of cases) {
    const argument = query.includes('$before') ? 'before' : 'after';
    const first = await api().gql(token, query, variables);
    t.is(first.errors, undefined, name);
    const cursor = JSON.stringify(first.data).match(/"(?:end|start)Cursor":"([^"]+)"/)![1];
    const [digest, ...values] = unb64(cursor);
    t.true(values.length > 0, name);
    const crafted = new Set<string>();
    for (let i = 0; i < values.length; i++) {
      const isTime = typeof values[i] === 'string' && /^\d{4}-/.test(values[i] as string);
      for (const bad of [...(isTime ? ['2026-13-01', '+294276-01-01T00:00:00Z', 'garbage', '2026-01-01T00:00:00+99:00']
        : ['abc', '99999999999999999999', '1.5', 1e300, true]), 'a\u0000', 'a\ud800', { a: 1 }, [1]]) {
        crafted.add(b64([digest, ...values.map((value, j) => (j === i ? bad : value))]));
      }
    }
    for (const after of crafted) {
      const response = await api().gql(token, query, { ...variables, [argument]: after });
      const said = `${name} ${Buffer.from(after, 'base64').toString()}: ${JSON.stringify(response.errors)}`;
      t.is(response.errors?.length, 1, said);
      t.like(response.errors?.[0]?.extensions, { code: 'INVALID_CURSOR', column: argument }, said);
      t.regex(response.errors?.[0]?.message ?? '', /cursor/, said);
    }
  }
  // a natural cursor (a count of rows: the retry schedule; the report has none, it
  // pages after a row) that is no whole number from 0
  for (const query of ['query($after: Cursor) { retrySchedule(after: $after) { totalCount } }']) {
    for (const rows of [1e300, -1, 1.5, 2 ** 53, '5', null]) {
      const response = await api().gql(token, query, { after: b64(['natural', rows]) });
      t.like(response.errors?.[0]?.extensions, { code: 'INVALID_CURSOR', column: 'after' }, `${query} ${rows}: ${JSON.stringify(response.errors)}`);
    }
    const fine = await api().gql(token, query, { after: b64(['natural', 3]) });
    t.is(fine.errors, undefined, query);
  }
});

test('an interval Postgres cannot hold is refused naming the field (interval_range), and a coalesce window out of its range names its rule, the column and the range', async (t) => {
  // {years: 2^31 - 1} was "interval out of range" (22008), {seconds: 1e-7} "invalid
  // input syntax for type interval: "1e-7 seconds"" (22007), each naming nothing; a
  // window over an hour was the table's bare check_violation, with no column
  const { hookId, token } = await sceneWithIds();
  const WINDOW = 'mutation($id: BigInt!, $window: IntervalInput) { setWebhookDelivery(input: { id: $id, coalesceWindow: $window, ordered: false }) { result { id coalesceWindow { minutes seconds } } } }';
  for (const window of [{ years: 2147483647 }, { years: -2147483648 }, { years: 200000000 }, { years: 1, months: 2147483647 }, { seconds: 1e18 },
    { seconds: 1e300 }, { seconds: -1e21 }, { seconds: 1e-7 }, { hours: 2147483647, seconds: 2e12 }]) {
    const response = await api().gql(token, WINDOW, { id: hookId, window });
    t.is(response.errors?.length, 1, JSON.stringify(window));
    t.like(response.errors?.[0]?.extensions, { code: '22015', constraint: 'interval_range', column: 'coalesceWindow' }, JSON.stringify(window));
    t.regex(response.errors?.[0]?.message ?? '', /^coalesceWindow is beyond what an interval holds: .*got \{/, JSON.stringify(window));
  }
  for (const window of [{ minutes: 61 }, { seconds: -1 }, { days: 2147483647 }, { hours: 2147483647 }, { months: 1 }]) {
    const response = await api().gql(token, WINDOW, { id: hookId, window });
    t.is(response.errors?.length, 1, JSON.stringify(window));
    t.like(response.errors?.[0]?.extensions, { code: '23514', constraint: 'webhooks_coalesce_window_range', column: 'coalesce_window' }, JSON.stringify(window));
    t.regex(response.errors?.[0]?.message ?? '', /^coalesce_window must be more than 0 and at most 1 hour \(or null: off\), got /, JSON.stringify(window));
  }
  const { rows: [row] } = await db().pool.query('select coalesce_window from webhooks.webhooks where id = $1', [hookId]);
  t.is(row.coalesce_window, null, 'nothing was changed');
  const fine = await api().gql(token, WINDOW, { id: hookId, window: { minutes: 59, seconds: 59.5 } });
  t.is(fine.errors, undefined, JSON.stringify(fine.errors));
  t.like(fine.data.setWebhookDelivery.result.coalesceWindow, { minutes: 59, seconds: 59.5 });
  // (a window of 0 is no window: off, as null, since setWebhookDelivery's window left out keeps it)
  const zero = await api().gql(token, WINDOW, { id: hookId, window: { seconds: 0 } });
  t.is(zero.errors, undefined, JSON.stringify(zero.errors));
  t.is(zero.data.setWebhookDelivery.result.coalesceWindow, null);
});

test('retrySchedule\'s pMaxAttempts out of 1 to 100 names its rule and the argument', async (t) => {
  // 'max attempts must be from 1 to 100' (22023) named neither
  const { token } = await sceneWithIds();
  for (const n of [0, -1, 101, 2147483647, -2147483648]) {
    const response = await api().gql(token, 'query($n: Int) { retrySchedule(pMaxAttempts: $n) { totalCount } }', { n });
    t.like(response.errors?.[0], { message: 'max attempts must be from 1 to 100', extensions: { code: '22023', constraint: 'retry_max_attempts_range', column: 'p_max_attempts' } }, String(n));
  }
});

test('a history\'s state that is no delivery\'s state (a typo, another case) is refused naming the argument, not answered as an empty history', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await f.contact(company.id);
  const token = await api().token(company.id, 'webhook_viewer');
  const ask = (field: string, state: string) => api().gql(token,
    `query($id: BigInt!, $state: String) { webhookById(id: $id) { ${field} } }`, { id: webhook.id, state });
  // the four states answer as they did
  const pending = await ask('history(state: $state) { nodes { state } }', 'pending');
  t.deepEqual(pending.data.webhookById.history.nodes, [{ state: 'pending' }]);
  t.is((await ask('historyCount(state: $state)', 'pending')).data.webhookById.historyCount, '1');
  for (const state of ['succeeded', 'failed', 'in_flight']) t.falsy((await ask('history(state: $state) { nodes { id } }', state)).errors, state);
  // until now each of these answered an empty history and a count of 0, as if none had failed
  for (const field of ['history(state: $state) { nodes { id } }', 'historyOldestFirst(state: $state) { nodes { id } }', 'historyCount(state: $state)']) {
    for (const state of ['FAILED', 'Pending', 'failure', '', 'x'.repeat(5000)]) {
      const response = await ask(field, state);
      t.like(response.errors?.[0], { extensions: { code: '22023', constraint: 'history_state_unknown', column: 'state' } }, `${field} ${state.slice(0, 10)}`);
      t.regex(response.errors?.[0]?.message ?? '', /^state must be one of pending, in_flight, succeeded, failed \(or null: any\), got /);
      t.true((response.errors?.[0]?.message ?? '').length < 200, 'the message quotes the start of what was sent');
    }
  }
});

test('a list input of more than 1,000 items is refused by name before it runs, whichever list it is: 10,000 webhook ids took a request 115 to 166 ms, one 27 ms', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const token = await api().token(company.id);
  const latest = (ids: string[]) => api().gql(token,
    'query($ids: [BigInt]) { latestBackfills(webhookIds: $ids) { nodes { id } } }', { ids });
  // as many as a list may hold: answered
  const most = await latest(Array.from({ length: 1000 }, () => webhook.id));
  t.falsy(most.errors, JSON.stringify(most.errors));
  for (const [name, response] of [
    ['latestBackfills', await latest(Array.from({ length: 1001 }, () => webhook.id))],
    ['companyUsersNamed', await api().gql(token, 'query($ids: [BigInt]!) { companyUsersNamed(ids: $ids) { id } }',
      { ids: Array.from({ length: 10_000 }, (_, i) => String(i)) })],
    ['createWebhook', await api().gql(token, CREATE, { ...valid, fields: Array.from({ length: 1001 }, () => 'email') })],
  ] as const) {
    t.is(response.status, 400, `${name}: refused before anything ran`);
    t.like(response.errors?.[0], {
      message: `${name === 'createWebhook' ? 'fields' : name === 'latestBackfills' ? 'webhookIds' : 'ids'} has at most 1000 items, not ${name === 'companyUsersNamed' ? 10000 : 1001}`,
      extensions: { code: '22023', constraint: 'list_too_long', column: name === 'createWebhook' ? 'fields' : name === 'latestBackfills' ? 'webhookIds' : 'ids' },
    }, name);
  }
  t.is(await webhookCount(company.id), 1);
});

test('a document GraphQL refuses (a field that is not there, a variable of the wrong type or not sent, a literal a scalar does not take, text that does not parse) carries a code, whichever media type the client accepts, with the status that media type asks for', async (t) => {
  const company = await factories(db().pool).company();
  const token = await api().token(company.id, 'webhook_viewer');
  const refused = async (accept: string, query: string) => {
    const response = await fetch(`${api().api.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept, authorization: `Bearer ${token}` },
      body: JSON.stringify({ query }),
    });
    const body = await response.json() as { data?: unknown; errors?: Array<{ message: string; extensions?: { code?: string } }> };
    return { status: response.status, body };
  };
  const documents: Array<[string, string, string]> = [
    ['a field that is not there', '{ currentCompanyId nope }', 'GRAPHQL_VALIDATION_FAILED'],
    ['a variable of a type the argument does not take', 'query($id: String!) { webhookById(id: $id) { id } }', 'GRAPHQL_VALIDATION_FAILED'],
    ['a variable the operation needs, not sent', 'query($id: BigInt!) { webhookById(id: $id) { id } }', 'GRAPHQL_VALIDATION_FAILED'],
    // the schema's own scalars refuse such a literal in words of their own, with no place in the text
    ['a BigInt written as a number', '{ webhookById(id: 7) { id } }', 'GRAPHQL_VALIDATION_FAILED'],
    ['a BigInt within an input written as a number', 'mutation { disableWebhook(input: { id: 7 }) { result { id } } }', 'GRAPHQL_VALIDATION_FAILED'],
    ['a Datetime written as a number', '{ webhookReport(since: 20260101) { totalCount } }', 'GRAPHQL_VALIDATION_FAILED'],
    ['a Cursor written as a number', '{ allWebhooks(first: 1, after: 5) { nodes { id } } }', 'GRAPHQL_VALIDATION_FAILED'],
    ['text that does not parse', '{ currentCompanyId', 'GRAPHQL_PARSE_FAILED'],
  ];
  // GraphQL over HTTP: 200 for a client of application/json alone, 400 for one of
  // application/graphql-response+json (and for one that accepts either)
  for (const [accept, status] of [['application/json', 200], ['application/graphql-response+json', 400], ['*/*', 400]] as const) {
    for (const [what, query, code] of documents) {
      const { status: said, body } = await refused(accept, query);
      t.is(said, status, `${accept}, ${what}`);
      t.false('data' in body, `${accept}, ${what}`);
      t.true((body.errors ?? []).length >= 1, `${accept}, ${what}`);
      for (const error of body.errors ?? []) t.is(error.extensions?.code, code, `${accept}, ${what}: ${error.message}`);
    }
  }
  // and an answer with data keeps what it had: no code is added to a field's error
  const { status, body } = await refused('application/json', '{ currentCompanyId }');
  t.is(status, 200);
  t.is(body.errors, undefined);
});

// The operation of a document is chosen by operationName before anything runs: GraphQL
// refused a name that is in no operation of the text, or none for a text of several,
// with a message and nothing else (no code, no place in the text), alone among its
// refusals of a request.
test('an operationName that names no operation of the text, or none for a text of several: a code, whichever media type, nothing run', async (t) => {
  const company = await factories(db().pool).company();
  const token = await api().token(company.id, 'webhook_viewer');
  const refused = async (accept: string, query: string, operationName?: string) => {
    const response = await fetch(`${api().api.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept, authorization: `Bearer ${token}` },
      body: JSON.stringify({ query, operationName }),
    });
    const body = await response.json() as { data?: unknown; errors?: Array<{ message: string; extensions?: { code?: string } }> };
    return { status: response.status, body };
  };
  const two = 'query A { currentCompanyId } query B { currentActor }';
  const requests: Array<[string, string, string | undefined, RegExp]> = [
    ['a text of two operations, no name', two, undefined, /^Must provide operation name if query contains multiple operations\.$/],
    ['a name in no operation of the text', two, 'C', /^Unknown operation named "C"\.$/],
    ['a name for a text of one operation of another name', 'query A { currentCompanyId }', 'B', /^Unknown operation named "B"\.$/],
    ['a name of 90,000 characters', two, 'x'.repeat(90_000), /^Unknown operation named "x{100}…"\.$/],
  ];
  for (const [accept, status] of [['application/json', 200], ['application/graphql-response+json', 400], ['*/*', 400]] as const) {
    for (const [what, query, operationName, message] of requests) {
      const { status: said, body } = await refused(accept, query, operationName);
      t.is(said, status, `${accept}, ${what}`);
      t.false('data' in body, `${accept}, ${what}`);
      t.is(body.errors?.length, 1, `${accept}, ${what}`);
      t.regex(body.errors?.[0]?.message ?? '', message, `${accept}, ${what}`);
      t.is(body.errors?.[0]?.extensions?.code, 'OPERATION_NOT_CHOSEN', `${accept}, ${what}`);
    }
  }
  // the operation named runs
  const { status, body } = await refused('application/json', two, 'B');
  t.is(status, 200);
  t.deepEqual(body, { data: { currentActor: `webhook_viewer@company-${company.id}` } });
});

// A body is JSON, or GraphQL's text, in UTF-8: bytes that are no UTF-8 (a Latin-1 "é",
// a surrogate encoded as CESU-8 does, an overlong form) were read as U+FFFD each, and a
// name or URL sent so was stored with U+FFFD in their place, unsaid, as a lone UTF-16
// surrogate was before the API refused it (api/input-refusals.ts).
test('a body that is no UTF-8 is refused by name, nothing run; the same text in UTF-8 is taken', async (t) => {
  const company = await factories(db().pool).company();
  const token = await api().token(company.id);
  const send = async (name: Buffer, contentType = 'application/json') => {
    const query = 'mutation($name: String!) { createWebhook(input: { name: $name, url: "https://a.example.com/hook", fields: ["email"], actions: [CONTACT_CREATED] }) { result { webhook { name } } } }';
    const [before, after] = JSON.stringify({ query, variables: { name: '\u0001' } }).split('\\u0001');
    const response = await fetch(`${api().api.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': contentType, authorization: `Bearer ${token}` },
      body: Buffer.concat([Buffer.from(before!), name, Buffer.from(after!)]),
    });
    return { status: response.status, body: await response.json() as { data?: any; errors?: Array<{ message: string; extensions?: Record<string, unknown> }> } };
  };
  for (const [what, bytes] of [
    ['Latin-1 "Café"', Buffer.from('Caf\xe9', 'latin1')],
    ['a surrogate encoded as CESU-8', Buffer.from([0x41, 0xed, 0xa0, 0x80])],
    ['an overlong "/"', Buffer.from([0x41, 0xc0, 0xaf])],
    ['a cut sequence', Buffer.from([0x41, 0xe2, 0x82])],
  ] as const) {
    const { status, body } = await send(bytes);
    t.is(status, 400, what);
    t.false('data' in body, what);
    t.is(body.errors?.length, 1, what);
    t.like(body.errors?.[0], { message: 'request body is not UTF-8: send JSON (or GraphQL text) encoded as UTF-8', extensions: { code: 'BAD_REQUEST' } }, what);
  }
  t.is(await webhookCount(company.id), 0);
  const { status, body } = await send(Buffer.from('Café ☕ 𝄞'));
  t.is(status, 200);
  t.deepEqual(body, { data: { createWebhook: { result: { webhook: { name: 'Café ☕ 𝄞' } } } } });
});
