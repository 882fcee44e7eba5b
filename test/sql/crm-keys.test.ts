// The CRM's DBA changes the type of a key the engine reads (crm.contacts.id to text or
// uuid, say). The engine keeps contacts by bigint id (its deliveries, lanes, first
// assignments), so it cannot follow. What the DBA meets is a clear refusal: Postgres's,
// at the ALTER, while the engine's triggers are on the table; migrate's, naming the
// column and its type, once they are not. Never a CRM write that fails.
// The tests change the tables themselves, so they run one after another.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { migrate } from '../../tools/migrate.ts';

const db = useTestDatabase(test);
const make = () => factories(db().pool);

const RETYPE_CONTACT_IDS = (type: string) => `
  alter table crm.contact_assignments drop constraint contact_assignments_contact_id_fkey;
  alter table crm.contact_statuses drop constraint contact_statuses_contact_id_fkey;
  alter table crm.contacts alter column id drop identity;
  alter table crm.contacts alter column id type ${type} using ${type === 'uuid' ? 'gen_random_uuid()' : `(id::text)::${type}`};`;

test.serial('retyping contacts.id or company_id under the engine\'s triggers is refused by Postgres, naming the trigger; writes go on', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.updated'], fields: ['first_name'] });
  // (each one query: its statements are one transaction, undone as a whole)
  for (const alter of [RETYPE_CONTACT_IDS('text'), RETYPE_CONTACT_IDS('uuid'), 'alter table crm.contacts alter column company_id type text']) {
    const error = await t.throwsAsync(db().pool.query(alter));
    t.is((error as { code?: string }).code, '0A000');
    t.regex((error as { detail?: string }).detail ?? '', /trigger "?!webhooks_\w+"? on table crm\.contacts depends on column "(id|company_id)"/);
  }
  const contact = await f.contact(company.id, { first_name: 'Ada' });
  await db().pool.query(`update crm.contacts set first_name = 'Ada L.' where id = $1`, [contact.id]);
  const { rows } = await db().pool.query('select action from webhooks.deliveries where webhook_id = $1 order by id', [hook.id]);
  t.deepEqual(rows.map((r) => r.action), ['contact.created', 'contact.updated']);
});

test.serial('migrate refuses contact ids that are not integers, naming the column and its type; the CRM\'s writes succeed', async (t) => {
  const f = make();
  const company = await f.company();
  const contact = await f.contact(company.id, { first_name: 'Ada' });
  // the DBA, told by Postgres which triggers stand in the way, drops them and retypes
  await db().pool.query(`
    begin;
    drop trigger "!webhooks_created" on crm.contacts;
    drop trigger "!webhooks_updated" on crm.contacts;
    drop trigger "!webhooks_deleted" on crm.contacts;
    drop trigger "!webhooks_keys_kept" on crm.contacts;
    drop trigger "!webhooks_status_changed" on crm.contact_statuses;
    ${RETYPE_CONTACT_IDS('text')}
    alter table crm.contact_statuses alter column contact_id type text;
    alter table crm.contact_assignments alter column contact_id type text;
    commit;`);
  await t.throwsAsync(migrate(db().url), {
    message: /crm\.contacts\.id is text: the engine needs the CRM's ids to be integers \(bigint, integer or smallint\)/,
  });
  // nothing of the engine's was put back on the table: the CRM writes as it did
  await db().pool.query(`insert into crm.contacts (id, company_id, first_name) values ('c-2', $1, 'Alan')`, [company.id]);
  await db().pool.query(`update crm.contacts set first_name = 'Ada L.' where id = $1`, [String(contact.id)]);
  await db().pool.query(`delete from crm.contacts where id = 'c-2'`);
  const { rows } = await db().pool.query(`select id, first_name from crm.contacts where company_id = $1`, [company.id]);
  t.deepEqual(rows, [{ id: String(contact.id), first_name: 'Ada L.' }]);
});
