// The outbox's partitions and retention (sql/22_outbox.sql, sql/29_retention.sql,
// tools/maintain.ts): days are made ahead and across day boundaries; a day past the
// retention is dropped whole once all of it ended and its counts are rolled up, never
// a day with a delivery still on its way; totals are the same before and after; a
// dropped delivery cannot be replayed; a drop does not hold up claims and settles.
import test from 'ava';
import pg from 'pg';
import { maintain } from '../../tools/maintain.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { noDayDroppedBeforeEachTest, utcDay } from '../helpers/days.ts';
import { until } from '../helpers/until.ts';

const db = useTestDatabase(test);
noDayDroppedBeforeEachTest(test, db);

async function partitionsOf(table: string): Promise<string[]> {
  const { rows } = await db().pool.query(
    `select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid
     where i.inhparent = $1::regclass order by 1`, [`webhooks.${table}`]);
  return rows.map((r) => r.relname as string);
}

test.serial('partitions are made ahead, one per UTC day; a delivery written for a day long past gets its day', async (t) => {
  await db().pool.query('select webhooks.create_partitions(3)');
  for (const table of ['delivery_history', 'delivery_results', 'delivery_attempts']) {
    const names = await partitionsOf(table);
    for (let day = 0; day <= 3; day++) {
      const name = `${table}_p${utcDay(day).toISOString().slice(0, 10).replaceAll('-', '')}`;
      t.true(names.includes(name), name);
    }
  }
  // each partition takes exactly its day: [00:00 UTC, next 00:00 UTC)
  const { rows: [bounds] } = await db().pool.query(
    `select pg_get_expr(c.relpartbound, c.oid) as bound from pg_class c where c.relname = $1`,
    [`delivery_history_p${utcDay(1).toISOString().slice(0, 10).replaceAll('-', '')}`]);
  t.regex(bounds.bound, new RegExp(`FROM \\('${utcDay(1).toISOString().slice(0, 10)} 00:00:00\\+00'\\) TO \\('${utcDay(2).toISOString().slice(0, 10)} 00:00:00\\+00'\\)`));
  // the last microsecond of a day and the first of the next go to two partitions
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const { rows } = await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     select $1, $2, 'contact.created', 1, '{}', 'succeeded', 1, t, t
     from unnest(array[$3::timestamptz - interval '1 microsecond', $3::timestamptz]) t
     returning id`,
    [webhook.id, company.id, utcDay(-40)]);
  const { rows: placed } = await db().pool.query(
    `select tableoid::regclass::text as partition from webhooks.delivery_history where id = any ($1::bigint[]) order by id`,
    [rows.map((r) => r.id)]);
  t.deepEqual(placed.map((r) => r.partition), [-41, -40].map((day) =>
    `webhooks_partitions.delivery_history_p${utcDay(day).toISOString().slice(0, 10).replaceAll('-', '')}`));
  await db().pool.query('delete from webhooks.deliveries where id = any ($1::bigint[])', [rows.map((r) => r.id)]);
});

test.serial('retention drops whole days past it, keeps a day with a delivery on its way, keeps every total, and refuses to replay what is gone', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '5 days'`);

  // days 10, 9 and 8 ago: finished; day 9 ago also has one still pending; day 1 ago: recent
  const rows: Array<[number, string]> = [
    [-10, 'succeeded'], [-10, 'failed'], [-10, 'succeeded'],
    [-9, 'succeeded'], [-9, 'pending'],
    [-8, 'failed'],
    [-1, 'succeeded'], [-1, 'pending'],
  ];
  const ids: Record<string, string[]> = {};
  for (const [[day, state], i] of rows.map((r, i) => [r, i] as const)) {
    const at = new Date(utcDay(day).getTime() + (i + 1) * 600_000);
    const { rows: [d] } = await db().pool.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
       values ($1, $2, 'contact.created', $3, '{}', $4, $5, $6, $7) returning id`,
      [webhook.id, company.id, i + 1, state, state === 'pending' ? 0 : 1, state === 'pending' ? null : at, at]);
    (ids[day] ??= []).push(d.id);
    if (state !== 'pending') {
      await db().pool.query(
        `insert into webhooks.delivery_attempts (delivery_id, delivery_created_at, webhook_id, company_id, attempt, attempted_at, duration_ms, status_code)
         values ($1, $2, $3, $4, 1, $2, 5, $5)`,
        [d.id, at, webhook.id, company.id, state === 'succeeded' ? 204 : 500]);
    }
  }
  await db().pool.query('select webhooks.create_partitions()');
  await db().pool.query('call webhooks.roll_up_report_counts()');

  const totals = async () => {
    const { rows: [report] } = await db().pool.query(
      `select c.* from webhooks_private.count_deliveries($1, $2, $3, $4) c`,
      [webhook.id, company.id, utcDay(-20), utcDay(1)]);
    const { rows: daily } = await db().pool.query(
      `select to_char(day, 'YYYY-MM-DD') as day, fired::int, succeeded::int, failed::int, pending::int
       from webhooks.daily_counts where webhook_id = $1 order by day`, [webhook.id]);
    return { report, daily };
  };
  const before = await totals();
  t.deepEqual(before.report, { fired: '8', succeeded: '4', failed: '2' });

  const said: string[] = [];
  const result = await maintain(db().url, (line) => said.push(line));
  // days 10 and 8 ago go; day 9 ago has a pending delivery; day 1 ago is recent
  // (the emptied days of the test before go too)
  const iso = (day: number) => utcDay(day).toISOString().slice(0, 10);
  t.true(result.daysDropped.includes(iso(-10)) && result.daysDropped.includes(iso(-8)));
  t.false(result.daysDropped.includes(iso(-9)) || result.daysDropped.includes(iso(-1)));
  // and what keeps day 9 ago is named: which webhook, how many, when next
  const { rows: [pending] } = await db().pool.query(
    'select next_attempt_at from webhooks.delivery_queue where delivery_id = $1', [ids[-9][1]]);
  t.deepEqual(result.heldPastRetention, [
    { day: iso(-9), companyId: company.id, webhookId: webhook.id, onTheirWay: 1, nextAttemptAt: pending.next_attempt_at },
  ]);
  t.true(said.includes(`kept the history of ${iso(-9)} past the retention: webhook ${webhook.id} (company ${company.id}) has 1 of its deliveries on their way, the next try at ${pending.next_attempt_at.toISOString()}`), said.join('\n'));
  const history = await partitionsOf('delivery_history');
  const attempts = await partitionsOf('delivery_attempts');
  for (const [day, kept] of [[-10, false], [-9, true], [-8, false], [-1, true]] as const) {
    const suffix = `_p${utcDay(day).toISOString().slice(0, 10).replaceAll('-', '')}`;
    t.is(history.includes(`delivery_history${suffix}`), kept, `history ${day}`);
    t.is(attempts.includes(`delivery_attempts${suffix}`), kept, `attempts ${day}`);
  }
  const { rows: [gone] } = await db().pool.query(
    'select count(*)::int as n from webhooks.deliveries where id = any ($1::bigint[])', [[...ids[-10], ...ids[-8]]]);
  t.is(gone.n, 0);

  // the totals outlive the rows
  t.deepEqual(await totals(), before);
  const { rows: [kept] } = await db().pool.query('select webhooks.kept_since() as at');
  t.deepEqual(kept.at, utcDay(-7));

  // nothing more to drop on a second run
  t.deepEqual((await maintain(db().url)).daysDropped, []);

  // a replay of a dropped delivery: a clear error
  const error = await t.throwsAsync(db().pool.query('select webhooks.replay_delivery($1)', [ids[-10][0]]));
  t.regex(error!.message, /not found/);
  await db().pool.query(`alter database ${db().name} reset webhooks.retention`);
});

test.serial('a drop waits for the readers of the day it drops, while claims and settles go on', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '5 days'`);
  const at = new Date(utcDay(-12).getTime() + 600_000);
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, $3, $3)`,
    [webhook.id, company.id, at]);
  await db().pool.query('select webhooks.create_partitions()');
  await db().pool.query('call webhooks.roll_up_report_counts()');

  // a reader of the old day holds it open
  const reader = new pg.Client({ connectionString: db().url });
  await reader.connect();
  t.teardown(() => reader.end());
  await reader.query('begin');
  await reader.query('select count(*) from webhooks.deliveries where created_at < now() - interval \'10 days\'');

  const dropping = maintain(db().url);
  // meanwhile a delivery is captured, claimed and settled as usual
  await f.contact(company.id);
  const { rows: claimed } = await db().pool.query(
    `select * from webhooks_relay.claim_deliveries('relay-r', 10, interval '1 minute', 10, '{}', '{}', array[$1::bigint])`,
    [webhook.id]);
  t.is(claimed.length, 1);
  const { rows: settled } = await db().pool.query(
    `select * from webhooks_relay.settle_deliveries('relay-r', array[$1::bigint], array[1], array[now()], array[5],
       array[204], array[null::text], array[null::text], array[null::int])`, [claimed[0].delivery_id]);
  t.is(settled[0].state, 'succeeded');

  await reader.query('commit');
  const result = await dropping;
  t.deepEqual(result.daysDropped, [utcDay(-12).toISOString().slice(0, 10)]);
  await db().pool.query(`alter database ${db().name} reset webhooks.retention`);
});

test.serial('a drop beside a writer\'s transaction left open with a change captured: claims and settles of the rest go on under a short lock_timeout, the held change is delivered once committed, the day dropped', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.updated'] });
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '5 days'`);
  t.teardown(() => db().pool.query(`alter database ${db().name} reset webhooks.retention`));
  const at = new Date(utcDay(-12).getTime() + 600_000);
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, $3, $3)`,
    [webhook.id, company.id, at]);
  await db().pool.query('select webhooks.create_partitions()');
  await db().pool.query('call webhooks.roll_up_report_counts()');
  const held = await f.contact(company.id, { first_name: 'Held' });

  // a writer's change captured (today's partitions), its transaction left open
  const writer = new pg.Client({ connectionString: db().url });
  writer.on('error', () => {}); // ended with the test's database
  await writer.connect();
  t.teardown(() => writer.end());
  await writer.query('begin');
  await writer.query(`update crm.contacts set first_name = 'Held 1' where id = $1`, [held.id]);

  const dropping = maintain(db().url);
  let dropped = false;
  void dropping.then(() => (dropped = true), () => {});
  // the drop's detach waits for the writer, which holds the tables it detaches from
  let waiter = '';
  await until('the drop waits for a lock', async () => {
    const { rows } = await db().pool.query(
      `select left(query, 120) as query from pg_stat_activity
       where datname = current_database() and wait_event_type = 'Lock'`);
    waiter = rows[0]?.query ?? '';
    return rows.length > 0;
  });
  t.log(`waiting: ${waiter}`);
  // meanwhile the rest is captured, claimed and settled, none of it waiting on the drop
  const relay = await db().pool.connect();
  t.teardown(() => relay.release());
  await relay.query(`set lock_timeout = '500ms'`);
  const claimAll = async () => (await relay.query(
    `select * from webhooks_relay.claim_deliveries('relay-r', 10, interval '1 minute', 10, '{}', '{}', array[$1::bigint])`,
    [webhook.id])).rows;
  const settle = (ids: string[]) => relay.query(
    `select * from webhooks_relay.settle_deliveries('relay-r', $1::bigint[], array_fill(1, array[cardinality($1::bigint[])]),
       array_fill(now(), array[cardinality($1::bigint[])]), array_fill(5, array[cardinality($1::bigint[])]),
       array_fill(204, array[cardinality($1::bigint[])]), array_fill(null::text, array[cardinality($1::bigint[])]),
       array_fill(null::text, array[cardinality($1::bigint[])]), array_fill(null::int, array[cardinality($1::bigint[])]))`,
    [ids]).then((r) => r.rows);
  for (let i = 0; i < 3; i++) {
    await f.contact(company.id, { first_name: `Meanwhile ${i}` });
    const claimed = await claimAll();
    // the first round also takes the held contact's creation, committed before
    t.true(claimed.length >= 1 && claimed.every((c) => JSON.parse(c.body).type === 'contact.created'), JSON.stringify(claimed));
    const settled = await settle(claimed.map((c) => c.delivery_id));
    t.true(settled.length === claimed.length && settled.every((s) => s.state === 'succeeded'));
  }

  t.false(dropped, 'the drop waits for the writer');
  await writer.query('commit');
  const [update] = await claimAll();
  t.like(JSON.parse(update.body), { type: 'contact.updated', data: { contact: { id: Number(held.id), first_name: 'Held 1' } } });
  t.is((await settle([update.delivery_id]))[0].state, 'succeeded');
  const result = await dropping;
  t.deepEqual(result.daysDropped, [utcDay(-12).toISOString().slice(0, 10)]);
});

test.serial('a day past the retention whose counts are not all rolled up is kept until they are', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const counted = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const late = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '5 days'`);
  const at = new Date(utcDay(-30).getTime() + 3_600_000);
  for (const hook of [counted, late]) {
    await db().pool.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
       values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, $3, $3)`, [hook.id, company.id, at]);
  }
  const day = utcDay(-30).toISOString().slice(0, 10);
  const expired = async () => (await db().pool.query(
    `select to_char(day, 'YYYY-MM-DD') as day from webhooks.expired_days()`)).rows.map((r) => r.day as string);
  // one webhook's day counted, the other's not yet
  await db().pool.query(`select webhooks_private.roll_up_webhook_days($1, b.days_before, b.hours_before)
     from webhooks_private.roll_up_bounds(now()) b`, [counted.id]);
  t.false((await expired()).includes(day));
  await db().pool.query(`select webhooks_private.roll_up_webhook_days($1, b.days_before, b.hours_before)
     from webhooks_private.roll_up_bounds(now()) b`, [late.id]);
  t.true((await expired()).includes(day));
  await db().pool.query(`alter database ${db().name} reset webhooks.retention`);
});

test.serial('test sends are out of Times Fired before and after their day is dropped, in the report and in daily_counts alike; a day of test sends alone is dropped', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '5 days'`);
  // day 12 ago: a delivery that succeeded, one that failed, a test send that succeeded
  // and one that failed
  const at = (minute: number) => new Date(utcDay(-12).getTime() + minute * 60_000);
  for (const [minute, action, state] of [
    [10, 'contact.created', 'succeeded'], [20, 'contact.created', 'failed'],
    [30, 'webhook.test', 'succeeded'], [40, 'webhook.test', 'failed'],
  ] as const) {
    await db().pool.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
       values ($1, $2, $3, 1, '{}', $4, 1, $5, $5)`, [webhook.id, company.id, action, state, at(minute)]);
  }
  // day 13 ago: a test send alone (a day with no count: it is in none)
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'webhook.test', 0, '{}', 'succeeded', 1, $3, $3)`, [webhook.id, company.id, new Date(utcDay(-13).getTime() + 60_000)]);
  const report = async () => {
    const client = await db().pool.connect();
    try {
      await client.query('begin');
      await client.query(`select set_config('role', 'webhook_viewer', true), set_config('jwt.claims.company_id', $1, true)`, [company.id]);
      const { rows: [row] } = await client.query(
        `select times_fired::int as fired, times_succeeded::int as succeeded, times_failed::int as failed
         from webhooks.webhook_report($1, $2)`, [utcDay(-20), utcDay(-11)]);
      await client.query('rollback');
      return row;
    } finally {
      client.release();
    }
  };
  const daily = async () => (await db().pool.query(
    `select fired::int, succeeded::int, failed::int from webhooks.daily_counts where webhook_id = $1`, [webhook.id])).rows;
  const events = { fired: 2, succeeded: 1, failed: 1 };

  t.deepEqual(await report(), events, 'counted from the rows');
  t.deepEqual(await daily(), [events], 'daily_counts from the rows');
  await db().pool.query('call webhooks.roll_up_report_counts()');
  t.deepEqual(await report(), events, 'from the day counts');
  t.deepEqual(await daily(), [events]);
  const result = await maintain(db().url);
  t.true(result.daysDropped.includes(utcDay(-12).toISOString().slice(0, 10)));
  t.true(result.daysDropped.includes(utcDay(-13).toISOString().slice(0, 10)), 'the day of a test send alone');
  t.deepEqual(await report(), events, 'the day dropped: the same');
  t.deepEqual(await daily(), [events]);
  await db().pool.query(`alter database ${db().name} reset webhooks.retention`);
});

// A backfill's snapshots are held while their webhook is disabled (30_delivery.sql,
// snapshot_held()), pending: a day with one is kept. Held for ever, they kept their day,
// every company's history of it, for as long as the webhook stayed disabled.
test.serial('a snapshot held for a disabled webhook fails once its day is past the retention, and the day goes', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '5 days'`);
  t.teardown(() => db().pool.query(`alter database ${db().name} reset webhooks.retention`));
  const [old, recent] = [new Date(utcDay(-10).getTime() + 600_000), new Date(utcDay(-1).getTime() + 600_000)];
  const { rows: written } = await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, created_at)
     select $1, $2, 'contact.snapshot', n, '{}', t from unnest(array[1, 2], array[$3::timestamptz, $4::timestamptz]) as x(n, t)
     returning id`,
    [webhook.id, company.id, old, recent]);
  await db().pool.query('select webhooks.create_partitions()');
  // disabled, and the claim held them
  await db().pool.query('select webhooks.disable_webhook($1)', [webhook.id]);
  await db().pool.query(`update webhooks.delivery_queue set next_attempt_at = 'infinity' where webhook_id = $1`, [webhook.id]);

  const result = await maintain(db().url);
  t.true(result.daysDropped.includes(utcDay(-10).toISOString().slice(0, 10)));
  const { rows } = await db().pool.query(
    'select id, state, last_error from webhooks.deliveries where webhook_id = $1 order by id', [webhook.id]);
  // the old one's day is gone, its failure counted; the recent one is still held
  t.deepEqual(rows.map((r) => [r.id, r.state]), [[written[1].id, 'pending']]);
  const { rows: daily } = await db().pool.query(
    `select fired::int, failed::int, pending::int from webhooks.daily_counts where webhook_id = $1 and day = $2`,
    [webhook.id, utcDay(-10).toISOString().slice(0, 10)]);
  t.deepEqual(daily, [{ fired: 1, failed: 1, pending: 0 }]);
  t.is(result.snapshotsFailed, 1);
});

// A capture takes its time from its transaction's start: a transaction open since a
// day now past the retention writes into it, unseen by expired_days (uncommitted), and
// the drop's detach waits for it to end. Dropped then, its deliveries were in no count,
// and the day's totals were lost for good (until 2026-12-06).
test.serial('a day past the retention whose only deliveries are an open transaction\'s is kept until they are counted', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '5 days'`);
  const day = utcDay(-12).toISOString().slice(0, 10);
  const at = new Date(utcDay(-12).getTime() + 600_000);
  // the day was made when it came, and a roll-up went past it
  await db().pool.query('select webhooks_private.ensure_day($1::date)', [day]);
  await db().pool.query('call webhooks.roll_up_report_counts()');

  const writer = new pg.Client({ connectionString: db().url, application_name: 'open-writer' });
  await writer.connect();
  t.teardown(() => writer.end());
  await writer.query('begin');
  await writer.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, $3, $3)`, [webhook.id, company.id, at]);
  const dropping = maintain(db().url);
  // the drop named the day, and waits for the writer
  await until('the drop waits for the writer', async () => (await db().pool.query(
    `select exists (select 1 from pg_stat_activity
                    where datname = current_database() and wait_event_type = 'Lock' and query ilike '%detach partition%') as waits`)).rows[0].waits);
  await writer.query('commit');
  t.deepEqual((await dropping).daysDropped, [], 'kept: its delivery is in no count yet');

  t.deepEqual((await maintain(db().url)).daysDropped, [day], 'counted by the next run\'s roll-up, then dropped');
  const { rows: [counts] } = await db().pool.query(
    `select (select fired::int from webhooks.delivery_day_counts where webhook_id = $1 and day = $2::date) as "dayCount",
            (select fired::int from webhooks_private.count_deliveries($1, $3, webhooks_private.utc_day_start($2::date),
                                                                     webhooks_private.utc_day_start($2::date + 1))) as report`,
    [webhook.id, day, company.id]);
  t.deepEqual(counts, { dayCount: 1, report: 1 });
  await db().pool.query(`alter database ${db().name} reset webhooks.retention`);
});
