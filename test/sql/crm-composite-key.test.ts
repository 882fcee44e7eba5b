// The CRM makes crm.contacts' primary key composite, (company_id, id), as a CRM that
// shards or partitions by company does, and drops the references to it that named id
// alone. The engine reads id and company_id: capture and migrate go on.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { migrate } from '../../tools/migrate.ts';

const db = useTestDatabase(test);
const make = () => factories(db().pool);

test('a composite primary key on contacts (company_id, id), the references to it dropped: capture and migrate go on', async (t) => {
  await db().pool.query(`
    begin;
    alter table crm.contact_assignments drop constraint if exists contact_assignments_contact_id_fkey;
    alter table crm.contact_statuses drop constraint if exists contact_statuses_contact_id_fkey;
    alter table crm.contacts drop constraint contacts_pkey;
    alter table crm.contacts add primary key (company_id, id);
    commit;`);
  await migrate(db().url);
  const f = make();
  const company = await f.company();
  const user = await f.user(company.id);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.updated', 'contact.user_assigned', 'contact.deleted'], fields: ['first_name'] });
  const contact = await f.contact(company.id, { first_name: 'Ada' });
  await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, user.id]);
  await db().pool.query(`update crm.contacts set first_name = 'Ada L.' where company_id = $1 and id = $2`, [company.id, contact.id]);
  await db().pool.query('delete from crm.contacts where company_id = $1 and id = $2', [company.id, contact.id]);
  const { rows } = await db().pool.query('select action from webhooks.deliveries where webhook_id = $1 order by id', [hook.id]);
  t.deepEqual(rows.map((r) => r.action), ['contact.created', 'contact.user_assigned', 'contact.updated', 'contact.deleted']);
});
