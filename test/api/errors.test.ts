// Bad input gets an error that names the field and the problem, never "an internal
// error", and nothing is written.
import test from 'ava';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';
import { until } from '../helpers/until.ts';

const { db, api } = useTestDatabaseWithApi(test);

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
    ['bad URL', { url: 'ftp://files.example.com/x' }, { constraint: 'webhook_url_invalid', column: 'url' }, /absolute http:\/\/ or https:\/\/ URL.*ftp:\/\/files/],
    ['URL without host', { url: 'https://' }, { constraint: 'webhook_url_invalid', column: 'url' }, /URL/],
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
  t.regex(response.errors![0].message, /invalid input syntax for type timestamp with time zone: "yesterday-ish"/);
  t.is(response.errors![0].extensions?.code, '22007');
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
    ' -0001-01-01', '294277-01-01T00:00:00Z', '99999999999999999999-01-01', '5000-01-01 BC', '2026-01-01 00:00:00+00 bc']) {
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
  // what Postgres reads is left to it: a month that is none is no time at all
  const month = await api().gql(token, REPORT, { since: '2026-13-01' });
  t.like(month.errors?.[0], { message: 'date/time field value out of range: "2026-13-01"', extensions: { code: '22008' } });
  t.is(month.errors?.[0]?.extensions?.constraint, undefined);
  // and the years between, a year written with a leading zero, open ends: answered
  for (const at of ['1970-01-01T00:00:00Z', '02026-01-01T00:00:00Z', '9999-12-31T23:59:59Z', '-infinity', 'infinity']) {
    const response = await api().gql(token, REPORT, { since: at });
    t.is(response.errors, undefined, at);
  }
});

test('a NUL in text and a number beyond bigint are input errors that say so, not "An error occurred"', async (t) => {
  const company = await factories(db().pool).company();
  const token = await api().token(company.id);

  const nul = await api().gql(token, CREATE, { ...valid, name: 'Hook\u0000' });
  t.is(nul.errors?.length, 1);
  t.notRegex(nul.errors![0].message, /An error occurred/);
  t.regex(nul.errors![0].message, /invalid byte sequence for encoding "UTF8": 0x00/);
  t.is(nul.errors![0].extensions?.code, '22021');

  const huge = await api().gql(token, 'query($id: BigInt!) { webhookById(id: $id) { id } }', { id: '99999999999999999999' });
  t.is(huge.errors?.length, 1);
  t.notRegex(huge.errors![0].message, /An error occurred/);
  t.regex(huge.errors![0].message, /out of range for type bigint/);
  t.is(huge.errors![0].extensions?.code, '22003');

  const hugeArgument = await api().gql(token, CREATE, { ...valid, actions: ['CONTACT_STATUS_ADDED'], statusId: '9223372036854775808' });
  t.is(hugeArgument.errors?.[0].extensions?.code, '22003');
  t.is(await webhookCount(company.id), 0);
});

test('a time zone offset out of range, an interval field out of range and a NUL in a JSON argument are input errors that say so, not "An error occurred"', async (t) => {
  // each was masked as an internal error: 22009, 22015 and 22P05 are Postgres reading
  // the caller's text, as 22007 and 22021 are
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const token = await api().token(company.id);
  const HISTORY = 'query($id: BigInt!, $since: Datetime) { webhookById(id: $id) { history(since: $since) { nodes { id } } } }';
  // (a year written with a sign, which Postgres reads as such an offset, is refused by
  // name before: requested_time_range, above)
  const offset = await api().gql(token, HISTORY, { id: hook.id, since: '2026-01-01T00:00:00+99:00' });
  t.is(offset.errors?.length, 1);
  t.notRegex(offset.errors![0].message, /An error occurred/);
  t.regex(offset.errors![0].message, /time zone displacement out of range/);
  t.is(offset.errors![0].extensions?.code, '22009');

  const WINDOW = 'mutation($id: BigInt!, $window: IntervalInput) { setWebhookDelivery(input: { id: $id, coalesceWindow: $window, ordered: false }) { result { id } } }';
  const window = await api().gql(token, WINDOW, { id: hook.id, window: { seconds: 1e18 } });
  t.is(window.errors?.length, 1);
  t.notRegex(window.errors![0].message, /An error occurred/);
  t.regex(window.errors![0].message, /interval field value out of range/);
  t.is(window.errors![0].extensions?.code, '22015');

  const UPDATE = 'mutation($id: BigInt!, $conditions: JSON) { updateWebhook(input: { id: $id, conditions: $conditions }) { result { id } } }';
  for (const conditions of [{ field: 'city', op: 'eq', value: 'Spring\u0000field' }, { field: 'custom.a\u0000', op: 'is_null' }]) {
    const response = await api().gql(token, UPDATE, { id: hook.id, conditions });
    t.is(response.errors?.length, 1);
    t.notRegex(response.errors![0].message, /An error occurred/);
    t.regex(response.errors![0].message, /unsupported Unicode escape sequence/);
    t.is(response.errors![0].extensions?.code, '22P05');
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
