// The report's roll-up (sql/50_report_counts.sql) visits each webhook with something
// new, and counts its finished hours but those with a delivery on its way. It asks
// the queue which hours those are among the webhook's own rows, by the queue's indexes
// (one for the rows waiting, one for those in flight): asked of both at once, which
// neither index serves, every company's queue rows were read for each webhook visited
// (a million waiting: 1,010,002 rows and 264 ms a webhook, every roll-up).
import test from 'ava';
import type pg from 'pg';
import { createTestDatabase, useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { tableReads } from '../helpers/plans.ts';

const db = useTestDatabase(test);

test("a roll-up of a webhook's hours reads its own queue rows, not every company's", async (t) => {
  const BACKLOG = 3_000;
  const f = factories(db().pool);
  await f.backlog(BACKLOG);
  const tenant = await f.company();
  const webhook = await f.webhook({ companyId: tenant.id, actions: ['contact.created'] });
  // five deliveries of an hour that ended: to count
  const { rows: [{ hour }] } = await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     select $1, $2, 'contact.created', i, '{}', 'succeeded', 1, now(), webhooks_private.utc_hour(now() - interval '5 hours')
     from generate_series(1, 5) i
     returning webhooks_private.utc_hour(now() - interval '5 hours')::text as hour`, [webhook.id, tenant.id]);
  await db().pool.query('analyze webhooks.delivery_queue');
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  const read = () => tableReads(client, 'webhooks.delivery_queue');
  await client.query('begin');
  const before = await read();
  await client.query(`select webhooks_private.roll_up_webhook_hours($1, $2, webhooks_private.utc_day(now()) - 3, b.hours_before)
                      from webhooks_private.roll_up_bounds(now()) b`,
    [webhook.id, tenant.id]);
  const used = (await read()) - before;
  await client.query('commit');
  const { rows } = await db().pool.query(
    `select hour::text as hour, fired::int as fired from webhooks.delivery_hour_counts where webhook_id = $1 and fired > 0`,
    [webhook.id]);
  t.deepEqual(rows, [{ hour, fired: 5 }]);
  t.true(used < 100, `the roll-up of its hours read ${used} rows of the queue (${BACKLOG} of another company's)`);
});

// On a database of its own: its reads are the index entries its batch's lookups of
// the notes return, which counted entries that led to no row it could see when it ran
// after the file's other roll-ups, in their database, beside the test above: 46 and 68
// (137 before) where it reads 26; in the run looked into, the same 27 index scans and
// the same 26 rows fetched, 42 entries more. Not other webhooks' notes read by the
// roll-up: state the tests before leave, which the count here must not depend on.
test('a batch of the roll-up reads the notes of days to count again of its own webhooks, not every webhook\'s', async (t) => {
  const NOTED = 2_000;
  const BATCH = 25;
  const own = await createTestDatabase();
  t.teardown(() => own.drop());
  const client = await own.pool.connect();
  t.teardown(() => client.release());
  const read = () => tableReads(client, 'webhooks_private.delivery_days_to_count', { indexes: true });
  await client.query('begin');
  try {
    // a roll-up has gone through every webhook: the day's first run after it visits
    // those with deliveries since, and those with days noted that may be counted
    await client.query(
      `insert into webhooks_private.report_counts_rolled_up (counted_before) values (webhooks_private.countable_before())
       on conflict (one) do update set counted_before = excluded.counted_before, hours_counted_before = null`);
    // each of 2,000 webhooks (of ids of their own, the tables have no foreign key to
    // the webhooks) with a delivery an hour ago, retried after midnight: its day noted,
    // not countable yet (as a settle a day after the delivery notes it)
    // (an hour ago is yesterday in the first hour of a UTC day, a day before the
    // template's partitions begin, made from the day it was migrated on: its day made
    // here, as a capture an hour ago would have found it; a run across midnight met
    // "no partition of relation delivery_history found for row")
    await client.query(
      `select webhooks_private.create_partition(t.table_name, t.key_column, t.storage, webhooks_private.utc_day(now() - interval '1 hour'))
       from webhooks_private.outbox_partitioned() t`);
    await client.query(
      `insert into webhooks.delivery_history (webhook_id, company_id, action, contact_id, payload, created_at)
       select 2000000000 + n, 2000000000 + n, 'contact.created', n, '{}', now() - interval '1 hour'
       from generate_series(1, $1::int) n`, [NOTED]);
    await client.query(
      `insert into webhooks_private.delivery_days_to_count (webhook_id, company_id, day)
       select 2000000000 + n, 2000000000 + n, webhooks_private.countable_before() from generate_series(1, $1::int) n`, [NOTED]);
    // (as the statistics of a busy install say: the planner knows the notes are many)
    await client.query('analyze webhooks_private.delivery_days_to_count, webhooks.delivery_history');
    const before = await read();
    const { rows: [batch] } = await client.query(
      `select last_webhook_id::text, visited from webhooks.roll_up_report_counts_after(1999999999, $1)`, [BATCH]);
    const used = (await read()) - before;
    t.deepEqual(batch, { last_webhook_id: String(2000000000 + BATCH), visited: BATCH });
    // its own webhooks' notes (and their delete: the webhooks are gone), not the 2,000
    t.true(used <= 4 * BATCH, `notes read: ${used}`);
  } finally {
    await client.query('rollback');
  }
});

// Each serial test's roll-ups run by one clock, and its deliveries' times are set from
// it: an hour that ended between two of its statements made a test count other hours,
// or visit other webhooks, than it meant to. The clock is half a second before the
// last hour ended: the moment that did.
let clock: string;
test.beforeEach(async () => {
  clock = (await db().pool.query(
    `select (webhooks_private.utc_hour(now()) - interval '500 milliseconds')::text as clock`)).rows[0].clock as string;
});

// A roll-up every few minutes (the API server's) visited every webhook with deliveries
// in the days not counted yet, though nearly all of them had nothing new: 10,000 such
// webhooks, 5–7 s a run. Within a day a run visits those with deliveries in the hours
// finished since the last run, with an hour waiting for a delivery on its way, or with
// days noted to count again.

/** Every row and index entry of the engine's tables (partitions included) this transaction has read so far. */
async function engineReads(client: pg.PoolClient): Promise<number> {
  return (await client.query(
    `select sum(pg_stat_get_xact_tuples_returned(c.oid) + pg_stat_get_xact_tuples_fetched(c.oid))::int as n
     from pg_class c join pg_namespace s on s.oid = c.relnamespace
     where s.nspname in ('webhooks', 'webhooks_private', 'webhooks_partitions') and c.relkind in ('r', 'i')`)).rows[0].n as number;
}

/**
 * Every row and index entry the batches of one roll-up read, in one transaction (of
 * `table` alone, its indexes included, when given; else as `reads` counts them).
 */
async function rollUpReads(client: pg.PoolClient, table?: string,
  reads: (client: pg.PoolClient) => Promise<number> = engineReads): Promise<{ visited: number; read: number }> {
  const read = () => table ? tableReads(client, table, { indexes: true }) : reads(client);
  await client.query('begin');
  try {
    const before = await read();
    let after: string | null = null;
    let countingBefore: string | null = null;
    let visited = 0;
    for (;;) {
      const batch: { last_webhook_id: string | null; visited: number; counting_before: string } = (await client.query(
        `select last_webhook_id::text, visited, counting_before::text
         from webhooks.roll_up_report_counts_after($1, 25, $2, $3)`, [after, countingBefore, clock])).rows[0];
      visited += batch.visited;
      if (batch.last_webhook_id === null) break;
      after = batch.last_webhook_id;
      countingBefore = batch.counting_before;
    }
    const used = (await read()) - before;
    await client.query('commit');
    return { visited, read: used };
  } catch (error) {
    await client.query('rollback');
    throw error;
  }
}

/** `count` webhooks (each of a company of its own), each with one delivery that succeeded `hoursAgo` hours ago. */
async function webhooksWithADelivery(count: number, hoursAgo: number): Promise<string[]> {
  // (hours ago may be yesterday, whose partitions a database migrated today lacks: in
  // the first hours of a UTC day every insert below failed, "no partition … found")
  await db().pool.query('select webhooks_private.ensure_day(webhooks_private.utc_day($1::timestamptz - make_interval(hours => $2::int)))',
    [clock, hoursAgo]);
  const { rows } = await db().pool.query(
    `with c as (
       insert into crm.companies (name) select 'Company ' || gen_random_uuid() from generate_series(1, $1::int)
       returning id),
     w as (
       insert into webhooks.webhooks (company_id, name, url, fields, actions)
       select c.id, 'Hook', 'https://receiver.example.com/hook', '{first_name}', '{contact.created}' from c
       returning id, company_id),
     d as (
       insert into webhooks.delivery_history (webhook_id, company_id, action, contact_id, payload, created_at)
       select w.id, w.company_id, 'contact.created', w.id, '{}', $3::timestamptz - make_interval(hours => $2::int) from w)
     select w.id::text from w`,
    [count, hoursAgo, clock]);
  await db().pool.query('analyze webhooks.webhooks, webhooks.delivery_history, webhooks.delivery_hour_counts');
  return rows.map((row) => row.id as string);
}

test.serial('a roll-up after one that found everything counted reads next to nothing, however many webhooks fired lately', async (t) => {
  const WEBHOOKS = 2_000;
  await webhooksWithADelivery(WEBHOOKS, 5);
  await db().pool.query('call webhooks.roll_up_report_counts(p_now => $1)', [clock]);   // the first: every webhook
  await db().pool.query('call webhooks.roll_up_report_counts(p_now => $1)', [clock]);   // a day's first through those that fired
  // (as the statistics of a busy install say: the hour counts are many)
  await db().pool.query('analyze webhooks.delivery_hour_counts');
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  const { visited, read } = await rollUpReads(client);
  t.log(`visited ${visited}, read ${read}`);
  t.is(visited, 0);
  t.true(read < 50, `a roll-up with nothing new read ${read} rows and index entries (${WEBHOOKS} webhooks fired lately)`);
});

test.serial('a roll-up visits the webhooks with deliveries in the hours finished since the last, and counts them', async (t) => {
  const webhookIds = await webhooksWithADelivery(300, 3);
  await db().pool.query('call webhooks.roll_up_report_counts(p_now => $1)', [clock]);
  await db().pool.query('call webhooks.roll_up_report_counts(p_now => $1)', [clock]);
  // as if the last run had ended before the hour of those deliveries finished
  await db().pool.query('delete from webhooks.delivery_hour_counts where webhook_id = any ($1::bigint[])', [webhookIds]);
  await db().pool.query(
    `update webhooks_private.report_counts_rolled_up set hours_counted_before = webhooks_private.utc_hour($1::timestamptz - interval '3 hours')`,
    [clock]);
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  const { visited } = await rollUpReads(client);
  t.is(visited, 300);
  const { rows: [counted] } = await db().pool.query(
    `select count(*)::int as hours, sum(fired)::int as fired from webhooks.delivery_hour_counts
     where webhook_id = any ($1::bigint[]) and not stale and fired > 0`, [webhookIds]);
  t.deepEqual(counted, { hours: 300, fired: 300 });
});

/** How many times this transaction called the engine's private function `name` (track_functions on). */
function calls(name: string) {
  return async (client: pg.PoolClient): Promise<number> => (await client.query(
    `select coalesce(sum(calls), 0)::int as n from pg_stat_xact_user_functions
     where schemaname = 'webhooks_private' and funcname = $1`, [name])).rows[0].n as number;
}

// Each webhook with deliveries in the hours finished since the last run was visited
// on its own, its hours counted by statements of its own (one planned for it, its
// times constants), every hour and at UTC midnight alike, though most have nothing
// else to do: the batch counts their new hours in one statement.
test.serial("a run counts the new hours of the webhooks that fired in them in one statement a batch, not by a visit each", async (t) => {
  const WEBHOOKS = 300;
  const webhookIds = await webhooksWithADelivery(WEBHOOKS, 3);
  // and a failure, a test send that failed and a delivery still on its way, of three of them
  const [failing, testing, waiting] = webhookIds;
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     select w.id, w.company_id, k.action::webhooks.action, 7, '{}', k.state, case when k.state = 'pending' then 0 else 1 end,
            case when k.state = 'pending' then null else now() end, $4::timestamptz - interval '3 hours'
     from webhooks.webhooks w
     join (values ($1::bigint, 'contact.created', 'failed'), ($2, 'webhook.test', 'failed'), ($3, 'contact.created', 'pending'))
       as k(webhook_id, action, state) on k.webhook_id = w.id`, [failing, testing, waiting, clock]);
  await db().pool.query('call webhooks.roll_up_report_counts(p_now => $1)', [clock]);
  await db().pool.query('call webhooks.roll_up_report_counts(p_now => $1)', [clock]);
  // as if the last run had ended before the hour of those deliveries finished
  await db().pool.query('delete from webhooks.delivery_hour_counts where webhook_id = any ($1::bigint[])', [webhookIds]);
  await db().pool.query('delete from webhooks_private.webhooks_to_roll_up where webhook_id = any ($1::bigint[])', [webhookIds]);
  await db().pool.query(
    `update webhooks_private.report_counts_rolled_up set hours_counted_before = webhooks_private.utc_hour($1::timestamptz - interval '3 hours')`,
    [clock]);
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await client.query(`set track_functions = 'pl'`);
  const { visited, read: visits } = await rollUpReads(client, undefined, calls('roll_up_webhook_days'));
  await client.query('reset track_functions');
  // (and those of the test before, whose deliveries are of the same hour)
  t.true(visited >= WEBHOOKS);
  const { rows } = await db().pool.query(
    `select webhook_id::text, fired::int, succeeded::int, failed::int from webhooks.delivery_hour_counts
     where webhook_id = any ($1::bigint[]) and not stale and fired > 0`, [webhookIds]);
  const byWebhook = new Map(rows.map((row) => [row.webhook_id as string, row]));
  t.is(rows.length, WEBHOOKS - 1, 'every hour but the one on its way');
  t.deepEqual(byWebhook.get(failing!), { webhook_id: failing, fired: 2, succeeded: 1, failed: 1 });
  t.deepEqual(byWebhook.get(testing!), { webhook_id: testing, fired: 1, succeeded: 1, failed: 0 });
  t.is(byWebhook.get(waiting!), undefined);
  const { rows: noted } = await db().pool.query(
    'select webhook_id::text from webhooks_private.webhooks_to_roll_up where webhook_id = any ($1::bigint[])', [webhookIds]);
  t.deepEqual(noted, [{ webhook_id: waiting }], 'the webhook with an hour on its way is noted for the next run');
  t.true(visits <= 1, `${visits} webhooks visited on their own of ${visited} with new hours alone`);
  // (the delivery on its way gone, so that the tests after visit what they mean to)
  await db().pool.query('delete from webhooks.deliveries where webhook_id = $1', [waiting]);
  await db().pool.query('delete from webhooks_private.webhooks_to_roll_up where webhook_id = $1', [waiting]);
});

test.serial('an hour left for a delivery on its way is counted by the first roll-up after it ends', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const { rows: [delivery] } = await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'pending', 0, $3::timestamptz - interval '5 hours') returning id`,
    [webhook.id, company.id, clock]);
  // (a delivery on its way for five hours: as a roll-up through every webhook finds it)
  await db().pool.query('delete from webhooks_private.report_counts_rolled_up');
  await db().pool.query('call webhooks.roll_up_report_counts(p_now => $1)', [clock]);
  await db().pool.query('call webhooks.roll_up_report_counts(p_now => $1)', [clock]);
  const hourRow = async () => (await db().pool.query(
    `select fired::int, succeeded::int from webhooks.delivery_hour_counts
     where webhook_id = $1 and hour = webhooks_private.utc_hour($2::timestamptz - interval '5 hours') and not stale`,
    [webhook.id, clock])).rows;
  t.deepEqual(await hourRow(), []);
  // it succeeds (which writes no row the roll-up could see)
  await db().pool.query(
    `update webhooks.deliveries set state = 'succeeded', attempts = 1, completed_at = now() where id = $1`, [delivery.id]);
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  const { visited } = await rollUpReads(client);
  t.is(visited, 1);
  t.deepEqual(await hourRow(), [{ fired: 1, succeeded: 1 }]);
});

// A fresh install's first roll-up writes every webhook's first hour rows into a table
// whose statistics say it is empty (analyzed before anything fired, as a VACUUM
// ANALYZE of the new database leaves it). Planned for an empty table, each visit's
// reads of the webhook's own hour rows read the whole table, which the run itself
// fills: quadratic in the webhooks (236 s for 10,000).
test.serial("the first count of each webhook's hours reads its own hour rows, whatever the statistics said before", async (t) => {
  const WEBHOOKS = 300;
  const HOURS = 8;
  await db().pool.query('delete from webhooks_private.report_counts_rolled_up');
  await db().pool.query('truncate webhooks.delivery_hour_counts');
  await db().pool.query('vacuum analyze webhooks.delivery_hour_counts');
  const webhookIds = await webhooksWithADelivery(WEBHOOKS, 3);
  // each with a delivery in every one of the last HOURS finished hours (whose oldest
  // may be yesterday's, as in webhooksWithADelivery)
  await db().pool.query('select webhooks_private.ensure_day(webhooks_private.utc_day($1::timestamptz - make_interval(hours => 3 + $2::int)))',
    [clock, HOURS]);
  await db().pool.query(
    `insert into webhooks.delivery_history (webhook_id, company_id, action, contact_id, payload, created_at)
     select w.id, w.company_id, 'contact.created', w.id, '{}', $3::timestamptz - make_interval(hours => h)
     from webhooks.webhooks w, generate_series(4, 3 + $2::int) h
     where w.id = any ($1::bigint[])`, [webhookIds, HOURS, clock]);
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  const { visited, read: used } = await rollUpReads(client, 'webhooks.delivery_hour_counts');
  const { rows: [{ ours, rows }] } = await db().pool.query(
    `select count(*) filter (where webhook_id = any ($1::bigint[]))::int as ours, count(*)::int as rows
     from webhooks.delivery_hour_counts`, [webhookIds]);
  t.log(`visited ${visited}, hour rows ${rows}, read ${used}`);
  t.true(visited >= WEBHOOKS);
  t.true(ours >= WEBHOOKS * HOURS);
  // (every webhook's, those of the tests before included: the first roll-up visits all)
  t.true(used <= 2 * rows, `the first counts of the webhooks' hours read ${used} hour rows and entries (${rows} written)`);
});

// The day's first run, once a new day can be counted, visited every webhook with
// deliveries in the days not counted yet (2.3–3.5 s at 10,000 webhooks, every UTC
// midnight), where only those with deliveries in the day now countable have a day to
// count: it visits those, and the webhooks a run within the day would.
test.serial("the day's first roll-up visits the webhooks with deliveries in the day it can count now, not every one that fired lately", async (t) => {
  const RECENT = 2_000;
  const THAT_DAY = 30;
  await webhooksWithADelivery(RECENT, 5);
  // and THAT_DAY more, each with two deliveries of the last day countable
  const thatDay = await webhooksWithADelivery(THAT_DAY, 5);
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     select w.id, w.company_id, 'contact.created', h, '{}', 'succeeded', 1, now(),
            webhooks_private.utc_day_start(webhooks_private.countable_before($2) - 1) + make_interval(hours => h)
     from webhooks.webhooks w, generate_series(12, 13) h
     where w.id = any ($1::bigint[])`, [thatDay, clock]);
  await db().pool.query('call webhooks.roll_up_report_counts(p_now => $1)', [clock]);
  await db().pool.query('call webhooks.roll_up_report_counts(p_now => $1)', [clock]);
  // as if that day had not been countable at the last run: it is now
  await db().pool.query('update webhooks_private.report_counts_rolled_up set counted_before = counted_before - 1');
  await db().pool.query('delete from webhooks.delivery_day_counts where webhook_id = any ($1::bigint[])', [thatDay]);
  await db().pool.query('analyze webhooks.delivery_hour_counts, webhooks.delivery_day_counts');
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  const { visited, read } = await rollUpReads(client);
  t.log(`visited ${visited}, read ${read}`);
  const { rows: [counted] } = await db().pool.query(
    `select count(*)::int as days, sum(fired)::int as fired from webhooks.delivery_day_counts
     where webhook_id = any ($1::bigint[]) and day = webhooks_private.countable_before($2) - 1`, [thatDay, clock]);
  t.deepEqual(counted, { days: THAT_DAY, fired: 2 * THAT_DAY });
  t.is(visited, THAT_DAY);
  t.true(read < 100 * THAT_DAY, `the day's first roll-up read ${read} rows and index entries (${RECENT} webhooks fired lately)`);
});

// Finding the webhooks with deliveries in the hours finished since the last run walks
// the history index from one webhook to the next over those hours' days, and asks each
// for a delivery in the hours (one probe each: 10,000 webhooks that fired that day,
// 140 ms and 90,242 buffers an hour that finishes, a scratch test). The probe needs the
// webhook's company (a key column of the index before the time): read from the entry
// the walk stands on, not from webhooks.webhooks (a third probe a webhook).
test.serial('the walk to the webhooks with deliveries in new hours reads two history entries a webhook that fired that day, and no webhook row', async (t) => {
  const WEBHOOKS = 500;
  const webhookIds = await webhooksWithADelivery(WEBHOOKS, 3);
  const first = webhookIds.map(BigInt).reduce((a, b) => (a < b ? a : b));
  const { rows: [{ since }] } = await db().pool.query(
    `select webhooks_private.utc_hour(created_at)::text as since from webhooks.delivery_history where webhook_id = $1`, [String(first)]);
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await client.query('begin');
  try {
    const before = await engineReads(client);
    const webhooksBefore = await tableReads(client, 'webhooks.webhooks', { indexes: true });
    const { rows } = await client.query(
      `select webhook_id::text from webhooks_private.webhooks_with_deliveries($1, $2, $2::timestamptz + interval '1 hour', $3)`,
      [String(first - 1n), since, WEBHOOKS + 1]);
    const read = (await engineReads(client)) - before;
    t.is(rows.length, WEBHOOKS);
    t.log(`read ${read}`);
    t.is((await tableReads(client, 'webhooks.webhooks', { indexes: true })) - webhooksBefore, 0);
    // (each entry and the row it points to, the visibility map of the day's partition
    // being behind its writes)
    t.true(read <= 4 * WEBHOOKS + 10, `the walk read ${read} rows and index entries for ${WEBHOOKS} webhooks`);
  } finally {
    await client.query('rollback');
  }
});

// When every webhook fired on the day that becomes countable, the day's first run
// visited each of them, and each visit counted its day from the rows by a statement
// planned for it (count_periods, its times constants: 1,000 webhooks took 6.8 s,
// 3,000 8.5–12 s). Their hours of that day are counted already, nearly all of them:
// the batch counts its webhooks' day at once from those hour rows (and from the rows
// only for the hours without one).
test.serial("the day's first roll-up counts the day of the webhooks that fired on it from their hour rows, in one statement a batch", async (t) => {
  const WEBHOOKS = 200;
  const DELIVERIES = 12;   // each webhook's on that day, in as many hours
  const webhookIds = await webhooksWithADelivery(WEBHOOKS, 5);
  const { rows: [{ day }] } = await db().pool.query(`select (webhooks_private.countable_before($1) - 1)::text as day`, [clock]);
  // one failed (a result row) in the first hour of each
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     select w.id, w.company_id, 'contact.created', h, '{}', case when h = 1 then 'failed' else 'succeeded' end, 1, now(),
            webhooks_private.utc_day_start($2::date) + make_interval(hours => h, mins => 10)
     from webhooks.webhooks w, generate_series(1, $3::int) h
     where w.id = any ($1::bigint[])`, [webhookIds, day, DELIVERIES]);
  await db().pool.query('call webhooks.roll_up_report_counts(p_now => $1)', [clock]);
  await db().pool.query('call webhooks.roll_up_report_counts(p_now => $1)', [clock]);
  // as the runs of the day before left it: that day not countable yet, its hours counted
  await db().pool.query('update webhooks_private.report_counts_rolled_up set counted_before = $1::date', [day]);
  await db().pool.query('delete from webhooks.delivery_day_counts where day >= $1::date', [day]);
  await db().pool.query(
    `select webhooks_private.roll_up_webhook_hours(w.id, w.company_id, $2::date, b.hours_before)
     from webhooks.webhooks w, webhooks_private.roll_up_bounds($3) b
     where w.id = any ($1::bigint[])`, [webhookIds, day, clock]);
  await db().pool.query('analyze webhooks.delivery_hour_counts, webhooks.delivery_day_counts, webhooks.delivery_history');
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  const { visited, read } = await rollUpReads(client, undefined, historyReads);
  t.log(`visited ${visited}, history rows and entries read ${read}`);
  const { rows: [counted] } = await db().pool.query(
    `select count(*)::int as days, sum(fired)::int as fired, sum(succeeded)::int as succeeded, sum(failed)::int as failed
     from webhooks.delivery_day_counts where webhook_id = any ($1::bigint[]) and day = $2::date`, [webhookIds, day]);
  t.deepEqual(counted, { days: WEBHOOKS, fired: WEBHOOKS * DELIVERIES, succeeded: WEBHOOKS * (DELIVERIES - 1), failed: WEBHOOKS });
  const { rows: [{ left }] } = await db().pool.query(
    `select count(*)::int as left from webhooks.delivery_hour_counts
     where webhook_id = any ($1::bigint[]) and hour < webhooks_private.utc_day_start($2::date + 1)`, [webhookIds, day]);
  t.is(left, 0, "the counted day's hour rows go");
  // (the walk to them: four a webhook; counted from the rows, twelve more each)
  t.true(read <= 6 * WEBHOOKS, `the day's first roll-up read ${read} history rows and entries (${WEBHOOKS} webhooks with ${DELIVERIES} deliveries that day)`);
});

// A delivery that fails for good more than a day after it was made (a retry's settle)
// notes its day to count again, and marks its hour stale, which the next run counts
// again. When that day becomes countable, a webhook with such a note of it was left to
// its own visit, which counted the day from the rows by a statement planned for it
// (200 webhooks: 3,400 history rows and entries read where 800 do), though the batch
// counts the day from the hour rows, and a stale one from the rows, as well.
test.serial("the day's first roll-up counts a day noted to count again in its batch statement, not by a visit of its own", async (t) => {
  const WEBHOOKS = 200;
  const DELIVERIES = 12;
  const webhookIds = await webhooksWithADelivery(WEBHOOKS, 5);
  const { rows: [{ day }] } = await db().pool.query(`select (webhooks_private.countable_before($1) - 1)::text as day`, [clock]);
  // (the first hour's delivery of each still retrying)
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     select w.id, w.company_id, 'contact.created', h, '{}', case when h = 1 then 'pending' else 'succeeded' end,
            case when h = 1 then 0 else 1 end, case when h = 1 then null else now() end,
            webhooks_private.utc_day_start($2::date) + make_interval(hours => h, mins => 10)
     from webhooks.webhooks w, generate_series(1, $3::int) h
     where w.id = any ($1::bigint[])`, [webhookIds, day, DELIVERIES]);
  await db().pool.query('call webhooks.roll_up_report_counts(p_now => $1)', [clock]);
  await db().pool.query('call webhooks.roll_up_report_counts(p_now => $1)', [clock]);
  await db().pool.query('update webhooks_private.report_counts_rolled_up set counted_before = $1::date', [day]);
  // (the days of the webhooks of the tests before stay counted)
  await db().pool.query('delete from webhooks.delivery_day_counts where day >= $1::date and webhook_id = any ($2::bigint[])',
    [day, webhookIds]);
  await db().pool.query(
    'delete from webhooks_private.delivery_days_to_count where day >= $1::date and webhook_id = any ($2::bigint[])',
    [day, webhookIds]);
  // it fails for good a day later (its result row notes its day and marks its hour
  // stale); the next run counts its webhook's hours again
  await db().pool.query(
    `update webhooks.deliveries set state = 'failed', attempts = 5, completed_at = now()
     where webhook_id = any ($1::bigint[]) and state = 'pending'`, [webhookIds]);
  const { rows: [{ noted }] } = await db().pool.query(
    `select count(*)::int as noted from webhooks_private.delivery_days_to_count
     where webhook_id = any ($1::bigint[]) and day = $2::date`, [webhookIds, day]);
  t.is(noted, WEBHOOKS);
  await db().pool.query(
    `select webhooks_private.roll_up_webhook_hours(w.id, w.company_id, $2::date, b.hours_before)
     from webhooks.webhooks w, webhooks_private.roll_up_bounds($3) b
     where w.id = any ($1::bigint[])`, [webhookIds, day, clock]);
  await db().pool.query('delete from webhooks_private.webhooks_to_roll_up where webhook_id = any ($1::bigint[])', [webhookIds]);
  await db().pool.query('analyze webhooks.delivery_hour_counts, webhooks.delivery_day_counts, webhooks.delivery_history');
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  const { visited, read } = await rollUpReads(client, undefined, historyReads);
  t.log(`visited ${visited}, history rows and entries read ${read}`);
  const { rows: [counted] } = await db().pool.query(
    `select count(*)::int as days, sum(fired)::int as fired, sum(succeeded)::int as succeeded, sum(failed)::int as failed
     from webhooks.delivery_day_counts where webhook_id = any ($1::bigint[]) and day = $2::date`, [webhookIds, day]);
  t.deepEqual(counted, { days: WEBHOOKS, fired: WEBHOOKS * DELIVERIES, succeeded: WEBHOOKS * (DELIVERIES - 1), failed: WEBHOOKS });
  const { rows: [{ left }] } = await db().pool.query(
    `select count(*)::int as left from webhooks_private.delivery_days_to_count where webhook_id = any ($1::bigint[])`, [webhookIds]);
  t.is(left, 0, 'the notes of the day counted go');
  // (the walk to them: four a webhook, those of the tests before too, which it visits;
  // the whole day counted from the rows, twelve more each)
  t.true(read <= 6 * visited, `the day's first roll-up read ${read} history rows and entries visiting ${visited} webhooks (${WEBHOOKS} with ${DELIVERIES} deliveries that day, each noted)`);
});

/** Every row and index entry of the history's partitions this transaction has read so far. */
async function historyReads(client: pg.PoolClient): Promise<number> {
  return (await client.query(
    `select coalesce(sum(pg_stat_get_xact_tuples_returned(c.oid) + pg_stat_get_xact_tuples_fetched(c.oid)), 0)::int as n
     from pg_class c
     where c.relkind in ('r', 'i')
       and (c.oid in (select p.inhrelid from pg_inherits p where p.inhparent = 'webhooks.delivery_history'::regclass)
            or c.oid in (select i.indexrelid from pg_index i join pg_inherits p on p.inhrelid = i.indrelid
                         where p.inhparent = 'webhooks.delivery_history'::regclass))`)).rows[0].n as number;
}

// The batch's count of the new day is the report's (count_deliveries_of): true hour rows
// taken as they are, the rest counted from the rows, test sends left out; a day with a
// delivery still on its way is not counted, and the webhook's visit notes it.
test.serial("the day counted at once for a batch is exact: a stale hour counted from the rows, tests left out, a day on its way noted", async (t) => {
  const [done, onItsWay] = await webhooksWithADelivery(2, 5);
  const { rows: [{ day }] } = await db().pool.query(`select (webhooks_private.countable_before($1) - 1)::text as day`, [clock]);
  const deliver = (webhookId: string, hour: number, state: string, action = 'contact.created') => db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     select w.id, w.company_id, $4, $2::int, '{}', $3, case when $3 = 'pending' then 0 else 1 end,
            case when $3 = 'pending' then null else now() end,
            webhooks_private.utc_day_start($5::date) + make_interval(hours => $2::int, mins => 10)
     from webhooks.webhooks w where w.id = $1`, [webhookId, hour, state, action, day]);
  for (const hour of [1, 2, 3]) await deliver(done!, hour, 'succeeded');
  await deliver(done!, 4, 'failed');
  await deliver(done!, 5, 'failed', 'webhook.test');
  for (const hour of [1, 2]) await deliver(onItsWay!, hour, 'succeeded');
  await deliver(onItsWay!, 6, 'pending');
  await db().pool.query('call webhooks.roll_up_report_counts(p_now => $1)', [clock]);
  await db().pool.query('call webhooks.roll_up_report_counts(p_now => $1)', [clock]);
  await db().pool.query('update webhooks_private.report_counts_rolled_up set counted_before = $1::date', [day]);
  await db().pool.query('delete from webhooks.delivery_day_counts where day >= $1::date', [day]);
  await db().pool.query('delete from webhooks_private.delivery_days_to_count where day >= $1::date', [day]);
  await db().pool.query(
    `select webhooks_private.roll_up_webhook_hours(w.id, w.company_id, $2::date, b.hours_before)
     from webhooks.webhooks w, webhooks_private.roll_up_bounds($3) b
     where w.id = any ($1::bigint[])`, [[done, onItsWay], day, clock]);
  // one more delivery of hour 2 that its row does not hold (as a writer leaves it: stale)
  await db().pool.query(
    `insert into webhooks.delivery_history (webhook_id, company_id, action, contact_id, payload, created_at)
     select w.id, w.company_id, 'contact.created', 99, '{}', webhooks_private.utc_day_start($2::date) + interval '2 hours 30 minutes'
     from webhooks.webhooks w where w.id = $1`, [done, day]);
  await db().pool.query(
    `update webhooks.delivery_hour_counts set stale = true
     where webhook_id = $1 and hour = webhooks_private.utc_day_start($2::date) + interval '2 hours'`, [done, day]);
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await rollUpReads(client);
  const { rows } = await db().pool.query(
    `select webhook_id::text, fired::int, succeeded::int, failed::int from webhooks.delivery_day_counts
     where webhook_id = any ($1::bigint[]) and day = $2::date`, [[done, onItsWay], day]);
  t.deepEqual(rows, [{ webhook_id: done, fired: 5, succeeded: 4, failed: 1 }]);
  const { rows: noted } = await db().pool.query(
    `select webhook_id::text from webhooks_private.delivery_days_to_count where webhook_id = any ($1::bigint[]) and day = $2::date`,
    [[done, onItsWay], day]);
  t.deepEqual(noted, [{ webhook_id: onItsWay }]);
});
