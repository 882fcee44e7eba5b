// What maintenance's look for deliveries past the retention costs (sql/29_retention.sql,
// sql/35_backfill.sql): a queue row is past the retention only if its day of history
// is, and those days are named by the catalog (their partitions, or a tail that starts
// before the first day kept). With none, the look reads no queue row, however long the
// queue; it read the whole queue at every run (10,000 rows with 10,000 queued). With
// one, it reads that day's queue rows by their ids (sql/29_retention.sql, queued_made),
// not the whole queue (every company's rows, once for each look, until 2026-12-06).
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { utcDay } from '../helpers/days.ts';
import { factories } from '../helpers/factories.ts';
import { tableReads } from '../helpers/plans.ts';

const db = useTestDatabase(test);

test('with no day of history past the retention, the look for deliveries past it reads no queue row', async (t) => {
  const QUEUED = 2_000;
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  const read = () => tableReads(client, 'webhooks.delivery_queue');
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

test('with a day past the retention kept by a delivery on its way, the look reads that day\'s queue rows, not every company\'s', async (t) => {
  const QUEUED = 2_000;
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  // rows of the queue read, and entries of its indexes (an index read whole finds the
  // rows without reading them)
  const read = () => tableReads(client, 'webhooks.delivery_queue', { indexes: true });
  const readBy = async <T>(statement: () => Promise<T>) => {
    const before = await read();
    const result = await statement();
    return { result, used: (await read()) - before };
  };
  await client.query('begin');
  try {
    // (the database's retention, the one read: rolled back with the rest)
    await client.query(`alter database ${db().name} set webhooks.retention = '5 days'`);
    // nine days ago: a delivery retrying and a snapshot held for a disabled webhook;
    // eight days ago: one that ended (its day has nothing on its way)
    const old = (day: number, state: string, nextAttempt: string) => client.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at,
                                        next_attempt_at, created_at)
       values ($1, $2, 'contact.created', 1, '{}', $3, 1, case when $3 = 'pending' then null else $4::timestamptz end,
               ${nextAttempt}, $4::timestamptz)
       returning id`, [webhook.id, company.id, state, new Date(utcDay(day).getTime() + 3_600_000)]);
    const { rows: [retrying] } = await old(-9, 'pending', `now() + interval '1 hour'`);
    const { rows: [held] } = await old(-9, 'pending', 'webhooks_private.snapshot_held()');
    await old(-8, 'succeeded', 'now()');
    // (the webhook's days counted: one in no count is kept too, keep_day_on_its_way)
    await client.query(`select webhooks_private.roll_up_webhook_days($1, webhooks_private.countable_before(),
                                                                    now() - interval '2 hours')`, [webhook.id]);
    // every company's deliveries on their way today (the queue has no foreign key to
    // the webhooks)
    await client.query(
      `insert into webhooks.delivery_queue (delivery_id, created_at, webhook_id, company_id, action, contact_id, next_attempt_at)
       select 1000000000000 + n, now(), 1000000000 + n, 1000000000 + n, 'contact.created'::webhooks.action, n, now()
       from generate_series(1, $1::int) n`, [QUEUED]);
    const days = (day: number) => `delivery_history_p${utcDay(day).toISOString().slice(0, 10).replaceAll('-', '')}`;

    const held9 = await readBy(() => client.query(
      `select to_char(day, 'YYYY-MM-DD') as day, webhook_id::text, on_their_way::int from webhooks.held_past_retention()`));
    t.deepEqual(held9.result.rows, [{ day: utcDay(-9).toISOString().slice(0, 10), webhook_id: webhook.id, on_their_way: 2 }]);
    const expired = await readBy(() => client.query(`select to_char(day, 'YYYY-MM-DD') as day from webhooks.expired_days()`));
    t.false(expired.result.rows.some((r) => r.day === utcDay(-9).toISOString().slice(0, 10)), 'the day nine ago is on its way');
    const kept9 = await readBy(() => client.query('select webhooks.keep_day_on_its_way($1) as kept', [days(-9)]));
    const kept8 = await readBy(() => client.query('select webhooks.keep_day_on_its_way($1) as kept', [days(-8)]));
    t.deepEqual([kept9.result.rows[0].kept, kept8.result.rows[0].kept], [true, false]);
    const failed = await readBy(() => client.query('select webhooks.fail_held_snapshots_past_retention() as n'));
    t.is(failed.result.rows[0].n, 1);
    const { rows: left } = await client.query(
      'select delivery_id::text from webhooks.delivery_queue where delivery_id = any ($1::bigint[])', [[retrying.id, held.id]]);
    t.deepEqual(left, [{ delivery_id: retrying.id }]);

    // the day's two rows, not the 2,000 of today, each read by its index entry and
    // its row (the failed snapshot's own writes read its row again a few times)
    const used = { held: held9.used, expired: expired.used, kept9: kept9.used, kept8: kept8.used, failed: failed.used };
    t.true(used.held <= 4 && used.expired <= 4 && used.kept9 <= 4 && used.kept8 === 0 && used.failed <= 20,
      `queue rows and index entries read: ${JSON.stringify(used)}`);
  } finally {
    await client.query('rollback');
  }
});

test('the look at a day past the retention asks one day count of each webhook of the day, not every count of every day', async (t) => {
  const WEBHOOKS = 1_000;
  const DAYS_COUNTED = 10;
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  const read = () => tableReads(client, 'webhooks.delivery_day_counts', { indexes: true });
  await client.query('begin');
  try {
    // (the database's retention, the one read: rolled back with the rest)
    await client.query(`alter database ${db().name} set webhooks.retention = '5 days'`);
    // a thousand companies with a webhook each, each with a delivery nine days ago,
    // and its days counted: that one and the nine before it
    await client.query(
      `with companies as (insert into crm.companies (name) select 'Company ' || n from generate_series(1, $1::int) n returning id)
       insert into webhooks.webhooks (company_id, name, url, fields, actions)
       select c.id, 'Hook', 'https://receiver.example.com/hook', array['email'], array['contact.created']::webhooks.action[]
       from companies c`, [WEBHOOKS]);
    const day = utcDay(-9);
    await client.query('select webhooks_private.ensure_day(($1::timestamptz at time zone \'utc\')::date)', [day]);
    await client.query(
      `insert into webhooks.delivery_history (webhook_id, company_id, action, contact_id, payload, created_at)
       select w.id, w.company_id, 'contact.created', 1, '{}', $1::timestamptz + interval '1 hour'
       from webhooks.webhooks w where w.name = 'Hook'`, [day]);
    await client.query(
      `insert into webhooks.delivery_day_counts (webhook_id, company_id, day, fired, succeeded, failed)
       select w.id, w.company_id, ($1::timestamptz at time zone 'utc')::date - n, 1, 1, 0
       from webhooks.webhooks w cross join generate_series(0, $2::int - 1) n where w.name = 'Hook'`, [day, DAYS_COUNTED]);
    await client.query('analyze webhooks.delivery_day_counts, webhooks.webhooks, webhooks.delivery_history');
    const before = await read();
    const { rows } = await client.query(`select to_char(day, 'YYYY-MM-DD') as day from webhooks.expired_days()`);
    const used = (await read()) - before;
    t.true(rows.some((r) => r.day === day.toISOString().slice(0, 10)), 'every webhook of the day has its count: it may go');
    // one probe of the counts for each webhook of the day (its index entry and its row)
    t.true(used <= 2 * WEBHOOKS + 20, `day counts read: ${used} (${WEBHOOKS * DAYS_COUNTED} kept)`);
  } finally {
    await client.query('rollback');
  }
});
