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
  // (in the order MERGE's join met the rows, which its plan decides: compared by contact)
  const byContact = (rows: unknown[][]) => [...rows].sort((a, b) => Number(a[1]) - Number(b[1]));
  t.deepEqual(byContact((await fired(hook.id)).slice(2)), byContact([
    ['contact.updated', kept.id, 'Denver', ['city']],
    ['contact.deleted', gone.id, 'Reno', null],
    ['contact.created', next, 'Austin', null],
  ]));
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

// One statement whose two parts each give a contact a user of one company (MERGE's
// update and insert arms, or a writable CTE's update beside its insert): Postgres fires
// the assignments' insert trigger and update trigger one after the other, each with its
// own rows, and each took the other's new user for a colleague assigned before.
const assignedTwice = async (t: import('ava').ExecutionContext, statement: string) => {
  const f = make();
  const [owner, other] = [await f.company(), await f.company()];
  const [ownerUser, otherUser, otherColleague] = [await f.user(owner.id), await f.user(other.id), await f.user(other.id)];
  const contact = await f.contact(owner.id);
  await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, ownerUser.id]);
  const hook = await f.webhook({ companyId: other.id, actions: ['contact.first_company_user_assigned', 'contact.user_assigned'] });
  // (in a transaction whose writer set the engine's note to anything: never an error)
  await inTransaction(null, async (c) => {
    await c.query(`select set_config(webhooks_private.assigned_setting(), '1:1 {x} {99999999999999999999}', true)`);
    await c.query(statement, [contact.id, ownerUser.id, otherUser.id, otherColleague.id]);
  });
  const got = (await deliveriesOf(db().pool, [hook.id])).map((r) => [r.action, String(r.payload.data.user.id)]);
  t.is(got.filter(([action]) => action === 'contact.first_company_user_assigned').length, 1, JSON.stringify(got));
  t.deepEqual(got.filter(([action]) => action === 'contact.user_assigned').map(([, user]) => user).sort(),
    [otherUser.id, otherColleague.id].sort());
};

test('MERGE giving a contact two users of a company, one by its update arm and one by its insert arm: one first', (t) =>
  assignedTwice(t, `
    merge into crm.contact_assignments a
    using (values ($2::bigint, $3::bigint), (0, $4::bigint)) v(old_user, new_user)
    on a.contact_id = $1 and a.user_id = v.old_user
    when matched then update set user_id = v.new_user
    when not matched then insert (contact_id, user_id) values ($1, v.new_user)`));

test('a writable CTE reassigning a contact to a user of a company while it inserts a colleague: one first', (t) =>
  assignedTwice(t, `
    with moved as (update crm.contact_assignments set user_id = $3 where contact_id = $1 and user_id = $2 returning 1)
    insert into crm.contact_assignments (contact_id, user_id) values ($1, $4)`));

test('an upsert of assignments that inserts one user and touches a colleague assigned before: no first', async (t) => {
  const f = make();
  const company = await f.company();
  // (the user added has the smaller id: the colleague before is the first all the same)
  const added = await f.user(company.id);
  const before = await f.user(company.id);
  const contact = await f.contact(company.id);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.first_company_user_assigned', 'contact.user_assigned'] });
  await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, before.id]);
  await db().pool.query(`insert into crm.contact_assignments (contact_id, user_id) values ($1, $2), ($1, $3)
                         on conflict (contact_id, user_id) do update set assigned_at = now()`, [contact.id, before.id, added.id]);
  t.deepEqual((await deliveriesOf(db().pool, [hook.id])).map((r) => [r.action, String(r.payload.data.user.id)]), [
    ['contact.first_company_user_assigned', before.id],
    ['contact.user_assigned', before.id],
    ['contact.user_assigned', added.id],
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

// (as a client of the CRM's app runs its statements: one transaction, each with its source)
const inTransaction = async (source: string | null, work: (client: import('pg').PoolClient) => Promise<unknown>) => {
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    if (source) await client.query('select set_config(\'webhooks.source\', $1, true)', [source]);
    await work(client);
    await client.query('commit');
  } catch (error) {
    await client.query('rollback');
    throw error;
  } finally {
    client.release();
  }
};

test('INSERT … ON CONFLICT: DO NOTHING and DO UPDATE … WHERE that skips announce nothing for the row left; DO UPDATE to the same values is a save on the platform and nothing elsewhere', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: [...ALL, 'contact.saved'], fields: ['city'] });
  const old = await f.contact(company.id, { city: 'Boston' });
  const { rows: [{ id: next }] } = await db().pool.query("select nextval(pg_get_serial_sequence('crm.contacts', 'id')) + 1000000 as id");
  await db().pool.query(`insert into crm.contacts (id, company_id, city) values ($1, $3, 'Denver'), ($2, $3, 'Austin')
                         on conflict (id) do nothing`, [old.id, next, company.id]);
  await db().pool.query(`insert into crm.contacts (id, company_id, city) values ($1, $2, 'Denver')
                         on conflict (id) do update set city = excluded.city where crm.contacts.city is null`, [old.id, company.id]);
  await db().pool.query(`insert into crm.contacts (id, company_id, city) values ($1, $2, 'Boston')
                         on conflict (id) do update set city = excluded.city`, [old.id, company.id]);
  await inTransaction('platform', (c) => c.query(`insert into crm.contacts (id, company_id, city) values ($1, $2, 'Boston')
                                                  on conflict (id) do update set city = excluded.city`, [old.id, company.id]));
  t.deepEqual((await fired(hook.id)).slice(1), [
    ['contact.created', next, 'Austin', null],
    ['contact.saved', old.id, 'Boston', []],
  ]);
});

test('an UPDATE that changes nothing: nothing from an external source, contact.saved with no changed fields from the platform', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: [...ALL, 'contact.saved'], fields: ['city'] });
  const contact = await f.contact(company.id, { city: 'Boston' });
  await db().pool.query('update crm.contacts set city = city where id = $1', [contact.id]);
  await db().pool.query('update crm.contacts set updated_at = now() + interval \'1 second\' where id = $1', [contact.id]);
  await inTransaction('platform', (c) => c.query('update crm.contacts set city = city where id = $1', [contact.id]));
  t.deepEqual((await fired(hook.id)).slice(1), [['contact.saved', contact.id, 'Boston', []]]);
});

test('an UPDATE moving a contact to another company: both companies\' webhooks get the update, the row as it is now', async (t) => {
  const f = make();
  const [from, to] = [await f.company(), await f.company()];
  const [fromHook, toHook] = [await f.webhook({ companyId: from.id, actions: ALL, fields: ['city', 'company_id'] }),
    await f.webhook({ companyId: to.id, actions: ALL, fields: ['city', 'company_id'] })];
  const contact = await f.contact(from.id, { city: 'Boston' });
  await db().pool.query('update crm.contacts set company_id = $2 where id = $1', [contact.id, to.id]);
  const moved = (await deliveriesOf(db().pool, [fromHook.id, toHook.id])).filter((r) => r.action !== 'contact.created')
    .map((r) => [r.webhook_id, r.company_id, r.action, r.contact_id, r.payload.data]);
  const data = { contact: { id: Number(contact.id), city: 'Boston', company_id: Number(to.id) }, source: 'unknown', changed_fields: ['company_id'] };
  t.deepEqual(moved.sort(), [
    [fromHook.id, from.id, 'contact.updated', contact.id, data],
    [toHook.id, to.id, 'contact.updated', contact.id, data],
  ].sort());
  // the company it left is no longer concerned by its next change
  await db().pool.query("update crm.contacts set city = 'Denver' where id = $1", [contact.id]);
  t.is((await deliveriesOf(db().pool, [fromHook.id])).length, 2);
  t.is((await deliveriesOf(db().pool, [toHook.id])).length, 2);
});

test('a multi-row UPDATE over two companies: each company hears its own contacts, once each', async (t) => {
  const f = make();
  const [a, b] = [await f.company(), await f.company()];
  const [hookA, hookB] = [await f.webhook({ companyId: a.id, actions: ALL, fields: ['city'] }),
    await f.webhook({ companyId: b.id, actions: ALL, fields: ['city'] })];
  const [a1, a2, b1] = [await f.contact(a.id, { city: 'x' }), await f.contact(a.id, { city: 'x' }), await f.contact(b.id, { city: 'x' })];
  await db().pool.query("update crm.contacts set city = 'Reno' where id = any ($1::bigint[])", [[a1.id, a2.id, b1.id]]);
  // (in the contacts' order: the statement updates them in whatever order its plan reads them)
  const updated = async (hookId: string) => (await deliveriesOf(db().pool, [hookId])).filter((r) => r.action === 'contact.updated')
    .sort((x, y) => Number(x.contact_id) - Number(y.contact_id))
    .map((r) => [r.company_id, r.contact_id, r.payload.data.contact.city, r.payload.data.changed_fields]);
  t.deepEqual(await updated(hookA.id), [[a.id, a1.id, 'Reno', ['city']], [a.id, a2.id, 'Reno', ['city']]]);
  t.deepEqual(await updated(hookB.id), [[b.id, b1.id, 'Reno', ['city']]]);
});

test('DELETE … RETURNING: contact.deleted with the row as it was, once a row', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ALL, fields: ['city'] });
  const [one, two] = [await f.contact(company.id, { city: 'Boston' }), await f.contact(company.id, { city: 'Reno' })];
  const { rows } = await db().pool.query('delete from crm.contacts where id = any ($1::bigint[]) returning id', [[one.id, two.id]]);
  t.is(rows.length, 2);
  t.deepEqual((await fired(hook.id)).slice(2), [
    ['contact.deleted', one.id, 'Boston', null],
    ['contact.deleted', two.id, 'Reno', null],
  ]);
});

test('a transaction that aborts after its writes announces none of them', async (t) => {
  const f = make();
  const company = await f.company();
  const user = await f.user(company.id);
  const status = await f.status(company.id);
  const hook = await f.webhook({ companyId: company.id, actions: ALL, fields: ['city'] });
  const contact = await f.contact(company.id, { city: 'Boston' });
  await t.throwsAsync(inTransaction(null, async (c) => {
    await c.query("insert into crm.contacts (company_id, city) values ($1, 'Austin')", [company.id]);
    await c.query("update crm.contacts set city = 'Denver' where id = $1", [contact.id]);
    await c.query('insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [contact.id, status.id]);
    await c.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, user.id]);
    await c.query('delete from crm.contacts where id = $1', [contact.id]);
    await c.query('select 1 / 0');
  }), { message: /division by zero/ });
  t.deepEqual(await fired(hook.id), [['contact.created', contact.id, 'Boston', null]]);
  t.deepEqual((await db().pool.query('select count(*)::int as n from webhooks_private.first_assignments where contact_id = $1',
    [contact.id])).rows, [{ n: 0 }]);
});

test('writes through a view of the CRM\'s (an updatable view, and one with INSTEAD OF triggers) fire as writes to the table', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ALL, fields: ['city'] });
  await db().pool.query(`
    create or replace view crm.contacts_by_city as select id, company_id, city from crm.contacts where city is not null;
    create or replace view crm.contacts_upper as select id, company_id, upper(city) as city from crm.contacts;
    create or replace function crm.contacts_upper_write() returns trigger language plpgsql as $f$
    begin
      if tg_op = 'INSERT' then insert into crm.contacts (company_id, city) values (new.company_id, lower(new.city)) returning id into new.id;
      elsif tg_op = 'UPDATE' then update crm.contacts set city = lower(new.city) where id = old.id;
      else delete from crm.contacts where id = old.id; end if;
      return coalesce(new, old);
    end $f$;
    drop trigger if exists write on crm.contacts_upper;
    create trigger write instead of insert or update or delete on crm.contacts_upper
      for each row execute function crm.contacts_upper_write();`);
  const { rows: [{ id: first }] } = await db().pool.query(
    "insert into crm.contacts_by_city (company_id, city) values ($1, 'boston') returning id", [company.id]);
  await db().pool.query("update crm.contacts_by_city set city = 'denver' where id = $1", [first]);
  await db().pool.query('delete from crm.contacts_by_city where id = $1', [first]);
  const { rows: [{ id: second }] } = await db().pool.query(
    "insert into crm.contacts_upper (company_id, city) values ($1, 'AUSTIN') returning id", [company.id]);
  await db().pool.query("update crm.contacts_upper set city = 'RENO' where id = $1", [second]);
  await db().pool.query('delete from crm.contacts_upper where id = $1', [second]);
  t.deepEqual(await fired(hook.id), [
    ['contact.created', first, 'boston', null],
    ['contact.updated', first, 'denver', ['city']],
    ['contact.deleted', first, 'denver', null],
    ['contact.created', second, 'austin', null],
    ['contact.updated', second, 'reno', ['city']],
    ['contact.deleted', second, 'reno', null],
  ]);
});

test('a session with session_replication_role = replica (a replication tool\'s, a restore\'s) runs no trigger, and announces nothing', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ALL, fields: ['city'] });
  const contact = await f.contact(company.id, { city: 'Boston' });
  await inTransaction(null, async (c) => {
    await c.query("set local session_replication_role = 'replica'");
    await c.query("insert into crm.contacts (company_id, city) values ($1, 'Austin')", [company.id]);
    await c.query("update crm.contacts set city = 'Denver' where id = $1", [contact.id]);
  });
  t.deepEqual(await fired(hook.id), [['contact.created', contact.id, 'Boston', null]]);
});
