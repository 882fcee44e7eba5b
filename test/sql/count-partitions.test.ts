// Counting one webhook's deliveries of a stretch of time (the report's counting, and
// the roll-up of day counts) reads the partitions of that stretch only. Counted with
// the times as parameters, every call opened and locked every partition of history
// and results: 20 ms a call with 90 days kept, and a first roll-up of 1,000 webhooks
// ran for minutes (bench:history). Locks show which partitions a call opened.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

test('counting a day of one webhook opens that day\'s partitions only, whatever the days kept', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await f.contact(company.id);
  const { rows: [{ days }] } = await db().pool.query(
    `select count(*)::int as days from pg_class where relnamespace = 'webhooks_partitions'::regnamespace and relname like 'delivery_history_p%'`);
  t.true(days >= 10, `${days} days of partitions made ahead`);

  const client = await db().pool.connect();
  t.teardown(() => client.release());
  const partitionsOpened = async (call: string, values: unknown[]) => {
    await client.query('begin');
    try {
      const { rows } = await client.query(call, values);
      const { rows: locks } = await client.query(
        `select c.relname::text as name from pg_locks l join pg_class c on c.oid = l.relation
         where l.pid = pg_backend_pid() and c.relnamespace = 'webhooks_partitions'::regnamespace and c.relkind = 'r'
         order by 1`);
      return { rows, opened: locks.map((l) => l.name as string) };
    } finally {
      await client.query('rollback');
    }
  };
  const today = `(now() at time zone 'utc')::date`;

  const counted = await partitionsOpened(
    `select * from webhooks_private.count_rows($1, $2, ${today}::timestamp at time zone 'utc', (${today} + 1)::timestamp at time zone 'utc')`,
    [webhook.id, company.id]);
  t.like(counted.rows[0], { messages: '1', failures: '0', on_its_way: '1' });
  const day = counted.opened.find((name) => name.startsWith('delivery_history_p'))!.slice(-8);
  t.deepEqual(counted.opened, [`delivery_history_p${day}`, `delivery_results_p${day}`]);

  const perDay = await partitionsOpened(
    `select to_char(period_start at time zone 'utc', 'YYYYMMDD') as day, messages, on_its_way
     from webhooks_private.count_periods($1, $2, ${today}::timestamp at time zone 'utc', (${today} + 2)::timestamp at time zone 'utc', interval '1 day')`,
    [webhook.id, company.id]);
  t.deepEqual(perDay.rows.map((r) => [r.day, r.messages, r.on_its_way]), [[day, '1', '1'], [perDay.rows[1].day, '0', '0']]);
  t.is(perDay.opened.length, 4, `two days of history and results: ${perDay.opened.join(', ')}`);
});

test('the report counts up to tomorrow unless a delivery was written for a later day, and then up to its end', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await f.contact(company.id);
  const end = async (until: string | null) => (await db().pool.query(
    `select webhooks_private.history_end($1::timestamptz) = webhooks_private.utc_day_start(webhooks_private.utc_day(now()) + 1) as tomorrow,
            webhooks_private.history_end($1::timestamptz) as at`, [until])).rows[0];
  t.true((await end(null)).tomorrow, 'open end: tomorrow, no later delivery');
  t.true((await end('2999-01-01')).tomorrow);
  t.deepEqual((await end('2000-01-01')).at, new Date('2000-01-01'), 'an end before tomorrow stays');

  // a DBA's delivery three days ahead: the end stays open, and the report counts it
  const ahead = new Date(Date.now() + 3 * 86_400_000);
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, $3, $3)`, [webhook.id, company.id, ahead]);
  t.is((await end(null)).at, null);
  t.deepEqual((await end('2999-01-01')).at, new Date('2999-01-01'));
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await client.query('begin');
  try {
    await client.query(`select set_config('role', 'webhook_viewer', true), set_config('jwt.claims.company_id', $1, true)`, [company.id]);
    const { rows: [report] } = await client.query('select times_fired, times_succeeded, times_pending from webhooks.webhook_report(null, null)');
    t.deepEqual(report, { times_fired: '2', times_succeeded: '1', times_pending: '1' });
  } finally {
    await client.query('rollback');
  }
});
