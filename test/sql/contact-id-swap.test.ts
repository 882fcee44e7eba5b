// Two contacts' ids swapped (a CRM's merge tool): in one statement, which a key whose
// uniqueness is checked at the statement's end allows, or through a third id in one
// transaction. Each contact's change is announced with its new id and the id it had
// as previous_contact_id, and each one's deliveries on their way follow it: none of
// one contact's goes under the other's id (contact_id_changed, 25_capture.sql). This
// file's database has such a key.
import test from 'ava';
import { ownConnection, useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { untimedStep } from '../helpers/backfill-step.ts';

const db = useTestDatabase(test);
const connected = (t: { teardown: (fn: () => Promise<void>) => void }) => ownConnection(db().url, t);
const make = () => factories(db().pool);
// an id no contact has (the sequence hands out smaller ones)
const freeId = async () => (await db().pool.query(
  "select nextval(pg_get_serial_sequence('crm.contacts', 'id')) + 1000000 as id")).rows[0].id as string;
// (a key whose uniqueness is checked at the statement's end, as a swap needs)
let altered: Promise<unknown> | undefined;
const deferrableKey = () => (altered ??= db().pool.query(`
  alter table crm.contacts drop constraint contacts_pkey cascade;
  alter table crm.contacts add primary key (id) deferrable initially immediate`));

test('two contacts\' ids swapped by one statement (a deferrable key): each one\'s deliveries and announcement under the id it has now', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.updated'], fields: ['city'] });
  const [one, two] = [await f.contact(company.id, { city: 'Boston' }), await f.contact(company.id, { city: 'Reno' })];
  await deferrableKey();
  const client = await connected(t);
  await client.query('begin');
  // a change of the second contact earlier in the transaction: its own, under its id now
  await client.query("update crm.contacts set city = 'Elko' where id = $1", [two.id]);
  await client.query(`update crm.contacts set id = case id when $1::bigint then $2::bigint else $1::bigint end
                      where id in ($1, $2)`, [one.id, two.id]);
  await client.query('commit');
  const { rows } = await db().pool.query(
    `select d.action, d.contact_id::text as named, d.payload->'data'->'contact'->>'city' as city,
            d.payload->'data'->>'previous_contact_id' as previous,
            (select q.contact_id::text from webhooks.delivery_queue q where q.delivery_id = d.id) as queued_as
     from webhooks.deliveries d where d.webhook_id = $1 order by d.id`, [hook.id]);
  // Boston now has the second id, Reno (Elko) the first
  t.deepEqual(rows, [
    { action: 'contact.created', named: one.id, city: 'Boston', previous: null, queued_as: two.id },
    { action: 'contact.created', named: two.id, city: 'Reno', previous: null, queued_as: one.id },
    { action: 'contact.updated', named: two.id, city: 'Elko', previous: null, queued_as: one.id },
    { action: 'contact.updated', named: two.id, city: 'Boston', previous: one.id, queued_as: two.id },
    { action: 'contact.updated', named: one.id, city: 'Elko', previous: two.id, queued_as: one.id },
  ]);
  // and again, the other way round, by three statements through a third id
  const spare = await freeId();
  const rewrite = await connected(t);
  await rewrite.query('begin');
  await rewrite.query('update crm.contacts set id = $2 where id = $1', [one.id, spare]);
  await rewrite.query('update crm.contacts set id = $2 where id = $1', [two.id, one.id]);
  await rewrite.query('update crm.contacts set id = $2 where id = $1', [spare, two.id]);
  await rewrite.query('commit');
  const { rows: queued } = await db().pool.query(
    `select d.payload->'data'->'contact'->>'city' as city, q.contact_id::text as queued_as
     from webhooks.deliveries d join webhooks.delivery_queue q on q.delivery_id = d.id
     where d.webhook_id = $1 order by d.id`, [hook.id]);
  // Boston has the first id again, Elko the second: each one's deliveries follow it
  t.deepEqual(queued.map((r) => [r.city, r.queued_as]), [
    ['Boston', one.id], ['Reno', two.id], ['Elko', two.id], ['Boston', one.id], ['Elko', two.id],
    ['Elko', two.id], ['Boston', one.id], ['Elko', two.id],
  ]);
});

test('two contacts\' ids swapped by one statement on a coalescing webhook: each one\'s change merges into its own update waiting out its window', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'] });
  await db().pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', false)`, [hook.id]);
  const [one, two] = [await f.contact(company.id, { city: 'Boston' }), await f.contact(company.id, { city: 'Reno' })];
  await deferrableKey();
  await db().pool.query("update crm.contacts set city = 'Austin' where id = $1", [one.id]);
  await db().pool.query("update crm.contacts set city = 'Elko' where id = $1", [two.id]);
  await db().pool.query(`update crm.contacts set id = case id when $1::bigint then $2::bigint else $1::bigint end
                         where id in ($1, $2)`, [one.id, two.id]);
  const { rows } = await db().pool.query(
    `select d.contact_id::text as named, d.payload->'data'->'contact'->>'city' as city,
            d.payload->'data'->>'previous_contact_id' as previous,
            (select q.contact_id::text from webhooks.delivery_queue q where q.delivery_id = d.id) as queued_as
     from webhooks.deliveries d where d.webhook_id = $1 order by d.id`, [hook.id]);
  // Austin now has the second id, Elko the first
  t.deepEqual(rows, [
    { named: two.id, city: 'Austin', previous: one.id, queued_as: two.id },
    { named: one.id, city: 'Elko', previous: two.id, queued_as: one.id },
  ]);
});

test('two contacts\' ids swapped by one statement on an ordered webhook: each one\'s change waits behind its own delivery in flight, not the other\'s', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.updated'], fields: ['city'] });
  await db().pool.query('select webhooks.set_webhook_delivery($1, null, true)', [hook.id]);
  const one = await f.contact(company.id, { city: 'Boston' });
  const claim = () => db().pool.query<{ delivery_id: string }>(
    `select delivery_id from webhooks_relay.claim_deliveries('relay-a', 10, interval '1 minute', 10,
       '{}'::bigint[], '{}'::integer[], array[$1::bigint])`, [hook.id]);
  // the first contact's create in flight; the second's waiting
  t.is((await claim()).rows.length, 1);
  const two = await f.contact(company.id, { city: 'Reno' });
  await deferrableKey();
  await db().pool.query(`update crm.contacts set id = case id when $1::bigint then $2::bigint else $1::bigint end
                         where id in ($1, $2)`, [one.id, two.id]);
  // Reno, now the first id, has nothing in flight: its create goes, its change behind
  // it; Boston's change waits for its create in flight
  const { rows: claimed } = await claim();
  const { rows } = await db().pool.query(
    `select d.action, d.payload->'data'->'contact'->>'city' as city from webhooks.deliveries d
     where d.id = any ($1::bigint[]) order by d.id`, [claimed.map((c) => c.delivery_id)]);
  t.deepEqual(rows, [{ action: 'contact.created', city: 'Reno' }]);
});

test('two contacts\' ids swapped by one statement: a backfill\'s snapshots not sent yet fail where the change\'s message carries the contact, and wait under the new id where none does', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'] });
  // hears no update: its snapshots go, each under the id its contact has now
  const deaf = await f.webhook({ companyId: company.id, actions: ['contact.deleted'], fields: ['city'] });
  const [one, two] = [await f.contact(company.id, { city: 'Boston' }), await f.contact(company.id, { city: 'Reno' })];
  for (const webhook of [hook, deaf]) {
    const { rows: [{ id }] } = await db().pool.query('select webhooks.backfill($1) as id', [webhook.id]);
    // (one step writes both and ends the walk: a batch is 500)
    await untimedStep(db().pool, id);
  }
  await deferrableKey();
  await db().pool.query(`update crm.contacts set id = case id when $1::bigint then $2::bigint else $1::bigint end
                         where id in ($1, $2)`, [one.id, two.id]);
  const rows = async (webhookId: string) => (await db().pool.query(
    `select d.action, d.state, d.payload->'data'->'contact'->>'city' as city,
            (select q.contact_id::text from webhooks.delivery_queue q where q.delivery_id = d.id) as queued_as
     from webhooks.deliveries d where d.webhook_id = $1 order by d.id`, [webhookId])).rows;
  t.deepEqual(await rows(hook.id), [
    { action: 'contact.snapshot', state: 'failed', city: 'Boston', queued_as: null },
    { action: 'contact.snapshot', state: 'failed', city: 'Reno', queued_as: null },
    { action: 'contact.updated', state: 'pending', city: 'Boston', queued_as: two.id },
    { action: 'contact.updated', state: 'pending', city: 'Reno', queued_as: one.id },
  ]);
  t.deepEqual(await rows(deaf.id), [
    { action: 'contact.snapshot', state: 'pending', city: 'Boston', queued_as: two.id },
    { action: 'contact.snapshot', state: 'pending', city: 'Reno', queued_as: one.id },
  ]);
});

// Two ids swapped by one statement, which meets the rows in the order of their ids (the
// key's index scan, the only plan left to it). Returns the order it met them in, as
// its notes of the changes say.
async function swapByKey(t: { teardown: (fn: () => Promise<void>) => void }, a: string, b: string): Promise<string[]> {
  await deferrableKey();
  const client = await connected(t);
  await client.query('begin');
  await client.query('set local enable_seqscan = off; set local enable_bitmapscan = off');
  await client.query(`update crm.contacts set id = case id when $1::bigint then $2::bigint else $1::bigint end
                      where id in ($1, $2)`, [a, b]);
  await client.query('commit');
  const { rows } = await db().pool.query(
    `select from_id::text from webhooks_private.contact_renumberings where from_id in ($1, $2) order by id`, [a, b]);
  return rows.map((r) => r.from_id);
}

// (the contact met first is the one with the smaller id, made first: each order of
// the rows against the order of the messages waiting, by which contact changed first)
for (const order of ['the contact met first', 'the contact met second'] as const) {
  test(`two ids swapped by one statement on a coalescing webhook, ${order} changed first: each change merges into its own contact's update waiting, not the other's`, async (t) => {
    const f = make();
    const company = await f.company();
    const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'] });
    await db().pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', false)`, [hook.id]);
    const [one, two] = [await f.contact(company.id, { city: 'Boston' }), await f.contact(company.id, { city: 'Reno' })];
    const changes: [string, string][] = [["Austin", one.id], ["Elko", two.id]];
    for (const [city, id] of order === 'the contact met first' ? changes : changes.reverse()) {
      await db().pool.query('update crm.contacts set city = $1 where id = $2', [city, id]);
    }
    t.deepEqual(await swapByKey(t, one.id, two.id), [one.id, two.id]);
    const { rows } = await db().pool.query(
      `select d.contact_id::text as named, d.payload->'data'->'contact'->>'id' as id,
              d.payload->'data'->'contact'->>'city' as city, d.payload->'data'->>'previous_contact_id' as previous,
              d.payload->'data'->'changed_fields' as changed, d.payload->'data'->'merged' as merged,
              (select q.contact_id::text from webhooks.delivery_queue q where q.delivery_id = d.id) as queued_as
       from webhooks.deliveries d where d.webhook_id = $1 order by d.contact_id`, [hook.id]);
    // Elko now has the first id, Austin the second: one message each
    t.deepEqual(rows, [
      { named: one.id, id: one.id, city: 'Elko', previous: two.id, changed: ['city', 'id'], merged: 2, queued_as: one.id },
      { named: two.id, id: two.id, city: 'Austin', previous: one.id, changed: ['city', 'id'], merged: 2, queued_as: two.id },
    ]);
  });

  test(`two ids swapped by one statement on a coalescing webhook, ${order} with no update waiting: it gets a message of its own`, async (t) => {
    const f = make();
    const company = await f.company();
    const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'] });
    await db().pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', false)`, [hook.id]);
    const [one, two] = [await f.contact(company.id, { city: 'Boston' }), await f.contact(company.id, { city: 'Reno' })];
    // the other alone has an update waiting
    const [idle, busy] = order === 'the contact met first' ? [one, two] : [two, one];
    await db().pool.query("update crm.contacts set city = 'Elko' where id = $1", [busy.id]);
    t.deepEqual(await swapByKey(t, one.id, two.id), [one.id, two.id]);
    const { rows } = await db().pool.query(
      `select d.contact_id::text as named, d.payload->'data'->'contact'->>'city' as city,
              d.payload->'data'->>'previous_contact_id' as previous, d.payload->'data'->'merged' as merged,
              (select q.contact_id::text from webhooks.delivery_queue q where q.delivery_id = d.id) as queued_as
       from webhooks.deliveries d where d.webhook_id = $1 order by d.id`, [hook.id]);
    // the idle contact's change is a message of its own under the busy one's id; the
    // busy one's merges into its update waiting, under the idle one's
    t.deepEqual(rows.map((r) => [r.named, r.city, r.previous, r.merged ?? null, r.queued_as]), [
      [idle.id, 'Elko', busy.id, 2, idle.id],
      [busy.id, idle === one ? 'Boston' : 'Reno', idle.id, 1, busy.id],
    ]);
  });
}
