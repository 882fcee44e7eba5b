// Migration 0021: day counts written before it held their day's test sends (the
// report took the tests off by reading them, until retention dropped them). It takes
// off the tests still kept, once; counts of days without tests stay as they were.
import test from 'ava';
import { migrate } from '../../tools/migrate.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);
const MIGRATION = '0021_day_counts_without_tests';

test('counts rolled up before 0021 lose the test sends still kept, and only those', async (t) => {
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
