// What maintenance's look for deliveries past the retention costs (sql/29_retention.sql,
// sql/35_backfill.sql): a queue row is past the retention only if its day of history
// is, and those days are named by the catalog (their partitions, or a tail that starts
// before the first day kept). With none, the look reads no queue row, however long the
// queue; it read the whole queue at every run (10,000 rows with 10,000 queued).
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';

const db = useTestDatabase(test);

test('with no day of history past the retention, the look for deliveries past it reads no queue row', async (t) => {
  const QUEUED = 2_000;
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  const read = async () => (await client.query(
    `select (pg_stat_get_xact_tuples_returned('webhooks.delivery_queue'::regclass)
             + pg_stat_get_xact_tuples_fetched('webhooks.delivery_queue'::regclass))::int as n`)).rows[0].n as number;
  await client.query('begin');
  try {
    const { rows: [{ past }] } = await client.query('select days_past_retention as past from webhooks_ops.upkeep()');
    t.is(past, 0, 'no day of history is past the retention');
    // every company's deliveries on their way, a held snapshot among each ten (the queue
    // has no foreign key to the webhooks)
    await client.query(
      `insert into webhooks.delivery_queue (delivery_id, created_at, webhook_id, company_id, action, contact_id, next_attempt_at)
       select 1000000000000 + n, now(), 1000000000 + n, 1000000000 + n, 'contact.created'::webhooks.action, n,
              case when n % 10 = 0 then webhooks_private.snapshot_held() else now() end
       from generate_series(1, $1::int) n`, [QUEUED]);
    const before = await read();
    const { rows: held } = await client.query('select * from webhooks.held_past_retention()');
    const { rows: [{ failed }] } = await client.query('select webhooks.fail_held_snapshots_past_retention() as failed');
    const used = (await read()) - before;
    t.deepEqual([held, failed], [[], 0]);
    t.is(used, 0, `queue rows read: ${used}`);
  } finally {
    await client.query('rollback');
  }
});
