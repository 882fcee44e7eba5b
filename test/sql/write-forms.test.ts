// The CRM's writers use every form of SQL: each fires, per row, what the README's
// actions say, in the order of the rows' changes, and a change rolled back (a
// savepoint's too) fires nothing.
import test from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { useTestDatabase } from '../helpers/db.ts';
import { deliveriesOf, factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);
const make = () => factories(db().pool);
const run = promisify(execFile);
const ALL = ['contact.created', 'contact.updated', 'contact.deleted', 'contact.status_added', 'contact.status_removed',
  'contact.user_assigned', 'contact.first_company_user_assigned'];
const fired = async (hookId: string) => (await deliveriesOf(db().pool, [hookId]))
  .map((r) => [r.action, r.contact_id, r.payload.data.contact.city ?? null, r.payload.data.changed_fields ?? null]);

test('INSERT … ON CONFLICT DO UPDATE: contact.created for the rows inserted, contact.updated for those updated', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ALL, fields: ['city'] });
  const old = await f.contact(company.id, { city: 'Boston' });
  const { rows: [{ id: next }] } = await db().pool.query("select nextval(pg_get_serial_sequence('crm.contacts', 'id')) + 1000000 as id");
  await db().pool.query(`insert into crm.contacts (id, company_id, city) values ($1, $3, 'Denver'), ($2, $3, 'Austin')
                         on conflict (id) do update set city = excluded.city`, [old.id, next, company.id]);
  t.deepEqual((await fired(hook.id)).slice(1), [
    ['contact.updated', old.id, 'Denver', ['city']],
    ['contact.created', next, 'Austin', null],
  ]);
});

test('MERGE inserting, updating and deleting contacts in one statement: one action a row', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ALL, fields: ['city'] });
  const [kept, gone] = [await f.contact(company.id, { city: 'Boston' }), await f.contact(company.id, { city: 'Reno' })];
  const { rows: [{ id: next }] } = await db().pool.query("select nextval(pg_get_serial_sequence('crm.contacts', 'id')) + 1000000 as id");
  await db().pool.query(`
    merge into crm.contacts c
    using (values ($1::bigint, 'Denver'), ($2::bigint, null), ($3::bigint, 'Austin')) v(id, city) on c.id = v.id
    when matched and v.city is null then delete
    when matched then update set city = v.city
    when not matched then insert (id, company_id, city) values (v.id, $4, v.city)`, [kept.id, gone.id, next, company.id]);
  t.deepEqual((await fired(hook.id)).slice(2), [
    ['contact.updated', kept.id, 'Denver', ['city']],
    ['contact.deleted', gone.id, 'Reno', null],
    ['contact.created', next, 'Austin', null],
  ]);
});

test('MERGE adding and removing tags, and assigning, in one statement each', async (t) => {
  const f = make();
  const company = await f.company();
  const [lead, customer] = [await f.status(company.id, 'Lead'), await f.status(company.id, 'Customer')];
  const [jane, john] = [await f.user(company.id), await f.user(company.id)];
  const contact = await f.contact(company.id);
  await db().pool.query('insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [contact.id, lead.id]);
  await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, jane.id]);
  const hook = await f.webhook({ companyId: company.id, actions: ALL });

  await db().pool.query(`
    merge into crm.contact_statuses s using (values ($2::bigint, 'off'), ($3::bigint, 'on')) v(status_id, op)
    on s.contact_id = $1 and s.status_id = v.status_id
    when matched and v.op = 'off' then delete
    when not matched and v.op = 'on' then insert (contact_id, status_id) values ($1, v.status_id)`, [contact.id, lead.id, customer.id]);
  await db().pool.query(`
    merge into crm.contact_assignments a using (values ($2::bigint, 'off'), ($3::bigint, 'on')) v(user_id, op)
    on a.contact_id = $1 and a.user_id = v.user_id
    when matched and v.op = 'off' then delete
    when not matched and v.op = 'on' then insert (contact_id, user_id) values ($1, v.user_id)`, [contact.id, jane.id, john.id]);

  t.deepEqual((await deliveriesOf(db().pool, [hook.id])).map((r) => [r.action, (r.payload.data.status ?? r.payload.data.user).id]), [
    ['contact.status_removed', Number(lead.id)],
    ['contact.status_added', Number(customer.id)],
    // (Jane's assignment went in the same statement: John is the company's first again)
    ['contact.first_company_user_assigned', Number(john.id)],
    ['contact.user_assigned', Number(john.id)],
  ]);
});

test('COPY into contacts, tags and assignments fires as inserts do', async (t) => {
  const f = make();
  const company = await f.company();
  const user = await f.user(company.id);
  const status = await f.status(company.id, 'Lead');
  const hook = await f.webhook({ companyId: company.id, actions: ALL, fields: ['city'] });
  const { rows: [{ id }] } = await db().pool.query("select nextval(pg_get_serial_sequence('crm.contacts', 'id')) + 1000000 as id");
  const script = [
    'copy crm.contacts (id, company_id, city) from stdin;', `${id}\t${company.id}\tBoston`, '\\.',
    'copy crm.contact_statuses (contact_id, status_id) from stdin;', `${id}\t${status.id}`, '\\.',
    'copy crm.contact_assignments (contact_id, user_id) from stdin;', `${id}\t${user.id}`, '\\.', '',
  ].join('\n');
  const psql = run('psql', [db().url, '--no-psqlrc', '-v', 'ON_ERROR_STOP=1', '-f', '-']);
  psql.child.stdin!.end(script);
  await psql;
  t.deepEqual((await deliveriesOf(db().pool, [hook.id])).map((r) => r.action), [
    'contact.created', 'contact.status_added', 'contact.first_company_user_assigned', 'contact.user_assigned',
  ]);
});

test('UPDATE … FROM that matches one contact twice updates it, and announces it, once', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ALL, fields: ['city'] });
  const contact = await f.contact(company.id, { city: 'Boston' });
  await db().pool.query(`update crm.contacts c set city = v.city from (values ($1::bigint, 'Denver'), ($1::bigint, 'Denver')) v(id, city)
                         where c.id = v.id`, [contact.id]);
  t.deepEqual((await fired(hook.id)).slice(1), [['contact.updated', contact.id, 'Denver', ['city']]]);
});

test('a savepoint rolled back takes its changes\' deliveries with it; a contact deleted and inserted again with its id is both', async (t) => {
  const f = make();
  const company = await f.company();
  const user = await f.user(company.id);
  const hook = await f.webhook({ companyId: company.id, actions: ALL, fields: ['city'] });
  const contact = await f.contact(company.id, { city: 'Boston' });
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    await client.query('savepoint s');
    await client.query("update crm.contacts set city = 'Nowhere' where id = $1", [contact.id]);
    await client.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, user.id]);
    await client.query('delete from crm.contacts where id = $1', [contact.id]);
    await client.query('rollback to savepoint s');
    await client.query("update crm.contacts set city = 'Denver' where id = $1", [contact.id]);
    await client.query('delete from crm.contacts where id = $1', [contact.id]);
    await client.query("insert into crm.contacts (id, company_id, city) values ($1, $2, 'Austin')", [contact.id, company.id]);
    await client.query('commit');
  } finally {
    client.release();
  }
  t.deepEqual(await fired(hook.id), [
    ['contact.created', contact.id, 'Boston', null],
    ['contact.updated', contact.id, 'Denver', ['city']],
    ['contact.deleted', contact.id, 'Denver', null],
    ['contact.created', contact.id, 'Austin', null],
  ]);
});
