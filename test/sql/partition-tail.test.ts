// The tail of the outbox's partitions (sql/22_outbox.sql, tools/maintain.ts): a capture
// never fails for want of a day's partition. When maintenance has not run for two weeks
// the day's rows go to the tail, are claimed and settled as usual, and the next
// maintenance makes the tail a span of those days (nothing moved, nothing lost) and the
// days after it; when maintenance runs as it should, the empty tail moves ahead.
import test from 'ava';
import { maintain } from '../../tools/maintain.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);
const DAY = 86_400_000;
const TABLES = ['delivery_history', 'delivery_results', 'delivery_attempts'];

function ymd(offsetDays: number): string {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()) + offsetDays * DAY)
    .toISOString().slice(0, 10).replaceAll('-', '');
}

async function partitionsOf(table: string): Promise<string[]> {
  const { rows } = await db().pool.query(
    `select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid
     where i.inhparent = $1::regclass order by 1`, [`webhooks.${table}`]);
  return rows.map((r) => r.relname as string);
}

// as if maintenance had stopped: no partition from day p_from on, and the tail from there
async function stopMaintenanceAt(fromDay: number): Promise<void> {
  for (const table of TABLES) {
    for (const name of await partitionsOf(table)) {
      const day = /_(?:p|from_)(\d{8})$/.exec(name)?.[1];
      if (day && day >= ymd(fromDay)) {
        // (today's and tomorrow's too: on purpose, as no DBA may by chance)
        await db().pool.query(`set webhooks.days_in_use_unguarded = on;
                               alter table webhooks.${table} detach partition webhooks_partitions.${name};
                               drop table webhooks_partitions.${name}; reset webhooks.days_in_use_unguarded`);
      }
    }
    await db().pool.query('select webhooks_private.attach_tail($1)', [table]);
  }
}

async function claimAndSettle(webhookId: string, relay: string): Promise<Array<{ delivery_id: string; body: string }>> {
  const { rows: claimed } = await db().pool.query(
    `select * from webhooks_relay.claim_deliveries($1, 10, interval '1 minute', 10, '{}', '{}', array[$2::bigint])`,
    [relay, webhookId]);
  await db().pool.query(
    `select * from webhooks_relay.settle_deliveries($1, $2::bigint[], $3::int[], array_fill(now(), array[$4::int]),
       array_fill(5, array[$4::int]), array_fill(204, array[$4::int]), array_fill(null::text, array[$4::int]),
       array_fill(null::text, array[$4::int]), array_fill(null::int, array[$4::int]))`,
    [relay, claimed.map((c) => c.delivery_id), claimed.map((c) => c.attempt), claimed.length]);
  return claimed;
}

test.serial('maintenance stopped two weeks: today\'s captures go to the tail and are sent; maintenance makes the tail a span of its days, every row kept', async (t) => {
  const pool = db().pool;
  await stopMaintenanceAt(0);
  for (const table of TABLES) t.deepEqual(await partitionsOf(table), [`${table}_from_${ymd(0)}`]);

  const f = factories(pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.updated'], fields: ['city'] });
  const first = await f.contact(company.id, { city: 'Tail' });
  await f.contact(company.id, { city: 'Tail too' });
  const { rows: placed } = await pool.query(
    `select distinct tableoid::regclass::text as partition from webhooks.delivery_history`);
  t.deepEqual(placed, [{ partition: `webhooks_partitions.delivery_history_from_${ymd(0)}` }]);
  // claimed and settled as usual: the payload read from the tail, the attempt and result written to theirs
  const sent = await claimAndSettle(webhook.id, 'relay-t');
  t.is(sent.length, 2);
  t.is(JSON.parse(sent[0]!.body).data.contact.city, 'Tail');
  // one more on its way
  await pool.query(`update crm.contacts set city = 'Later' where id = $1`, [first.id]);

  const { rows: before } = await pool.query('select * from webhooks.deliveries order by id');
  const { rows: attemptsBefore } = await pool.query('select * from webhooks.delivery_attempts order by id');
  t.is(before.length, 3);

  const result = await maintain(db().url);
  t.is(result.tails, 'span');
  for (const table of TABLES) {
    const names = await partitionsOf(table);
    t.true(names.includes(`${table}_p${ymd(0)}_${ymd(1)}`), `${table}: the span of today and tomorrow`);
    for (let day = 2; day <= 14; day++) t.true(names.includes(`${table}_p${ymd(day)}`), `${table}: day ${day}`);
    t.true(names.includes(`${table}_from_${ymd(15)}`), `${table}: the tail after the days`);
    t.is(names.length, 1 + 13 + 1);
  }
  t.deepEqual((await pool.query('select * from webhooks.deliveries order by id')).rows, before);
  t.deepEqual((await pool.query('select * from webhooks.delivery_attempts order by id')).rows, attemptsBefore);
  const { rows: [where] } = await pool.query(
    `select count(*) filter (where tableoid::regclass::text = 'webhooks_partitions.delivery_history_p' || $1 || '_' || $2)::int as in_span
     from webhooks.delivery_history`, [ymd(0), ymd(1)]);
  t.is(where.in_span, 3);

  // after it: captures, claims and settles as ever; nothing more to do
  await f.contact(company.id, { city: 'After' });
  const after = await claimAndSettle(webhook.id, 'relay-t');
  t.deepEqual(after.map((d) => JSON.parse(d.body).data.contact.city).sort(), ['After', 'Later']);
  const { rows: states } = await pool.query(`select state, count(*)::int as n from webhooks.deliveries group by 1`);
  t.deepEqual(states, [{ state: 'succeeded', n: 4 }]);
  const again = await maintain(db().url);
  t.is(again.tails, 'keep');
  t.is(again.partitionsMade, 0);
  // the span is dropped whole by the retention, once its last day may be (not now)
  const { rows: expired } = await pool.query('select * from webhooks.expired_days()');
  t.deepEqual(expired, []);
});

test.serial('maintenance on time: the empty tail moves ahead, the days made through it', async (t) => {
  const pool = db().pool;
  // (after the test above: a span of today and tomorrow, days to 14; start again from day 10)
  await stopMaintenanceAt(10);
  for (const table of TABLES) t.true((await partitionsOf(table)).includes(`${table}_from_${ymd(10)}`));
  // a day the tail covers is not made by create_partitions
  await pool.query('select webhooks.create_partitions()');
  t.false((await partitionsOf('delivery_history')).includes(`delivery_history_p${ymd(10)}`));

  const result = await maintain(db().url);
  t.is(result.tails, 'detach');
  for (const table of TABLES) {
    const names = await partitionsOf(table);
    for (let day = 10; day <= 14; day++) t.true(names.includes(`${table}_p${ymd(day)}`), `${table}: day ${day}`);
    t.true(names.includes(`${table}_from_${ymd(15)}`));
    t.false(names.includes(`${table}_from_${ymd(10)}`));
  }
  const { rows: leftover } = await pool.query(
    `select relname from pg_class where relnamespace = 'webhooks_partitions'::regnamespace and relname like '%from_${ymd(10)}'`);
  t.deepEqual(leftover, []);

  // a row written to the tail for a day ahead while it was being detached goes back
  // to its day once the days are made
  const f = factories(pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const { rows: [ahead] } = await pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, created_at)
     values ($1, $2, 'contact.created', 1, '{}', now() + interval '20 days') returning id`, [webhook.id, company.id]);
  for (const table of TABLES) {
    await pool.query(`alter table webhooks.${table} detach partition webhooks_partitions.${table}_from_${ymd(15)}`);
  }
  await pool.query('select webhooks.create_partitions(25)');
  const { rows: [{ moved }] } = await pool.query('select webhooks.readmit_detached_tails()::int as moved');
  t.is(moved, 1); // its history row (a pending delivery has no result or attempt yet)
  const { rows: [back] } = await pool.query(
    'select tableoid::regclass::text as partition from webhooks.delivery_history where id = $1', [ahead.id]);
  t.is(back.partition, `webhooks_partitions.delivery_history_p${ymd(20)}`);
  const { rows: [view] } = await pool.query('select state from webhooks.deliveries where id = $1', [ahead.id]);
  t.is(view.state, 'pending');
});
