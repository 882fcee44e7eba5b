// The CRM's own triggers on crm.contacts. A BEFORE DELETE trigger may cancel a delete
// (return null: a soft delete, a guard); contact.deleted is announced by the engine's
// AFTER DELETE trigger (sql/25_capture.sql), which fires only for a row deleted,
// whatever the CRM names its triggers, and before the cascades of the foreign keys
// take the contact's assignments (Postgres fires triggers in the byte order of their
// names: "!" comes before the "RI_ConstraintTrigger…" of the cascades).
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { deliveriesOf, factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

test('a delete that a CRM trigger cancels announces no contact.deleted', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted'] });
  // a soft delete of this company's contacts
  await db().pool.query(`
    create function public.contacts_soft_delete() returns trigger language plpgsql as $$
    begin
      if old.company_id = ${Number(company.id)} then
        update crm.contacts set state = 'deleted' where id = old.id;
        return null;
      end if;
      return old;
    end $$`);
  await db().pool.query(`create trigger contacts_soft_delete before delete on crm.contacts
                         for each row execute function public.contacts_soft_delete()`);
  t.teardown(() => db().pool.query('drop trigger if exists contacts_soft_delete on crm.contacts'));

  const contact = await f.contact(company.id);
  await db().pool.query('delete from crm.contacts where id = $1', [contact.id]);
  const { rows: [kept] } = await db().pool.query('select state from crm.contacts where id = $1', [contact.id]);
  t.is(kept.state, 'deleted');
  t.deepEqual(await deliveriesOf(db().pool, [hook.id]), []);

  // without it, the delete goes through and is announced
  await db().pool.query('drop trigger contacts_soft_delete on crm.contacts');
  await db().pool.query('delete from crm.contacts where id = $1', [contact.id]);
  t.deepEqual((await deliveriesOf(db().pool, [hook.id])).map((r) => r.action), ['contact.deleted']);
});

test('a delete cancelled by a CRM trigger whose name sorts after "~" ("éviter_suppression") announces nothing', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted'] });
  await db().pool.query(`
    create function public.contacts_keep() returns trigger language plpgsql as $$
    begin
      return case when old.company_id = ${Number(company.id)} then null else old end;
    end $$`);
  // (UTF-8: "é" is 0xC3 0xA9, after "~" and every ASCII character)
  await db().pool.query(`create trigger "éviter_suppression" before delete on crm.contacts
                         for each row execute function public.contacts_keep()`);
  t.teardown(() => db().pool.query('drop trigger if exists "éviter_suppression" on crm.contacts'));

  const contact = await f.contact(company.id);
  await db().pool.query('delete from crm.contacts where id = $1', [contact.id]);
  const { rows: [kept] } = await db().pool.query('select count(*)::int as n from crm.contacts where id = $1', [contact.id]);
  t.is(kept.n, 1);
  t.deepEqual(await deliveriesOf(db().pool, [hook.id]), []);
});

test('contact.deleted reaches the companies of assigned users for every row of a delete, and of a company\'s delete', async (t) => {
  const f = factories(db().pool);
  const owner = await f.company();
  const partner = await f.company();
  const partnerUser = await f.user(partner.id);
  const ownerHook = await f.webhook({ companyId: owner.id, actions: ['contact.deleted'] });
  const partnerHook = await f.webhook({ companyId: partner.id, actions: ['contact.deleted'] });
  const contacts = [await f.contact(owner.id), await f.contact(owner.id), await f.contact(owner.id)];
  for (const c of contacts) {
    await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [c.id, partnerUser.id]);
  }
  await db().pool.query('delete from crm.contacts where id = any ($1::bigint[])', [contacts.slice(0, 2).map((c) => c.id)]);
  // the last one goes with its company
  await db().pool.query('delete from crm.companies where id = $1', [owner.id]);

  const ids = (rows: { contact_id: string }[]) => rows.map((r) => r.contact_id).sort();
  t.deepEqual(ids(await deliveriesOf(db().pool, [partnerHook.id])), contacts.map((c) => c.id).sort());
  t.deepEqual(await deliveriesOf(db().pool, [ownerHook.id]), []); // (deleted with its company, its deliveries with it)
});

// (serial: ava runs it before the others, so that its DDL on crm.contacts never meets
// theirs, which Postgres may end as a deadlock)
test.serial('a CRM trigger that updates the contact again, whatever its name: its changes are announced after the one that caused them', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.updated'], fields: ['city'] });
  // a CRM's AFTER trigger that writes the row once more; its name sorts before
  // "_" (capitals and digits do)
  await db().pool.query(`
    create function public.contacts_upper_city() returns trigger language plpgsql as $$
    begin
      if new.company_id = ${Number(company.id)} and new.city is distinct from upper(new.city) then
        update crm.contacts set city = upper(city) where id = new.id;
      end if;
      return null;
    end $$`);
  await db().pool.query(`create trigger "Upper_city" after insert or update on crm.contacts
                         for each row execute function public.contacts_upper_city()`);
  t.teardown(() => db().pool.query('drop trigger if exists "Upper_city" on crm.contacts'));

  const contact = await f.contact(company.id, { city: 'boston' });
  await db().pool.query("update crm.contacts set city = 'denver' where id = $1", [contact.id]);

  const { rows: [stored] } = await db().pool.query('select city from crm.contacts where id = $1', [contact.id]);
  t.is(stored.city, 'DENVER');
  // in the order of the changes, and the last one shows the row as stored
  t.deepEqual((await deliveriesOf(db().pool, [hook.id])).map((r) => [r.action, r.payload.data.contact.city]), [
    ['contact.created', 'boston'],
    ['contact.updated', 'BOSTON'],
    ['contact.updated', 'denver'],
    ['contact.updated', 'DENVER'],
  ]);
});

// (serial, as the test above: DDL on a CRM table)
test.serial('a CRM trigger on the status tags that updates the contact, whatever its name: the tag is announced before the update it caused', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const status = await f.status(company.id);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.status_added', 'contact.status_removed', 'contact.updated'], fields: ['city'] });
  // a CRM's AFTER trigger that notes a tag on the contact; its name sorts before "_"
  await db().pool.query(`
    create function public.statuses_note_tag() returns trigger language plpgsql as $$
    begin
      update crm.contacts set city = case when tg_op = 'INSERT' then 'tagged' else 'untagged' end
      where id = coalesce(new.contact_id, old.contact_id) and company_id = ${Number(company.id)};
      return null;
    end $$`);
  await db().pool.query(`create trigger "Note_tag" after insert or delete on crm.contact_statuses
                         for each row execute function public.statuses_note_tag()`);
  t.teardown(() => db().pool.query('drop trigger if exists "Note_tag" on crm.contact_statuses'));

  const contact = await f.contact(company.id, { city: 'boston' });
  await db().pool.query('insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [contact.id, status.id]);
  await db().pool.query('delete from crm.contact_statuses where contact_id = $1 and status_id = $2', [contact.id, status.id]);
  t.deepEqual((await deliveriesOf(db().pool, [hook.id])).map((r) => [r.action, r.payload.data.contact.city]), [
    ['contact.status_added', 'boston'],
    ['contact.updated', 'tagged'],
    ['contact.status_removed', 'tagged'],
    ['contact.updated', 'untagged'],
  ]);
});
