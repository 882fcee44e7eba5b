// The CRM at scale partitions crm.contacts (here by created_at): a new partitioned
// table, the rows copied, the names swapped, the old one dropped, then the engine
// applied again, as a CRM release would. Capture goes on, on partitions made before
// and after; and an UPDATE that moves a row to another partition (Postgres runs it as
// a delete and an insert) is the contact updated, not deleted and created.
// The tests change the table itself, so they run one after another.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { deliveriesOf, factories } from '../helpers/factories.ts';
import { migrate } from '../../tools/migrate.ts';

const db = useTestDatabase(test);
const make = () => factories(db().pool);

const ACTIONS = ['contact.created', 'contact.updated', 'contact.deleted'];

let partitioned: Promise<void> | undefined;
async function partition(): Promise<void> {
  await db().pool.query(`
    begin;
    create table crm.contacts_partitioned (like crm.contacts including defaults including identity) partition by range (created_at);
    alter table crm.contacts_partitioned add primary key (id, created_at);
    create table crm.contacts_2025 partition of crm.contacts_partitioned for values from (minvalue) to ('2026-01-01');
    insert into crm.contacts_partitioned overriding system value select * from crm.contacts;
    alter table crm.contacts rename to contacts_unpartitioned;
    alter table crm.contacts_partitioned rename to contacts;
    drop table crm.contacts_unpartitioned cascade;
    commit;`);
  await migrate(db().url);
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
