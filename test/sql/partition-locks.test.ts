// The hot path reaches one partition (docs/outbox.md, "Reaching one partition"): with a
// month of days kept, capture, claim and settle of today's deliveries lock today's
// partitions of history, results and attempts, and no other. A statement that opened
// every partition would cost more with every day kept.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

test('capture, claim and settle lock today\'s partitions only, with 45 days of partitions', async (t) => {
  const pool = db().pool;
  // thirty days past (a write to the view for a past day makes its partitions) and the days ahead
  await pool.query(`select webhooks_private.ensure_day(d::date)
                    from generate_series(now() - interval '30 days', now() - interval '1 day', interval '1 day') d`);
  const { rows: [{ n }] } = await pool.query(
    `select count(*)::int as n from pg_inherits where inhparent = 'webhooks.delivery_history'::regclass`);
  t.true(n >= 45, `${n} partitions of history`);

  const f = factories(pool);
  const company = await f.company();
  await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const today = (await pool.query(`select to_char(now() at time zone 'utc', 'YYYYMMDD') as d`)).rows[0].d as string;

  const client = await pool.connect();
  t.teardown(() => client.release());
  const partitionsLocked = async () => (await client.query(
    `select distinct c.relname::text as name
     from pg_locks l join pg_class c on c.oid = l.relation
     where l.pid = pg_backend_pid() and c.relnamespace = 'webhooks_partitions'::regnamespace and c.relkind = 'r'
     order by 1`)).rows.map((r) => r.name as string);

  // six rounds: past the five custom plans after which the plan cache may keep a generic one
  for (let round = 1; round <= 6; round++) {
    await client.query('begin');
    await client.query(`insert into crm.contacts (company_id, email) values ($1, $2)`, [company.id, `c${round}@example.com`]);
    t.deepEqual(await partitionsLocked(), [`delivery_history_p${today}`], `capture ${round}`);
    await client.query('commit');

    await client.query('begin');
    const { rows: claimed } = await client.query(
      `select * from webhooks_relay.claim_deliveries('relay-l', 10, interval '1 minute', 10)`);
    t.is(claimed.length, 1);
    t.deepEqual(await partitionsLocked(), [`delivery_history_p${today}`], `claim ${round}`);
    await client.query('commit');

    await client.query('begin');
    const { rows: settled } = await client.query(
      `select * from webhooks_relay.settle_deliveries('relay-l', array[$1::bigint], array[$2::int], array[now()], array[5],
         array[204], array[null::text], array[null::text], array[null::int])`, [claimed[0].delivery_id, claimed[0].attempt]);
    t.is(settled[0].state, 'succeeded');
    // a success writes its attempt and no result row
    t.deepEqual(await partitionsLocked(), [`delivery_attempts_p${today}`], `settle ${round}`);
    await client.query('commit');
  }
});
