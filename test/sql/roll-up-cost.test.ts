// The report's roll-up (sql/50_report_counts.sql) visits each webhook with something
// new, and counts its finished hours but those with a delivery on its way. It asks
// the queue which hours those are among the webhook's own rows, by the queue's indexes
// (one for the rows waiting, one for those in flight): asked of both at once, which
// neither index serves, every company's queue rows were read for each webhook visited
// (a million waiting: 1,010,002 rows and 264 ms a webhook, every roll-up).
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

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
  const read = async () => (await client.query(
    `select (pg_stat_get_xact_tuples_returned('webhooks.delivery_queue'::regclass)
             + pg_stat_get_xact_tuples_fetched('webhooks.delivery_queue'::regclass))::int as n`)).rows[0].n as number;
  await client.query('begin');
  const before = await read();
  await client.query(`select webhooks_private.roll_up_webhook_hours($1, $2, webhooks_private.utc_day(now()) - 3)`,
    [webhook.id, tenant.id]);
  const used = (await read()) - before;
  await client.query('commit');
  const { rows } = await db().pool.query(
    `select hour::text as hour, fired::int as fired from webhooks.delivery_hour_counts where webhook_id = $1 and fired > 0`,
    [webhook.id]);
  t.deepEqual(rows, [{ hour, fired: 5 }]);
  t.true(used < 100, `the roll-up of its hours read ${used} rows of the queue (${BACKLOG} of another company's)`);
});

test('a batch of the roll-up reads the notes of days to count again of its own webhooks, not every webhook\'s', async (t) => {
  const NOTED = 2_000;
  const BATCH = 25;
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  const read = async () => (await client.query(
    `select (pg_stat_get_xact_tuples_returned('webhooks_private.delivery_days_to_count'::regclass)
             + pg_stat_get_xact_tuples_fetched('webhooks_private.delivery_days_to_count'::regclass)
             + (select sum(pg_stat_get_xact_tuples_returned(i.indexrelid)) from pg_index i
                where i.indrelid = 'webhooks_private.delivery_days_to_count'::regclass))::int as n`)).rows[0].n as number;
  await client.query('begin');
  try {
    // a roll-up has gone through every webhook: later ones visit those with deliveries
    // since, and those with days noted that may be counted
    await client.query(
      `insert into webhooks_private.report_counts_rolled_up (counted_before) values (webhooks_private.countable_before())
       on conflict (one) do update set counted_before = excluded.counted_before`);
    // each of 2,000 webhooks (of ids of their own, the tables have no foreign key to
    // the webhooks) with a delivery an hour ago, retried after midnight: its day noted,
    // not countable yet (as a settle a day after the delivery notes it)
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
