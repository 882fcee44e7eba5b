// The CRM's own triggers on crm.contacts. A BEFORE DELETE trigger may cancel a delete
// (return null: a soft delete, a guard); contact.deleted is announced by the engine's
// BEFORE DELETE trigger (sql/25_capture.sql), which must therefore fire after every
// other, whatever the CRM names its triggers (Postgres fires them in the byte order
// of their names, where "_" comes before every lowercase letter).
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
