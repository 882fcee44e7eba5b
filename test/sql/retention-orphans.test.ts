// What a day's history gone from under the outbox leaves behind, and what it must not
// do (sql/29_retention.sql, sql/30_delivery.sql, tools/maintain.ts):
//   - a queue row whose day was dropped by hand (or left without its message by a
//     crash of maintenance) stops neither the rescue of expired leases nor the claim,
//     for anyone; it leaves the queue unsent, with a warning in the server's log;
//   - a write into a day already dropped is refused: the day's kept total stays;
//   - maintenance stopped at any step of a drop leaves, after its next run, the count
//     of a webhook's history equal to the history it shows, and the day takes no
//     write meanwhile.
// (One after the other: maintenance's roll-up visits every webhook there is.)
import test from 'ava';
import { maintain } from '../../tools/maintain.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { noDayDroppedBeforeEachTest, utcDay } from '../helpers/days.ts';

const db = useTestDatabase(test);
noDayDroppedBeforeEachTest(test, db);
const ymd = (day: Date) => day.toISOString().slice(0, 10).replaceAll('-', '');
const iso = (day: Date) => day.toISOString().slice(0, 10);

test.serial('a queue row whose day was dropped by hand stops neither the rescue nor the claim, and leaves the queue unsent', async (t) => {
  const f = factories(db().pool);
  const [a, b] = [await f.company(), await f.company()];
  const wa = await f.webhook({ companyId: a.id, actions: ['contact.created'] });
  const wb = await f.webhook({ companyId: b.id, actions: ['contact.created'] });
  const day = utcDay(-3);
  const old = new Date(day.getTime() + 600_000);
  const insert = async (webhook: { id: string; company_id: string }, state: string, at: Date | null) => (await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, locked_by, locked_until, created_at)
     values ($1, $2, 'contact.created', 1, '{}', $3, case when $3 = 'in_flight' then 1 else 0 end,
             case when $3 = 'in_flight' then 'relay-gone' end,
             case when $3 = 'in_flight' then now() - interval '1 minute' end, coalesce($4, now())) returning id`,
    [webhook.id, webhook.company_id, state, at])).rows[0].id as string;
  // company a: one pending and one in flight (its lease expired) on the day to go, one pending today
  const orphans = [await insert(wa, 'pending', old), await insert(wa, 'in_flight', old)];
  const aToday = await insert(wa, 'pending', null);
  // company b: one pending, one in flight with an expired lease, both today
  const bPending = await insert(wb, 'pending', null);
  const bLeased = await insert(wb, 'in_flight', null);

  // a DBA drops the day by hand
  await db().pool.query(`drop table webhooks_partitions.delivery_history_p${ymd(day)}, webhooks_partitions.delivery_results_p${ymd(day)},
                         webhooks_partitions.delivery_attempts_p${ymd(day)}`);

  const { rows: [rescue] } = await db().pool.query('select webhooks_relay.rescue_expired_leases() as n');
  t.is(rescue.n, 1);
  const { rows: [rescued] } = await db().pool.query('select state, attempts from webhooks.deliveries where id = $1', [bLeased]);
  t.deepEqual(rescued, { state: 'pending', attempts: 1 });

  const { rows: claimed } = await db().pool.query(
    `select delivery_id from webhooks_relay.claim_deliveries('relay-r', 10, interval '1 minute', 10,
       p_only_webhooks => array[$1::bigint, $2::bigint])`, [wa.id, wb.id]);
  t.deepEqual(claimed.map((r) => r.delivery_id).sort(), [aToday, bPending, bLeased].sort());
  // the orphans: out of the queue, sent never
  const { rows: [left] } = await db().pool.query(
    'select count(*)::int as n from webhooks.delivery_queue where delivery_id = any ($1::bigint[])', [orphans]);
  t.is(left.n, 0);
  const { rows: [leased] } = await db().pool.query(
    `select count(*)::int as n from webhooks.delivery_queue where locked_by = 'relay-r'`);
  t.is(leased.n, 3);
});

test.serial('a disabled webhook\'s queue row whose day was dropped by hand does not stop the claim: it leaves the queue unfailed', async (t) => {
  const f = factories(db().pool);
  const [a, b] = [await f.company(), await f.company()];
  const wa = await f.webhook({ companyId: a.id, actions: ['contact.created'] });
  const wb = await f.webhook({ companyId: b.id, actions: ['contact.created'] });
  const day = utcDay(-4);
  const { rows: [orphan] } = await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'pending', 0, $3) returning id`,
    [wa.id, a.id, new Date(day.getTime() + 600_000)]);
  const { rows: [live] } = await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts)
     values ($1, $2, 'contact.created', 1, '{}', 'pending', 0) returning id`, [wb.id, b.id]);
  await db().pool.query('update webhooks.webhooks set enabled = false where id = $1', [wa.id]);
  await db().pool.query(`drop table webhooks_partitions.delivery_history_p${ymd(day)}, webhooks_partitions.delivery_results_p${ymd(day)},
                         webhooks_partitions.delivery_attempts_p${ymd(day)}`);

  const { rows: claimed } = await db().pool.query(
    `select delivery_id from webhooks_relay.claim_deliveries('relay-r', 10, interval '1 minute', 10,
       p_only_webhooks => array[$1::bigint, $2::bigint])`, [wa.id, wb.id]);
  t.deepEqual(claimed.map((r) => r.delivery_id), [live.id]);
  const { rows: [left] } = await db().pool.query(
    'select count(*)::int as n from webhooks.delivery_queue where delivery_id = $1', [orphan.id]);
  t.is(left.n, 0);
});

test.serial('a day\'s history left detached with a delivery on its way is attached back by the next maintenance run', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '5 days'`);
  t.teardown(() => db().pool.query(`alter database ${db().name} reset webhooks.retention`));
  const day = utcDay(-11);
  const { rows: [pending] } = await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'pending', 0, $3) returning id`,
    [webhook.id, company.id, new Date(day.getTime() + 600_000)]);
  // as a run stopped between the detach of the day's history and its look at the queue
  // leaves it
  await db().pool.query(`alter table webhooks.delivery_history detach partition webhooks_partitions.delivery_history_p${ymd(day)}`);
  const said: string[] = [];
  const result = await maintain(db().url, (line) => said.push(line));
  const { rows } = await db().pool.query('select id, state from webhooks.deliveries where webhook_id = $1', [webhook.id]);
  t.deepEqual(rows, [{ id: pending.id, state: 'pending' }]);
  // the day was not taken for one to drop (its history detached, its deliveries on
  // their way are looked for in the queue itself): the kept history still starts before it
  t.false(result.daysDropped.includes(iso(day)));
  // (its day not forgotten, as a run forgets it before its detach: taken as detached by hand)
  t.true(said.includes(`attached back the history of ${iso(day)}, left detached by hand: a delivery of it is on its way`));
  t.false(said.some((line) => line.includes('went back on its way while it was being dropped')), said.join('\n'));
  const { rows: [kept] } = await db().pool.query('select coalesce(webhooks.kept_since() <= $1, true) as before_it', [day]);
  t.true(kept.before_it);
});

test.serial('a write into a day already dropped is refused, and the day keeps its total', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '5 days'`);
  t.teardown(() => db().pool.query(`alter database ${db().name} reset webhooks.retention`));
  const day = utcDay(-10);
  const at = new Date(day.getTime() + 600_000);
  const write = () => db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     select $1, $2, 'contact.created', 1, '{}', 'succeeded', 1, $3, $3 from generate_series(1, $4)`,
    [webhook.id, company.id, at, 3]);
  await write();
  await db().pool.query('call webhooks.roll_up_report_counts()');
  const counts = async () => (await db().pool.query(
    `select fired::int, succeeded::int, failed::int from webhooks.daily_counts where webhook_id = $1 and day = $2`,
    [webhook.id, iso(day)])).rows;
  t.deepEqual(await counts(), [{ fired: 3, succeeded: 3, failed: 0 }]);
  const result = await maintain(db().url);
  t.true(result.daysDropped.includes(iso(day)));
  t.deepEqual(await counts(), [{ fired: 3, succeeded: 3, failed: 0 }]);

  const refused = await t.throwsAsync(db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, $3, $3)`, [webhook.id, company.id, at]));
  t.is((refused as unknown as { constraint: string }).constraint, 'delivery_past_retention');
  await db().pool.query('call webhooks.roll_up_report_counts()');
  t.deepEqual(await counts(), [{ fired: 3, succeeded: 3, failed: 0 }]);
  const { rows: [made] } = await db().pool.query(
    `select count(*)::int as n from pg_class where relname like '%\\_p' || $1`, [ymd(day)]);
  t.is(made.n, 0);
});

test.serial('maintenance stopped at any step of a drop: after its next run the history count is the history shown', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '5 days'`);
  t.teardown(() => db().pool.query(`alter database ${db().name} reset webhooks.retention`));
  // each stop its own day (oldest first: a day once dropped takes no writes) and webhook
  for (let stop = 1; ; stop++) {
    const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
    const day = utcDay(-30 + stop);
    const at = new Date(day.getTime() + 600_000);
    await db().pool.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
       select $1, $2, 'contact.created', 1, '{}', 'succeeded', 1, $3, $3 from generate_series(1, 3)`,
      [webhook.id, company.id, at]);
    await db().pool.query('call webhooks.roll_up_report_counts()');
    let steps = 0;
    const stopped = await maintain(db().url, () => {}, {
      afterStep: () => {
        if (++steps === stop) throw new Error('stopped');
      },
    }).then(() => false, (error: Error) => {
      if (error.message !== 'stopped') throw error;
      return true;
    });
    const seen = async () => (await db().pool.query(
      `select webhooks.webhooks_history_count(w) as counted,
              (select count(*) from webhooks.webhooks_history(w)) as shown
       from webhooks.webhooks w where w.id = $1`, [webhook.id])).rows[0];
    // stopped: the count is what the history shows (the day whole, or none of it)
    const before = await seen();
    t.is(before.counted, before.shown, `stopped after step ${stop}`);
    // and the day, forgotten first, takes no write, whichever of its partitions are left
    const refused = await t.throwsAsync(db().pool.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
       values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, $3, $3)`, [webhook.id, company.id, at]));
    t.is((refused as unknown as { constraint?: string }).constraint, 'delivery_past_retention',
      `stopped after step ${stop}: ${refused?.message}`);
    // and the next run finishes the drop
    await maintain(db().url);
    t.deepEqual(await seen(), { counted: '0', shown: '0' }, `stopped after step ${stop}`);
    const { rows: [left] } = await db().pool.query(
      `select count(*)::int as n from pg_class where relname like '%\\_p' || $1`, [ymd(day)]);
    t.is(left.n, 0, `stopped after step ${stop}`);
    const { rows: [counts] } = await db().pool.query(
      `select sum(fired)::int as fired from webhooks.daily_counts where webhook_id = $1`, [webhook.id]);
    t.is(counts.fired, 3, `stopped after step ${stop}`);
    if (!stopped) break;
  }
});
