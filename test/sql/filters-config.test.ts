// A webhook's filters are tenant input: the database refuses every bad one by name,
// with the part at fault, and stores good ones tidy.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { factories, type WebhookInput } from '../helpers/factories.ts';
import { inTransaction } from '../helpers/sql.ts';

const db = useTestDatabase(test);
const make = () => factories(db().pool);

interface PgError extends Error { code: string; constraint?: string; column?: string }

const VA = { field: 'state', op: 'eq', value: 'VA' };
const nest = (depth: number): unknown => (depth === 1 ? VA : { not: nest(depth - 1) });

type Filters = Pick<WebhookInput, 'ignoreSources' | 'watchFields' | 'conditions'>;
const refusals: Array<[string, Filters, string, string, RegExp]> = [
  // ignore_sources
  ['more than 20 sources', { ignoreSources: Array.from({ length: 21 }, (_, i) => `s${i}`) },
    'webhook_ignore_sources_invalid', 'ignore_sources', /^ignore_sources: at most 20 sources, got 21$/],
  ['an empty source', { ignoreSources: ['api', '  '] }, 'webhook_ignore_sources_invalid', 'ignore_sources', /^ignore_sources: a source is a name of 1 to 100 characters, got " {2}"$/],
  ['a null source', { ignoreSources: [null as unknown as string] }, 'webhook_ignore_sources_invalid', 'ignore_sources', /got null$/],
  ['a source of 101 characters', { ignoreSources: ['x'.repeat(101)] }, 'webhook_ignore_sources_invalid', 'ignore_sources', /1 to 100 characters/],
  // the setup form shows the sources: as a name, none reorders the text around it, and each shows
  ['a source with a bidi override', { ignoreSources: ['api', 'imp\u202eort'] }, 'webhook_ignore_sources_invalid', 'ignore_sources',
    /^ignore_sources: a source must not contain bidi controls \(U\+061C, U\+200E, U\+200F, U\+202A to U\+202E, U\+2066 to U\+2069\), as source 2 does$/],
  // nor breaks its line, nor holds a control character (each named by its place, not echoed)
  ...([
    ['a line break', 'a\nb'], ['a carriage return', 'a\rb'], ['a tab', 'a\tb'], ['a line separator', 'a\u2028b'],
    ['a paragraph separator', 'a\u2029b'], ['a next line (C1)', 'a\u0085b'], ['a terminal escape', '\u001b[31mapi'], ['DEL', 'a\u007fb'],
  ] as const).map(([what, source]): [string, Filters, string, string, RegExp] => [
    `a source with ${what}`, { ignoreSources: ['api', source] }, 'webhook_ignore_sources_invalid', 'ignore_sources',
    /^ignore_sources: a source must not contain control characters \(tabs, line breaks, escapes, …\) nor line or paragraph separators \(U\+2028, U\+2029\), as source 2 does$/]),
  ['a source of a zero-width space', { ignoreSources: ['\u200b'] }, 'webhook_ignore_sources_invalid', 'ignore_sources',
    /^ignore_sources: a source must have a character that shows, which source 1 has not$/],
  ['a source of Unicode white space', { ignoreSources: ['api', 'crm', '\u3000\u00a0'] }, 'webhook_ignore_sources_invalid', 'ignore_sources',
    /^ignore_sources: a source must have a character that shows, which source 3 has not$/],
  // watch_fields
  ['a watched field that is not a column', { watchFields: ['email', 'shoe_size'] },
    'webhook_watch_field_unknown', 'watch_fields', /^watch_fields: unknown contact field "shoe_size"; known fields: id, company_id, first_name, /],
  ['a watched custom key', { watchFields: ['custom.score'] }, 'webhook_watch_field_unknown', 'watch_fields', /unknown contact field "custom\.score"/],
  ['a null watched field', { watchFields: [null as unknown as string] }, 'webhook_watch_field_unknown', 'watch_fields', /unknown contact field null/],
  ['more than 100 watched fields', { watchFields: Array.from({ length: 101 }, () => 'email') }, 'webhook_watch_field_unknown', 'watch_fields', /at most 100 fields/],
  // conditions: the shape
  ['an unknown operator', { conditions: { all: [VA, { field: 'state', op: 'equals', value: 'VA' }] } },
    'webhook_conditions_invalid', 'conditions', /^all\[1\]\.op: unknown operator "equals"; one of eq, ne, in, not_in, lt, lte, gt, gte, contains, starts_with, is_null, not_null, changed$/],
  ['an operator that is no text', { conditions: { field: 'state', op: 7, value: 'VA' } }, 'webhook_conditions_invalid', 'conditions', /^op: unknown operator 7;/],
  ['a list instead of a condition', { conditions: ['state', 'eq', 'VA'] }, 'webhook_conditions_invalid', 'conditions', /^conditions: a condition is an object/],
  ['a text instead of a condition', { conditions: 'state = VA' }, 'webhook_conditions_invalid', 'conditions', /^conditions: a condition is an object/],
  ['an unknown field, deep inside', { conditions: { not: { any: [VA, { all: [{ field: 'shoe_size', op: 'eq', value: 9 }] }] } } },
    'webhook_conditions_invalid', 'conditions', /^not\.any\[1\]\.all\[0\]\.field: unknown contact field "shoe_size"; a column of the contact \(id, company_id, .*\) or custom\.KEY$/],
  ['a custom key with no name', { conditions: { field: 'custom.', op: 'is_null' } }, 'webhook_conditions_invalid', 'conditions', /^field: unknown contact field "custom\."/],
  ['a field that is no text', { conditions: { field: ['state'], op: 'is_null' } }, 'webhook_conditions_invalid', 'conditions', /^field: unknown contact field \["state"\]/],
  ['a missing field', { conditions: { op: 'is_null' } }, 'webhook_conditions_invalid', 'conditions', /^field: missing$/],
  ['a missing operator', { conditions: { field: 'state', value: 'VA' } }, 'webhook_conditions_invalid', 'conditions', /^op: missing$/],
  ['an unknown key in a leaf', { conditions: { any: [{ ...VA, vaule: 'MD' }] } }, 'webhook_conditions_invalid', 'conditions', /^any\[0\]: unknown key "vaule"/],
  ['all beside another key', { conditions: { all: [VA], any: [VA] } }, 'webhook_conditions_invalid', 'conditions', /^conditions: all stands alone; unexpected key "any"$/],
  ['an empty all', { conditions: { all: [] } }, 'webhook_conditions_invalid', 'conditions', /^all: must not be empty$/],
  ['an empty any, inside not', { conditions: { not: { any: [] } } }, 'webhook_conditions_invalid', 'conditions', /^not\.any: must not be empty$/],
  ['any that is no list', { conditions: { any: VA } }, 'webhook_conditions_invalid', 'conditions', /^any: a list of conditions$/],
  ['51 conditions in one all', { conditions: { all: Array.from({ length: 51 }, () => VA) } }, 'webhook_conditions_invalid', 'conditions', /^all: at most 50 conditions$/],
  ['nesting 9 deep', { conditions: nest(9) }, 'webhook_conditions_invalid', 'conditions', /^not\.not\.not\.not\.not\.not\.not\.not: nested deeper than 8 levels$/],
  ['more than 100 conditions in all', { conditions: { all: Array.from({ length: 40 }, () => ({ any: [VA, VA] })) } },
    'webhook_conditions_invalid', 'conditions', /^conditions: at most 100 conditions in all$/],
  ['more than 16 KB', { conditions: { field: 'state', op: 'in', value: Array.from({ length: 100 }, () => 'x'.repeat(200)) } },
    'webhook_conditions_invalid', 'conditions', /^conditions: at most 16384 bytes$/],
  // conditions: operators against fields
  ['contains on a date', { conditions: { field: 'birthday', op: 'contains', value: '19' } }, 'webhook_conditions_invalid', 'conditions', /^op: contains does not apply to birthday$/],
  ['lt on the custom column itself', { conditions: { field: 'custom', op: 'lt', value: 1 } }, 'webhook_conditions_invalid', 'conditions', /^op: lt does not apply to custom$/],
  ['eq on the custom column itself', { conditions: { field: 'custom', op: 'eq', value: 'x' } }, 'webhook_conditions_invalid', 'conditions', /^op: eq does not apply to custom$/],
  // conditions: values
  ['a missing value', { conditions: { field: 'state', op: 'eq' } }, 'webhook_conditions_invalid', 'conditions', /^value: missing$/],
  ['a value for is_null', { conditions: { field: 'phone', op: 'is_null', value: true } }, 'webhook_conditions_invalid', 'conditions', /^value: is_null takes no value$/],
  ['a value for changed', { conditions: { field: 'phone', op: 'changed', value: 'x' } }, 'webhook_conditions_invalid', 'conditions', /^value: changed takes no value$/],
  ['a number for a text column', { conditions: { field: 'postal_code', op: 'eq', value: 23666 } }, 'webhook_conditions_invalid', 'conditions', /^value: must be text \(postal_code is text\)$/],
  ['text for a number column', { conditions: { field: 'id', op: 'gt', value: '5' } }, 'webhook_conditions_invalid', 'conditions', /^value: must be a number \(id is a number\)$/],
  ['a null value', { conditions: { field: 'state', op: 'eq', value: null } }, 'webhook_conditions_invalid', 'conditions', /^value: must be text/],
  ['a date that is no date', { conditions: { field: 'birthday', op: 'lt', value: '1990-02-31' } }, 'webhook_conditions_invalid', 'conditions', /^value: must be a date written YYYY-MM-DD \(birthday is a date\)$/],
  ['a date in words', { conditions: { field: 'birthday', op: 'gte', value: 'today' } }, 'webhook_conditions_invalid', 'conditions', /^value: must be a date written YYYY-MM-DD/],
  ['a time without its zone', { conditions: { field: 'created_at', op: 'gt', value: '2026-01-01T10:00:00' } }, 'webhook_conditions_invalid', 'conditions', /^value: must be a time with its zone/],
  ['a time that is no time', { conditions: { field: 'updated_at', op: 'gt', value: '2026-01-01T25:00:00Z' } }, 'webhook_conditions_invalid', 'conditions', /^value: must be a time with its zone/],
  ['true/false ordered', { conditions: { field: 'custom.vip', op: 'lt', value: true } }, 'webhook_conditions_invalid', 'conditions', /^value: must be a number or text$/],
  ['an object for a custom key', { conditions: { field: 'custom.vip', op: 'eq', value: { a: 1 } } }, 'webhook_conditions_invalid', 'conditions', /^value: must be text, a number, true or false$/],
  ['empty text for contains', { conditions: { field: 'email', op: 'contains', value: '' } }, 'webhook_conditions_invalid', 'conditions', /^value: contains needs non-empty text$/],
  ['a number for starts_with', { conditions: { field: 'custom.code', op: 'starts_with', value: 1 } }, 'webhook_conditions_invalid', 'conditions', /^value: starts_with needs non-empty text$/],
  ['a value of 501 characters', { conditions: { field: 'city', op: 'eq', value: 'x'.repeat(501) } }, 'webhook_conditions_invalid', 'conditions', /^value: at most 500 characters$/],
  ['in with a single value', { conditions: { field: 'state', op: 'in', value: 'VA' } }, 'webhook_conditions_invalid', 'conditions', /^value: in needs a non-empty list$/],
  ['in with an empty list', { conditions: { field: 'state', op: 'not_in', value: [] } }, 'webhook_conditions_invalid', 'conditions', /^value: not_in needs a non-empty list$/],
  ['in with 101 values', { conditions: { field: 'custom.n', op: 'in', value: Array.from({ length: 101 }, (_, i) => i) } }, 'webhook_conditions_invalid', 'conditions', /^value: at most 100 values$/],
  ['in with a mistyped value', { conditions: { any: [VA, { field: 'state', op: 'in', value: ['VA', 51] }] } },
    'webhook_conditions_invalid', 'conditions', /^any\[1\]\.value\[1\]: must be text \(state is text\)$/],
];

async function companyId(): Promise<string> {
  return (await make().company()).id;
}

for (const [what, filters, rule, column, message] of refusals) {
  test(`refused: ${what} (${rule})`, async (t) => {
    const company = await companyId();
    const error = await t.throwsAsync(make().webhook({ companyId: company, actions: ['contact.updated'], ...filters })) as PgError;
    t.is(error.code, '23514');
    t.is(error.constraint, rule);
    t.is(error.column, column);
    t.regex(error.message, message);
    const { rows } = await db().pool.query('select count(*)::int as n from webhooks.webhooks where company_id = $1', [company]);
    t.is(rows[0].n, 0, 'nothing was stored');
  });
}

// A DBA's session with standard_conforming_strings off (an old script's) reads a
// backslash in a literal as an escape: the message's list of bidi controls was read
// from their pattern by another, which then failed to compile, and a source with a
// bidi control was refused by "invalid regular expression" rather than by name.
test('refused by name in a session with standard_conforming_strings off too: a source with a bidi control, with the same message', async (t) => {
  const company = await companyId();
  const hook = await make().webhook({ companyId: company, actions: ['contact.updated'] });
  const legacy = await db().pool.connect();
  t.teardown(() => legacy.release(true));
  await legacy.query('set standard_conforming_strings = off; set escape_string_warning = off');
  const error = await t.throwsAsync(legacy.query(
    'update webhooks.webhooks set ignore_sources = $2 where id = $1', [hook.id, ['api', 'imp\u202eort']])) as PgError;
  t.like(error, { code: '23514', constraint: 'webhook_ignore_sources_invalid', column: 'ignore_sources' });
  t.regex(error.message, refusals.find(([what]) => what === 'a source with a bidi override')![4]);
  await legacy.query('update webhooks.webhooks set ignore_sources = $2 where id = $1', [hook.id, ['encompass']]);
  t.deepEqual((await db().pool.query('select ignore_sources from webhooks.webhooks where id = $1', [hook.id])).rows[0].ignore_sources, ['encompass']);
});

// jsonb holds 1e400 (a numeric), but no JSON reader does: the API's, the page's and a
// receiver's read it as infinity, and the API served such a condition back as null
test('refused: a condition\'s number beyond what a JSON reader holds (±1.7976931348623157e308), alone or in a list, by name (webhook_conditions_invalid); the largest is accepted', async (t) => {
  const company = await companyId();
  const hook = await make().webhook({ companyId: company, actions: ['contact.updated'] });
  for (const [conditions, message] of [
    ['{"field": "id", "op": "gt", "value": 1e400}', 'value: '],
    ['{"not": {"field": "custom.score", "op": "lt", "value": -1.8e308}}', 'not.value: '],
    ['{"field": "id", "op": "in", "value": [1, 2e308]}', 'value[1]: '],
  ]) {
    const error = await t.throwsAsync(db().pool.query('update webhooks.webhooks set conditions = $2::jsonb where id = $1', [hook.id, conditions])) as PgError;
    t.like(error, { code: '23514', constraint: 'webhook_conditions_invalid', column: 'conditions' }, conditions);
    t.is(error.message, `${message}a number beyond ±1.7976931348623157e308 is not accepted: JSON readers take it as infinity`, conditions);
  }
  await db().pool.query('update webhooks.webhooks set conditions = $2::jsonb where id = $1', [hook.id, '{"field": "id", "op": "lt", "value": -1.7976931348623157e308}']);
  const { rows } = await db().pool.query('select conditions from webhooks.webhooks where id = $1', [hook.id]);
  t.is(rows[0].conditions.value, -Number.MAX_VALUE);
});

// jsonb holds 1e-400 and 9007199254740993 exactly (numerics), but a JSON reader holds a
// double: the page's reads 1e-400 as 0 (a condition "amount gt 1e-400" shown and saved
// as "gt 0"), and 9007199254740993 as 9007199254740992 (another contact's id)
test('refused: a condition\'s number a JSON reader does not hold as written (1e-400 read as 0, a 17th digit, a denormal\'s lost digits), by name (webhook_conditions_invalid); one it reads back as written is accepted', async (t) => {
  const company = await companyId();
  const hook = await make().webhook({ companyId: company, actions: ['contact.updated'] });
  for (const [conditions, message] of [
    ['{"field": "custom.amount", "op": "gt", "value": 1e-400}', 'value: a number JSON readers do not hold as written is not accepted: they read it as 0'],
    ['{"not": {"field": "custom.amount", "op": "lt", "value": -2e-324}}', 'not.value: a number JSON readers do not hold as written is not accepted: they read it as 0'],
    ['{"field": "id", "op": "in", "value": [1, 9007199254740993]}', 'value[1]: a number JSON readers do not hold as written is not accepted: they read it as 9.007199254740992e+15'],
    ['{"field": "custom.x", "op": "eq", "value": 1.23456789e-320}', 'value: a number JSON readers do not hold as written is not accepted: they read it as 1.2347e-320'],
    ['{"field": "custom.x", "op": "eq", "value": 0.12345678901234567890}', 'value: a number JSON readers do not hold as written is not accepted: they read it as 0.12345678901234568'],
  ]) {
    const error = await t.throwsAsync(db().pool.query('update webhooks.webhooks set conditions = $2::jsonb where id = $1', [hook.id, conditions])) as PgError;
    t.like(error, { code: '23514', constraint: 'webhook_conditions_invalid', column: 'conditions' }, conditions);
    t.is(error.message, message, conditions);
  }
  // read back as written: the least double, a denormal, a tenth, 2^53, trailing zeros, zero written small (under a
  // session that writes doubles with 15 digits, extra_float_digits = 0, as well)
  const held = '{"field": "custom.x", "op": "in", "value": [5e-324, 1e-320, 0.1, 1.10, 9007199254740992, 2.2250738585072014e-308, 0e-400, -0, 123456789012345.67]}';
  await inTransaction(db().pool, 'set local extra_float_digits = 0', async (client) => {
    await client.query('update webhooks.webhooks set conditions = $2::jsonb where id = $1', [hook.id, held]);
  });
  const { rows } = await db().pool.query('select conditions = $2::jsonb as kept from webhooks.webhooks where id = $1', [hook.id, held]);
  t.true(rows[0].kept);
});

// jsonb holds no number past what a numeric holds (1e1000000): the text of such a
// condition, given to the config functions, failed with Postgres's own 22003 ("value
// overflows numeric format"), named nothing; and \u0000 with 22P05
test('a condition given to create_webhook or update_webhook that jsonb cannot hold (a number past a numeric\'s, 1e1000000 or 1e-20000; \\u0000) is refused by name (webhook_conditions_invalid), nothing written', async (t) => {
  const company = await companyId();
  const hook = await make().webhook({ companyId: company, actions: ['contact.updated'], conditions: VA });
  const asAdmin = `select set_config('role', 'webhook_admin', true), set_config('jwt.claims.company_id', '${company}', true)`;
  for (const [conditions, message] of [
    ['{"field": "custom.amount", "op": "gt", "value": 1e1000000}', 'conditions: a number past what Postgres holds (a numeric: 131072 digits before the point, 16383 after) is not accepted: JSON readers take it as infinity or 0'],
    ['{"field": "custom.amount", "op": "in", "value": [1, -1e-20000]}', 'conditions: a number past what Postgres holds (a numeric: 131072 digits before the point, 16383 after) is not accepted: JSON readers take it as infinity or 0'],
    ['{"field": "state", "op": "eq", "value": "V\\u0000A"}', 'conditions: a text with the NUL character (U+0000) is not accepted: Postgres text cannot hold it'],
  ]) {
    const created = await t.throwsAsync(inTransaction(db().pool, asAdmin, (client) => client.query(
      `select webhook from webhooks.create_webhook('Sync', 'https://receiver.example.com/in', '{email}', '{contact.updated}', conditions => '${conditions}')`))) as PgError;
    t.like(created, { code: '23514', constraint: 'webhook_conditions_invalid', column: 'conditions', message }, conditions);
    const updated = await t.throwsAsync(inTransaction(db().pool, asAdmin, (client) => client.query(
      'select id from webhooks.update_webhook($1, conditions => $2)', [hook.id, conditions]))) as PgError;
    t.like(updated, { code: '23514', constraint: 'webhook_conditions_invalid', column: 'conditions', message }, conditions);
  }
  const { rows } = await db().pool.query('select id, conditions from webhooks.webhooks where company_id = $1', [company]);
  t.deepEqual(rows, [{ id: hook.id, conditions: VA }]);
});

test('refused on update too, and the webhook keeps its filters', async (t) => {
  const company = await companyId();
  const hook = await make().webhook({ companyId: company, actions: ['contact.updated'], conditions: VA, watchFields: ['state'] });
  const error = await t.throwsAsync(db().pool.query(
    `update webhooks.webhooks set conditions = '{"field": "state", "op": "equals", "value": "VA"}' where id = $1`, [hook.id])) as PgError;
  t.is(error.constraint, 'webhook_conditions_invalid');
  t.is(error.message, 'op: unknown operator "equals"; one of eq, ne, in, not_in, lt, lte, gt, gte, contains, starts_with, is_null, not_null, changed');
  const watch = await t.throwsAsync(db().pool.query(`update webhooks.webhooks set watch_fields = '{shoe_size}' where id = $1`, [hook.id])) as PgError;
  t.is(watch.constraint, 'webhook_watch_field_unknown');
  const { rows } = await db().pool.query('select conditions, watch_fields from webhooks.webhooks where id = $1', [hook.id]);
  t.deepEqual(rows[0], { conditions: VA, watch_fields: ['state'] });
});

test('the source rules apply to sources as they are written: a webhook whose sources were stored before a rule can still have its other filters changed', async (t) => {
  const company = await companyId();
  const hook = await make().webhook({ companyId: company, actions: ['contact.updated'], ignoreSources: ['api'] });
  // as if stored before line breaks were refused (the triggers off for this transaction alone)
  await inTransaction(db().pool, 'set local session_replication_role = replica',
    (c) => c.query(`update webhooks.webhooks set ignore_sources = '{"api","two\nlines"}' where id = $1`, [hook.id]));
  await db().pool.query(`update webhooks.webhooks set watch_fields = '{state}', conditions = $2 where id = $1`, [hook.id, VA]);
  const { rows: [row] } = await db().pool.query('select ignore_sources, watch_fields, conditions from webhooks.webhooks where id = $1', [hook.id]);
  t.deepEqual(row, { ignore_sources: ['api', 'two\nlines'], watch_fields: ['state'], conditions: VA });
  // written again, they are checked
  const error = await t.throwsAsync(db().pool.query(
    `update webhooks.webhooks set ignore_sources = '{"two\nlines","api"}' where id = $1`, [hook.id])) as PgError;
  t.is(error.constraint, 'webhook_ignore_sources_invalid');
  t.regex(error.message, /as source 1 does$/);
});

test('the field rules apply to fields as they are written: a webhook watching, or with a condition on, a column the CRM has since dropped can still have its other filters changed', async (t) => {
  const company = await companyId();
  const hook = await make().webhook({ companyId: company, actions: ['contact.updated'] });
  const onFax = { field: 'fax', op: 'eq', value: '555' };
  // as if stored while crm.contacts had a column fax (the triggers off for this transaction alone)
  await inTransaction(db().pool, 'set local session_replication_role = replica',
    (c) => c.query(`update webhooks.webhooks set watch_fields = '{fax}', conditions = $2 where id = $1`, [hook.id, onFax]));
  await db().pool.query(`update webhooks.webhooks set ignore_sources = '{api}' where id = $1`, [hook.id]);
  await db().pool.query(`update webhooks.webhooks set conditions = $2 where id = $1`, [hook.id, VA]);
  await db().pool.query(`update webhooks.webhooks set watch_fields = '{state}', conditions = $2 where id = $1`, [hook.id, onFax])
    .then(() => t.fail('a condition on fax, written again, is checked'), (error: PgError) => t.is(error.constraint, 'webhook_conditions_invalid'));
  const { rows: [row] } = await db().pool.query('select ignore_sources, watch_fields, conditions from webhooks.webhooks where id = $1', [hook.id]);
  t.deepEqual(row, { ignore_sources: ['api'], watch_fields: ['fax'], conditions: VA });
  // written again, they are checked
  const error = await t.throwsAsync(db().pool.query(`update webhooks.webhooks set watch_fields = '{state,fax}' where id = $1`, [hook.id])) as PgError;
  t.is(error.constraint, 'webhook_watch_field_unknown');
});

test('accepted: filters stored tidy; JSON null means always; the defaults filter nothing', async (t) => {
  const company = await companyId();
  const hook = await make().webhook({
    companyId: company, actions: ['contact.updated'],
    ignoreSources: ['encompass', 'api', 'encompass', 'Encompass 360'], watchFields: ['phone', 'email', 'phone'], conditions: null,
  });
  t.deepEqual(hook.ignore_sources, ['encompass', 'api', 'Encompass 360']);
  t.deepEqual(hook.watch_fields, ['phone', 'email']);
  t.is(hook.conditions, null);
  await db().pool.query(`update webhooks.webhooks set conditions = '{"field": "state", "op": "eq", "value": "VA"}' where id = $1`, [hook.id]);
  const { rows } = await db().pool.query(
    `update webhooks.webhooks set conditions = 'null'::jsonb where id = $1 returning conditions`, [hook.id]);
  t.is(rows[0].conditions, null);
  // (and the same again changes nothing: no row is written, 10_config.sql)
  const again = await db().pool.query(`update webhooks.webhooks set conditions = 'null'::jsonb where id = $1`, [hook.id]);
  t.is(again.rowCount, 0);
  const plain = await db().pool.query(
    `insert into webhooks.webhooks (company_id, name, url, fields, actions)
     values ($1, 'plain', 'https://example.com/h', '{email}', '{contact.created}') returning ignore_sources, watch_fields, conditions`, [company]);
  t.deepEqual(plain.rows[0], { ignore_sources: [], watch_fields: [], conditions: null });
});

test('accepted: every operator on the fields it applies to', async (t) => {
  const company = await companyId();
  const conditions = {
    all: [
      { field: 'state', op: 'in', value: ['VA', 'MD'] },
      { field: 'state', op: 'not_in', value: ['DC'] },
      { field: 'email', op: 'contains', value: '@' },
      { field: 'postal_code', op: 'starts_with', value: '2' },
      { field: 'birthday', op: 'lt', value: '2000-01-01' },
      { field: 'created_at', op: 'gte', value: '2026-01-01 09:30+02' },
      { field: 'id', op: 'ne', value: 0 },
      { any: [{ field: 'custom.score', op: 'gt', value: 1.5 }, { field: 'custom.vip', op: 'eq', value: true }] },
      { not: { field: 'phone', op: 'is_null' } },
      { field: 'custom', op: 'changed' },
      { field: 'custom.tier', op: 'lte', value: 'gold' },
      { field: 'custom.renewal', op: 'gte', value: '2026-01-01' },
    ],
  };
  const hook = await make().webhook({ companyId: company, actions: ['contact.updated'], conditions });
  t.deepEqual(hook.conditions, conditions);
});
