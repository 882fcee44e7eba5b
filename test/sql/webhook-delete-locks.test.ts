// A webhook's delete beside the engine's other writers of its deliveries: the delete
// takes its in-flight queue rows before anything else of theirs, and never holds one
// while it waits for another (webhooks_private.lock_webhooks_in_flight, 22_outbox.sql).
// A settle writes its batch's rows in its own order (successes, then failures, then
// retries), the delete's statements in the order of the lease index: with one row
// each, the two deadlocked, and Postgres ended one of them after deadlock_timeout
// (the API's TRY_AGAIN for a plain delete, or a settle written again).
import test from 'ava';
import { ownConnection, useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { until } from '../helpers/until.ts';
import { utcDay } from '../helpers/days.ts';

const db = useTestDatabase(test);
const make = () => factories(db().pool);
const connected = (t: { teardown: (fn: () => Promise<void>) => void }) => ownConnection(db().url, t);

const claim = (webhookId: string) => db().pool.query<{ delivery_id: string; contact_id: string }>(
  `select c.delivery_id, q.contact_id
   from webhooks_relay.claim_deliveries('relay-a', 10, interval '1 minute', 10,
          '{}'::bigint[], '{}'::integer[], array[$1::bigint]) c
   join webhooks.delivery_queue q on q.delivery_id = c.delivery_id
   order by q.contact_id`, [webhookId]);

/** Whether the backend `pid` of this database waits for a lock. */
async function waitsForLock(pid: number): Promise<boolean> {
  const { rowCount } = await db().pool.query(
    `select 1 from pg_stat_activity
     where datname = current_database() and pid = $1 and wait_event_type = 'Lock'`, [pid]);
  return rowCount! > 0;
}

const pidOf = async (client: { query: (sql: string) => Promise<{ rows: Array<{ pid: number }> }> }) =>
  (await client.query('select pg_backend_pid() as pid')).rows[0].pid;

/** A webhook with two deliveries in flight, the first and second in the lease index's order. */
async function twoInFlight() {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await f.contact(company.id);
  await f.contact(company.id);
  const [first, second] = (await claim(hook.id)).rows.map((row) => row.delivery_id);
  return { hook, first, second };
}

test.serial('a delete while a settle writes the webhook\'s deliveries: both go through, no deadlock', async (t) => {
  const { hook, first, second } = await twoInFlight();
  const [holder, settler, deleter] = [await connected(t), await connected(t), await connected(t)];
  const [settlerPid, deleterPid] = [await pidOf(settler), await pidOf(deleter)];
  // (the delete's deadlock check before the settle's lock_timeout, settle_lock_wait():
  // a deadlock is found, not the settle's giving up, whichever of the two waits first)
  await deleter.query("set deadlock_timeout = '100ms'");
  // the settle stopped before its first row (the second in the index, a success),
  // the delete let in behind it: the delete takes the first row, then waits too
  await holder.query('begin');
  await holder.query('select 1 from webhooks.delivery_queue where delivery_id = $1 for no key update', [second]);
  const settling = settler.query(
    `select delivery_id, state from webhooks_relay.settle_deliveries('relay-a', array[$1::bigint, $2::bigint],
       '{1,1}', array[now(), now()], '{5,5}', '{200,500}', '{null,null}', '{null,null}', '{null,null}')
     order by delivery_id`, [second, first]);
  await until('the settle waits for the held row', () => waitsForLock(settlerPid));
  const deleting = deleter.query('select (webhooks.delete_webhook($1)).id', [hook.id]);
  await until('the delete waits', () => waitsForLock(deleterPid));
  await holder.query('commit');
  const [settled, deleted] = await Promise.allSettled([settling, deleting]);
  t.deepEqual(settled.status === 'fulfilled' ? settled.value.rows : settled.reason.code,
    [{ delivery_id: first, state: 'pending' }, { delivery_id: second, state: 'succeeded' }].sort((a, b) =>
      Number(a.delivery_id) - Number(b.delivery_id)));
  t.deepEqual(deleted.status === 'fulfilled' ? deleted.value.rows : deleted.reason.code, [{ id: hook.id }]);
  const { rows } = await db().pool.query('select count(*)::int as n from webhooks.delivery_queue where webhook_id = $1', [hook.id]);
  t.deepEqual(rows, [{ n: 0 }]);
});

test.serial('a delete while the roll-up counts the webhook\'s old day: both go through, no deadlock', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const at = new Date(utcDay(-5).getTime() + 3_600_000);
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, $3, $3)`, [hook.id, company.id, at]);
  // an hour's count of that day, which the roll-up's visit removes before it counts the day
  await db().pool.query(
    `insert into webhooks.delivery_hour_counts (webhook_id, company_id, hour, fired, succeeded, failed, stale)
     values ($1, $2, $3, 1, 1, 0, false)`, [hook.id, company.id, at]);
  const [writer, rollUp, deleter] = [await connected(t), await connected(t), await connected(t)];
  const [rollUpPid, deleterPid] = [await pidOf(rollUp), await pidOf(deleter)];
  await deleter.query("set deadlock_timeout = '100ms'");
  // a writer of the webhook's old deliveries holds its day counts' lock: the roll-up's
  // visit waits there, its hour rows written
  await writer.query('begin');
  await writer.query('select pg_advisory_xact_lock_shared(webhooks_private.day_counts_lock($1))', [hook.id]);
  const rolling = rollUp.query('call webhooks.roll_up_report_counts()');
  await until('the roll-up waits for the writer', () => waitsForLock(rollUpPid));
  const deleting = deleter.query('select (webhooks.delete_webhook($1)).id', [hook.id]);
  await until('the delete waits', () => waitsForLock(deleterPid));
  await writer.query('commit');
  const [rolled, deleted] = await Promise.allSettled([rolling, deleting]);
  t.is(rolled.status === 'fulfilled' ? 'rolled up' : rolled.reason.code, 'rolled up');
  t.deepEqual(deleted.status === 'fulfilled' ? deleted.value.rows : deleted.reason.code, [{ id: hook.id }]);
  const { rows } = await db().pool.query(
    `select (select count(*) from webhooks.delivery_day_counts where webhook_id = $1)::int as days,
            (select count(*) from webhooks.delivery_hour_counts where webhook_id = $1)::int as hours`, [hook.id]);
  t.deepEqual(rows, [{ days: 0, hours: 0 }]);
});

test.serial('a delete waiting for a delivery in flight that another session holds ends at its own lock_timeout, not waiting on', async (t) => {
  const { hook, second } = await twoInFlight();
  const [holder, deleter] = [await connected(t), await connected(t)];
  await holder.query('begin');
  await holder.query('select 1 from webhooks.delivery_queue where delivery_id = $1 for no key update', [second]);
  await deleter.query("set lock_timeout = '100ms'");
  const error = await t.throwsAsync(deleter.query('select webhooks.delete_webhook($1)', [hook.id]));
  t.is((error as { code?: string }).code, '55P03');
  await holder.query('rollback');
  const { rows } = await db().pool.query(
    `select (select count(*) from webhooks.webhooks where id = $1)::int as webhooks,
            (select count(*) from webhooks.delivery_queue where webhook_id = $1)::int as queued`, [hook.id]);
  t.deepEqual(rows, [{ webhooks: 1, queued: 2 }]);
});

test.serial('a delete while a contact\'s id change moves the webhook\'s deliveries: both go through, no deadlock', async (t) => {
  const f = make();
  const company = await f.company();
  const actions = ['contact.created', 'contact.updated'];
  // ordered: the claim takes one delivery of each contact, the next stays pending
  const hook = await f.webhook({ companyId: company.id, actions });
  await db().pool.query('select webhooks.set_webhook_delivery($1, null, true)', [hook.id]);
  await f.webhook({ companyId: company.id, actions });
  const [first, renumbered] = [await f.contact(company.id), await f.contact(company.id)];
  for (const contact of [first, renumbered]) {
    await db().pool.query("update crm.contacts set city = 'Denver' where id = $1", [contact.id]);
  }
  t.is((await claim(hook.id)).rows.length, 2);
  const rowsOf = async (contactId: string) => (await db().pool.query<{ delivery_id: string; pending: boolean }>(
    `select delivery_id, locked_by is null as pending from webhooks.delivery_queue
     where webhook_id = $1 and contact_id = $2 order by ctid`, [hook.id, contactId])).rows;
  const [firstPending] = (await rowsOf(first.id)).filter((row) => row.pending);
  // (the id change's update reaches the pending row before the one in flight)
  t.deepEqual((await rowsOf(renumbered.id)).map((row) => row.pending), [true, false]);
  const [holder, deleter, mover] = [await connected(t), await connected(t), await connected(t)];
  const [deleterPid, moverPid] = [await pidOf(deleter), await pidOf(mover)];
  await deleter.query("set deadlock_timeout = '100ms'");
  await mover.query("set deadlock_timeout = '100ms'");
  // the delete, its deliveries in flight locked, waits for the first contact's pending row
  await holder.query('begin');
  await holder.query('select 1 from webhooks.delivery_queue where delivery_id = $1 for update', [firstPending.delivery_id]);
  const deleting = deleter.query('select (webhooks.delete_webhook($1)).id', [hook.id]);
  await until('the delete waits', () => waitsForLock(deleterPid));
  const next = (await db().pool.query(
    "select nextval(pg_get_serial_sequence('crm.contacts', 'id')) + 1000000 as id")).rows[0].id as string;
  const moving = mover.query('update crm.contacts set id = $2 where id = $1', [renumbered.id, next]);
  await until('the id change waits', () => waitsForLock(moverPid));
  await holder.query('commit');
  const [moved, deleted] = await Promise.allSettled([moving, deleting]);
  t.is(moved.status === 'fulfilled' ? moved.value.rowCount : moved.reason.code, 1);
  t.deepEqual(deleted.status === 'fulfilled' ? deleted.value.rows : deleted.reason.code, [{ id: hook.id }]);
  const { rows } = await db().pool.query(
    `select (select count(*) from webhooks.delivery_queue where webhook_id = $1)::int as queued,
            (select count(*) from webhooks.delivery_queue where contact_id = $2)::int as left_behind`, [hook.id, renumbered.id]);
  t.deepEqual(rows, [{ queued: 0, left_behind: 0 }]);
});

// A webhook deleted while a backfill step works on its backfill (webhooks_relay
// backfill_step_waiting, sql/35_backfill.sql): the step holds the backfill's row (FOR
// UPDATE) and writes snapshots, which hold no key to the webhook; the delete holds the
// webhook's row, then its queue rows, then reaches the backfill by its key (ON DELETE
// CASCADE). Each write of the backfill's row after the step's first checked that key,
// a key-share lock of the webhook's row: the step waited for the delete, the delete
// for the step, and Postgres ended one (40P01). Now the step takes the webhook's row
// first, or passes a webhook being deleted by, and never waits for the delete.

/** A webhook of two contacts whose backfill has started; its id. */
async function backfilling() {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await f.contact(company.id);
  await f.contact(company.id);
  const { rows: [{ id }] } = await db().pool.query('select webhooks.backfill($1) as id', [hook.id]);
  return { hook, backfillId: id as string };
}

const step = (client: Awaited<ReturnType<typeof connected>>, backfillId: string) =>
  client.query<{ written: number }>('select written from webhooks_relay.backfill_step_waiting(p_only => $1::bigint)', [backfillId]);

const leftOf = async (hookId: string, backfillId: string) => (await db().pool.query(
  `select (select count(*) from webhooks.webhooks where id = $1)::int as webhooks,
          (select count(*) from webhooks.backfills where id = $2)::int as backfills,
          (select count(*) from webhooks.delivery_queue where webhook_id = $1)::int as queued,
          (select count(*) from webhooks_private.webhooks_deleted_recently where webhook_id = $1)::int as noted`,
  [hookId, backfillId])).rows[0];

test.serial('a delete while a backfill step writes the webhook\'s snapshots: the delete waits for the step, both go through, no deadlock', async (t) => {
  const { hook, backfillId } = await backfilling();
  const KEY = 7_700_771;
  const [gate, stepper, deleter] = [await connected(t), await connected(t), await connected(t)];
  const [stepperPid, deleterPid] = [await pidOf(stepper), await pidOf(deleter)];
  for (const client of [stepper, deleter]) await client.query("set deadlock_timeout = '100ms'");
  // the step stopped at its first snapshot's write, the backfill's row locked
  await gate.query('select pg_advisory_lock($1)', [KEY]);
  await db().pool.query(`
    create function public.snapshot_gate() returns trigger language plpgsql as $$
    begin
      perform pg_advisory_lock_shared(${KEY});
      perform pg_advisory_unlock_shared(${KEY});
      return new;
    end $$;
    create trigger snapshot_gate before insert on webhooks.delivery_history for each row
      when (new.action = 'contact.snapshot' and new.webhook_id = ${Number(hook.id)}) execute function public.snapshot_gate()`);
  t.teardown(() => db().pool.query('drop trigger snapshot_gate on webhooks.delivery_history; drop function public.snapshot_gate()'));
  const stepping = step(stepper, backfillId);
  await until('the step waits at its first snapshot', () => waitsForLock(stepperPid));
  const deleting = deleter.query('select (webhooks.delete_webhook($1)).id', [hook.id]);
  await until('the delete waits', () => waitsForLock(deleterPid));
  const { rows: [{ blockers }] } = await db().pool.query('select pg_blocking_pids($1) as blockers', [deleterPid]);
  t.deepEqual(blockers, [stepperPid], 'the delete waits for the step');
  await gate.query('select pg_advisory_unlock($1)', [KEY]);
  const [stepped, deleted] = await Promise.allSettled([stepping, deleting]);
  t.deepEqual(stepped.status === 'fulfilled' ? stepped.value.rows : stepped.reason.code, [{ written: 2 }]);
  t.deepEqual(deleted.status === 'fulfilled' ? deleted.value.rows : deleted.reason.code, [{ id: hook.id }]);
  // (the delete waited at the webhook's row, before its queue rows: the snapshots
  // committed by then went with them)
  t.deepEqual(await leftOf(hook.id, backfillId), { webhooks: 0, backfills: 0, queued: 0, noted: 1 });
});

test.serial('a step while a DBA\'s delete of the webhook waits for a delivery in flight: the step passes the backfill by at once, and it goes with the webhook', async (t) => {
  const { hook, backfillId } = await backfilling();
  const [{ delivery_id: inFlight }] = (await claim(hook.id)).rows;
  const [holder, stepper, deleter] = [await connected(t), await connected(t), await connected(t)];
  const [stepperPid, deleterPid] = [await pidOf(stepper), await pidOf(deleter)];
  for (const client of [stepper, deleter]) await client.query("set deadlock_timeout = '100ms'");
  // the delete holds the webhook's row and waits for the delivery in flight a settle holds
  await holder.query('begin');
  await holder.query('select 1 from webhooks.delivery_queue where delivery_id = $1 for no key update', [inFlight]);
  const deleting = deleter.query('delete from webhooks.webhooks where id = $1 returning id', [hook.id]);
  await until('the delete waits', () => waitsForLock(deleterPid));
  let ended = false;
  const stepping = step(stepper, backfillId);
  stepping.then(() => { ended = true; }, () => { ended = true; });
  await until('the step ends or waits', async () => ended || waitsForLock(stepperPid));
  const waited = !ended;
  await holder.query('commit');
  t.false(waited, 'the step never waits for the delete');
  const [stepped, deleted] = await Promise.allSettled([stepping, deleting]);
  t.deepEqual(stepped.status === 'fulfilled' ? stepped.value.rows : stepped.reason.code, [{ written: 0 }]);
  t.deepEqual(deleted.status === 'fulfilled' ? deleted.value.rows : deleted.reason.code, [{ id: hook.id }]);
  t.deepEqual(await leftOf(hook.id, backfillId), { webhooks: 0, backfills: 0, queued: 0, noted: 1 });
});
