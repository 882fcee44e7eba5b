// What DBAs and support ask of the fire history in SQL (docs/sql.md, "Reading fire
// history"), and what each question reads: the days it names, not every day kept.
// A history of 20 days, written in bulk; its own file, as its statistics would change
// the plans of other tests of one database.
import test from 'ava';
import type pg from 'pg';
import { useTestDatabase } from '../helpers/db.ts';
import { utcDay } from '../helpers/days.ts';
import { factories } from '../helpers/factories.ts';
import { partitionsRead, partitionsScanned, roundingSlack, rowsRead } from '../helpers/plans.ts';

const db = useTestDatabase(test);

const DAYS = 20;

// Two companies; the first's webhook fires 40 times a day (contacts 1 to 40, one in
// ten failed), the other's 40 times a day too; everything rolled up as the API server
// does every few minutes.
async function makeHistory() {
  const f = factories(db().pool);
  const company = await f.company();
  const other = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const otherHook = await f.webhook({ companyId: other.id, actions: ['contact.created'] });
  for (const webhook of [hook, otherHook]) {
    await db().pool.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at,
                                        last_status_code, last_error, created_at)
       select $1, $2, 'contact.created', c, '{}', case when c % 10 = 0 then 'failed' else 'succeeded' end, 1,
              now(), case when c % 10 = 0 then 500 else 200 end, case when c % 10 = 0 then 'HTTP 500' end,
              now() - d * interval '1 day' - c * interval '1 minute'
       from generate_series(1, $3::int) d, generate_series(1, 40) c`, [webhook.id, webhook.company_id, DAYS]);
  }
  await db().pool.query('call webhooks.roll_up_report_counts()');
  await db().pool.query('analyze webhooks.delivery_history, webhooks.delivery_results, webhooks.delivery_queue, webhooks.delivery_attempts, webhooks.delivery_day_counts');
  return { company, hook };
}
let history: ReturnType<typeof makeHistory> | undefined;
const theHistory = () => (history ??= makeHistory());

async function plan(sql: string, settings: string[] = []) {
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    for (const setting of settings) await client.query(setting);
    const { rows: [{ 'QUERY PLAN': [explained] }] } = await client.query(`explain (analyze, format json) ${sql}`);
    const { rows } = await client.query(sql);
    return { rows, read: rowsRead(explained.Plan), slack: roundingSlack(explained.Plan), partitions: partitionsRead(explained.Plan) };
  } finally {
    await client.query('rollback');
    client.release();
  }
}
const count = (partitions: Map<string, Set<string>>, table: string) => partitions.get(table)?.size ?? 0;

test("a company's daily totals over a year read the days not rolled up yet, not all of its history", async (t) => {
  const { company } = await theHistory();
  const { rows: [{ counted_before: countedBefore }] } = await db().pool.query(
    `select webhooks_private.all_counted_before()::text as counted_before`);
  t.truthy(countedBefore);
  const totals = await plan(
    `select day::text, sum(fired)::int as fired, sum(failed)::int as failed from webhooks.daily_counts
     where company_id = ${Number(company.id)} and day >= current_date - 365 group by day order by day`);
  // the same totals as the rows say
  const { rows: fromRows } = await db().pool.query(
    `select (created_at at time zone 'utc')::date::text as day, count(*)::int as fired,
            (count(*) filter (where state = 'failed'))::int as failed
     from webhooks.fire_history where company_id = $1 group by 1 order by 1`, [company.id]);
  t.deepEqual(totals.rows, fromRows);
  // the rows of the days since every webhook was last counted, no more (of every
  // company: the statement runs as the owner, without row-level security)
  const { rows: [{ recent, recentResults }] } = await db().pool.query(
    `select (select count(*) from webhooks.delivery_history where created_at >= webhooks_private.utc_day_start($1::date))::int as recent,
            (select count(*) from webhooks.delivery_results where created_at >= webhooks_private.utc_day_start($1::date))::int as "recentResults"`,
    [countedBefore]);
  // (within what EXPLAIN's rounding of rows per loop allows: helpers/plans.ts)
  t.true((totals.read.get('delivery_history') ?? 0) <= recent + (totals.slack.get('delivery_history') ?? 0),
    `history rows read: ${totals.read.get('delivery_history')}, of ${recent} since ${countedBefore} and ${2 * DAYS * 40} kept`);
  t.true((totals.read.get('delivery_results') ?? 0) <= recentResults + (totals.slack.get('delivery_results') ?? 0),
    `results rows read: ${totals.read.get('delivery_results')}, of ${recentResults} since ${countedBefore}`);
  const before = countedBefore.replaceAll('-', '');
  const older = [...(totals.partitions.get('delivery_results') ?? [])].filter((name) => (name.match(/_p(\d{8})/)?.[1] ?? '99999999') < before);
  t.deepEqual(older, [], 'no partition of results before the days not rolled up is read');
});

// The shapes docs/sql.md gives: the times written as constants, and partitionwise
// joins on, so that the bound on history's created_at reaches results too.
test("a contact's firings of two days, a webhook's failures of a day and a message read those days' partitions, of history and of results", async (t) => {
  const { company, hook } = await theHistory();
  const since = utcDay(-5).toISOString();
  const until = utcDay(-3).toISOString();
  const contact = await plan(
    `select delivery_id, created_at, state, last_error from webhooks.fire_history
     where contact_id = 10 and created_at >= '${since}' and created_at < '${until}' order by created_at desc`,
    ['set local enable_partitionwise_join = on']);
  const { rows: [{ expected }] } = await db().pool.query(
    `select count(*)::int as expected from webhooks.delivery_history where contact_id = 10 and created_at >= $1 and created_at < $2`,
    [since, until]);
  t.true(expected >= 2);
  t.is(contact.rows.length, expected);
  t.true(contact.rows.every((row) => row.state === 'failed' && row.last_error === 'HTTP 500'));
  t.true(count(contact.partitions, 'delivery_history') <= 2, `history partitions read: ${count(contact.partitions, 'delivery_history')}`);
  t.true(count(contact.partitions, 'delivery_results') <= 2, `results partitions read: ${count(contact.partitions, 'delivery_results')}`);
  t.true(count(contact.partitions, 'delivery_attempts') <= 2, `attempts partitions read: ${count(contact.partitions, 'delivery_attempts')}`);
  // the rows of those two days (no index by contact), and each firing found once more,
  // by its key, for its outcome (sql/40_history.sql), as a day of more than a page is
  // read: the test's days are a page each, which the planner reads whole for each
  const rows = await plan(
    `select delivery_id, created_at, state, last_error from webhooks.fire_history
     where contact_id = 10 and created_at >= '${since}' and created_at < '${until}' order by created_at desc`,
    ['set local enable_seqscan = off']);
  t.true((rows.read.get('delivery_history') ?? 0) <= 2 * 2 * 40 + expected + (rows.slack.get('delivery_history') ?? 0),
    `history rows read: ${rows.read.get('delivery_history')}`);

  // what failed for one webhook on one day, and why
  const failed = await plan(
    `select delivery_id, state, attempts, last_status_code, last_error from webhooks.fire_history
     where webhook_id = ${Number(hook.id)} and state = 'failed' and created_at >= '${utcDay(-4).toISOString()}' and created_at < '${utcDay(-3).toISOString()}'`,
    ['set local enable_partitionwise_join = on']);
  const { rows: [{ failures }] } = await db().pool.query(
    `select count(*)::int as failures from webhooks.delivery_results where webhook_id = $1 and state = 'failed' and created_at >= $2 and created_at < $3`,
    [hook.id, utcDay(-4).toISOString(), utcDay(-3).toISOString()]);
  t.true(failures >= 1);
  t.is(failed.rows.length, failures);
  t.true(failed.rows.every((row) => row.last_error === 'HTTP 500' && row.last_status_code === 500));
  t.is(count(failed.partitions, 'delivery_history'), 1);
  t.is(count(failed.partitions, 'delivery_results'), 1);

  // one message, by the webhook-id a receiver got and the timestamp of the payload it
  // got (the capture's time; up to an hour later for updates merged while they waited
  // out a coalesce window)
  const { rows: [message] } = await db().pool.query(
    `select message_id, delivery_id,
            -- (as the payload's timestamp is written: 25_capture.sql)
            to_char(created_at at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as stamp
     from webhooks.fire_history
     where company_id = $1 and contact_id = 20 and created_at >= $2 and created_at < $3`, [company.id, since, until]);
  const stamp = message.stamp as string;
  // (both times written as constants: an expression of them, stamp - interval '1 hour',
  // is computed as the statement starts, too late to leave the days out of the joins)
  const byId = await plan(
    `select delivery_id, state, attempts, last_status_code, last_error from webhooks.fire_history
     where message_id = '${message.message_id}'
       and created_at >= '${new Date(Date.parse(stamp) - 3_600_000).toISOString()}' and created_at <= '${stamp}'`,
    ['set local enable_partitionwise_join = on']);
  t.deepEqual(byId.rows.map((row) => String(row.delivery_id)), [String(message.delivery_id)]);
  t.true(count(byId.partitions, 'delivery_history') <= 2, `history partitions read: ${count(byId.partitions, 'delivery_history')}`);
  t.true(count(byId.partitions, 'delivery_results') <= 2, `results partitions read: ${count(byId.partitions, 'delivery_results')}`);
  // and its attempts, by the delivery's id and created_at: one partition's index
  const attempts = await plan(
    `select attempt, status_code, error from webhooks.delivery_attempts
     where delivery_id = ${Number(message.delivery_id)} and delivery_created_at = timestamptz '${stamp}'`);
  t.is(count(attempts.partitions, 'delivery_attempts'), 1);
});

// The same questions as a DBA may well write them: bounded by now() or current_date,
// or with the planner's settings as they are (no partitionwise joins). Each firing's
// outcome is looked up by its key, so these read the days they name of results too,
// where the view's join read every result row kept, of every company
// (sql/40_history.sql).
test("a webhook's failures of days given by now() or current_date, or by constants without partitionwise joins, read those days' results, not every day's", async (t) => {
  const { hook } = await theHistory();
  const kept = 2 * DAYS * 40;
  const bounds: Array<[string, string[], number]> = [
    // (bound, settings, the days of partitions it names)
    [`created_at > now() - interval '2 days' and created_at <= now()`, ['set local enable_partitionwise_join = on'], 3],
    [`created_at > now() - interval '2 days' and created_at <= now()`, [], 3],
    [`created_at >= '${utcDay(-4).toISOString()}' and created_at < '${utcDay(-3).toISOString()}'`, [], 1],
    [`created_at >= current_date - 4 and created_at < current_date - 3`, [], 1],
  ];
  for (const [bound, settings, days] of bounds) {
    const question = `select delivery_id, state, last_status_code, last_error from webhooks.fire_history
                      where webhook_id = ${Number(hook.id)} and state = 'failed' and ${bound}`;
    const { rows: [{ failures, firings }] } = await db().pool.query(
      `select (count(*) filter (where state = 'failed'))::int as failures, count(*)::int as firings
       from webhooks.delivery_results where webhook_id = $1 and ${bound}`, [hook.id]);
    t.true(failures >= 4, bound);
    const what = `${bound}${settings.length ? ` (${settings.join('; ')})` : ''}`;
    const asked = await plan(question, settings);
    t.log(`${what}: partitions of results read ${count(asked.partitions, 'delivery_results')}, of history ${count(asked.partitions, 'delivery_history')}`);
    t.is(asked.rows.length, failures, what);
    t.true(asked.rows.every((row) => row.last_error === 'HTTP 500' && row.last_status_code === 500), what);
    t.true(count(asked.partitions, 'delivery_results') <= days, `results partitions read for ${what}: ${count(asked.partitions, 'delivery_results')}`);
    t.true(count(asked.partitions, 'delivery_history') <= days, `history partitions read for ${what}: ${count(asked.partitions, 'delivery_history')}`);
    // and the rows: one result for each of the webhook's firings of those days, as a
    // day of more than a page or two is read (the test's days are one page each,
    // which the planner reads whole for each firing rather than by its index)
    const read = await plan(question, [...settings, 'set local enable_seqscan = off']);
    t.log(`${what}: results rows read ${read.read.get('delivery_results')}`);
    t.true((read.read.get('delivery_results') ?? 0) <= firings + (read.slack.get('delivery_results') ?? 0),
      `results rows read for ${what}: ${read.read.get('delivery_results')}, for ${firings} firings, of ${kept} kept`);
  }
});

/** A connection in a transaction rolled back at the end (the statistics of partitionsScanned are a transaction's). */
async function inTransaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    return await work(client);
  } finally {
    await client.query('rollback');
    client.release();
  }
}

test('find_message reads the hour before the payload\'s timestamp, or the days back to the message without it; contact_fire_history the days asked', async (t) => {
  const { company } = await theHistory();
  const { rows: [message] } = await db().pool.query(
    `select message_id, delivery_id::text, created_at::text,
            to_char(created_at at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as stamp
     from webhooks.fire_history
     where company_id = $1 and contact_id = 31 and created_at >= $2 and created_at < $3`,
    [company.id, utcDay(-6).toISOString(), utcDay(-5).toISOString()]);
  await inTransaction(async (client) => {
    const stamped = await partitionsScanned(client, 'webhooks.delivery_history', () => client.query(
      'select delivery_id::text, state, last_error from webhooks.find_message($1, $2)', [message.message_id, message.stamp]));
    t.deepEqual(stamped.result.rows, [{ delivery_id: message.delivery_id, state: 'succeeded', last_error: null }]);
    t.true(stamped.scanned.length <= 2, `history partitions scanned: ${stamped.scanned.join(', ')}`);
    const results = await partitionsScanned(client, 'webhooks.delivery_results', () => client.query(
      'select * from webhooks.find_message($1, $2)', [message.message_id, message.stamp]));
    t.true(results.scanned.length <= 2, `results partitions scanned: ${results.scanned.join(', ')}`);

    // without it: today's partition and each day before, back to the message's
    const unstamped = await partitionsScanned(client, 'webhooks.delivery_history', () => client.query(
      'select delivery_id::text from webhooks.find_message($1)', [message.message_id]));
    t.deepEqual(unstamped.result.rows, [{ delivery_id: message.delivery_id }]);
    const { rows: [{ back }] } = await client.query(
      `select webhooks_private.utc_day(now()) - webhooks_private.utc_day($1::timestamptz) as back`, [message.created_at]);
    t.true(unstamped.scanned.length <= back + 1 + 1, `history partitions scanned: ${unstamped.scanned.length}, ${back} days back`);
    t.true(unstamped.scanned.length < DAYS, `history partitions scanned: ${unstamped.scanned.length} of ${DAYS + 1}`);
    // a message id not kept: nothing, having read every day
    t.deepEqual((await client.query(`select * from webhooks.find_message('msg_00000000000000000000000000000000')`)).rows, []);

    const contact = await partitionsScanned(client, 'webhooks.delivery_results', () => client.query(
      `select delivery_id, state from webhooks.contact_fire_history(10, $1, $2)`,
      [utcDay(-5).toISOString(), utcDay(-3).toISOString()]));
    const { rows: [{ expected }] } = await client.query(
      `select count(*)::int as expected from webhooks.delivery_history where contact_id = 10 and created_at >= $1 and created_at < $2`,
      [utcDay(-5).toISOString(), utcDay(-3).toISOString()]);
    t.is(contact.result.rows.length, expected);
    t.true(contact.result.rows.every((row) => row.state === 'failed'));
    t.true(contact.scanned.length <= 2, `results partitions scanned: ${contact.scanned.join(', ')}`);
  });
});

test('find_message finds an update merged into a message while it waited out its coalesce window, by the later timestamp its payload carries', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'] });
  // the longest window a webhook may have is the one find_message allows for
  await db().pool.query(`update webhooks.webhooks set coalesce_window = webhooks_private.max_coalesce_window() where id = $1`, [hook.id]);
  const longer = await t.throwsAsync(db().pool.query(
    `update webhooks.webhooks set coalesce_window = webhooks_private.max_coalesce_window() + interval '1 microsecond' where id = $1`,
    [hook.id]));
  t.is((longer as { constraint?: string }).constraint, 'webhooks_coalesce_window_range');
  const contact = await f.contact(company.id);
  await db().pool.query(`update crm.contacts set first_name = 'Grace' where id = $1`, [contact.id]);
  await db().pool.query(`update crm.contacts set first_name = 'Edith' where id = $1`, [contact.id]);
  const { rows: [merged] } = await db().pool.query(
    `select message_id, id::text, payload ->> 'timestamp' as stamp, (payload ->> 'timestamp')::timestamptz > created_at as later,
            payload #>> '{data,merged}' as merged
     from webhooks.deliveries where webhook_id = $1`, [hook.id]);
  t.is(merged.merged, '2');
  t.true(merged.later);
  const { rows } = await db().pool.query('select delivery_id::text, state from webhooks.find_message($1, $2)', [merged.message_id, merged.stamp]);
  t.deepEqual(rows, [{ delivery_id: merged.id, state: 'pending' }]);
});

test('the questions refuse what they cannot answer, by name', async (t) => {
  await t.throwsAsync(db().pool.query('select * from webhooks.find_message(null)'), { message: 'message_id is required' });
  await t.throwsAsync(db().pool.query('select * from webhooks.contact_fire_history(null)'), { message: 'contact_id is required' });
  const error = await t.throwsAsync(db().pool.query(`select * from webhooks.find_message('msg_1', '0001-01-01T00:00:00Z')`));
  t.is((error as { constraint?: string }).constraint, 'requested_time_range');
  const since = await t.throwsAsync(db().pool.query(`select * from webhooks.contact_fire_history(1, '0001-01-01T00:00:00Z')`));
  t.is((since as { constraint?: string }).constraint, 'requested_time_range');
  // for DBAs and support: not the API's roles
  const { rows: [{ allowed }] } = await db().pool.query(
    `select has_function_privilege('webhook_viewer', 'webhooks.find_message(text, timestamptz)', 'execute')
         or has_function_privilege('webhook_viewer', 'webhooks.contact_fire_history(bigint, timestamptz, timestamptz)', 'execute') as allowed`);
  t.false(allowed);
});
