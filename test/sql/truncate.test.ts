// TRUNCATE of a CRM table announces nothing (README, "The actions"): Postgres runs no
// row trigger for it. (Its own file: a TRUNCATE empties the table for every test of
// the database.)
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { deliveriesOf, factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

// (serial: it runs before the test below, which empties the contacts too. The rows of
// firsts decide no first, the assignments do: the contact written again has its first
// announced with or without them; what the trigger holds is that none is left)
test.serial('TRUNCATE of contacts takes the engine\'s rows of firsts of them; a contact written again with a truncated one\'s id has its first assignment announced', async (t) => {
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

// (serial: it resets the contacts' sequence)
test.serial('TRUNCATE … RESTART IDENTITY: a new contact given a truncated one\'s id is a new message, not merged into the old one\'s update waiting out its window', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'] });
  await db().pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', false)`, [hook.id]);
  const before = await f.contact(company.id, { city: 'Boston' });
  await db().pool.query("update crm.contacts set city = 'Austin' where id = $1", [before.id]);

  await db().pool.query('truncate crm.contacts restart identity cascade');
  // the sequence hands the old ids out again: the last of these has the old one's
  const { rows: made } = await db().pool.query(
    `insert into crm.contacts (company_id, first_name, city) select $1, 'Again', 'Reno' from generate_series(1, $2::int)
     returning id::text`, [company.id, before.id]);
  t.is(made.at(-1).id, before.id);
  await db().pool.query("update crm.contacts set city = 'Elko' where id = $1", [before.id]);
  const { rows } = await db().pool.query(
    `select d.contact_id::text as named, d.payload->'data'->'contact'->>'city' as city, d.payload->'data'->'merged' as merged,
            q.next_attempt_at <= now() as due
     from webhooks.deliveries d join webhooks.delivery_queue q on q.delivery_id = d.id
     where d.webhook_id = $1 order by d.id`, [hook.id]);
  // the truncated contact's update goes as it was captured, and waits no more: nothing
  // of that contact is to come; the new contact's is its own
  t.deepEqual(rows, [
    { named: before.id, city: 'Austin', merged: 1, due: true },
    { named: before.id, city: 'Elko', merged: 1, due: false },
  ]);
});

// (the engine's rows of firsts are kept when assignments go, by DELETE or TRUNCATE
// alike, until the contact goes: they decide no first, the assignments do)
test.serial('TRUNCATE of the assignments alone: the contact\'s next first user of a company is a first again, as after a DELETE', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const user = await f.user(company.id, 'Jane Doe');
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.first_company_user_assigned'] });
  const contact = await f.contact(company.id);
  await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, user.id]);

  await db().pool.query('truncate crm.contact_assignments');
  t.is((await db().pool.query('select count(*)::int as n from webhooks_private.first_assignments where contact_id = $1',
    [contact.id])).rows[0].n, 1);
  await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, user.id]);
  t.deepEqual((await deliveriesOf(db().pool, [hook.id])).map((r) => [r.action, String(r.payload.data.user.id)]),
    [['contact.first_company_user_assigned', user.id], ['contact.first_company_user_assigned', user.id]]);
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
