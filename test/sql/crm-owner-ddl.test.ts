// The CRM's own DDL, as a role of its own that is no superuser and may not use the
// engine's schemas. The engine's event triggers hear every CREATE, ALTER and DROP TABLE
// in the database: they run as their owner, and never refuse the CRM's own tables'
// changes (until 2026-12-08 an ALTER or DROP TABLE of such a role failed, "permission
// denied for schema webhooks_private"). And the owner of crm.contacts partitions it
// after the engine's migrate: Postgres copies the engine's row triggers to each
// partition as the role that makes it, and checks its EXECUTE on their functions
// (sql/25_capture.sql, grant_row_trigger_functions_to_crm_owners; until 2026-12-08 it
// was refused, "permission denied for function ").
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { partitionContacts } from '../helpers/partitioned-contacts.ts';
import { connectAs } from '../helpers/crm-role.ts';
import { migrate } from '../../tools/migrate.ts';

const db = useTestDatabase(test);

// Roles belong to the whole cluster, which test files share: made if missing.
const OWNER = 'bpd_test_crm_owner';
const NEXT_OWNER = 'bpd_test_crm_next_owner';

async function makeOwner(role: string): Promise<void> {
  await db().pool.query(`
    do $$ begin create role ${role} nologin nosuperuser;
    exception when duplicate_object or unique_violation then null; end $$`);
  await db().pool.query(`grant usage, create on schema crm to ${role}`);
}

/** The crm tables given to `role`, every one of them, partitions included. */
async function giveCrmTables(role: string): Promise<void> {
  await db().pool.query(`
    do $$ declare v regclass; begin
      for v in select c.oid from pg_class c where c.relnamespace = 'crm'::regnamespace and c.relkind in ('r', 'p') loop
        execute format('alter table %s owner to ${role}', v);
      end loop;
    end $$`);
}

/** The deliveries of the contact named, by action. */
async function fired(hookId: string, contactId: string): Promise<string[]> {
  const { rows } = await db().pool.query('select action::text from webhooks.deliveries where webhook_id = $1 and contact_id = $2 order by id',
    [hookId, contactId]);
  return rows.map((row) => row.action);
}

test.serial('the CRM\'s role makes, changes and drops tables of its own, and is refused nothing', async (t) => {
  await makeOwner(OWNER);
  const crm = await connectAs(t, db().pool, OWNER);
  await crm.query('create table crm.notes (id bigint primary key, body text)');
  await crm.query('alter table crm.notes add column written_at timestamptz');
  await crm.query('create table crm.visits (id bigint, at date not null) partition by range (at)');
  await crm.query(`create table crm.visits_2026 partition of crm.visits for values from ('2026-01-01') to ('2027-01-01')`);
  await crm.query('alter table crm.visits detach partition crm.visits_2026');
  await crm.query('drop table crm.visits_2026, crm.visits, crm.notes');
  const { rows } = await db().pool.query(`select count(*)::int as n from pg_class where relnamespace = 'crm'::regnamespace and relname in ('notes', 'visits', 'visits_2026')`);
  t.is(rows[0].n, 0);
});

test.serial('the owner of crm.contacts, no superuser, makes and attaches partitions after the migrate, and their contacts fire', async (t) => {
  await partitionContacts(db(), 'contacts_2024', '2025-01-01');
  await makeOwner(OWNER);
  await giveCrmTables(OWNER);
  await migrate(db().url);

  const owner = await connectAs(t, db().pool, OWNER);
  await owner.query(`create table crm.contacts_2025 partition of crm.contacts for values from ('2025-01-01') to ('2026-01-01')`);
  await owner.query('create table crm.contacts_2026 (like crm.contacts including defaults)');
  await owner.query(`alter table crm.contacts attach partition crm.contacts_2026 for values from ('2026-01-01') to ('2027-01-01')`);

  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.updated'], fields: ['first_name'] });
  for (const at of ['2025-06-01', '2026-06-01']) {
    const { rows: [contact] } = await owner.query(
      `insert into crm.contacts (company_id, first_name, created_at) values ($1, 'Ada', $2) returning id::text`, [company.id, at]);
    await owner.query(`update crm.contacts set first_name = 'Grace' where id = $1`, [contact.id]);
    t.deepEqual(await fired(hook.id, contact.id), ['contact.created', 'contact.updated'], `a contact created at ${at}`);
  }
});

test.serial('a new owner given crm.contacts after the migrate makes partitions too', async (t) => {
  await makeOwner(NEXT_OWNER);
  await giveCrmTables(NEXT_OWNER);
  const owner = await connectAs(t, db().pool, NEXT_OWNER);
  await owner.query(`create table crm.contacts_2027 partition of crm.contacts for values from ('2027-01-01') to ('2028-01-01')`);

  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'], fields: ['first_name'] });
  const { rows: [contact] } = await owner.query(
    `insert into crm.contacts (company_id, first_name, created_at) values ($1, 'Ada', '2027-03-01') returning id::text`, [company.id]);
  t.deepEqual(await fired(hook.id, contact.id), ['contact.created']);
});

test.serial('the owner changes crm.contacts and its partitions: refused nothing, and its writes fire after', async (t) => {
  const owner = await connectAs(t, db().pool, NEXT_OWNER);
  for (const ddl of [
    'alter table crm.contacts add column nickname text',
    'create index contacts_nickname on crm.contacts (nickname)',
    'alter table crm.contacts rename column nickname to alias',
    'alter table crm.contacts alter column alias set default null',
    'comment on table crm.contacts is $$contacts$$',
    'alter table crm.contacts drop column alias',
    'analyze crm.contacts',
    'vacuum crm.contacts_2024',
    'alter table crm.contacts_2027 set (fillfactor = 90)',
    'alter table crm.contact_assignments add column note text',
    'alter table crm.contact_assignments drop column note',
    'truncate crm.contacts_2027',
  ]) {
    await t.notThrowsAsync(owner.query(ddl), ddl);
  }
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'], fields: ['first_name'] });
  const { rows: [contact] } = await owner.query(
    `insert into crm.contacts (company_id, first_name, created_at) values ($1, 'Ada', '2025-03-01') returning id::text`, [company.id]);
  t.deepEqual(await fired(hook.id, contact.id), ['contact.created']);
});

// A CRM owner's role leaving, as a DBA that is no superuser does it: REASSIGN OWNED of
// its tables to an heir, DROP OWNED, DROP ROLE. Postgres runs no event trigger for a
// REASSIGN OWNED: the heir was granted nothing of the engine's, and could not make a
// partition ("permission denied for function "); and the departed role kept the
// engine's grants, which the DBA may not revoke (the engine's owner granted them): its
// DROP ROLE was refused (until 2026-12-08).
test.serial('a departed owner\'s tables reassigned to an heir: the heir makes partitions, and the departed role drops', async (t) => {
  const [departed, heir, dba] = ['bpd_test_crm_departed', 'bpd_test_crm_heir', 'bpd_test_crm_dba'];
  for (const role of [departed, heir, dba]) await makeOwner(role);
  await db().pool.query(`alter role ${dba} createrole`);
  await db().pool.query(`grant ${departed}, ${heir} to ${dba} with admin true`);
  await giveCrmTables(departed);
  const gone = await connectAs(t, db().pool, departed);
  await gone.query(`create table crm.contacts_2028 partition of crm.contacts for values from ('2028-01-01') to ('2029-01-01')`);

  const admin = await connectAs(t, db().pool, dba);
  await admin.query(`reassign owned by ${departed} to ${heir}`);
  await admin.query(`drop owned by ${departed}`);
  await gone.query('reset role');
  // (what the test granted it as a superuser, which a DBA of the CRM's would have granted itself)
  await db().pool.query(`revoke all on schema crm from ${departed}`);
  await t.notThrowsAsync(admin.query(`drop role ${departed}`), 'the departed role drops');

  const owner = await connectAs(t, db().pool, heir);
  await t.notThrowsAsync(owner.query(`create table crm.contacts_2029 partition of crm.contacts for values from ('2029-01-01') to ('2030-01-01')`),
    'the heir makes a partition');
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'], fields: ['first_name'] });
  const { rows: [contact] } = await owner.query(
    `insert into crm.contacts (company_id, first_name, created_at) values ($1, 'Ada', '2029-03-01') returning id::text`, [company.id]);
  t.deepEqual(await fired(hook.id, contact.id), ['contact.created']);
});

// An online rewrite (pg-osc's, a DBA's by hand): a copy of crm.contacts built and
// filled beside it, swapped in by two renames, the old table dropped once the engine
// is applied to the new one. The engine's functions that take or return a contact row
// were the old table's (its row type, renamed with it): the migrate failed on the
// first it made again ("cannot change return type of existing function"), and the
// old table could not be dropped ("other objects depend on it"; until 2026-12-08).
test.serial('crm.contacts rebuilt and swapped in by rename: the migrate puts the engine on the new table, and the old one drops', async (t) => {
  await makeOwner(OWNER);
  await giveCrmTables(OWNER);
  const owner = await connectAs(t, db().pool, OWNER);
  await owner.query('create table crm.contacts_rebuilt (like crm.contacts including all)');
  await owner.query('insert into crm.contacts_rebuilt overriding system value select * from crm.contacts');
  await owner.query(`select setval(pg_get_serial_sequence('crm.contacts_rebuilt', 'id'),
                                   (select max(id) from crm.contacts))`);
  await owner.query(`begin;
    alter table crm.contacts rename to contacts_swapped_out;
    alter table crm.contacts_rebuilt rename to contacts;
    commit`);
  await migrate(db().url);
  await t.notThrowsAsync(owner.query('drop table crm.contacts_swapped_out'));

  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.updated', 'contact.deleted'],
    fields: ['first_name'] });
  const { rows: [contact] } = await owner.query(
    `insert into crm.contacts (company_id, first_name, created_at) values ($1, 'Ada', '2025-03-01') returning id::text`, [company.id]);
  await owner.query(`update crm.contacts set first_name = 'Grace' where id = $1`, [contact.id]);
  await owner.query('delete from crm.contacts where id = $1', [contact.id]);
  t.deepEqual(await fired(hook.id, contact.id), ['contact.created', 'contact.updated', 'contact.deleted']);
});
