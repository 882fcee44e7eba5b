// The report's roll-up (sql/50_report_counts.sql) counts a webhook's days once it holds
// the webhook's lock, which a writer of its old deliveries holds until it commits: the
// count must see what that writer wrote. Under repeatable read (a database whose
// default a DBA set so for the CRM's sake; pg_cron runs the roll-up with the
// database's default), the snapshot was taken as the CALL began, before the wait: a
// delivery replayed meanwhile was counted failed, its day written as counted, and
// the day's note to count again taken away, so the count stayed wrong for ever, and
// the retention dropped the day with it.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { utcDay } from '../helpers/days.ts';
import { until } from '../helpers/until.ts';

const db = useTestDatabase(test);
// (one after another: each waits for a roll-up of the whole database, which another
// test's roll-up or writer beside it would take, or hold, first)

test.serial('a roll-up under repeatable read counts what the writer it waited for wrote', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const day = utcDay(-10);
  const at = new Date(day.getTime() + 12 * 3_600_000);
  // two finished deliveries of a day long past, one failed; written into the past, so
  // the day is noted to be counted
  const { rows: [, failed] } = await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     select $1, $2, 'contact.created', 1, '{}', s, 1, $3, $3 from unnest(array['succeeded', 'failed']) s
     returning id`, [webhook.id, company.id, at]);

  // a replay of the failed one, not committed yet (it holds the webhook's lock)
  const writer = await db().pool.connect();
  const rollUp = await db().pool.connect();
  t.teardown(() => { writer.release(true); rollUp.release(true); });
  await writer.query('begin');
  await writer.query(
    `update webhooks.deliveries set state = 'pending', completed_at = null, next_attempt_at = now() where id = $1`,
    [failed.id]);
  // the roll-up begins meanwhile, under repeatable read, and waits for the lock
  await rollUp.query(`set default_transaction_isolation = 'repeatable read'`);
  const { rows: [{ pid }] } = await rollUp.query('select pg_backend_pid() as pid');
  // (it waits for the writer's lock, or, bounded by the oldest writer's transaction,
  // passes the day over and ends: either way it must not count the day as it was)
  let ended = false;
  const rolled = rollUp.query('call webhooks.roll_up_report_counts()').finally(() => (ended = true));
  await until('the roll-up waits for the writer, or has ended', async () => ended
    || (await db().pool.query(`select 1 from pg_locks where pid = $1 and not granted`, [pid])).rowCount! > 0);
  await writer.query('commit');
  await rolled;

  // the replayed delivery is on its way: the day is not counted, and says so
  const { rows } = await db().pool.query(
    `select fired::int, succeeded::int, failed::int, pending::int from webhooks.daily_counts where webhook_id = $1 and day = $2::date`,
    [webhook.id, day.toISOString().slice(0, 10)]);
  t.deepEqual(rows, [{ fired: 2, succeeded: 1, failed: 0, pending: 1 }]);
  // and a roll-up after it counts the day as it is
  await db().pool.query('call webhooks.roll_up_report_counts()');
  const { rows: again } = await db().pool.query(
    `select fired::int, succeeded::int, failed::int, pending::int from webhooks.daily_counts where webhook_id = $1 and day = $2::date`,
    [webhook.id, day.toISOString().slice(0, 10)]);
  t.deepEqual(again, [{ fired: 2, succeeded: 1, failed: 0, pending: 1 }]);
});

test.serial('one batch of the roll-up asked under repeatable read is refused; the procedure runs its batches at read committed', async (t) => {
  const client = await db().pool.connect();
  t.teardown(() => client.release(true));
  await client.query('begin isolation level repeatable read');
  await t.throwsAsync(client.query('select * from webhooks.roll_up_report_counts_after(null, 10)'),
    { message: /read committed, not repeatable read/ });
  await client.query('rollback');
  await client.query(`set default_transaction_isolation = 'serializable'`);
  const { rows: [counted] } = await client.query('call webhooks.roll_up_report_counts()');
  t.is(typeof counted.days, 'number');
});

// An admin's request on a webhook (a replay, an edit, a disable) locks the webhook's
// row (webhook_for_update) to its end; the roll-up's write of a day count checks its
// key to the webhook (a key-share lock of that row). Under the row's FOR UPDATE the
// roll-up waited for the admin's transaction, which could wait in turn for a row the
// roll-up's batch had written (a replay marks its delivery's hour): a deadlock that
// failed one of the two (seen by test/sql/totals-model.test.ts).
test.serial("a roll-up counts a webhook's old day while an admin's replay of the webhook is open", async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const day = utcDay(-5);
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, $3, $3)`, [webhook.id, company.id, new Date(day.getTime() + 3_600_000)]);
  const { rows: [today] } = await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, last_error)
     values ($1, $2, 'contact.created', 1, '{}', 'failed', 1, now(), 'HTTP 500') returning id`, [webhook.id, company.id]);
  const admin = await db().pool.connect();
  const rollUp = await db().pool.connect();
  t.teardown(async () => { await admin.query('rollback'); admin.release(true); rollUp.release(true); });
  await admin.query('begin');
  await admin.query('select webhooks.replay_delivery($1)', [today.id]);
  await rollUp.query(`set lock_timeout = '3s'`);
  await rollUp.query('call webhooks.roll_up_report_counts()');
  const { rows } = await rollUp.query(
    'select fired::int from webhooks.delivery_day_counts where webhook_id = $1 and day = $2::date',
    [webhook.id, day.toISOString().slice(0, 10)]);
  t.deepEqual(rows, [{ fired: 1 }]);
});
