// A contact whose id an UPDATE changes (a CRM's merge or renumbering tool) is the same
// contact: announced as contact.updated (or contact.saved) of the new id, with the id
// it had as data.previous_contact_id, so that a receiver keyed by the contact's id can
// carry its record over. Its deliveries on their way (waiting or being sent) go before
// that message and merge with it as one contact's, and nothing else is announced for it.
import test, { type ExecutionContext } from 'ava';
import { ownConnection, useTestDatabase } from '../helpers/db.ts';
import { deliveriesOf, factories } from '../helpers/factories.ts';
import { indexUse } from '../helpers/plans.ts';
import { until } from '../helpers/until.ts';
import { UNTIMED_STEPS } from '../helpers/backfill-step.ts';

const db = useTestDatabase(test);
const connected = (t: { teardown: (fn: () => Promise<void>) => void }) => ownConnection(db().url, t);
const make = () => factories(db().pool);
const ALL = ['contact.created', 'contact.updated', 'contact.saved', 'contact.deleted', 'contact.status_added',
  'contact.status_removed', 'contact.user_assigned', 'contact.first_company_user_assigned'];
// an id no contact has (the sequence hands out smaller ones)
const freeId = async () => (await db().pool.query(
  "select nextval(pg_get_serial_sequence('crm.contacts', 'id')) + 1000000 as id")).rows[0].id as string;
const fired = async (hookId: string) => (await deliveriesOf(db().pool, [hookId])).map((r) => ({
  action: r.action, contact_id: r.contact_id, id: String(r.payload.data.contact.id),
  previous: r.payload.data.previous_contact_id === undefined ? undefined : String(r.payload.data.previous_contact_id),
  changed: r.payload.data.changed_fields,
}));
const claim = (webhookId: string) => db().pool.query(
  `select delivery_id from webhooks_relay.claim_deliveries('relay-a', 10, interval '1 minute', 10,
     '{}'::bigint[], '{}'::integer[], array[$1::bigint])`, [webhookId]);

test('the new id is announced as an update, with the id it had beside changed_fields, to a webhook watching other fields too', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ALL, fields: ['city'] });
  const watching = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'], watchFields: ['email'] });
  const contact = await f.contact(company.id, { city: 'Boston' });
  const next = await freeId();
  await db().pool.query('update crm.contacts set id = $2 where id = $1', [contact.id, next]);
  const renamed = { action: 'contact.updated', contact_id: next, id: next, previous: contact.id, changed: ['id'] };
  t.deepEqual((await fired(hook.id)).slice(1), [renamed]);
  t.deepEqual(await fired(watching.id), [renamed], 'every later message names the new id: watch_fields do not hold it back');

  // saved on the platform, with another column changed by the same update
  const client = await db().pool.connect();
  const last = await freeId();
  try {
    await client.query('begin');
    await client.query("set local webhooks.source = 'platform'");
    await client.query("update crm.contacts set id = $2, city = 'Denver' where id = $1", [next, last]);
    await client.query('commit');
  } finally {
    client.release();
  }
  t.deepEqual((await fired(hook.id)).slice(2), [
    { action: 'contact.saved', contact_id: last, id: last, previous: next, changed: ['id', 'city'] },
  ]);
  // an update that keeps the id says nothing of one
  await db().pool.query("update crm.contacts set city = 'Austin' where id = $1", [last]);
  t.deepEqual((await fired(hook.id)).slice(3), [
    { action: 'contact.updated', contact_id: last, id: last, previous: undefined, changed: ['city'] },
  ]);
});

test('an ordered webhook: a delivery of the old id still waiting goes before the new id\'s, which waits behind it', async (t) => {
  const f = make();
  const company = await f.company();
  // created and deleted only: the update of the id goes by the trigger's no-match path
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.deleted'], fields: ['city'] });
  await db().pool.query('select webhooks.set_webhook_delivery($1, null, true)', [hook.id]);
  const contact = await f.contact(company.id, { city: 'Boston' });
  const next = await freeId();
  await db().pool.query('update crm.contacts set id = $2 where id = $1', [contact.id, next]);
  await db().pool.query('delete from crm.contacts where id = $1', [next]);
  const { rows } = await db().pool.query(
    `select action, contact_id, held_back from webhooks.deliveries where webhook_id = $1 order by id`, [hook.id]);
  t.deepEqual(rows, [
    { action: 'contact.created', contact_id: contact.id, held_back: false },
    { action: 'contact.deleted', contact_id: next, held_back: true },
  ]);
  const { rows: claimed } = await claim(hook.id);
  t.is(claimed.length, 1, 'the delete waits for the create of the id it had');
});

test('a coalescing webhook: the change of id and the updates around it are one message, which names the id first had', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'] });
  await db().pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', false)`, [hook.id]);
  const contact = await f.contact(company.id, { city: 'Boston' });
  const [next, last] = [await freeId(), await freeId()];
  await db().pool.query("update crm.contacts set city = 'Denver' where id = $1", [contact.id]);
  await db().pool.query('update crm.contacts set id = $2 where id = $1', [contact.id, next]);
  await db().pool.query("update crm.contacts set city = 'Austin' where id = $1", [next]);
  await db().pool.query('update crm.contacts set id = $2 where id = $1', [next, last]);
  const deliveries = await deliveriesOf(db().pool, [hook.id]);
  t.deepEqual(deliveries.map((d) => [d.contact_id, d.payload.data]), [[last, {
    contact: { id: Number(last), city: 'Austin' }, source: 'unknown', changed_fields: ['city', 'id'],
    previous_contact_id: Number(contact.id), merged: 4,
  }]]);
});

test('a first assignment of the old id leaves nothing behind it', async (t) => {
  const f = make();
  const company = await f.company();
  const user = await f.user(company.id);
  await f.webhook({ companyId: company.id, actions: ['contact.first_company_user_assigned'] });
  const contact = await f.contact(company.id);
  await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, user.id]);
  await db().pool.query('delete from crm.contact_assignments where contact_id = $1', [contact.id]);
  const next = await freeId();
  await db().pool.query('update crm.contacts set id = $2 where id = $1', [contact.id, next]);
  const { rows } = await db().pool.query(
    'select contact_id from webhooks_private.first_assignments where contact_id = any ($1::bigint[])', [[contact.id, next]]);
  t.deepEqual(rows, []);
});

test('a CRM whose keys cascade the new id to tags and assignments: the companies of the assigned users hear it, and no tag or assignment is announced', async (t) => {
  const pool = db().pool;
  await pool.query(`
    alter table crm.contact_assignments drop constraint contact_assignments_contact_id_fkey,
      add constraint contact_assignments_contact_id_fkey foreign key (contact_id) references crm.contacts
        on update cascade on delete cascade;
    alter table crm.contact_statuses drop constraint contact_statuses_contact_id_fkey,
      add constraint contact_statuses_contact_id_fkey foreign key (contact_id) references crm.contacts
        on update cascade on delete cascade`);
  const f = make();
  const [owner, other] = [await f.company(), await f.company()];
  const user = await f.user(other.id);
  const status = await f.status(owner.id);
  const contact = await f.contact(owner.id, { city: 'Boston' });
  await pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, user.id]);
  await pool.query('insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [contact.id, status.id]);
  const [ownerHook, otherHook] = [await f.webhook({ companyId: owner.id, actions: ALL, fields: ['city'] }),
    await f.webhook({ companyId: other.id, actions: ALL, fields: ['city'] })];
  const next = await freeId();
  await pool.query('update crm.contacts set id = $2 where id = $1', [contact.id, next]);
  const renamed = { action: 'contact.updated', contact_id: next, id: next, previous: contact.id, changed: ['id'] };
  t.deepEqual(await fired(ownerHook.id), [renamed]);
  t.deepEqual(await fired(otherHook.id), [renamed]);
  const { rows } = await pool.query(
    'select (select count(*) from crm.contact_assignments where contact_id = $1)::int as assigned, (select count(*) from crm.contact_statuses where contact_id = $1)::int as tagged',
    [next]);
  t.deepEqual(rows, [{ assigned: 1, tagged: 1 }], 'the CRM\'s keys carried them over');
});

test('ids changed by one statement, UPDATE or MERGE, each announced with the id it had', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'] });
  const [one, two] = [await f.contact(company.id, { city: 'Boston' }), await f.contact(company.id, { city: 'Reno' })];
  const [oneNext, twoNext] = [await freeId(), await freeId()];
  await db().pool.query(`update crm.contacts c set id = v.next from (values ($1::bigint, $2::bigint), ($3, $4)) v(id, next)
                         where c.id = v.id`, [one.id, oneNext, two.id, twoNext]);
  const [oneLast, twoLast] = [await freeId(), await freeId()];
  await db().pool.query(`merge into crm.contacts c using (values ($1::bigint, $2::bigint), ($3, $4)) v(id, next) on c.id = v.id
                         when matched then update set id = v.next`, [oneNext, oneLast, twoNext, twoLast]);
  // (in the order the statement met the rows, which its plan decides: compared as a set)
  const pairs = (list: (string | undefined)[][]) => list.map((p) => p.join(' from ')).sort();
  t.deepEqual(pairs((await fired(hook.id)).map((d) => [d.id, d.previous])), pairs([
    [oneNext, one.id], [twoNext, two.id], [oneLast, oneNext], [twoLast, twoNext],
  ]));
});

test('a DBA\'s repair through webhooks.deliveries of a delivery moved to the new id leaves it there', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.deleted'], fields: ['city'] });
  await db().pool.query('select webhooks.set_webhook_delivery($1, null, true)', [hook.id]);
  const contact = await f.contact(company.id, { city: 'Boston' });
  const next = await freeId();
  await db().pool.query('update crm.contacts set id = $2 where id = $1', [contact.id, next]);
  await db().pool.query(`update webhooks.deliveries set next_attempt_at = now() - interval '1 minute'
                         where webhook_id = $1 and action = 'contact.created'`, [hook.id]);
  await db().pool.query('delete from crm.contacts where id = $1', [next]);
  const { rows } = await db().pool.query(
    `select action, contact_id, held_back from webhooks.deliveries where webhook_id = $1 order by id`, [hook.id]);
  t.deepEqual(rows, [
    { action: 'contact.created', contact_id: contact.id, held_back: false },
    { action: 'contact.deleted', contact_id: next, held_back: true },
  ]);
});

test('a delivery moved to the new id and ended through webhooks.deliveries lets the next of the new id go', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.deleted'], fields: ['city'] });
  await db().pool.query('select webhooks.set_webhook_delivery($1, null, true)', [hook.id]);
  const contact = await f.contact(company.id, { city: 'Boston' });
  const next = await freeId();
  await db().pool.query('update crm.contacts set id = $2 where id = $1', [contact.id, next]);
  await db().pool.query('delete from crm.contacts where id = $1', [next]);
  // the create waits for a retry an hour away; the claim puts the delete off behind it
  await db().pool.query(`update webhooks.deliveries set attempts = 1, next_attempt_at = now() + interval '1 hour'
                         where webhook_id = $1 and action = 'contact.created'`, [hook.id]);
  t.deepEqual((await claim(hook.id)).rows, []);
  const due = async () => (await db().pool.query(
    `select action, next_attempt_at <= now() as due from webhooks.deliveries where webhook_id = $1 and state = 'pending' order by id`,
    [hook.id])).rows;
  t.deepEqual(await due(), [{ action: 'contact.created', due: false }, { action: 'contact.deleted', due: false }]);
  await db().pool.query(`update webhooks.deliveries set state = 'failed', completed_at = now()
                         where webhook_id = $1 and action = 'contact.created'`, [hook.id]);
  t.deepEqual(await due(), [{ action: 'contact.deleted', due: true }]);
});

test('a change of id rolled back to a savepoint leaves nothing moved, announced or removed', async (t) => {
  const f = make();
  const company = await f.company();
  const user = await f.user(company.id);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.updated', 'contact.first_company_user_assigned'] });
  await db().pool.query('select webhooks.set_webhook_delivery($1, null, true)', [hook.id]);
  const contact = await f.contact(company.id);
  await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, user.id]);
  await db().pool.query('delete from crm.contact_assignments where contact_id = $1', [contact.id]);
  const next = await freeId();
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    await client.query('savepoint s');
    await client.query('update crm.contacts set id = $2 where id = $1', [contact.id, next]);
    await client.query('rollback to savepoint s');
    await client.query('commit');
  } finally {
    client.release();
  }
  const { rows } = await db().pool.query(
    `select action, contact_id, (select q.contact_id from webhooks.delivery_queue q where q.delivery_id = d.id) as queued_as
     from webhooks.deliveries d where webhook_id = $1 order by id`, [hook.id]);
  t.deepEqual(rows, [
    { action: 'contact.created', contact_id: contact.id, queued_as: contact.id },
    { action: 'contact.first_company_user_assigned', contact_id: contact.id, queued_as: contact.id },
  ]);
  t.deepEqual((await db().pool.query('select contact_id from webhooks_private.first_assignments where contact_id = $1',
    [contact.id])).rows, [{ contact_id: contact.id }]);
});

// the queue row of each delivery of a webhook: the contact its lane is, in flight or
// not, put off or not
const queued = async (hookId: string) => (await db().pool.query(
  `select h.action, q.contact_id, q.locked_by is not null as in_flight, q.held_due is not null as put_off
   from webhooks.delivery_queue q join webhooks.delivery_history h on h.id = q.delivery_id
   where q.webhook_id = $1 order by q.delivery_id`, [hookId])).rows;
// a result of attempt `attempt` (the first unless said)
const settle = (id: string, status: number, attempt = 1) => db().pool.query(
  `select delivery_id, state from webhooks_relay.settle_deliveries('relay-a', array[$1::bigint], array[$3::integer],
     array[now()], '{5}', array[$2::integer], '{null}', '{null}', '{null}')`, [id, status, attempt]);

test('an ordered webhook: a delivery of the old id in flight takes the new id, holds the new id\'s back, and its retry goes before them', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.updated'], fields: ['city'] });
  await db().pool.query('select webhooks.set_webhook_delivery($1, null, true)', [hook.id]);
  const contact = await f.contact(company.id, { city: 'Boston' });
  const [{ delivery_id: created }] = (await claim(hook.id)).rows;
  const next = await freeId();
  await db().pool.query('update crm.contacts set id = $2 where id = $1', [contact.id, next]);
  t.deepEqual(await queued(hook.id), [
    { action: 'contact.created', contact_id: next, in_flight: true, put_off: false },
    { action: 'contact.updated', contact_id: next, in_flight: false, put_off: false },
  ]);
  t.deepEqual((await claim(hook.id)).rows, [], 'the update of the new id waits for the create in flight');
  t.deepEqual(await queued(hook.id), [
    { action: 'contact.created', contact_id: next, in_flight: true, put_off: false },
    { action: 'contact.updated', contact_id: next, in_flight: false, put_off: true },
  ]);
  t.deepEqual((await settle(created, 500)).rows, [{ delivery_id: created, state: 'pending' }]);
  t.deepEqual(await queued(hook.id), [
    { action: 'contact.created', contact_id: next, in_flight: false, put_off: false },
    { action: 'contact.updated', contact_id: next, in_flight: false, put_off: true },
  ], 'the retry is in the new id\'s lane, before its update');
  await db().pool.query('update webhooks.delivery_queue set next_attempt_at = now() where webhook_id = $1', [hook.id]);
  t.deepEqual((await claim(hook.id)).rows, [{ delivery_id: created }], 'the retry goes first, alone');
  t.deepEqual((await settle(created, 200, 2)).rows, [{ delivery_id: created, state: 'succeeded' }]);
  t.deepEqual(await queued(hook.id), [
    { action: 'contact.updated', contact_id: next, in_flight: false, put_off: false },
  ], 'its end lets the new id\'s update go');
  t.is((await claim(hook.id)).rows.length, 1);
});

test('a delivery of the old id put off behind one in flight goes when that one ends, under the new id', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.updated'], fields: ['city'] });
  await db().pool.query('select webhooks.set_webhook_delivery($1, null, true)', [hook.id]);
  const contact = await f.contact(company.id, { city: 'Boston' });
  const [{ delivery_id: created }] = (await claim(hook.id)).rows;
  await db().pool.query("update crm.contacts set city = 'Denver' where id = $1", [contact.id]);
  t.deepEqual((await claim(hook.id)).rows, []);
  const next = await freeId();
  await db().pool.query('update crm.contacts set id = $2 where id = $1', [contact.id, next]);
  t.deepEqual((await settle(created, 200)).rows, [{ delivery_id: created, state: 'succeeded' }]);
  const { rows } = await db().pool.query(
    `select q.contact_id, q.held_due is not null as put_off, q.next_attempt_at <= now() as due
     from webhooks.delivery_queue q where q.webhook_id = $1 order by q.delivery_id`, [hook.id]);
  t.deepEqual(rows, [
    { contact_id: next, put_off: false, due: true },
    { contact_id: next, put_off: false, due: true },
  ], 'Denver goes now, not when the create\'s lease would have ended');
  const { rows: [denver] } = await db().pool.query(
    "select id as delivery_id from webhooks.deliveries where webhook_id = $1 and payload #>> '{data,changed_fields,0}' = 'city'", [hook.id]);
  t.deepEqual((await claim(hook.id)).rows, [denver], 'the change of id waits behind it');
});

for (const [status, state] of [[500, 'pending'], [200, 'succeeded']] as const) {
  test(`a settle under way while the change of id moves its delivery settles it all the same (${status})`, async (t) => {
    const f = make();
    const company = await f.company();
    const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'], fields: ['city'] });
    const contact = await f.contact(company.id, { city: 'Boston' });
    const [{ delivery_id: created }] = (await claim(hook.id)).rows;
    const next = await freeId();
    const writer = await connected(t);
    await writer.query('begin');
    await writer.query('update crm.contacts set id = $2 where id = $1', [contact.id, next]);
    const settling = settle(created, status);
    await until('the settle waits for the change of id', async () => (await db().pool.query(
      `select 1 from pg_stat_activity where query like '%settle_deliveries%' and $1 = any (pg_blocking_pids(pid))`,
      [(await writer.query('select pg_backend_pid() as pid')).rows[0].pid])).rowCount! > 0);
    await writer.query('commit');
    t.deepEqual((await settling).rows, [{ delivery_id: created, state }]);
    t.deepEqual(await queued(hook.id), state === 'pending'
      ? [{ action: 'contact.created', contact_id: next, in_flight: false, put_off: false }]
      : []);
    const { rows } = await db().pool.query(
      'select attempt, status_code from webhooks.delivery_attempts where delivery_id = $1', [created]);
    t.deepEqual(rows, [{ attempt: 1, status_code: status }], 'one attempt recorded');
  });
}

test('a replay of a delivery captured under an id the contact no longer has goes in the lane of the id it has now', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.updated'], fields: ['city'] });
  await db().pool.query('select webhooks.set_webhook_delivery($1, null, true)', [hook.id]);
  const [one, two] = [await f.contact(company.id, { city: 'Boston' }), await f.contact(company.id, { city: 'Reno' })];
  const sent = async () => {
    for (const { delivery_id: id } of (await claim(hook.id)).rows) await settle(id, 200);
  };
  await sent();
  const [next, last] = [await freeId(), await freeId()];
  // one: its id, then next, then last; two takes the id one had first
  await db().pool.query('update crm.contacts set id = $2 where id = $1', [one.id, next]);
  await db().pool.query('update crm.contacts set id = $2 where id = $1', [next, last]);
  await db().pool.query('update crm.contacts set id = $2 where id = $1', [two.id, one.id]);
  await sent();
  await db().pool.query("update crm.contacts set city = 'Austin' where id = $1", [one.id]);
  await db().pool.query("update crm.contacts set city = 'Denver' where id = $1", [last]);
  const created = async (contactId: string) => (await db().pool.query(
    `select id from webhooks.deliveries where webhook_id = $1 and action = 'contact.created' and contact_id = $2`,
    [hook.id, contactId])).rows[0].id as string;
  const [oneCreated, twoCreated] = [await created(one.id), await created(two.id)];
  t.is((await claim(hook.id)).rows.length, 2, 'Austin (two\'s) and Denver (one\'s) in flight');
  await db().pool.query('select webhooks.replay_delivery($1)', [oneCreated]);
  await db().pool.query('select webhooks.replay_delivery($1)', [twoCreated]);
  const { rows } = await db().pool.query(
    `select d.id, d.contact_id as named, q.contact_id as lane, d.held_back
     from webhooks.deliveries d join webhooks.delivery_queue q on q.delivery_id = d.id
     where d.id = any ($1::bigint[]) order by d.id`, [[oneCreated, twoCreated]]);
  t.deepEqual(rows, [
    { id: oneCreated, named: one.id, lane: last, held_back: true },
    { id: twoCreated, named: two.id, lane: one.id, held_back: true },
  ], 'each waits for the contact\'s delivery in flight');
  t.deepEqual((await claim(hook.id)).rows, []);
});

test('the changes of ids noted go with the history they were kept for', async (t) => {
  const pool = db().pool;
  const [old, kept] = [await freeId(), await freeId()];
  await pool.query(`insert into webhooks_private.contact_renumberings (from_id, to_id, renumbered_at)
                    values ($1::bigint, $1::bigint + 1, now() - interval '3 days'), ($2::bigint, $2::bigint + 1, now())`, [old, kept]);
  await pool.query(`select webhooks.forget_day(((now() at time zone 'utc') - interval '2 days')::date)`);
  const { rows } = await pool.query(
    'select from_id from webhooks_private.contact_renumberings where from_id = any ($1::bigint[])', [[old, kept]]);
  t.deepEqual(rows, [{ from_id: kept }]);
});

test('a backfill running across changes of ids examines each contact once: not again under an id ahead of it, not never under one behind it', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted'], fields: ['city'] });
  const contacts = [];
  for (const city of ['c1', 'c2', 'c3', 'c4', 'c5', 'c6']) contacts.push(await f.contact(company.id, { city }));
  const [c1, c2, c3, c4, c5] = contacts;
  const { rows: [{ id: backfill }] } = await db().pool.query('select webhooks.backfill($1) as id', [hook.id]);
  const stepper = await connected(t);
  await stepper.query("set webhooks.backfill_batch = '2'");
  // (each step's two contacts examined whatever the machine's load)
  await stepper.query(UNTIMED_STEPS);
  const step = () => stepper.query('select webhooks_relay.backfill_step(p_only => $1) as n', [backfill]);
  await step();   // c1 and c2 examined
  const renumber = (from: string, to: string) => db().pool.query('update crm.contacts set id = $2 where id = $1', [from, to]);
  // (ids behind every contact: negative, which no contact has)
  const [ahead, behind, aheadAgain, behindAgain] = [await freeId(), `-${await freeId()}`, await freeId(), `-${await freeId()}`];
  await renumber(c1.id, ahead);   // examined, moved ahead of the walk
  await renumber(c3.id, behind);  // not examined, moved behind it
  await renumber(c4.id, aheadAgain);   // not examined, moved on ahead: examined once, there
  await renumber(c2.id, behindAgain);  // examined, moved behind: nothing more
  const cities = async () => (await deliveriesOf(db().pool, [hook.id])).map((d) => d.payload.data.contact.city as string);
  await step();   // c3, behind: a step of its own
  t.deepEqual(await cities(), ['c1', 'c2', 'c3']);
  await step();   // c5 and c6
  t.deepEqual(await cities(), ['c1', 'c2', 'c3', 'c5', 'c6']);
  await renumber(c5.id, `-${await freeId()}`);   // examined by this step
  for (let i = 0; i < 10 && (await db().pool.query('select state from webhooks.backfills where id = $1', [backfill])).rows[0].state === 'running'; i++) {
    await db().pool.query(`update webhooks.deliveries set state = 'succeeded', attempts = 1, completed_at = now()
                           where webhook_id = $1 and state = 'pending'`, [hook.id]);
    await step();
  }
  const snapshots = (await deliveriesOf(db().pool, [hook.id])).map((d) => d.payload.data.contact.city as string).sort();
  t.deepEqual(snapshots, ['c1', 'c2', 'c3', 'c4', 'c5', 'c6'], 'each contact once');
  const { rows: [row] } = await db().pool.query('select state, queued, total from webhooks.backfills where id = $1', [backfill]);
  t.deepEqual(row, { state: 'done', queued: '6', total: '6' });
  t.deepEqual((await db().pool.query('select * from webhooks_private.backfill_renumbered where backfill_id = $1', [backfill])).rows, [],
    'nothing of it is kept once it is done');
});

// docs/capture.md, "A contact whose id changes": a snapshot waiting to be sent names
// the old id; sent after the change's message (a webhook not ordered sends them in
// either order), it brought the old id back to a receiver that creates the contacts
// it does not have: the contact twice, under two ids, and nothing said of it.
test('a backfill\'s snapshot not sent yet when its contact\'s id changes fails: the change\'s message carries the contact, under the new id', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'] });
  // hears no update: the change's message is not its, and its snapshot goes
  const deaf = await f.webhook({ companyId: company.id, actions: ['contact.deleted'], fields: ['city'] });
  const ordered = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'] });
  await db().pool.query('select webhooks.set_webhook_delivery($1, null, true)', [ordered.id]);
  const contact = await f.contact(company.id, { city: 'Boston' });
  for (const webhook of [hook, deaf, ordered]) {
    const { rows: [{ id }] } = await db().pool.query('select webhooks.backfill($1) as id', [webhook.id]);
    await db().pool.query('select webhooks_relay.backfill_step(p_only => $1)', [id]);
  }
  const next = await freeId();
  await db().pool.query('update crm.contacts set id = $2 where id = $1', [contact.id, next]);
  const rows = async (webhookId: string) => (await db().pool.query(
    `select action, contact_id, state, last_error, (payload #>> '{data,contact,id}') as named,
            (payload #>> '{data,previous_contact_id}') as previous
     from webhooks.deliveries where webhook_id = $1 order by id`, [webhookId])).rows;
  t.deepEqual(await rows(hook.id), [
    { action: 'contact.snapshot', contact_id: contact.id, state: 'failed', named: contact.id, previous: null,
      last_error: 'not sent: its contact\'s id changed before it was sent, and the change\'s message carries it (data.previous_contact_id)' },
    { action: 'contact.updated', contact_id: next, state: 'pending', named: next, previous: contact.id, last_error: null },
  ]);
  // hears no update: its snapshot goes, under the id the contact has now (under the old
  // one, until 2026-12-07, it named a contact no longer there)
  t.deepEqual(await rows(deaf.id), [
    { action: 'contact.snapshot', contact_id: next, state: 'pending', named: next, previous: null, last_error: null },
  ]);
  // ordered: the change is not held behind the snapshot it stands in for
  t.deepEqual((await rows(ordered.id)).map((r) => [r.action, r.state]), [['contact.snapshot', 'failed'], ['contact.updated', 'pending']]);
  const { rows: claimed } = await claim(ordered.id);
  t.is(claimed.length, 1);
  t.is((await db().pool.query('select action from webhooks.deliveries where id = $1', [claimed[0].delivery_id])).rows[0].action, 'contact.updated');
});

test('a snapshot under the new id is the contact\'s one: the walk, done or not, sends it no other', async (t) => {
  const f = make();
  const company = await f.company();
  const deaf = await f.webhook({ companyId: company.id, actions: ['contact.created'], fields: ['city'] });
  const first = await f.contact(company.id, { city: 'c1' });
  await f.contact(company.id, { city: 'c2' });
  const { rows: [{ id: backfill }] } = await db().pool.query('select webhooks.backfill($1) as id', [deaf.id]);
  const stepper = await connected(t);
  await stepper.query("set webhooks.backfill_batch = '1'");
  await stepper.query('select webhooks_relay.backfill_step(p_only => $1)', [backfill]);   // c1 written, not sent
  const next = await freeId();   // ahead of the walk
  await db().pool.query('update crm.contacts set id = $2 where id = $1', [first.id, next]);
  for (let i = 0; i < 5; i++) await stepper.query('select webhooks_relay.backfill_step(p_only => $1)', [backfill]);
  const snapshots = (await deliveriesOf(db().pool, [deaf.id])).filter((d) => d.action === 'contact.snapshot')
    .map((d) => [d.payload.data.contact.city, String(d.payload.data.contact.id), String(d.contact_id), d.state]);
  t.deepEqual(snapshots.slice(0, 1), [['c1', next, next, 'pending']]);
  t.deepEqual(snapshots.map(([city]) => city), ['c1', 'c2'], 'each once');
  t.like((await db().pool.query('select state, queued, total from webhooks.backfills where id = $1', [backfill])).rows[0],
    { state: 'done', queued: '2', total: '2' });
});

test('contacts moved behind a backfill\'s walk whose conditions cost more than backfill_batch_time a step: the step ends early, each examined once', async (t) => {
  // The walk's batch stops once its conditions have taken backfill_batch_time (250 ms);
  // the contacts a change of id moved behind the walk were examined a batch at once
  // whatever they cost: 1,000 contacts of 2,000 comparisons each (20 in of 100 values, as
  // test/sql/backfill.test.ts) held the step, and every other company's backfill, for
  // their sum; a batch of 500, for 500 times it.
  const f = make();
  const company = await f.company();
  const first = await f.contact(company.id);
  const CONTACTS = 1000;
  const { rows: costly } = await db().pool.query(
    `insert into crm.contacts (company_id, first_name, street)
     select $1, 'F' || n, case when n % 500 = 0 then 'v99' else 'w' || n end
     from generate_series(1, $2::int) n returning id`, [company.id, CONTACTS]);
  const values = { field: 'street', op: 'in', value: Array.from({ length: 100 }, (_, i) => `v${i}`) };
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted'], conditions: { any: Array(20).fill(values) } });
  const { rows: [{ id: backfill }] } = await db().pool.query('select webhooks.backfill($1) as id', [hook.id]);
  const stepper = await connected(t);
  await stepper.query("set webhooks.backfill_batch = '1'");
  const step = () => stepper.query('select webhooks_relay.backfill_step(p_only => $1) as n', [backfill]);
  await step();   // the first contact examined, the costly ones ahead of the walk
  t.is((await db().pool.query('select position from webhooks.backfills where id = $1', [backfill])).rows[0].position, first.id);
  // (one statement; negative ids, which no contact has, are behind every contact)
  await db().pool.query('update crm.contacts set id = -id where id = any ($1::bigint[])', [costly.map((c) => c.id)]);
  const notes = async () => (await db().pool.query(
    'select count(*)::int as n from webhooks_private.backfill_renumbered where backfill_id = $1 and not examined', [backfill])).rows[0].n;
  t.is(await notes(), CONTACTS);
  await stepper.query(`set webhooks.backfill_batch = '${CONTACTS}'`);
  await step();
  const left = await notes();
  t.true(left >= 1 && left < CONTACTS, `${CONTACTS - left} of ${CONTACTS} moved behind the walk examined in one step`);
  for (let i = 0; i < 40 && (await db().pool.query('select state from webhooks.backfills where id = $1', [backfill])).rows[0].state === 'running'; i++) {
    await step();
  }
  t.is(await notes(), 0);
  const snapshots = (await deliveriesOf(db().pool, [hook.id])).filter((d) => d.action === 'contact.snapshot');
  t.is(snapshots.length, 2, 'the two whose street contains the text, once each');
  t.like((await db().pool.query('select state, queued from webhooks.backfills where id = $1', [backfill])).rows[0], { state: 'done', queued: '2' });
});

test('a change of id made while a backfill\'s step is under way waits for the step, and takes the position it committed', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted'], fields: ['city'] });
  const c1 = await f.contact(company.id, { city: 'c1' });
  await f.contact(company.id, { city: 'c2' });
  const { rows: [{ id: backfill }] } = await db().pool.query('select webhooks.backfill($1) as id', [hook.id]);
  const stepper = await connected(t);
  await stepper.query("set webhooks.backfill_batch = '1'");
  const step = () => stepper.query('select webhooks_relay.backfill_step(p_only => $1) as n', [backfill]);
  await stepper.query('begin');
  await step();   // c1, not committed yet
  const ahead = await freeId();
  let renumbered = false;
  const renumbering = db().pool.query('update crm.contacts set id = $2 where id = $1', [c1.id, ahead])
    .then(() => { renumbered = true; });
  const stepperPid = (await stepper.query('select pg_backend_pid() as pid')).rows[0].pid;
  await until('the change of id is made, or waits for the step', async () => renumbered || (await db().pool.query(
    `select 1 from pg_stat_activity where query like 'update crm.contacts%' and $1 = any (pg_blocking_pids(pid))`,
    [stepperPid])).rowCount! > 0);
  await stepper.query('commit');
  await renumbering;
  for (let i = 0; i < 10 && (await db().pool.query('select state from webhooks.backfills where id = $1', [backfill])).rows[0].state === 'running'; i++) {
    await step();
  }
  const snapshots = (await deliveriesOf(db().pool, [hook.id])).map((d) => [d.payload.data.contact.city, String(d.contact_id)]);
  t.deepEqual(snapshots.map(([city]) => city).sort(), ['c1', 'c2'], 'c1 once, under the id it had');
});

test('an ordered webhook\'s backfill: a contact moved behind the walk while a writer holds it is examined once the writer is done', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted'], fields: ['city'] });
  await db().pool.query('select webhooks.set_webhook_delivery($1, null, true)', [hook.id]);
  const c1 = await f.contact(company.id, { city: 'c1' });
  const c2 = await f.contact(company.id, { city: 'c2' });
  const { rows: [{ id: backfill }] } = await db().pool.query('select webhooks.backfill($1) as id', [hook.id]);
  const stepper = await connected(t);
  await stepper.query("set webhooks.backfill_batch = '1'");
  const step = () => stepper.query('select webhooks_relay.backfill_step(p_only => $1) as n', [backfill]);
  const state = async () => (await db().pool.query('select state from webhooks.backfills where id = $1', [backfill])).rows[0].state;
  await step();   // c1
  const behind = `-${await freeId()}`;
  await db().pool.query('update crm.contacts set id = $2 where id = $1', [c2.id, behind]);
  const writer = await connected(t);
  await writer.query('begin');
  await writer.query("update crm.contacts set city = 'c2 changed' where id = $1", [behind]);
  for (let i = 0; i < 3; i++) await step();
  t.is(await state(), 'running', 'not done while the contact behind waits for its writer');
  await writer.query('commit');
  for (let i = 0; i < 3 && (await state()) === 'running'; i++) await step();
  t.is(await state(), 'done');
  const snapshots = (await deliveriesOf(db().pool, [hook.id])).filter((d) => d.action === 'contact.snapshot')
    .map((d) => [d.payload.data.contact.city, String(d.contact_id)]);
  t.deepEqual(snapshots, [['c1', c1.id], ['c2 changed', behind]], 'after the change the writer made');
});

for (const isolation of ['repeatable read', 'serializable'] as const) {
  test(`a change of id by a writer in ${isolation} whose snapshot a backfill's step overtook fails with 40001, and done again is examined once`, async (t) => {
    const f = make();
    const company = await f.company();
    const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted'], fields: ['city'] });
    const c1 = await f.contact(company.id, { city: 'c1' });
    await f.contact(company.id, { city: 'c2' });
    const { rows: [{ id: backfill }] } = await db().pool.query('select webhooks.backfill($1) as id', [hook.id]);
    const writer = await connected(t);
    await writer.query(`begin isolation level ${isolation}`);
    await writer.query('select 1 from crm.contacts limit 1');   // its snapshot, before the step
    const stepper = await connected(t);
    await stepper.query("set webhooks.backfill_batch = '1'");
    const step = () => stepper.query('select webhooks_relay.backfill_step(p_only => $1)', [backfill]);
    await step();   // c1 examined, committed
    const next = await freeId();
    const renumber = () => writer.query('update crm.contacts set id = $2 where id = $1', [c1.id, next]);
    const failed = await renumber().then(() => null, (error) => error);
    t.is(failed?.code, '40001', 'its snapshot does not show where the walk is');
    await writer.query('rollback');
    await writer.query(`begin isolation level ${isolation}`);
    await renumber();
    await writer.query('commit');
    for (let i = 0; i < 10 && (await db().pool.query('select state from webhooks.backfills where id = $1', [backfill])).rows[0].state === 'running'; i++) {
      await step();
    }
    const snapshots = (await deliveriesOf(db().pool, [hook.id])).filter((d) => d.action === 'contact.snapshot')
      .map((d) => d.payload.data.contact.city);
    t.deepEqual(snapshots, ['c1', 'c2'], 'c1 once');
  });
}

test('a change of id reads the queue of the companies concerned by the contact, not of every company with work', async (t) => {
  const OTHERS = 2_000;
  const pool = db().pool;
  // (a CRM whose keys carry the new id to the assignments, as the test above)
  await pool.query(`
    alter table crm.contact_assignments drop constraint contact_assignments_contact_id_fkey,
      add constraint contact_assignments_contact_id_fkey foreign key (contact_id) references crm.contacts
        on update cascade on delete cascade`);
  const f = make();
  const [owner, other] = [await f.company(), await f.company()];
  const user = await f.user(other.id);
  const ownerHook = await f.webhook({ companyId: owner.id, actions: ['contact.created', 'contact.user_assigned'], fields: ['city'] });
  const otherHook = await f.webhook({ companyId: other.id, actions: ['contact.user_assigned'], fields: ['city'] });
  const contact = await f.contact(owner.id, { city: 'Boston' });
  await pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, user.id]);
  t.is((await claim(otherHook.id)).rows.length, 1, 'the assigned user\'s company\'s delivery is in flight');
  // every other company's work: a delivery waiting to each of OTHERS webhooks and one in
  // flight to each of as many more (the queue has no foreign key to the webhooks)
  await pool.query(
    `insert into webhooks.delivery_queue (delivery_id, created_at, webhook_id, company_id, action, contact_id,
                                          locked_by, locked_until)
     select 1000000000000 + n, now(), 1000000000 + n, 1000000000 + n, 'contact.created', 1000000000 + n,
            case when n > $1 then 'relay-z' end, case when n > $1 then now() + interval '1 hour' end
     from generate_series(1, 2 * $1::int) n`, [OTHERS]);
  await pool.query('analyze webhooks.delivery_queue');
  const client = await connected(t);
  const next = await freeId();
  await client.query('begin');
  const { used } = await indexUse(client, 'webhooks.delivery_queue',
    () => client.query('update crm.contacts set id = $2 where id = $1', [contact.id, next]));
  await client.query('commit');
  t.true(used < 50, `queue index entries read: ${used}`);
  t.deepEqual(await queued(ownerHook.id), [
    { action: 'contact.created', contact_id: next, in_flight: false, put_off: false },
    { action: 'contact.user_assigned', contact_id: next, in_flight: false, put_off: false },
  ], 'the owner\'s deliveries waiting moved');
  t.deepEqual(await queued(otherHook.id), [
    { action: 'contact.user_assigned', contact_id: next, in_flight: true, put_off: false },
  ], 'the assigned user\'s company\'s delivery in flight moved');
  const { rows: [{ left }] } = await pool.query(
    'select count(*)::int as left from webhooks.delivery_queue where contact_id = $1', [contact.id]);
  t.is(left, 0, 'nothing is left under the old id');
});

test('an update that changes the id and the company moves the deliveries to the company it left too', async (t) => {
  const f = make();
  const [left, owner] = [await f.company(), await f.company()];
  const hook = await f.webhook({ companyId: left.id, actions: ['contact.created'], fields: ['city'] });
  const contact = await f.contact(left.id, { city: 'Boston' });
  const next = await freeId();
  await db().pool.query('update crm.contacts set id = $2, company_id = $3 where id = $1', [contact.id, next, owner.id]);
  t.deepEqual(await queued(hook.id), [
    { action: 'contact.created', contact_id: next, in_flight: false, put_off: false },
  ]);
});

/**
 * A company with contacts c1 and c2, a webhook's backfill over them that a step of
 * its own connection walks one contact at a time, its first step taken (c1 examined,
 * c2 not yet); `finish` steps until it is done and gives the snapshots sent, as
 * [city, contact id].
 */
async function backfillOneAtATime(t: ExecutionContext) {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted'], fields: ['city'] });
  const c1 = await f.contact(company.id, { city: 'c1' });
  const c2 = await f.contact(company.id, { city: 'c2' });
  const { rows: [{ id: backfill }] } = await db().pool.query('select webhooks.backfill($1) as id', [hook.id]);
  const stepper = await connected(t);
  await stepper.query("set webhooks.backfill_batch = '1'");
  const step = () => stepper.query('select webhooks_relay.backfill_step(p_only => $1) as n', [backfill]);
  await step();
  const finish = async () => {
    for (let i = 0; i < 10 && (await db().pool.query('select state from webhooks.backfills where id = $1', [backfill])).rows[0].state === 'running'; i++) {
      await step();
    }
    return (await deliveriesOf(db().pool, [hook.id])).filter((d) => d.action === 'contact.snapshot')
      .map((d) => [d.payload.data.contact.city as string, String(d.contact_id)]);
  };
  return { company, c1, c2, finish };
}

test('a backfill running: a contact inserted ahead of the walk with the id an examined contact was renumbered to, then deleted, is examined', async (t) => {
  const { company, c1, finish } = await backfillOneAtATime(t);
  const ahead = await freeId();
  await db().pool.query('update crm.contacts set id = $2 where id = $1', [c1.id, ahead]);   // noted: passed over there
  await db().pool.query('delete from crm.contacts where id = $1', [ahead]);
  await db().pool.query("insert into crm.contacts (id, company_id, city) values ($1, $2, 'c3')", [ahead, company.id]);
  const snapshots = await finish();
  t.deepEqual(snapshots.map(([city]) => city), ['c1', 'c2', 'c3'], 'the contact inserted later has its snapshot');
  t.deepEqual(snapshots[2], ['c3', ahead]);
});

test('a backfill running: a contact examined, renumbered ahead of the walk and changed there, is not examined again', async (t) => {
  const { c1, finish } = await backfillOneAtATime(t);
  const [ahead, further] = [await freeId(), await freeId()];
  await db().pool.query('update crm.contacts set id = $2 where id = $1', [c1.id, ahead]);
  await db().pool.query("update crm.contacts set city = 'c1 changed' where id = $1", [ahead]);
  await db().pool.query('update crm.contacts set id = $2 where id = $1', [ahead, further]);
  t.deepEqual((await finish()).map(([city]) => city), ['c1', 'c2']);
});

test('a backfill running: a contact inserted behind the walk with the id a contact not examined was renumbered to, then deleted, is left as any behind it', async (t) => {
  const { company, c2, finish } = await backfillOneAtATime(t);
  const behind = `-${await freeId()}`;
  await db().pool.query('update crm.contacts set id = $2 where id = $1', [c2.id, behind]);   // noted: to examine there
  await db().pool.query('delete from crm.contacts where id = $1', [behind]);
  await db().pool.query("insert into crm.contacts (id, company_id, city) values ($1, $2, 'c3')", [behind, company.id]);
  t.deepEqual((await finish()).map(([city]) => city), ['c1'], 'inserted behind the walk after it passed: not the contact noted');
});
