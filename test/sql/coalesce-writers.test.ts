// With a coalesce window, a change's capture merges into its contact's pending
// delivery, or brings it forward (sql/25_capture.sql, enqueue). No webhook may make the
// change wait or fail: a delivery held by another transaction (a webhook's delete left
// open in a DBA's session) is passed over, and so is one a writer in REPEATABLE READ
// or SERIALIZABLE cannot lock because it changed after its snapshot (a claim leased it
// meanwhile); the change becomes a message of its own (which maintenance removes if
// the delete commits: forget-webhook.test.ts).
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { tableReads } from '../helpers/plans.ts';

const db = useTestDatabase(test);

test("a change to a contact whose coalesced delivery a webhook's open delete holds is written at once", async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated', 'contact.deleted'] });
  await db().pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', false)`, [hook.id]);
  const updated = await f.contact(company.id);
  const deleted = await f.contact(company.id);
  for (const contact of [updated, deleted]) {
    await db().pool.query(`update crm.contacts set city = 'Before' where id = $1`, [contact.id]);
  }
  const { rows: waiting } = await db().pool.query('select contact_id from webhooks.delivery_queue where webhook_id = $1', [hook.id]);
  t.is(waiting.length, 2);

  const dba = await db().pool.connect();
  t.teardown(() => dba.release());
  await dba.query('begin');
  await dba.query('delete from webhooks.webhooks where id = $1', [hook.id]);

  // each change in a session that gives up after 3 s: it would wait for the DBA
  const writer = await db().pool.connect();
  t.teardown(() => writer.release(true));
  await writer.query(`set statement_timeout = '3s'`);
  // an update would merge into the pending delivery; a delete would bring it forward
  await t.notThrowsAsync(writer.query(`update crm.contacts set city = 'During' where id = $1`, [updated.id]));
  await t.notThrowsAsync(writer.query('delete from crm.contacts where id = $1', [deleted.id]));
  await dba.query('rollback');

  // the delete undone: the pending deliveries as they were, and the two changes as
  // messages of their own
  const { rows } = await db().pool.query(
    `select contact_id, action, payload #> '{data,merged}' as merged from webhooks.deliveries
     where webhook_id = $1 order by id`, [hook.id]);
  t.deepEqual(rows, [
    { contact_id: updated.id, action: 'contact.updated', merged: 1 },
    { contact_id: deleted.id, action: 'contact.updated', merged: 1 },
    { contact_id: updated.id, action: 'contact.updated', merged: 1 },
    { contact_id: deleted.id, action: 'contact.deleted', merged: null },
  ]);
});

for (const level of ['repeatable read', 'serializable']) {
  test(`a writer in ${level} whose contact's coalesced delivery changed after its snapshot: the change is written, as a message of its own`, async (t) => {
    const f = factories(db().pool);
    const company = await f.company();
    const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'] });
    await db().pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', false)`, [hook.id]);
    const contact = await f.contact(company.id);
    await db().pool.query(`update crm.contacts set city = 'Before' where id = $1`, [contact.id]);

    const writer = await db().pool.connect();
    t.teardown(async () => {
      await writer.query('rollback');
      writer.release();
    });
    await writer.query(`begin isolation level ${level}`);
    await writer.query('select count(*) from crm.contacts'); // the snapshot
    // meanwhile the pending delivery changes (as a claim's lease would change it)
    await db().pool.query(
      `update webhooks.delivery_queue set next_attempt_at = next_attempt_at + interval '1 second' where webhook_id = $1`, [hook.id]);
    await t.notThrowsAsync(writer.query(`update crm.contacts set city = 'During' where id = $1`, [contact.id]));
    await writer.query('commit');

    const { rows } = await db().pool.query(
      `select payload #>> '{data,contact,city}' as city, payload #> '{data,merged}' as merged from webhooks.deliveries
       where webhook_id = $1 order by id`, [hook.id]);
    t.deepEqual(rows, [{ city: 'Before', merged: 1 }, { city: 'During', merged: 1 }]);
  });
}

/** An ordered webhook with a coalesce window of an hour, and a contact whose update waits out that window in it. */
async function orderedUpdateWaiting() {
  const pool = db().pool;
  const f = factories(pool);
  const company = await f.company();
  const status = await f.status(company.id);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated', 'contact.status_added'], fields: ['city'] });
  await pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', true)`, [hook.id]);
  const contact = await f.contact(company.id);
  await pool.query(`update crm.contacts set city = 'u1' where id = $1`, [contact.id]);
  return { pool, status, hook, contact };
}

// A status change passes over its contact's update waiting out its window when another
// writer holds that delivery (it merged a change into it, in a transaction still
// open), and the update is not brought forward. On an ordered webhook the status change
// waited behind it for the whole window, although it is never to wait: the claim that
// finds it held back behind such an update (which can take no further change) sends
// the update now.
test('ordered: a status change made while a writer that merged into its contact\'s waiting update is still open does not wait out the window', async (t) => {
  const { pool, status, hook, contact } = await orderedUpdateWaiting();

  const writer = await pool.connect();
  t.teardown(() => writer.release(true));
  await writer.query('begin');
  await writer.query(`update crm.contacts set city = 'u2' where id = $1`, [contact.id]);   // merged, its delivery held
  await pool.query('insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [contact.id, status.id]);
  await writer.query('commit');

  const claim = async () => (await pool.query(
    `select d.action from webhooks_relay.claim_deliveries('relay-a', 10, interval '1 minute', 10,
       '{}'::bigint[], '{}'::integer[], array[$1::bigint]) c join webhooks.deliveries d on d.id = c.delivery_id`, [hook.id])).rows;
  t.deepEqual(await claim(), [{ action: 'contact.updated' }], 'the update goes now, the status change behind it');
  const { rows } = await pool.query(
    `select action, state, payload #>> '{data,contact,city}' as city, payload #> '{data,merged}' as merged
     from webhooks.deliveries where webhook_id = $1 order by id`, [hook.id]);
  t.deepEqual(rows, [
    { action: 'contact.updated', state: 'in_flight', city: 'u2', merged: 2 },
    { action: 'contact.status_added', state: 'pending', city: 'u1', merged: null },
  ]);
  const { rows: [update] } = await pool.query(
    `select id from webhooks.deliveries where webhook_id = $1 and action = 'contact.updated'`, [hook.id]);
  await pool.query(
    `select * from webhooks_relay.settle_deliveries('relay-a', $1::bigint[], '{1}', $2::timestamptz[], '{5}', '{200}', '{null}', '{ok}', '{null}')`,
    [[update.id], [new Date()]]);
  t.deepEqual(await claim(), [{ action: 'contact.status_added' }], 'then the status change');
});

// The claim that sends such an update now must not wait for a transaction that holds
// it: a claim waits with its lanes held, and a session (a DBA's change of the
// webhook's window, which shortens the waits of its deliveries, left open) may stay
// open for hours. Until it ends, the update
// is passed over and the change behind it stays held back; the claim after it sends
// the update. (A writer that merged into it holds it FOR UPDATE, which the claim's
// look at the contact's first delivery already passes over.)
test('ordered: the claim passes over a waiting update that an open session holds, and sends it once the session ends', async (t) => {
  const { pool, status, hook, contact } = await orderedUpdateWaiting();

  const dba = await pool.connect();
  t.teardown(() => dba.release(true));
  await dba.query('begin');
  await dba.query(`update webhooks.webhooks set coalesce_window = '30 minutes' where id = $1`, [hook.id]);
  await pool.query('insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [contact.id, status.id]);

  const claimer = await pool.connect();
  t.teardown(() => claimer.release(true));
  // (a claim that waited for the session fails here instead of answering)
  await claimer.query(`set lock_timeout = '2s'`);
  const claim = async () => (await claimer.query(
    `select d.action from webhooks_relay.claim_deliveries('relay-a', 10, interval '1 minute', 10,
       '{}'::bigint[], '{}'::integer[], array[$1::bigint]) c join webhooks.deliveries d on d.id = c.delivery_id`, [hook.id])).rows;
  t.deepEqual(await claim(), [], 'nothing goes while the session holds the update');
  await dba.query('commit');
  // (the change behind it may have been put off for a recheck: due again now)
  await pool.query(`update webhooks.delivery_queue set next_attempt_at = now() where webhook_id = $1 and held_due is not null`, [hook.id]);
  t.deepEqual(await claim(), [{ action: 'contact.updated' }], 'the update goes once the session has ended');
});

// An ordered webhook merges a change only into its contact's latest waiting delivery:
// asked whether a later one of the contact is in the queue, the merge once walked the
// queue's key from that delivery on, every company's newer queue rows, on every
// change it merged (the queue's indexes by webhook and contact each hold one kind of
// row, waiting or in flight, and a question about both could use neither).
test("an ordered webhook's merge of a change reads its contact's queue rows, not every company's newer ones", async (t) => {
  const BACKLOG = 3_000;
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'] });
  await db().pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', true)`, [hook.id]);
  const contact = await f.contact(company.id);
  await db().pool.query(`update crm.contacts set first_name = 'First' where id = $1`, [contact.id]);
  // another company's backlog, queued after the contact's delivery
  const busy = await f.company();
  await f.webhook({ companyId: busy.id, actions: ['contact.created'] });
  await db().pool.query(
    `insert into crm.contacts (company_id, first_name) select $1, 'Contact ' || n from generate_series(1, $2::int) n`,
    [busy.id, BACKLOG]);
  await db().pool.query('analyze webhooks.delivery_queue');
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  const read = () => tableReads(client, 'webhooks.delivery_queue', { indexes: true });
  await client.query('begin');
  const before = await read();
  await client.query(`update crm.contacts set first_name = 'Second' where id = $1`, [contact.id]);
  const used = (await read()) - before;
  await client.query('commit');
  const { rows } = await db().pool.query(
    `select d.payload -> 'data' -> 'contact' ->> 'first_name' as first_name from webhooks.deliveries d where d.webhook_id = $1`, [hook.id]);
  t.deepEqual(rows.map((row) => row.first_name), ['Second'], 'merged into the one waiting');
  t.true(used < 100, `the merge read ${used} rows and index entries of the queue (${BACKLOG} of another company's)`);
});

// A merge by a writer whose transaction began before the waiting message's own: its
// change is the latest (it holds the contact row after the other committed), but its
// transaction's start, the payload's timestamp, is older than the message's first
// change. The message's timestamp never goes back: it stays the latest of its
// changes' times, so that it is never older than the message (created_at), which is
// what webhooks.find_message counts on to find it by that timestamp.
test("a merge by a transaction begun before the message's first change keeps the message's timestamp; find_message finds it by it", async (t) => {
  const pool = db().pool;
  const f = factories(pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'] });
  await pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', false)`, [hook.id]);
  const contact = await f.contact(company.id, { city: 'Before' });

  // the second writer's transaction begins first (its now() is taken at its first statement)
  const early = await pool.connect();
  t.teardown(() => early.release(true));
  await early.query('begin');
  await early.query('select now()');
  await pool.query(`update crm.contacts set city = 'First' where id = $1`, [contact.id]);
  await early.query(`update crm.contacts set city = 'Latest' where id = $1`, [contact.id]);
  await early.query('commit');

  const { rows } = await pool.query(
    `select id, message_id, payload, (payload ->> 'timestamp')::timestamptz - created_at as after_created,
            to_char(created_at at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as created
     from webhooks.deliveries where webhook_id = $1 order by id`, [hook.id]);
  t.is(rows.length, 1, 'one message');
  const [message] = rows;
  t.is(message.payload.data.merged, 2);
  t.is(message.payload.data.contact.city, 'Latest', 'the latest values');
  t.is(message.payload.timestamp, message.created, 'the first change\'s time, the latest of the two');
  const { rows: found } = await pool.query('select delivery_id from webhooks.find_message($1, $2)',
    [message.message_id, message.payload.timestamp]);
  t.deepEqual(found.map((r) => r.delivery_id), [message.id], 'found by the timestamp its receiver got');
});

test('a contact deleted, and its id given to a new contact (a reload, a sequence reset): the new contact\'s update is a message of its own, the old one\'s waits no more', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  // hears updates alone: the delete writes nothing for it
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'] });
  await db().pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', false)`, [hook.id]);
  const gone = await f.contact(company.id, { city: 'Boston' });
  await db().pool.query("update crm.contacts set city = 'Austin' where id = $1", [gone.id]);
  await db().pool.query('delete from crm.contacts where id = $1', [gone.id]);
  await db().pool.query(`insert into crm.contacts (id, company_id, first_name, city) values ($1, $2, 'Again', 'Reno')`,
    [gone.id, company.id]);
  await db().pool.query("update crm.contacts set city = 'Elko' where id = $1", [gone.id]);
  const { rows } = await db().pool.query(
    `select d.contact_id::text as named, d.payload->'data'->'contact'->>'city' as city, d.payload->'data'->'merged' as merged,
            q.next_attempt_at <= now() as due
     from webhooks.deliveries d join webhooks.delivery_queue q on q.delivery_id = d.id
     where d.webhook_id = $1 order by d.id`, [hook.id]);
  t.deepEqual(rows, [
    { named: gone.id, city: 'Austin', merged: 1, due: true },
    { named: gone.id, city: 'Elko', merged: 1, due: false },
  ]);
});

// The companies that hear a contact are its owner and the companies of its assigned
// users: a delete ends the waits on all their webhooks, not its owner's alone. Until
// 2026-12-07 another company's update still waited, and a contact given the old id
// and assigned to that company's user again had its update merged into the old
// contact's message: the old change replaced by the new one's.
test('a contact deleted ends the waits on the webhooks of the companies of its assigned users too: its id given again merges into nothing of theirs', async (t) => {
  const f = factories(db().pool);
  const owner = await f.company();
  const other = await f.company();
  const agent = await f.user(other.id);
  // hears updates alone: the delete writes nothing for it
  const hook = await f.webhook({ companyId: other.id, actions: ['contact.updated'], fields: ['city'] });
  await db().pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', false)`, [hook.id]);
  const assign = (id: string) =>
    db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [id, agent.id]);
  const gone = await f.contact(owner.id, { city: 'Boston' });
  await assign(gone.id);
  await db().pool.query("update crm.contacts set city = 'Austin' where id = $1", [gone.id]);
  await db().pool.query('delete from crm.contacts where id = $1', [gone.id]);
  await db().pool.query(`insert into crm.contacts (id, company_id, first_name, city) values ($1, $2, 'Again', 'Reno')`,
    [gone.id, owner.id]);
  await assign(gone.id);
  await db().pool.query("update crm.contacts set city = 'Elko' where id = $1", [gone.id]);
  const { rows } = await db().pool.query(
    `select d.contact_id::text as named, d.payload->'data'->'contact'->>'city' as city, d.payload->'data'->'merged' as merged,
            q.next_attempt_at <= now() as due
     from webhooks.deliveries d join webhooks.delivery_queue q on q.delivery_id = d.id
     where d.webhook_id = $1 order by d.id`, [hook.id]);
  t.deepEqual(rows, [
    { named: gone.id, city: 'Austin', merged: 1, due: true },
    { named: gone.id, city: 'Elko', merged: 1, due: false },
  ]);
});
