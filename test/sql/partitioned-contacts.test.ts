// The CRM at scale partitions crm.contacts (here by created_at): a new partitioned
// table, the rows copied, the names swapped, the old one dropped, then the engine
// applied again, as a CRM release would. Capture goes on, on partitions made before
// and after; and an UPDATE that moves a row to another partition (Postgres runs it as
// a delete and an insert) is the contact updated, not deleted and created.
// The tests change the table itself, so they run one after another.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { deliveriesOf, factories } from '../helpers/factories.ts';
import { partitionContacts } from '../helpers/partitioned-contacts.ts';

const db = useTestDatabase(test);
const make = () => factories(db().pool);

const ACTIONS = ['contact.created', 'contact.updated', 'contact.deleted'];

let partitioned: Promise<void> | undefined;
async function partition(): Promise<void> {
  await partitionContacts(db(), 'contacts_2025', '2026-01-01');
  // a partition made after the engine was applied
  await db().pool.query(`create table crm.contacts_2026 partition of crm.contacts for values from ('2026-01-01') to (maxvalue)`);
}
/** crm.contacts partitioned, once for the file (the database is made by a hook of its own). */
const ready = () => (partitioned ??= partition());

const sent = async (hookId: string) =>
  (await deliveriesOf(db().pool, [hookId])).map((r) => [r.action, Number(r.contact_id), r.payload.data.contact, r.payload.data.changed_fields]);

test.serial('every write to a partitioned contacts table is announced, on partitions made before and after', async (t) => {
  await ready();
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ACTIONS, fields: ['first_name'] });
  const old = await f.contact(company.id, { first_name: 'Ada', created_at: '2025-06-01' });
  const recent = await f.contact(company.id, { first_name: 'Alan', created_at: '2026-06-01' });
  await db().pool.query(`update crm.contacts set first_name = first_name || '!' where company_id = $1`, [company.id]);
  await db().pool.query(`delete from crm.contacts where company_id = $1`, [company.id]);
  const [a, b] = [Number(old.id), Number(recent.id)];
  t.deepEqual(await sent(hook.id), [
    ['contact.created', a, { id: a, first_name: 'Ada' }, undefined],
    ['contact.created', b, { id: b, first_name: 'Alan' }, undefined],
    ['contact.updated', a, { id: a, first_name: 'Ada!' }, ['first_name']],
    ['contact.updated', b, { id: b, first_name: 'Alan!' }, ['first_name']],
    ['contact.deleted', a, { id: a, first_name: 'Ada!' }, undefined],
    ['contact.deleted', b, { id: b, first_name: 'Alan!' }, undefined],
  ]);
});

test.serial('an UPDATE that moves a contact to another partition is one contact.updated', async (t) => {
  await ready();
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ACTIONS, fields: ['first_name', 'created_at'] });
  const contact = await f.contact(company.id, { first_name: 'Grace', created_at: '2025-06-01' });
  const id = Number(contact.id);
  const moved = await db().pool.query(
    `update crm.contacts set created_at = '2026-06-01T00:00:00Z', first_name = 'Grace H.' where id = $1 returning tableoid::regclass::text`, [id]);
  t.is(moved.rows[0].tableoid, 'crm.contacts_2026');
  t.deepEqual((await sent(hook.id)).slice(1), [
    ['contact.updated', id, { id, first_name: 'Grace H.', created_at: '2026-06-01T00:00:00+00:00' }, ['created_at', 'first_name']],
  ]);
});

test.serial('one statement that moves some rows and not others: each contact one message, the platform\'s contact.saved', async (t) => {
  const f = make();
  const company = await f.company();
  const updated = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.deleted', 'contact.saved'], fields: ['first_name'] });
  const contacts = [];
  for (const created_at of ['2025-03-01', '2025-04-01', '2026-03-01']) {
    contacts.push(await f.contact(company.id, { first_name: 'Hedy', created_at }));
  }
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    await client.query("set local webhooks.source = 'platform'");
    // the first two move to 2026's partition, the third stays where it is
    await client.query(`update crm.contacts set created_at = created_at + interval '1 year' where company_id = $1`, [company.id]);
    await client.query('commit');
  } finally {
    client.release();
  }
  const messages = (await sent(updated.id)).slice(3);
  t.deepEqual(messages.map(([action, id, , changed]) => [action, id, changed]).sort((a, b) => Number(a[1]) - Number(b[1])),
    contacts.map((c) => ['contact.saved', Number(c.id), ['created_at']]));
  const { rows } = await db().pool.query(
    `select tableoid::regclass::text as part, count(*)::int from crm.contacts where company_id = $1 group by 1 order by 1`, [company.id]);
  t.deepEqual(rows, [{ part: 'crm.contacts_2026', count: 3 }]);
});

test.serial('TRUNCATE of one partition takes what the engine kept of its contacts, and ends their updates\' waits; the other partitions\' stay', async (t) => {
  await ready();
  const f = make();
  const company = await f.company();
  const user = await f.user(company.id);
  await f.webhook({ companyId: company.id, actions: ['contact.first_company_user_assigned'] });
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['first_name'] });
  await db().pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', false)`, [hook.id]);
  const old = await f.contact(company.id, { first_name: 'Ada', created_at: '2025-06-01' });
  const recent = await f.contact(company.id, { first_name: 'Alan', created_at: '2026-06-01' });
  await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $3), ($2, $3)',
    [old.id, recent.id, user.id]);
  await db().pool.query(`update crm.contacts set first_name = first_name || '!' where company_id = $1`, [company.id]);

  await db().pool.query('truncate crm.contacts_2025');
  const { rows: firsts } = await db().pool.query(
    'select contact_id::int from webhooks_private.first_assignments where contact_id in ($1, $2) order by 1', [old.id, recent.id]);
  t.deepEqual(firsts.map((r) => r.contact_id), [Number(recent.id)]);
  const { rows } = await db().pool.query(
    `select q.contact_id::int, q.next_attempt_at <= now() as due from webhooks.delivery_queue q
     where q.webhook_id = $1 order by q.contact_id`, [hook.id]);
  t.deepEqual(rows, [{ contact_id: Number(old.id), due: true }, { contact_id: Number(recent.id), due: false }]);
});
