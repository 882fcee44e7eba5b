// An ordered webhook's delivery held back behind an earlier one of its contact is put
// off by the claim that finds it so (webhooks_private.put_off_held_back), and the
// settle that ends the earlier one lets it go at the time it had. Being put off
// changes nothing else: a coalescing webhook's delivery past its window takes in no
// later change for having been put off.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);
// a claim of the test's own webhook (the tests of this file share a database and run
// at once: a claim of every webhook would lease the other test's deliveries)
const claim = (pool: { query: (text: string, values: unknown[]) => Promise<{ rows: any[] }> }, webhookId: string) =>
  pool.query(`select delivery_id from webhooks_relay.claim_deliveries('relay-a', 10, interval '1 minute', 10,
                '{}'::bigint[], '{}'::integer[], array[$1::bigint])`, [webhookId]);

test('held back, put off until the delivery in its way ends, then due at the time it had; past its window it merges nothing', async (t) => {
  const pool = db().pool;
  const f = factories(pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'] });
  await pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', true)`, [hook.id]);
  const contact = await f.contact(company.id, { city: 'u0' });
  const queued = async () => (await pool.query(
    `select q.delivery_id as id, q.locked_by is not null as in_flight, q.held_due is not null as put_off,
            q.next_attempt_at <= now() as due, h.payload #>> '{data,contact,city}' as city
     from webhooks.delivery_queue q join webhooks.delivery_history h on h.id = q.delivery_id
     where q.webhook_id = $1 order by q.delivery_id`, [hook.id])).rows;
  // a delivery whose coalescing window is over (as if an hour had passed)
  const windowOver = (id: string) =>
    pool.query(`update webhooks.delivery_queue set next_attempt_at = now() - interval '1 minute' where delivery_id = $1`, [id]);

  await pool.query(`update crm.contacts set city = 'u1' where id = $1`, [contact.id]);
  const [first] = await queued();
  await windowOver(first.id);
  t.deepEqual((await claim(pool, hook.id)).rows.map((r) => r.delivery_id), [first.id]);

  await pool.query(`update crm.contacts set city = 'u2' where id = $1`, [contact.id]);
  const second = (await queued())[1];
  await windowOver(second.id);
  t.deepEqual((await claim(pool, hook.id)).rows, [], 'u2 is held back by u1 in flight');
  t.like((await queued())[1], { id: second.id, put_off: true, due: false });
  const { rows: [lease] } = await pool.query(
    `select (select locked_until from webhooks.delivery_queue where delivery_id = $1) as lease_ends,
            (select next_attempt_at from webhooks.delivery_queue where delivery_id = $2) as put_off_until`, [first.id, second.id]);
  t.deepEqual(lease.put_off_until, lease.lease_ends, 'put off until the lease of the one in its way ends');
  const heldBack = async () => (await pool.query(
    `select payload #>> '{data,contact,city}' as city, state, held_back
     from webhooks.deliveries where webhook_id = $1 order by id`, [hook.id])).rows;

  // its window is over: a later change is a delivery of its own, as if it had not been put off
  await pool.query(`update crm.contacts set city = 'u3' where id = $1`, [contact.id]);
  t.deepEqual((await queued()).map((d) => d.city), ['u1', 'u2', 'u3']);
  // what webhooks.deliveries says of each: u2 put off, u3 not yet seen by a claim
  t.deepEqual(await heldBack(), [
    { city: 'u1', state: 'in_flight', held_back: false },
    { city: 'u2', state: 'pending', held_back: true },
    { city: 'u3', state: 'pending', held_back: true },
  ]);

  await pool.query(
    `select * from webhooks_relay.settle_deliveries('relay-a', $1::bigint[], '{1}', $2::timestamptz[], '{5}', '{200}', '{null}', '{ok}', '{null}')`,
    [[first.id], [new Date()]]);
  t.like((await queued())[0], { id: second.id, put_off: false, due: true }, 'u1 ended: u2 goes at the time it had');
  t.like((await queued())[1], { city: 'u3', put_off: false, due: false }, 'u3 waits out its window');
  t.deepEqual(await heldBack(), [
    { city: 'u1', state: 'succeeded', held_back: false },
    { city: 'u2', state: 'pending', held_back: false },
    { city: 'u3', state: 'pending', held_back: true },
  ], 'u3 waits behind u2 now');
  t.deepEqual((await claim(pool, hook.id)).rows.map((r) => r.delivery_id), [second.id]);
});

test('a webhook no longer ordered: its deliveries put off are due at the time they had', async (t) => {
  const pool = db().pool;
  const f = factories(pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'] });
  await pool.query(`select webhooks.set_webhook_delivery($1, null, true)`, [hook.id]);
  const contact = await f.contact(company.id, { city: 'u0' });
  await pool.query(`update crm.contacts set city = 'u1' where id = $1`, [contact.id]);
  t.is((await claim(pool, hook.id)).rows.length, 1);
  await pool.query(`update crm.contacts set city = 'u2' where id = $1`, [contact.id]);
  t.deepEqual((await claim(pool, hook.id)).rows, [], 'u2 is held back by u1 in flight');
  const state = async () => (await pool.query(
    `select held_due is not null as put_off, next_attempt_at <= now() as due
     from webhooks.delivery_queue where webhook_id = $1 and locked_by is null`, [hook.id])).rows;
  t.deepEqual(await state(), [{ put_off: true, due: false }]);

  await pool.query(`select webhooks.set_webhook_delivery($1, null, false)`, [hook.id]);
  t.deepEqual(await state(), [{ put_off: false, due: true }]);
  t.deepEqual((await pool.query(`select state, held_back from webhooks.deliveries where webhook_id = $1 order by id`, [hook.id])).rows,
    [{ state: 'in_flight', held_back: false }, { state: 'pending', held_back: false }], 'nothing holds it back now');
  t.is((await claim(pool, hook.id)).rows.length, 1, 'u2 goes beside u1, as any webhook\'s would');
});

// A delivery in the way may leave the queue otherwise than by a settle: a cancelled
// backfill fails its snapshots waiting for a retry, a DBA fails or deletes a stuck
// delivery through webhooks.deliveries. The contact's next delivery, put off until
// that retry (hours away, late in the schedule), is nothing's to wait for any more.
async function putOffBehindSnapshot(t: import('ava').ExecutionContext) {
  const pool = db().pool;
  const f = factories(pool);
  const company = await f.company();
  const contact = await f.contact(company.id, { city: 'u0' });
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'] });
  await pool.query(`select webhooks.set_webhook_delivery($1, null, true)`, [hook.id]);
  await f.contact(company.id, { city: 'not yet' });
  const { rows: [{ id: backfill }] } = await pool.query('select webhooks.backfill($1) as id', [hook.id]);
  // a batch of one: the backfill is still running after it (a batch that comes back short ends it)
  const stepper = await pool.connect();
  t.teardown(() => stepper.release(true));
  await stepper.query(`set webhooks.backfill_batch = '1'`);
  await stepper.query('select webhooks_relay.backfill_step(p_only => $1)', [backfill]);
  // (past its defer)
  await pool.query(`update webhooks.delivery_queue set next_attempt_at = now() - interval '1 second' where webhook_id = $1`, [hook.id]);
  const { rows: [snapshot] } = await claim(pool, hook.id);
  t.truthy(snapshot);
  // the receiver refuses the snapshot and asks for an hour
  await pool.query(
    `select * from webhooks_relay.settle_deliveries('relay-a', $1::bigint[], '{1}', $2::timestamptz[], '{5}', '{503}', '{null}', '{busy}', '{3600}')`,
    [[snapshot.delivery_id], [new Date()]]);
  await pool.query(`update crm.contacts set city = 'u1' where id = $1`, [contact.id]);
  t.deepEqual((await claim(pool, hook.id)).rows, [], 'u1 is held back by the snapshot waiting for its retry');
  const live = async () => (await pool.query(
    `select q.held_due is not null as put_off, q.next_attempt_at <= now() as due, d.held_back
     from webhooks.delivery_queue q join webhooks.deliveries d on d.id = q.delivery_id
     where q.webhook_id = $1 and q.action = 'contact.updated'`, [hook.id])).rows;
  t.deepEqual(await live(), [{ put_off: true, due: false, held_back: true }]);
  return { pool, hook, backfill, snapshot: snapshot.delivery_id as string, live };
}

test('a backfill cancelled while its snapshot waits for a retry: the live change put off behind it goes at once', async (t) => {
  const { pool, hook, backfill, live } = await putOffBehindSnapshot(t);
  await pool.query('select webhooks.cancel_backfill($1)', [backfill]);
  t.deepEqual(await live(), [{ put_off: false, due: true, held_back: false }], 'nothing holds it back now');
  t.is((await claim(pool, hook.id)).rows.length, 1);
});

test('a delivery in the way failed or deleted through webhooks.deliveries: the next of its contact goes at once', async (t) => {
  for (const repair of [
    `update webhooks.deliveries set state = 'failed', completed_at = now(), last_error = 'given up' where id = $1`,
    `delete from webhooks.deliveries where id = $1`,
  ]) {
    const { pool, hook, snapshot, live } = await putOffBehindSnapshot(t);
    await pool.query(repair, [snapshot]);
    t.deepEqual(await live(), [{ put_off: false, due: true, held_back: false }], repair);
    t.is((await claim(pool, hook.id)).rows.length, 1);
  }
});

// A test send is no contact's change (contact 0, the sample contact): an admin who
// fixes a receiver that failed a first test and sends another must see it go, not
// wait behind the first one's retry.
test('test sends are no contact\'s: one waiting for its retry, or in flight, holds back no later test send', async (t) => {
  const pool = db().pool;
  const f = factories(pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'] });
  await pool.query(`select webhooks.set_webhook_delivery($1, null, true)`, [hook.id]);
  const client = await pool.connect();
  t.teardown(() => client.release(true));
  await client.query(`select set_config('jwt.claims.company_id', $1, false)`, [company.id]);
  const testSend = async () => (await client.query('select id from webhooks.send_test_webhook($1)', [hook.id])).rows[0].id as string;

  const first = await testSend();
  t.deepEqual((await claim(pool, hook.id)).rows.map((r) => r.delivery_id), [first]);
  // the receiver is not ready yet, and asks for an hour
  await pool.query(
    `select * from webhooks_relay.settle_deliveries('relay-a', $1::bigint[], '{1}', $2::timestamptz[], '{5}', '{503}', '{null}', '{busy}', '{3600}')`,
    [[first], [new Date()]]);
  const second = await testSend();
  t.deepEqual((await claim(pool, hook.id)).rows.map((r) => r.delivery_id), [second], 'the second test goes at once');
  const third = await testSend();
  t.deepEqual((await claim(pool, hook.id)).rows.map((r) => r.delivery_id), [third], 'beside the second, in flight');
  t.deepEqual((await pool.query(`select id, state, held_back from webhooks.deliveries where webhook_id = $1 order by id`, [hook.id])).rows, [
    { id: first, state: 'pending', held_back: false },
    { id: second, state: 'in_flight', held_back: false },
    { id: third, state: 'in_flight', held_back: false },
  ]);
});

// A disabled webhook's deliveries are failed unsent by the claims that find them due
// (30_delivery.sql, claim step 4). Until 2026-12-07 one of an ordered webhook failed so
// left the next of its contact put off behind it: pending, though the webhook was
// disabled, until the time the claim had put it off to (a lease later, a minute), as
// a relay's 410 left a contact's later changes.
test('an ordered webhook disabled: the claim that fails a delivery unsent lets the next of its contact go at once', async (t) => {
  const pool = db().pool;
  const f = factories(pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'] });
  await pool.query(`select webhooks.set_webhook_delivery($1, null, true)`, [hook.id]);
  const contact = await f.contact(company.id, { city: 'v0' });
  const change = (i: number) => pool.query(`update crm.contacts set city = $2 where id = $1`, [contact.id, `v${i}`]);
  const queued = async () => (await pool.query(
    `select q.delivery_id as id, q.locked_by is not null as in_flight, q.held_due is not null as put_off,
            q.next_attempt_at <= now() as due
     from webhooks.delivery_queue q where q.webhook_id = $1 order by q.delivery_id`, [hook.id])).rows;
  // v2 and v3 written once v1 is in flight: the claim puts them off until v1's lease
  // ends (a minute). Written before v1's claim, that claim put them off behind v1
  // pending, for held_back_recheck() (a second) alone, and a loaded run that took
  // longer than that to come to the claim below found v3 due again there, failed
  // unsent with v2 by the same claim.
  await change(1);
  const [v1] = await queued();
  t.deepEqual((await claim(pool, hook.id)).rows.map((r) => r.delivery_id), [v1.id]);
  await change(2);
  await change(3);
  const [, v2, v3] = await queued();
  t.deepEqual((await claim(pool, hook.id)).rows, []);
  t.like((await queued())[1], { id: v2.id, put_off: true, due: false });
  t.like((await queued())[2], { id: v3.id, put_off: true, due: false });

  // v1 on its way ends as the webhook is disabled (a 410). Disabling gives v2 and v3
  // their time back (below, "disabled while a delivery is put off")
  await pool.query(`update webhooks.webhooks set enabled = false where id = $1`, [hook.id]);
  t.like((await queued())[1], { id: v2.id, put_off: false, due: true });
  t.like((await queued())[2], { id: v3.id, put_off: false, due: true });
  // v3 put off all the same (as a claim that read the webhook enabled would have put
  // it off, had the disable not waited for its lane): the claim's failing of v2 must
  // still let it go
  await pool.query(`update webhooks.delivery_queue set held_due = next_attempt_at, next_attempt_at = now() + interval '1 minute'
                    where delivery_id = $1`, [v3.id]);
  await pool.query(`update webhooks.delivery_queue set locked_by = null, locked_until = null where delivery_id = $1`, [v1.id]);
  await pool.query(`delete from webhooks.deliveries where id = $1`, [v1.id]);
  t.like((await queued())[0], { id: v2.id, put_off: false, due: true });
  t.like((await queued())[1], { id: v3.id, put_off: true, due: false });

  // the claim fails v2 unsent, and v3 is due now, to be failed by the next
  t.deepEqual((await claim(pool, hook.id)).rows, []);
  t.deepEqual(await queued(), [{ id: v3.id, in_flight: false, put_off: false, due: true }]);
  t.deepEqual((await claim(pool, hook.id)).rows, []);
  t.deepEqual(await queued(), []);
  const { rows } = await pool.query(`select state, last_error from webhooks.deliveries where webhook_id = $1 order by id`, [hook.id]);
  t.deepEqual(rows, [
    { state: 'failed', last_error: 'not sent: the webhook is disabled' },
    { state: 'failed', last_error: 'not sent: the webhook is disabled' },
  ]);
});

// A delivery put off behind its contact's delivery in flight waits for that one's
// lease to end, or for its settle to end it. A settle that sends it back for a retry
// leaves the next put off, and a webhook disabled meanwhile (the relay's
// auto-disable, its receiver failing) holds its contact's snapshot and asks nothing of
// order: the live change, to be failed unsent, waited out the whole lease (a minute
// by default) before a claim saw it (test/relay/ordered-combinations.test.ts, on a
// loaded machine). Disabling gives the webhook's deliveries put off their time back,
// as turning ordered off does.
test('an ordered webhook disabled while a delivery is put off behind its contact\'s in flight: the next claim fails it unsent, not one a lease later', async (t) => {
  const pool = db().pool;
  const f = factories(pool);
  const company = await f.company();
  const contact = await f.contact(company.id, { city: 'u0' });
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'] });
  await pool.query(`select webhooks.set_webhook_delivery($1, null, true)`, [hook.id]);
  const { rows: [{ id: backfill }] } = await pool.query('select webhooks.backfill($1) as id', [hook.id]);
  await pool.query('select webhooks_relay.backfill_step(p_only => $1)', [backfill]);
  await pool.query(`update webhooks.delivery_queue set next_attempt_at = now() - interval '1 second' where webhook_id = $1`, [hook.id]);
  const { rows: [snapshot] } = await claim(pool, hook.id);
  t.truthy(snapshot);
  await pool.query(`update crm.contacts set city = 'u1' where id = $1`, [contact.id]);
  t.deepEqual((await claim(pool, hook.id)).rows, [], 'u1 is held back by the snapshot in flight');
  const live = async () => (await pool.query(
    `select q.held_due is not null as put_off, q.next_attempt_at <= now() as due
     from webhooks.delivery_queue q where q.webhook_id = $1 and q.action = 'contact.updated'`, [hook.id])).rows;
  t.deepEqual(await live(), [{ put_off: true, due: false }], 'put off until the snapshot\'s lease ends');
  // the receiver refuses the snapshot: back for a retry, which ends nothing
  await pool.query(
    `select * from webhooks_relay.settle_deliveries('relay-a', $1::bigint[], '{1}', $2::timestamptz[], '{5}', '{503}', '{null}', '{busy}', '{null}')`,
    [[snapshot.delivery_id], [new Date()]]);
  t.deepEqual(await live(), [{ put_off: true, due: false }]);

  await pool.query('update webhooks.webhooks set enabled = false where id = $1', [hook.id]);
  t.deepEqual(await live(), [{ put_off: false, due: true }], 'nothing is ordered for a disabled webhook');
  // (the snapshot's retry due now)
  await pool.query(`update webhooks.delivery_queue set next_attempt_at = now() - interval '1 second' where delivery_id = $1`, [snapshot.delivery_id]);
  t.deepEqual((await claim(pool, hook.id)).rows, []);
  const { rows } = await pool.query(
    `select action, state, next_attempt_at, last_error from webhooks.deliveries where webhook_id = $1 order by id`, [hook.id]);
  t.like(rows[0], { action: 'contact.snapshot', state: 'pending', next_attempt_at: Infinity }, 'the snapshot is held');
  t.like(rows[1], { action: 'contact.updated', state: 'failed', last_error: 'not sent: the webhook is disabled' });
});
