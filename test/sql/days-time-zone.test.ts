// Days are UTC days (sql/29_retention.sql, 50_report_counts.sql), whatever the time
// zone of the session that rolls up the day counts or asks which days may be dropped. In a zone whose summer time starts at midnight (Chile,
// Paraguay, Lebanon and Cuba have had such rules), a series of days stepped as
// local times starts later than midnight after the change, and its last day fell off.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { utcDay } from '../helpers/days.ts';

const DAY = 86_400_000;

const db = useTestDatabase(test);
const iso = (day: Date) => day.toISOString().slice(0, 10);

/** A POSIX time zone 4 hours behind UTC whose summer time (3 hours behind) starts at local midnight of day. */
function summerTimeFromMidnightOf(day: Date): string {
  const startOfYear = Date.UTC(day.getUTCFullYear(), 0, 1);
  const n = Math.round((day.getTime() - startOfYear) / DAY); // zero-based day of the year
  return `XXX4YYY,${n}/0,${(n + 20) % 365}/0`;
}

test.serial('a roll-up in such a zone counts every countable day', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  // the countable days end two days ago (webhooks_private.countable_before)
  const days = [-5, -4, -3].map(utcDay);
  for (const day of days) {
    const at = new Date(day.getTime() + 12 * 3_600_000);
    await db().pool.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
       values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, $3, $3)`, [webhook.id, company.id, at]);
  }
  // as captured on their day (a delivery written into the past notes its day for counting)
  await db().pool.query('delete from webhooks_private.delivery_days_to_count where webhook_id = $1', [webhook.id]);
  const client = await db().pool.connect();
  t.teardown(() => client.release(true));
  await client.query(`set timezone = '${summerTimeFromMidnightOf(days[1]!)}'`);
  await client.query('call webhooks.roll_up_report_counts()');

  const { rows } = await db().pool.query(
    `select to_char(day, 'YYYY-MM-DD') as day, fired::int from webhooks.delivery_day_counts where webhook_id = $1 order by day`,
    [webhook.id]);
  t.deepEqual(rows, days.map((day) => ({ day: iso(day), fired: 1 })));
  const { rows: [report] } = await db().pool.query(
    'select fired::int from webhooks_private.count_deliveries($1, $2, $3, $4)', [webhook.id, company.id, utcDay(-10), utcDay(-1)]);
  t.is(report.fired, 3);
});

test.serial('expired_days in such a zone keeps a span whose last day is not counted yet', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  // a span of three days long past (what maintenance makes of a tail that held rows)
  const [first, middle, last] = [-60, -59, -58].map(utcDay);
  await db().pool.query(
    `select webhooks_private.attach_new_partition(t.table_name, t.key_column, t.storage,
       webhooks_private.span_name(t.table_name, $1::date, $2::date),
       webhooks_private.utc_day_start($1::date), webhooks_private.utc_day_start($2::date + 1))
     from webhooks_private.outbox_partitioned() t`,
    [iso(first!), iso(last!)]);
  // its last day has a delivery, finished and not counted yet
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, $3, $3)`,
    [webhook.id, company.id, new Date(last!.getTime() + 12 * 3_600_000)]);

  const client = await db().pool.connect();
  t.teardown(() => client.release(true));
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '30 days'`);
  t.teardown(() => db().pool.query(`alter database ${db().name} reset webhooks.retention`));
  await client.query(`set timezone = '${summerTimeFromMidnightOf(middle!)}'`);
  const { rows } = await client.query(`select to_char(day, 'YYYY-MM-DD') as day from webhooks.expired_days()`);
  t.false(rows.some((r) => r.day === iso(last!)));
});

/** A POSIX time zone 12 hours behind UTC whose summer time, 12 hours ahead, began ten days ago and lasts a month. */
function summerTimeOfADayAhead(): string {
  const today = utcDay(0);
  const n = Math.round((today.getTime() - Date.UTC(today.getUTCFullYear(), 0, 1)) / DAY);
  return `AAA12BBB-12,${(n + 355) % 365}/0,${(n + 20) % 365}/0`;
}

test.serial('the retention keeps the same days in any time zone: a session whose zone changed its clock meanwhile drops no day kept', async (t) => {
  // the first day the retention keeps (90 days, the default), as a session in UTC sees it
  const { rows: [{ day }] } = await db().pool.query(
    `select to_char(webhooks_private.first_kept_day(), 'YYYY-MM-DD') as day`);
  t.is(day, iso(utcDay(-90)));
  await db().pool.query('select webhooks_private.ensure_day($1::date)', [day]);

  // in a zone whose clock moved a day ahead since then, 90 days back by its calendar
  // end a day later in UTC: the same day is kept, and is not past the retention
  const client = await db().pool.connect();
  t.teardown(() => client.release(true));
  await client.query(`set timezone = '${summerTimeOfADayAhead()}'`);
  const { rows: [kept] } = await client.query(`select to_char(webhooks_private.first_kept_day(), 'YYYY-MM-DD') as day`);
  t.is(kept.day, day);
  const { rows: expired } = await client.query(`select to_char(day, 'YYYY-MM-DD') as day from webhooks.expired_days()`);
  t.false(expired.some((r) => r.day === day), `${day} is among the days to drop`);
  const { rows: [inZone] } = await client.query('select days_past_retention from webhooks_ops.upkeep()');
  const { rows: [inUtc] } = await db().pool.query('select days_past_retention from webhooks_ops.upkeep()');
  t.is(inZone.days_past_retention, inUtc.days_past_retention);
});
