// A day past the retention is dropped only while none of its deliveries is on its way
// (sql/29_retention.sql). A drop that waits for a reader of the day (DETACH PARTITION
// CONCURRENTLY waits for it) comes after expired_days() found nothing of the day on
// its way: a delivery of such a day cannot be replayed, else it would be lost with
// the day (a queue row without its message) and so would its day's count; and one a
// replay put back on its way all the same keeps its day (webhooks.keep_day_on_its_way,
// once the day's history is detached). (One after the other: a drop's roll-up visits every webhook there is.)
import test from 'ava';
import pg from 'pg';
import { maintain } from '../../tools/maintain.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { steerClock } from '../helpers/steered-clock.ts';
import { until } from '../helpers/until.ts';
import { noDayDroppedBeforeEachTest, utcDay } from '../helpers/days.ts';

const db = useTestDatabase(test);
noDayDroppedBeforeEachTest(test, db);

test.serial('a delivery replayed while its day is being dropped is not lost with the day', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '5 days'`);
  t.teardown(() => db().pool.query(`alter database ${db().name} reset webhooks.retention`));
  const at = new Date(utcDay(-12).getTime() + 600_000);
  const { rows: [failed] } = await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, last_error, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'failed', 1, 'HTTP 500', $3, $3) returning id`,
    [webhook.id, company.id, at]);
  await db().pool.query('select webhooks.create_partitions()');
  await db().pool.query('call webhooks.roll_up_report_counts()');

  // a reader of the old day holds the drop up
  const reader = new pg.Client({ connectionString: db().url });
  await reader.connect();
  t.teardown(() => reader.end());
  await reader.query('begin');
  await reader.query(`select count(*) from webhooks.deliveries where created_at < now() - interval '10 days'`);

  // an admin replays the day's failed delivery: refused, the day being past the
  // retention (maintenance may be dropping it, and it would go with the day). (A
  // session of its own: the pool's may predate the retention set for the database.)
  const admin = new pg.Client({ connectionString: db().url });
  await admin.connect();
  t.teardown(() => admin.end());
  const refused = await t.throwsAsync(admin.query('select webhooks.replay_delivery($1)', [failed.id]));
  t.is((refused as unknown as { constraint: string }).constraint, 'delivery_past_retention');

  const dropping = maintain(db().url);
  await until('the drop waits for the reader', async () => (await db().pool.query(
    `select 1 from pg_stat_activity where datname = current_database() and query ilike '%detach partition%' and wait_event_type = 'Lock'`)).rowCount! > 0);

  // and again while the drop waits: the day's history, detached first, shows it no more
  const meanwhile = await t.throwsAsync(admin.query('select webhooks.replay_delivery($1)', [failed.id]));
  t.is((meanwhile as unknown as { constraint: string }).constraint, 'delivery_not_found');

  await reader.query('commit');
  const result = await dropping;
  t.true(result.daysDropped.includes(utcDay(-12).toISOString().slice(0, 10)));
  const { rows: [queued] } = await db().pool.query(
    `select count(*)::int as n from webhooks.delivery_queue q
     where q.webhook_id = $1 and not exists (select 1 from webhooks.delivery_history h where h.id = q.delivery_id)`,
    [webhook.id]);
  t.is(queued.n, 0);
});

test.serial('replay_failed leaves out the failed deliveries older than the retention, and sends the rest', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const ids: string[] = [];
  for (const day of [-12, -2]) {
    const at = new Date(utcDay(day).getTime() + 600_000);
    const { rows: [d] } = await db().pool.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, last_error, completed_at, created_at)
       values ($1, $2, 'contact.created', 1, '{}', 'failed', 1, 'HTTP 500', $3, $3) returning id`,
      [webhook.id, company.id, at]);
    ids.push(d.id);
  }
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '5 days'`);
  t.teardown(() => db().pool.query(`alter database ${db().name} reset webhooks.retention`));
  for (const since of [null, utcDay(-20)]) {
    const { rows } = await db().pool.query('select id from webhooks.replay_failed($1, $2)', [webhook.id, since]);
    t.deepEqual(rows.map((r) => r.id), since === null ? [ids[1]] : []);
  }
  const { rows } = await db().pool.query('select id, state from webhooks.deliveries where webhook_id = $1 order by id', [webhook.id]);
  t.deepEqual(rows, [{ id: ids[0], state: 'failed' }, { id: ids[1], state: 'pending' }]);
});

test.serial('a delivery put back on its way while its day is being dropped keeps the day: no queue row outlives its message, and rescues go on', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const other = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '5 days'`);
  t.teardown(() => db().pool.query(`alter database ${db().name} reset webhooks.retention`));
  // two days past the retention: the first one's drop waits for a reader, the second
  // has a failed delivery
  const [first, second] = [utcDay(-14), utcDay(-13)];
  const { rows: [, failed] } = await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, last_error, completed_at, created_at)
     select $1, $2, 'contact.created', 1, '{}', s, 1, 'HTTP 500', t, t
     from unnest(array['succeeded', 'failed'], array[$3::timestamptz, $4::timestamptz]) as x(s, t)
     returning id`,
    [webhook.id, company.id, new Date(first!.getTime() + 600_000), new Date(second!.getTime() + 600_000)]);
  await db().pool.query('select webhooks.create_partitions()');
  await db().pool.query('call webhooks.roll_up_report_counts()');

  const reader = new pg.Client({ connectionString: db().url });
  await reader.connect();
  t.teardown(() => reader.end());
  await reader.query('begin');
  await reader.query(`select count(*) from webhooks.deliveries where created_at < now() - interval '10 days'`);
  const dropping = maintain(db().url);
  await until('the drop waits for the reader', async () => (await db().pool.query(
    `select 1 from pg_stat_activity where datname = current_database() and query ilike '%detach partition%' and wait_event_type = 'Lock'`)).rowCount! > 0);

  // meanwhile a replay of the second day's delivery that the retention's refusal let
  // through (here: a session whose clock is ten days behind, as one that looked just
  // before midnight is a moment behind)
  await steerClock(db().pool);
  const admin = new pg.Client({ connectionString: db().url });
  await admin.connect();
  t.teardown(() => admin.end());
  await admin.query(`set bpd_test.clock_shift = '-10 days'`);
  await admin.query(
    `update webhooks.deliveries set state = 'pending', completed_at = null, next_attempt_at = now() where id = $1`, [failed.id]);
  await reader.query('commit');
  const result = await dropping;

  // the first day goes; the second stays, with its message
  const iso = (day: Date) => day.toISOString().slice(0, 10);
  t.true(result.daysDropped.includes(iso(first!)));
  t.false(result.daysDropped.includes(iso(second!)));
  const { rows: [orphans] } = await db().pool.query(
    `select count(*)::int as n from webhooks.delivery_queue q
     where not exists (select 1 from webhooks.delivery_history h where h.id = q.delivery_id and h.created_at = q.created_at)`);
  t.is(orphans.n, 0);
  const { rows: [replayed] } = await db().pool.query('select state from webhooks.deliveries where id = $1', [failed.id]);
  t.is(replayed.state, 'pending');
  // the relay sends it, and rescues another webhook's expired lease as ever
  const { rows: [live] } = await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts)
     values ($1, $2, 'contact.created', 1, '{}', 'pending', 0) returning id`, [other.id, company.id]);
  const { rows: claimed } = await db().pool.query(
    `select delivery_id from webhooks_relay.claim_deliveries('relay-r', 10, interval '1 minute', 10,
       p_only_webhooks => array[$1::bigint, $2::bigint]) order by 1`, [webhook.id, other.id]);
  t.deepEqual(claimed.map((r) => r.delivery_id), [failed.id, live.id]);
  await db().pool.query(`update webhooks.delivery_queue set locked_until = now() - interval '1 second' where locked_by = 'relay-r'`);
  const { rows: [rescued] } = await db().pool.query('select webhooks_relay.rescue_expired_leases() as n');
  t.is(rescued.n, 2);
});
