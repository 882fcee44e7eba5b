// A status tag or an assignment changed in place (an UPDATE of crm.contact_statuses or
// crm.contact_assignments that gives the row another status, user or contact) is the
// one taken away and the other given: it fires what a delete and an insert fire.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { deliveriesOf, factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);
const make = () => factories(db().pool);

test('a status tag changed in place: status_removed for the old tag, then status_added for the new', async (t) => {
  const f = make();
  const company = await f.company();
  const [lead, customer] = [await f.status(company.id, 'Lead'), await f.status(company.id, 'Customer')];
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.status_added', 'contact.status_removed'] });
  const onlyCustomer = await f.webhook({ companyId: company.id, actions: ['contact.status_added'], statusId: customer.id });
  const contact = await f.contact(company.id);
  await db().pool.query('insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [contact.id, lead.id]);

  await db().pool.query('update crm.contact_statuses set status_id = $3 where contact_id = $1 and status_id = $2',
    [contact.id, lead.id, customer.id]);
  // an update that leaves the tag as it was fires nothing
  await db().pool.query('update crm.contact_statuses set added_at = now() where contact_id = $1', [contact.id]);
  await db().pool.query('update crm.contact_statuses set status_id = status_id where contact_id = $1', [contact.id]);

  t.deepEqual((await deliveriesOf(db().pool, [hook.id])).map((r) => [r.action, r.contact_id, r.payload.data.status.name]), [
    ['contact.status_added', contact.id, 'Lead'],
    ['contact.status_removed', contact.id, 'Lead'],
    ['contact.status_added', contact.id, 'Customer'],
  ]);
  t.deepEqual((await deliveriesOf(db().pool, [onlyCustomer.id])).map((r) => r.action), ['contact.status_added']);
});

test('a status tag moved to another contact: removed from the one, added to the other', async (t) => {
  const f = make();
  const company = await f.company();
  const lead = await f.status(company.id, 'Lead');
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.status_added', 'contact.status_removed'] });
  const [from, to] = [await f.contact(company.id), await f.contact(company.id)];
  await db().pool.query('insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [from.id, lead.id]);

  await db().pool.query('update crm.contact_statuses set contact_id = $2 where contact_id = $1', [from.id, to.id]);

  t.deepEqual((await deliveriesOf(db().pool, [hook.id])).map((r) => [r.action, r.contact_id]), [
    ['contact.status_added', from.id],
    ['contact.status_removed', from.id],
    ['contact.status_added', to.id],
  ]);
});

test('an assignment given to another user in place: user_assigned for the new user, a first when no colleague remains', async (t) => {
  const f = make();
  const owner = await f.company();
  const partner = await f.company();
  const [jane, john] = [await f.user(owner.id, 'Jane Doe'), await f.user(owner.id, 'John Roe')];
  const pat = await f.user(partner.id, 'Pat Poe');
  const assigned = await f.webhook({ companyId: owner.id, actions: ['contact.user_assigned'] });
  const first = await f.webhook({ companyId: owner.id, actions: ['contact.first_company_user_assigned'] });
  const partnerHook = await f.webhook({ companyId: partner.id, actions: ['contact.user_assigned', 'contact.first_company_user_assigned'] });
  const contact = await f.contact(owner.id);
  await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, jane.id]);

  // Jane's contact goes to John: John is assigned, and the company's only user on it
  await db().pool.query('update crm.contact_assignments set user_id = $2 where contact_id = $1', [contact.id, john.id]);
  // nothing changes hands: nothing fires
  await db().pool.query('update crm.contact_assignments set assigned_at = now() where contact_id = $1', [contact.id]);
  // John's contact goes to Pat, of the partner: the partner hears it, and a first
  await db().pool.query('update crm.contact_assignments set user_id = $2 where contact_id = $1', [contact.id, pat.id]);

  const names = async (hookId: string) =>
    (await deliveriesOf(db().pool, [hookId])).map((r) => [r.action, r.payload.data.user.name]);
  t.deepEqual(await names(assigned.id), [
    ['contact.user_assigned', 'Jane Doe'],
    ['contact.user_assigned', 'John Roe'],
    ['contact.user_assigned', 'Pat Poe'],
  ]);
  t.deepEqual(await names(first.id), [
    ['contact.first_company_user_assigned', 'Jane Doe'],
    ['contact.first_company_user_assigned', 'John Roe'],
  ]);
  t.deepEqual(await names(partnerHook.id), [
    ['contact.first_company_user_assigned', 'Pat Poe'],
    ['contact.user_assigned', 'Pat Poe'],
  ]);
});

test('assignments moved between two contacts in one update: each contact has a new user, and hears it', async (t) => {
  const f = make();
  const company = await f.company();
  const [jane, john] = [await f.user(company.id), await f.user(company.id)];
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.user_assigned', 'contact.first_company_user_assigned'] });
  const [a, b] = [await f.contact(company.id), await f.contact(company.id)];
  await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $3), ($2, $4)',
    [a.id, b.id, jane.id, john.id]);
  const before = (await deliveriesOf(db().pool, [hook.id])).length;

  // a's assignment goes to b and b's to a, in one statement
  await db().pool.query('update crm.contact_assignments set contact_id = case when contact_id = $1 then $2 else $1 end where contact_id in ($1, $2)',
    [a.id, b.id]);
  const afterMove = (await deliveriesOf(db().pool, [hook.id])).map((r) => [r.action, r.contact_id]);
  t.is(before, 4);
  // (a has john now, b has jane: two new assignments, each its company's first on the contact)
  t.deepEqual(afterMove.slice(before).sort(), [
    ['contact.first_company_user_assigned', a.id],
    ['contact.first_company_user_assigned', b.id],
    ['contact.user_assigned', a.id],
    ['contact.user_assigned', b.id],
  ].sort());
});
