// The engine's settings (sql/02_settings.sql) are set with ALTER DATABASE … SET, which
// checks nothing: a typo there must not stop every company's deliveries. A value the
// engine cannot use leaves the default in force, one out of bounds is held to them,
// and webhooks.settings says so.
import test from 'ava';
import { readFile } from 'node:fs/promises';
import type pg from 'pg';
import { ownConnection, useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { inTransaction } from '../helpers/sql.ts';

const db = useTestDatabase(test);
const make = () => factories(db().pool);

/** `set local` of each setting, for inTransaction */
const setLocal = (settings: Record<string, string>) =>
  Object.entries(settings).map(([name, value]) => `set local ${name} = '${value}'`).join('; ');

/** one due delivery of a fresh webhook, claimed and settled with `status` under `settings` */
async function claimAndSettle(settings: Record<string, string>, status: number) {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await f.contact(company.id);
  return inTransaction(db().pool, setLocal(settings), async (c: pg.PoolClient) => {
    const { rows: claimed } = await c.query(
      `select * from webhooks_relay.claim_deliveries('relay-s', 10, interval '1 minute', 10, '{}', '{}', array[$1::bigint])`,
      [hook.id]);
    const { rows: settled } = await c.query(
      `select delivery_id, state, extract(epoch from next_attempt_at - now())::float8 as wait_s
       from webhooks_relay.settle_deliveries('relay-s', array[$1::bigint], array[$2::int], array[now()], array[5],
                                              array[$3::int], array[null::text], array[null::text], array[null::int])`,
      [claimed[0]?.delivery_id, claimed[0]?.attempt, status]);
    return { claimed, settled };
  });
}

test('settings the engine cannot read leave the defaults in force: claims and settles go on', async (t) => {
  const { claimed, settled } = await claimAndSettle({
    'webhooks.max_in_flight': 'thirty',
    'webhooks.max_attempts': 'ten',
    'webhooks.retry_base': 'soon',
    'webhooks.retry_factor': 'x3',
    'webhooks.retry_max_delay': 'a while',
    'webhooks.retry_jitter': 'some',
    'webhooks.retry_after_max': '6 hourz',
    'webhooks.breaker_after': 'five',
    'webhooks.auto_disable_after': 'never',
  }, 500);
  t.is(claimed.length, 1);
  t.is(settled.length, 1);
  t.is(settled[0].state, 'pending');
  // the default schedule: 10 seconds ± 25 %
  t.true(settled[0].wait_s > 7 && settled[0].wait_s < 13, `waits ${settled[0].wait_s} s`);
});

test('settings out of bounds are held to them', async (t) => {
  // max_attempts 0 is held to 1: the first failure is the last
  const once = await claimAndSettle({ 'webhooks.max_attempts': '0' }, 500);
  t.is(once.settled[0].state, 'failed');
  // a factor of 1e400 would overflow: held to 100, and every wait to retry_max_delay
  const huge = await claimAndSettle({ 'webhooks.retry_factor': '1e400', 'webhooks.retry_base': '-5 seconds',
                                      'webhooks.retry_jitter': '7' }, 500);
  t.is(huge.settled[0].state, 'pending');
  // retry_base below 0 is held to 0; a jitter of 7 to 1 (the wait never goes below now)
  t.true(huge.settled[0].wait_s >= -1 && huge.settled[0].wait_s < 1, `waits ${huge.settled[0].wait_s} s`);
});

test('a number too near 0 for double precision is not one: the default holds, and settles go on', async (t) => {
  // 1e-400 is within the jitter's bounds (0 to 1), but double precision, which the
  // readers use, cannot hold it: every failed attempt's settle would be an error
  const { settled } = await claimAndSettle({ 'webhooks.retry_jitter': '1e-400' }, 500);
  t.is(settled[0].state, 'pending');
  t.true(settled[0].wait_s > 7 && settled[0].wait_s < 13, `waits ${settled[0].wait_s} s`);
  const [row] = await inTransaction(db().pool, setLocal({ 'webhooks.retry_jitter': '1e-400' }), async (c) =>
    (await c.query(`select value, refusal from webhooks.settings where name = 'webhooks.retry_jitter'`)).rows);
  t.deepEqual(row, { value: '0.25', refusal: 'not a number: the default holds' });
});

// A session with standard_conforming_strings off (an old script's) read the pattern of
// a number with its backslash as an escape (\. as any character): "3x5" passed for a
// number, and its cast failed the read of webhooks.settings, of refused_settings and of
// the setting itself (22P02) instead of naming the setting.
test('a session with standard_conforming_strings off: a number set wrong is named, and the default holds', async (t) => {
  const legacy = await ownConnection(db().url, t);
  await legacy.query('set standard_conforming_strings = off; set escape_string_warning = off');
  await legacy.query(`set webhooks.retry_factor = '3x5'; set webhooks.retry_jitter = '0.5'`);
  const { rows } = await legacy.query(
    `select name, value, refusal from webhooks.settings where name in ('webhooks.retry_factor', 'webhooks.retry_jitter') order by name`);
  t.deepEqual(rows, [{ name: 'webhooks.retry_factor', value: '3', refusal: 'not a number: the default holds' },
                     { name: 'webhooks.retry_jitter', value: '0.5', refusal: null }]);
  t.deepEqual((await legacy.query(`select webhooks_private.number_setting('webhooks.retry_factor') as factor`)).rows, [{ factor: 3 }]);
});

test('webhooks.settings lists every setting: in force, as set, its default, and why a value was refused', async (t) => {
  // (the retention as the database has it: a session's own is not the one in force)
  const rows = await retentionOfDatabase('1 hour', async (c) => {
    await c.query(setLocal({
      'webhooks.max_in_flight': 'thirty',
      'webhooks.max_attempts': '5000',
      'webhooks.retention': '400 days',
      'webhooks.retry_base': '20 seconds',
    }));
    return (await c.query('select * from webhooks.settings order by name')).rows;
  });
  const byName = new Map(rows.map((r) => [r.name, r]));
  t.deepEqual(
    [...byName.keys()].sort(),
    ['webhooks.audit_retention', 'webhooks.auto_disable_after', 'webhooks.backfill_batch', 'webhooks.backfill_batch_time', 'webhooks.backfill_defer', 'webhooks.backfill_outstanding',
     'webhooks.breaker_after', 'webhooks.breaker_probe_interval', 'webhooks.breaker_probe_max_interval',
     'webhooks.max_attempts', 'webhooks.max_changes_per_hour', 'webhooks.max_conditions_per_company', 'webhooks.max_in_flight', 'webhooks.max_payload_bytes', 'webhooks.max_payload_bytes_per_change', 'webhooks.max_webhooks_per_company',
     'webhooks.retention', 'webhooks.retry_after_max', 'webhooks.retry_base', 'webhooks.retry_factor',
     'webhooks.retry_jitter', 'webhooks.retry_max_delay']);
  t.like(byName.get('webhooks.max_in_flight'),
    { value: '32', set_to: 'thirty', default_value: '32', refusal: 'not a whole number: the default holds' });
  t.like(byName.get('webhooks.max_attempts'),
    { value: '100', set_to: '5000', default_value: '10', refusal: 'more than 100, the most allowed: 100 holds' });
  t.like(byName.get('webhooks.retention'),
    { value: '1 day', set_to: '1 hour', default_value: '90 days', refusal: 'less than 1 day, the least allowed: 1 day holds' });
  t.like(byName.get('webhooks.retry_base'), { value: '00:00:20', set_to: '20 seconds', refusal: null });
  t.like(byName.get('webhooks.retry_jitter'), { value: '0.25', set_to: null, default_value: '0.25', refusal: null });
  for (const row of rows) t.truthy(row.about, `${row.name} says what it is`);
});

test('the relay and the API can ask which settings were refused, and nothing else', async (t) => {
  await inTransaction(db().pool, setLocal({ 'webhooks.retry_factor': 'three' }), async (c) => {
    await c.query('set local role bpd_webhooks_relay');
    const { rows } = await c.query('select * from webhooks_ops.refused_settings()');
    t.deepEqual(rows, [{ name: 'webhooks.retry_factor', set_to: 'three', value: '3', refusal: 'not a number: the default holds' }]);
    await t.throwsAsync(c.query('select * from webhooks.settings'), { code: '42501' });
  });
});

// A role's settings reach the sessions that log in as it, never one that takes it with
// SET ROLE: set for bpd_webhooks_relay or webhook_admin (the roles the relay's and the
// API's sessions take), a setting was in force nowhere, and nothing said so
test('a setting set for a role no session logs in as is a refusal, named with the role', async (t) => {
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    await client.query(`alter role bpd_webhooks_relay set webhooks.max_attempts = '3'`);
    await client.query(`alter role webhook_admin in database ${db().name} set webhooks.max_webhooks_per_company = 5`);
    await client.query(`alter role webhook_admin in database postgres set webhooks.max_in_flight = 5`);
    await client.query('set local role bpd_webhooks_relay');
    const { rows } = await client.query('select * from webhooks_ops.refused_settings()');
    const unused = (role: string) => `set for role ${role}, which no session logs in as (the relay's and the API's sessions take it with SET ROLE): `
      + 'not used; set it for the login of their DATABASE_URL (alter role … set) or for the database (alter database … set)';
    t.deepEqual(rows, [
      { name: 'webhooks.max_attempts', set_to: '3', value: '10', refusal: unused('bpd_webhooks_relay') },
      { name: 'webhooks.max_webhooks_per_company', set_to: '5', value: '100', refusal: unused('webhook_admin') },
    ], "another database's setting is not this one's");
  } finally {
    await client.query('rollback');
    client.release();
  }
});

/**
 * webhooks_private.retention() with the database's webhooks.retention set to `value`,
 * in a transaction rolled back (the retention in force is the database's alone).
 */
async function retentionOfDatabase<T>(value: string, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    await client.query(`alter database ${db().name} set webhooks.retention = '${value}'`);
    return await work(client);
  } finally {
    await client.query('rollback');
    client.release();
  }
}

test('retention that cannot be read keeps 90 days, and is never under a day: nothing is dropped early', async (t) => {
  const kept = await retentionOfDatabase('forever', async (c) =>
    (await c.query('select webhooks_private.retention()::text as r')).rows[0].r);
  t.is(kept, '90 days');
  // a negative retention would drop today's partitions and those made ahead
  const least = await retentionOfDatabase('-90 days', async (c) =>
    (await c.query('select webhooks_private.retention()::text as r')).rows[0].r);
  t.is(least, '1 day');
});

test('the retention in force is the database\'s: a session\'s own is not read', async (t) => {
  const inForce = await retentionOfDatabase('30 days', async (c) => {
    await c.query(`set local webhooks.retention = '400 days'`);
    return (await c.query('select webhooks_private.retention()::text as r')).rows[0].r;
  });
  t.is(inForce, '30 days');
});

test("docs/operations.md's table of settings is the engine's own", async (t) => {
  const docs = await readFile(new URL('../../docs/operations.md', import.meta.url), 'utf8');
  const documented = docs.split('\n').filter((line) => line.startsWith('| `webhooks.'));
  const { rows } = await db().pool.query(
    `select format('| %s | %s | %s | %s | %s | %s |', '\`' || name || '\`', kind, default_value, least_value, most_value, about) as line
     from webhooks_private.setting_rules()`);
  t.deepEqual(documented, rows.map((r) => r.line));
});

test('an interval of months less days is held to its least in the shortest months: retention never keeps less than a day', async (t) => {
  // '1 mon -29 days' is 1 day as extract(epoch …) counts it (a month of 30 days), but
  // in March (a month back is February's 28 days) it reaches a day into the future:
  // the days kept would start tomorrow, and maintenance would drop today's partitions
  const [row] = await retentionOfDatabase('1 mon -29 days', async (c) =>
    (await c.query(`select value, refusal from webhooks.settings where name = 'webhooks.retention'`)).rows);
  t.is(row.value, '1 day');
  t.truthy(row.refusal);
  const shorter = await retentionOfDatabase('1 mon -29 days', async (c) => (await c.query(
    `select to_char(d, 'YYYY-MM-DD') as day
     from generate_series(timestamptz '2027-01-01 12:00+00', timestamptz '2028-12-31 12:00+00', interval '1 day') d
     where d - webhooks_private.retention() > d - interval '1 day'`)).rows.map((r) => r.day));
  t.deepEqual(shorter, []);
  // one of months and days alike is as it was
  const [kept] = await retentionOfDatabase('1 mon -27 days', async (c) =>
    (await c.query(`select value, refusal from webhooks.settings where name = 'webhooks.retention'`)).rows);
  t.deepEqual(kept, { value: '1 mon -27 days', refusal: null });
});
