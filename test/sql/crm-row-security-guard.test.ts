// The CRM turns row-level security on for its tables after the engine's last migrate.
// Capture reads the CRM's users, statuses, assignments and contacts as the engine's
// owner, and a row the policies hide from it left a payload's status or user out, or
// a company concerned unannounced, without an error. With the event trigger a
// superuser's migrate makes, such DDL is refused, naming the table; without it (an
// owner that is no superuser migrated), what the setup form and the backfill's count
// ask refuses instead of answering fewer. The tests change the tables themselves, so
// they run one after another, each leaving them as it found them.
import test from 'ava';
import type pg from 'pg';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { connectAs, crmAppRole, engineOwnerUrl, ROW_SECURITY_GUARD, withoutRowSecurityGuard } from '../helpers/crm-role.ts';
import { inTransaction } from '../helpers/sql.ts';
import { migrate } from '../../tools/migrate.ts';

const db = useTestDatabase(test);
const make = () => factories(db().pool);

const TENANT_POLICY = (table: string) => `
  alter table crm.${table} enable row level security;
  create policy tenant on crm.${table} using (company_id = nullif(current_setting('crm.tenant', true), '')::bigint);`;

// With the event trigger a superuser's migrate makes, the CRM's own DDL that would have
// its policies hide rows from the engine's owner is refused, naming the table, and
// undone: capture never reads a table cut short (it pays nothing for it). The policy
// that lets the owner read every row comes first; its drop is refused as well.
test.serial('the CRM\'s turning on row-level security that hides rows from the engine\'s owner is refused, naming the table; with the owner\'s policy first it goes through', async (t) => {
  const ownerUrl = await engineOwnerUrl(db().pool, db().url);
  await migrate(ownerUrl);
  const refused = (ddl: string, table: string) => t.throwsAsync(db().pool.query(ddl), {
    code: '0A000',
    message: new RegExp(`^${table.replace('.', '\\.')} has row-level security that applies to bpd_test_engine_owner, the engine's owner`),
  });
  const rowSecurity = async () => (await db().pool.query(
    `select relname, relrowsecurity from pg_class where oid = any (array['crm.users', 'crm.statuses']::regclass[]) order by relname`)).rows;

  await refused('alter table crm.users enable row level security', 'crm.users');
  t.deepEqual(await rowSecurity(), [{ relname: 'statuses', relrowsecurity: false }, { relname: 'users', relrowsecurity: false }]);

  await db().pool.query(['users', 'statuses'].map((table) => `
    create policy engine_reads on crm.${table} for select to bpd_test_engine_owner using (true);
    ${TENANT_POLICY(table)}`).join(''))
    .catch((error) => t.fail(String(error)));
  t.teardown(async () => {
    await db().pool.query(`alter event trigger ${ROW_SECURITY_GUARD} disable;
      drop policy if exists tenant on crm.users; drop policy if exists engine_reads on crm.users;
      drop policy if exists tenant on crm.statuses; drop policy if exists engine_reads on crm.statuses;
      drop policy if exists fewer on crm.users;
      alter table crm.users disable row level security; alter table crm.statuses disable row level security;
      alter event trigger ${ROW_SECURITY_GUARD} enable`);
  });
  t.deepEqual(await rowSecurity(), [{ relname: 'statuses', relrowsecurity: true }, { relname: 'users', relrowsecurity: true }]);

  await refused('drop policy engine_reads on crm.users', 'crm.users');
  await refused(`create policy fewer on crm.users as restrictive using (name <> 'hidden')`, 'crm.users');
  await refused('alter policy engine_reads on crm.statuses using (id > 0)', 'crm.statuses');
  // (another table's DDL is none of its business)
  await db().pool.query('create table public.elsewhere (id int); alter table public.elsewhere add column b int; drop table public.elsewhere');
  // (nor is a table of the six renamed away for a moment an error of the check's)
  await t.notThrowsAsync(db().pool.query(`begin; alter table crm.users rename to people;
    alter table crm.contacts alter column city set statistics -1; alter table crm.people rename to users; commit`));
  await t.notThrowsAsync(migrate(ownerUrl));
});

// Without that trigger (an engine migrated by an owner that is no superuser), the
// setup form's searches of the company's users and statuses and the count a backfill
// will examine answered the rows the CRM's policies left the engine's owner: fewer
// users and statuses to pick, fewer contacts. They refuse instead, naming the table.
test.serial('the setup form\'s user and status searches and backfillContactsCount refuse while the CRM\'s row-level security hides rows from the engine\'s owner', async (t) => {
  const f = make();
  const company = await f.company();
  const user = await f.user(company.id, 'Ann Hidden');
  const status = await f.status(company.id, 'Hot');
  await f.contact(company.id, { city: 'x' });
  const ownerUrl = await engineOwnerUrl(db().pool, db().url);
  await migrate(ownerUrl);
  await withoutRowSecurityGuard(t, db().pool);
  const asAdmin = <T>(work: (client: pg.PoolClient) => Promise<T>) =>
    inTransaction(db().pool, `select set_config('jwt.claims.company_id', '${company.id}', true)`, work);
  const ask = {
    users: (c: pg.PoolClient) => c.query(`select * from webhooks.company_users_matching('ann')`),
    statuses: (c: pg.PoolClient) => c.query(`select * from webhooks.company_statuses_matching('ho')`),
    contacts: (c: pg.PoolClient) => c.query('select webhooks.backfill_contacts_count() as n'),
    usersNamed: (c: pg.PoolClient) => c.query(`select * from webhooks.company_users_named(array[${user.id}]::bigint[])`),
    statusesNamed: (c: pg.PoolClient) => c.query(`select * from webhooks.company_statuses_named(array[${status.id}]::bigint[])`),
    // (the pages of the lists, as the API's viewer asks them)
    usersPage: (c: pg.PoolClient) => c.query('set local role webhook_viewer')
      .then(() => c.query('select * from webhooks.company_users() limit 100')),
    statusesPage: (c: pg.PoolClient) => c.query('set local role webhook_viewer')
      .then(() => c.query('select * from webhooks.company_statuses() limit 100')),
  };
  // before: every row answered
  t.is((await asAdmin(ask.users)).rowCount, 1);
  t.is((await asAdmin(ask.statuses)).rowCount, 1);
  t.is((await asAdmin(ask.contacts)).rows[0].n, '1');
  for (const which of ['usersNamed', 'statusesNamed', 'usersPage', 'statusesPage'] as const) t.is((await asAdmin(ask[which])).rowCount, 1, which);

  await db().pool.query(`${TENANT_POLICY('users')} ${TENANT_POLICY('statuses')} ${TENANT_POLICY('contacts')}`);
  t.teardown(async () => {
    await db().pool.query(['users', 'statuses', 'contacts']
      .map((table) => `drop policy tenant on crm.${table}; alter table crm.${table} disable row level security;`).join(' '));
  });
  for (const [which, table] of [['users', 'crm.users'], ['statuses', 'crm.statuses'], ['contacts', 'crm.contacts'],
    ['usersNamed', 'crm.users'], ['statusesNamed', 'crm.statuses'], ['usersPage', 'crm.users'], ['statusesPage', 'crm.statuses']] as const) {
    await t.throwsAsync(asAdmin(ask[which]), {
      code: '55000',
      message: new RegExp(`^the CRM's row-level security on ${table.replace('.', '\\.')}\\b.* hides rows from the engine; ask your operator`),
    }, which);
  }
});

// The CRM's DDL as its own role, the table's owner, which may not use the engine's
// schemas: refused all the same (the trigger's function runs as the engine's owner).
test.serial('the CRM\'s own role, owner of its table and granted nothing of the engine\'s, has its row-level security refused too', async (t) => {
  const ownerUrl = await engineOwnerUrl(db().pool, db().url);
  await migrate(ownerUrl);
  const crm = await crmAppRole(db().pool);
  await db().pool.query(`alter table crm.statuses owner to ${crm}`);
  t.teardown(async () => { await db().pool.query(`alter table crm.statuses owner to current_user`); });
  const writer = await connectAs(t, db().pool, crm);
  await t.throwsAsync(writer.query('alter table crm.statuses enable row level security'), {
    code: '0A000',
    message: /^crm\.statuses has row-level security that applies to bpd_test_engine_owner, the engine's owner/,
  });
  const { rows: [{ relrowsecurity }] } = await db().pool.query(`select relrowsecurity from pg_class where oid = 'crm.statuses'::regclass`);
  t.false(relrowsecurity);
});

// Without that trigger, a tag's status or an assignment's user the CRM's policies hide
// from the engine's owner (a CRM writing as its tables' owner, exempt, the owner's
// reads subject to them): the event was dropped without a word. A key looked up and
// not found is asked of the catalog then, and the write refused, naming the table; a
// write whose rows are all found pays nothing for it.
test.serial('a status or user looked up for a tag or an assignment and hidden from the engine\'s owner fails the write, naming the table, where the event was dropped', async (t) => {
  const f = make();
  const company = await f.company();
  const [status, user] = [await f.status(company.id), await f.user(company.id)];
  const contact = await f.contact(company.id);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.status_added', 'contact.user_assigned'], fields: ['first_name'] });
  const ownerUrl = await engineOwnerUrl(db().pool, db().url);
  await migrate(ownerUrl);
  await withoutRowSecurityGuard(t, db().pool);
  await db().pool.query(`${TENANT_POLICY('users')} ${TENANT_POLICY('statuses')}`);
  t.teardown(async () => {
    await db().pool.query(['users', 'statuses']
      .map((table) => `drop policy tenant on crm.${table}; alter table crm.${table} disable row level security;`).join(' '));
  });
  for (const [write, table] of [
    [`insert into crm.contact_statuses (contact_id, status_id) values (${contact.id}, ${status.id})`, 'crm.statuses'],
    [`insert into crm.contact_assignments (contact_id, user_id) values (${contact.id}, ${user.id})`, 'crm.users'],
  ] as const) {
    await t.throwsAsync(db().pool.query(write), {
      code: '55000',
      message: `the CRM's row-level security on ${table} hides rows from the engine; ask your operator`,
    }, table);
  }
  const { rows } = await db().pool.query('select action from webhooks.deliveries where webhook_id = $1', [hook.id]);
  t.deepEqual(rows, []);
  const { rows: [{ tags, assignments }] } = await db().pool.query(
    `select (select count(*)::int from crm.contact_statuses where contact_id = $1) as tags,
            (select count(*)::int from crm.contact_assignments where contact_id = $1) as assignments`, [contact.id]);
  t.deepEqual({ tags, assignments }, { tags: 0, assignments: 0 });
});
