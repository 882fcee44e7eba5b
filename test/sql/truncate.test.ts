// TRUNCATE of a CRM table announces nothing (README, "The actions"): Postgres runs no
// row trigger for it. (Its own file: a TRUNCATE empties the table for every test of
// the database.)
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { deliveriesOf, factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

// (serial: it runs before the test above, which empties the contacts too)
test.serial('TRUNCATE of contacts takes the engine\'s notes of them: a contact written again with a truncated one\'s id has its first assignment announced', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const user = await f.user(company.id, 'Jane Doe');
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.first_company_user_assigned'] });
  const before = await f.contact(company.id);
  await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [before.id, user.id]);
  t.is((await deliveriesOf(db().pool, [hook.id])).length, 1);

  await db().pool.query('truncate crm.contacts cascade');
  t.is((await db().pool.query('select count(*)::int as n from webhooks_private.first_assignments where contact_id = $1',
    [before.id])).rows[0].n, 0);
  // (as a TRUNCATE … RESTART IDENTITY, or a reload with the old ids, writes it)
  await db().pool.query(`insert into crm.contacts (id, company_id, first_name) values ($1, $2, 'Again')`, [before.id, company.id]);
  await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [before.id, user.id]);
  t.deepEqual((await deliveriesOf(db().pool, [hook.id])).map((r) => [r.action, r.payload.data.contact.first_name]),
    [['contact.first_company_user_assigned', 'Ada'], ['contact.first_company_user_assigned', 'Again']]);
});

test('TRUNCATE of tags, assignments and contacts fires nothing; a DELETE of the same would', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const user = await f.user(company.id);
  const status = await f.status(company.id, 'Lead');
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted', 'contact.status_removed'] });
  const [a, b] = [await f.contact(company.id), await f.contact(company.id)];
  await db().pool.query('insert into crm.contact_statuses (contact_id, status_id) values ($1, $3), ($2, $3)', [a.id, b.id, status.id]);
  await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [a.id, user.id]);

  await db().pool.query('truncate crm.contact_statuses');
  await db().pool.query('truncate crm.contacts cascade');

  t.deepEqual((await db().pool.query('select count(*)::int as n from crm.contacts')).rows[0].n, 0);
  t.deepEqual(await deliveriesOf(db().pool, [hook.id]), []);
  const c = await f.contact(company.id);
  await db().pool.query('delete from crm.contacts where id = $1', [c.id]);
  t.deepEqual((await deliveriesOf(db().pool, [hook.id])).map((r) => r.action), ['contact.deleted']);
});
