// Migration 0021: day counts written before it held their day's test sends (the
// report took the tests off by reading them, until retention dropped them). It takes
// off the tests still kept, once; counts of days without tests stay as they were.
// Migration 0029: the rows of days without deliveries go. (Serial: a roll-up in one
// test would count the days of the other.)
import test from 'ava';
import { migrate } from '../../tools/migrate.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);
const MIGRATION = '0021_day_counts_without_tests';

test.serial('counts rolled up before 0021 lose the test sends still kept, and only those', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const now = new Date();
  const day = (offset: number, minute: number) =>
    new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + offset) + minute * 60_000);
  // ten days ago: an event's delivery and two test sends, one of them failed; nine
  // days ago: an event's delivery only
  for (const [at, action, state] of [
    [day(-10, 1), 'contact.created', 'succeeded'], [day(-10, 2), 'webhook.test', 'succeeded'],
    [day(-10, 3), 'webhook.test', 'failed'], [day(-9, 1), 'contact.created', 'failed'],
  ] as const) {
    await db().pool.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
       values ($1, $2, $3, 1, '{}', $4, 1, $5, $5)`, [webhook.id, company.id, action, state, at]);
  }
  await db().pool.query('call webhooks.roll_up_report_counts()');
  const counts = async () => (await db().pool.query(
    `select to_char(day, 'YYYY-MM-DD') as day, fired::int, succeeded::int, failed::int
     from webhooks.delivery_day_counts where webhook_id = $1 and fired > 0 order by day`, [webhook.id])).rows;
  const iso = (offset: number) => day(offset, 0).toISOString().slice(0, 10);
  const without = [
    { day: iso(-10), fired: 1, succeeded: 1, failed: 0 },
    { day: iso(-9), fired: 1, succeeded: 0, failed: 1 },
  ];
  t.deepEqual(await counts(), without, 'rolled up now: no tests');

  // as a roll-up before 0021 wrote them: the tests in
  await db().pool.query(
    `update webhooks.delivery_day_counts set fired = 3, succeeded = 2, failed = 1 where webhook_id = $1 and day = $2`,
    [webhook.id, iso(-10)]);
  // (0021 and the migrations after it run again: each of those after it is idempotent)
  await db().pool.query(`delete from webhooks_private.migrations where name >= $1`, [MIGRATION]);
  await migrate(db().url);
  t.deepEqual(await counts(), without);
  const { rows } = await db().pool.query(`select 1 from webhooks_private.migrations where name = $1`, [MIGRATION]);
  t.is(rows.length, 1, 'recorded again');
});

test.serial('0029: the rows of days without deliveries go; the notes to count again get their company; a day a roll-up skipped is noted', async (t) => {
  const MIGRATION_0029 = '0029_day_counts_of_days_with_deliveries';
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const now = new Date();
  const iso = (offset: number) =>
    new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + offset)).toISOString().slice(0, 10);
  // as a roll-up before 0029 left them: a row for every day from the first delivery on,
  // 30 to 21 days ago, two of them with deliveries; and a note without its company
  await db().pool.query(
    `insert into webhooks.delivery_day_counts (webhook_id, company_id, day, fired, succeeded, failed)
     select $1, $2, d::date, case when d::date in ($3::date, $4::date) then 2 else 0 end,
            case when d::date in ($3::date, $4::date) then 2 else 0 end, 0
     from generate_series($5::date, $6::date, interval '1 day') d`,
    [webhook.id, company.id, iso(-30), iso(-25), iso(-30), iso(-21)]);
  // and a day with a delivery that a roll-up skipped (no row, no note), before where
  // the last roll-up through every webhook counted
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, $3, $3)`, [webhook.id, company.id, `${iso(-23)}T05:00:00Z`]);
  await db().pool.query('delete from webhooks_private.delivery_days_to_count');
  await db().pool.query(
    `insert into webhooks_private.report_counts_rolled_up (counted_before) values ($1)
     on conflict (one) do update set counted_before = excluded.counted_before`, [iso(-2)]);
  await db().pool.query('alter table webhooks_private.delivery_days_to_count alter column company_id drop not null');
  await db().pool.query('insert into webhooks_private.delivery_days_to_count (webhook_id, day) values ($1, $2), (-1, $2)',
    [webhook.id, iso(-28)]);

  await db().pool.query(`delete from webhooks_private.migrations where name >= $1`, [MIGRATION_0029]);
  await migrate(db().url);
  const { rows } = await db().pool.query(
    `select to_char(day, 'YYYY-MM-DD') as day, fired::int from webhooks.delivery_day_counts where webhook_id = $1 order by day`,
    [webhook.id]);
  t.deepEqual(rows, [{ day: iso(-30), fired: 2 }, { day: iso(-25), fired: 2 }]);
  const { rows: notes } = await db().pool.query(
    `select webhook_id::text, company_id::text, to_char(day, 'YYYY-MM-DD') as day from webhooks_private.delivery_days_to_count
     order by day`);
  t.deepEqual(notes, [
    { webhook_id: webhook.id, company_id: company.id, day: iso(-28) },
    { webhook_id: webhook.id, company_id: company.id, day: iso(-23) },
  ], "a webhook gone: its note goes; the day skipped is noted");
});
