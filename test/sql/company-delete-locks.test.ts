// A company's delete beside the engine's other writers of its webhooks: the CRM's key
// cascades the delete to the company's webhooks (ON DELETE CASCADE), in the order
// that statement's plan reads them, while the roll-up takes its batch's webhooks in the
// order of their ids (50_report_counts.sql). The company's webhooks are taken in that
// order too, before the cascade (webhooks_private.tg_companies__lock_webhooks,
// 22_outbox.sql).
import test from 'ava';
import { ownConnection, useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { until } from '../helpers/until.ts';
import { utcDay } from '../helpers/days.ts';

const db = useTestDatabase(test);
const make = () => factories(db().pool);
const connected = (t: { teardown: (fn: () => Promise<void>) => void }) => ownConnection(db().url, t);

/** Whether the backend `pid` of this database waits for a lock. */
async function waitsForLock(pid: number): Promise<boolean> {
  const { rowCount } = await db().pool.query(
    `select 1 from pg_stat_activity
     where datname = current_database() and pid = $1 and wait_event_type = 'Lock'`, [pid]);
  return rowCount! > 0;
}

const pidOf = async (client: { query: (sql: string) => Promise<{ rows: Array<{ pid: number }> }> }) =>
  (await client.query('select pg_backend_pid() as pid')).rows[0].pid;

/** A delivery of an old day and its hour's count: a day the roll-up counts. */
async function oldDay(hookId: string, companyId: string) {
  const at = new Date(utcDay(-5).getTime() + 3_600_000);
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, $3, $3)`, [hookId, companyId, at]);
  await db().pool.query(
    `insert into webhooks.delivery_hour_counts (webhook_id, company_id, hour, fired, succeeded, failed, stale)
     values ($1, $2, $3, 1, 1, 0, false)`, [hookId, companyId, at]);
}

test.serial('a company\'s delete while the roll-up counts its webhooks: both go through, no deadlock', async (t) => {
  const f = make();
  // a webhook of another company, the roll-up's first batch
  const elsewhere = await f.company();
  const first = await f.webhook({ companyId: elsewhere.id, actions: ['contact.created'] });
  await oldDay(first.id, elsewhere.id);
  const company = await f.company();
  const [lower, higher] = [
    await f.webhook({ companyId: company.id, actions: ['contact.created'] }),
    await f.webhook({ companyId: company.id, actions: ['contact.created'] }),
  ];
  for (const hook of [lower, higher]) await oldDay(hook.id, company.id);
  // made in two transactions open at once, the later one's insert first: the higher
  // id was made at the earlier time, and the cascade's delete, which reads the
  // company's webhooks oldest first (webhooks_company_newest_idx), reaches it first
  await db().pool.query("update webhooks.webhooks set created_at = created_at - interval '1 minute' where id = $1", [higher.id]);
  await f.contact(company.id);
  const { rows: inFlight } = await db().pool.query<{ delivery_id: string }>(
    `select delivery_id from webhooks_relay.claim_deliveries('relay-a', 10, interval '1 minute', 10,
       '{}'::bigint[], '{}'::integer[], array[$1::bigint, $2::bigint])`, [lower.id, higher.id]);
  t.is(inFlight.length, 2);
  const [holder, deleter, rollUp] = [await connected(t), await connected(t), await connected(t)];
  const [deleterPid, rollUpPid] = [await pidOf(deleter), await pidOf(rollUp)];
  await deleter.query("set deadlock_timeout = '100ms'");
  await rollUp.query("set deadlock_timeout = '100ms'");
  // a roll-up under way (its batches in one transaction, as a caller of the batch
  // function may): its first batch done before the delete begins
  await rollUp.query('begin');
  const { rows: [batch] } = await rollUp.query('select last_webhook_id::text from webhooks.roll_up_report_counts_after(null, 1)');
  t.is(batch.last_webhook_id, first.id);
  // a settle holds both webhooks' deliveries in flight: the delete, its first webhook
  // taken, waits there
  await holder.query('begin');
  await holder.query('select 1 from webhooks.delivery_queue where delivery_id = any ($1::bigint[]) for no key update',
    [inFlight.map((row) => row.delivery_id)]);
  const deleting = deleter.query('delete from crm.companies where id = $1', [company.id]);
  await until('the delete waits', () => waitsForLock(deleterPid));
  const rolling = rollUp.query('select last_webhook_id::text from webhooks.roll_up_report_counts_after($1, 25)', [first.id]);
  await until('the roll-up waits', () => waitsForLock(rollUpPid));
  await holder.query('commit');
  const [deleted, rolled] = await Promise.allSettled([deleting, rolling]);
  t.is(deleted.status === 'fulfilled' ? deleted.value.rowCount : deleted.reason.code, 1);
  t.deepEqual(rolled.status === 'fulfilled' ? rolled.value.rows : rolled.reason.code, [{ last_webhook_id: higher.id }]);
  await rollUp.query('commit');
  const { rows } = await db().pool.query(
    `select (select count(*) from webhooks.webhooks where company_id = $1)::int as webhooks,
            (select count(*) from webhooks.delivery_queue where company_id = $1)::int as queued,
            (select count(*) from webhooks.delivery_day_counts where company_id = $1)::int as days`, [company.id]);
  t.deepEqual(rows, [{ webhooks: 0, queued: 0, days: 0 }]);
});

test.serial('a company\'s delete while a settle writes deliveries of two of its webhooks: both go through, no deadlock', async (t) => {
  const f = make();
  const company = await f.company();
  const lower = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  // ordered: the contact's update waits behind its create, pending
  const higher = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.updated'] });
  await db().pool.query('select webhooks.set_webhook_delivery($1, null, true)', [higher.id]);
  // (made at the earlier time: the cascade reaches it first, as in the test above)
  await db().pool.query("update webhooks.webhooks set created_at = created_at - interval '1 minute' where id = $1", [higher.id]);
  const contact = await f.contact(company.id);
  await db().pool.query("update crm.contacts set city = 'Denver' where id = $1", [contact.id]);
  const { rows: claimed } = await db().pool.query<{ delivery_id: string; webhook_id: string }>(
    `select c.delivery_id, q.webhook_id from webhooks_relay.claim_deliveries('relay-a', 10, interval '1 minute', 10,
       '{}'::bigint[], '{}'::integer[], array[$1::bigint, $2::bigint]) c
     join webhooks.delivery_queue q on q.delivery_id = c.delivery_id`, [lower.id, higher.id]);
  const sent = (hook: { id: string }) => claimed.find((row) => row.webhook_id === hook.id)!.delivery_id;
  t.is(claimed.length, 2);
  const { rows: [waiting] } = await db().pool.query<{ delivery_id: string }>(
    'select delivery_id from webhooks.delivery_queue where webhook_id = $1 and locked_by is null', [higher.id]);
  const [holder, deleter, settler] = [await connected(t), await connected(t), await connected(t)];
  const [deleterPid, settlerPid] = [await pidOf(deleter), await pidOf(settler)];
  await deleter.query("set deadlock_timeout = '100ms'");
  await settler.query("set deadlock_timeout = '100ms'");
  // the delete, the higher webhook's delivery in flight taken, waits for its pending one
  await holder.query('begin');
  await holder.query('select 1 from webhooks.delivery_queue where delivery_id = $1 for update', [waiting.delivery_id]);
  const deleting = deleter.query('delete from crm.companies where id = $1', [company.id]);
  await until('the delete waits', () => waitsForLock(deleterPid));
  // the settle writes the lower webhook's success first, then the higher's failure
  const settling = settler.query(
    `select count(*)::int as n from webhooks_relay.settle_deliveries('relay-a', array[$1::bigint, $2::bigint],
       '{1,1}', array[now(), now()], '{5,5}', '{200,500}', '{null,null}', '{null,null}', '{null,null}')`,
    [sent(lower), sent(higher)]);
  await until('the settle waits', () => waitsForLock(settlerPid));
  await holder.query('commit');
  const [deleted, settled] = await Promise.allSettled([deleting, settling]);
  t.is(deleted.status === 'fulfilled' ? deleted.value.rowCount : deleted.reason.code, 1);
  t.is(settled.status === 'fulfilled' ? 'settled' : settled.reason.code, 'settled');
  const { rows } = await db().pool.query(
    `select (select count(*) from webhooks.webhooks where company_id = $1)::int as webhooks,
            (select count(*) from webhooks.delivery_queue where company_id = $1)::int as queued`, [company.id]);
  t.deepEqual(rows, [{ webhooks: 0, queued: 0 }]);
});

test.serial('a company\'s delete while a transaction writes two contacts of the company: the delete waits for it, no deadlock', async (t) => {
  const f = make();
  const company = await f.company();
  const actions = ['contact.created', 'contact.updated'];
  const ordered = await f.webhook({ companyId: company.id, actions });
  await db().pool.query('select webhooks.set_webhook_delivery($1, null, true)', [ordered.id]);
  const coalescing = await f.webhook({ companyId: company.id, actions });
  await db().pool.query(
    "update webhooks_private.subscriptions set coalesce_window = interval '1 hour' where webhook_id = $1", [coalescing.id]);
  const [first, second] = [await f.contact(company.id), await f.contact(company.id)];
  for (const contact of [first, second]) {
    await db().pool.query("update crm.contacts set city = 'Boston' where id = $1", [contact.id]);
  }
  // the ordered webhook's creates in flight, the updates pending behind them
  const { rows: claimed } = await db().pool.query(
    `select delivery_id from webhooks_relay.claim_deliveries('relay-a', 10, interval '1 minute', 10,
       '{}'::bigint[], '{}'::integer[], array[$1::bigint])`, [ordered.id]);
  t.is(claimed.length, 2);
  const [writer, deleter] = [await connected(t), await connected(t)];
  const [writerPid, deleterPid] = [await pidOf(writer), await pidOf(deleter)];
  await writer.query("set deadlock_timeout = '100ms'");
  await deleter.query("set deadlock_timeout = '100ms'");
  await writer.query('begin');
  await writer.query("update crm.contacts set city = 'Denver' where id = $1", [first.id]);
  const deleting = deleter.query('delete from crm.companies where id = $1', [company.id]);
  await until('the delete waits', () => waitsForLock(deleterPid));
  // the same transaction writes the other contact, which the delete has not reached:
  // its capture merges into, or waits behind, deliveries of the webhooks the delete took
  const wrote = await writer.query("update crm.contacts set city = 'Austin' where id = $1", [second.id])
    .then((r) => r.rowCount, (e) => e.code);
  t.false(await waitsForLock(writerPid));
  await writer.query(wrote === 1 ? 'commit' : 'rollback');
  const deleted = await deleting.then((r) => r.rowCount, (e) => e.code);
  t.deepEqual([wrote, deleted], [1, 1]);
  const { rows } = await db().pool.query(
    `select (select count(*) from webhooks.webhooks where company_id = $1)::int as webhooks,
            (select count(*) from webhooks.delivery_queue where company_id = $1)::int as queued`, [company.id]);
  t.deepEqual(rows, [{ webhooks: 0, queued: 0 }]);
});
