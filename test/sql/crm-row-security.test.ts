// The CRM turns row-level security on for its tables, each tenant seeing its own
// company's rows. The engine's capture functions run as their owner, which reads every
// company's users, assignments and statuses to know the companies concerned by a
// contact: an owner subject to the CRM's policies sees only the writer's tenant, and a
// company whose user is assigned hears nothing, silently. Migrate refuses such an
// owner, naming the table and what it needs; given a policy that lets it read every
// row, capture reaches every company whatever the writer's tenant.
// The tests change the tables themselves, so they run one after another; each as on
// an engine migrated by an owner that is no superuser, without the event trigger that
// refuses such DDL (test/sql/crm-row-security-guard.test.ts).
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { connectAs, crmAppRole, engineOwnerUrl, withoutRowSecurityGuard } from '../helpers/crm-role.ts';
import { migrate } from '../../tools/migrate.ts';

const db = useTestDatabase(test);
const make = () => factories(db().pool);

const TENANT_POLICY = (table: string) => `
  alter table crm.${table} enable row level security;
  create policy tenant on crm.${table} using (company_id = nullif(current_setting('crm.tenant', true), '')::bigint);`;

test.serial('an engine owner subject to the CRM\'s row-level security is refused by migrate; with a policy of its own, capture reaches every company concerned', async (t) => {
  const f = make();
  const [own, other] = [await f.company(), await f.company()];
  const assignee = await f.user(other.id);
  const ownHook = await f.webhook({ companyId: own.id, actions: ['contact.updated'], fields: ['first_name'] });
  const otherHook = await f.webhook({ companyId: other.id, actions: ['contact.updated'], fields: ['first_name'] });
  const contact = await f.contact(own.id, { first_name: 'Ada' });
  await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, assignee.id]);
  const ownerUrl = await engineOwnerUrl(db().pool, db().url);
  await migrate(ownerUrl);
  await withoutRowSecurityGuard(t, db().pool);

  await db().pool.query(`${TENANT_POLICY('users')} ${TENANT_POLICY('statuses')} ${TENANT_POLICY('contacts')}`);
  const writer = await connectAs(t, db().pool, await crmAppRole(db().pool));
  const update = async (firstName: string) => {
    await writer.query('begin');
    await writer.query(`select set_config('crm.tenant', $1, true)`, [own.id]);
    const { rowCount } = await writer.query(`update crm.contacts set first_name = $2 where id = $1`, [contact.id, firstName]);
    await writer.query('commit');
    return rowCount;
  };
  const announced = async () => (await db().pool.query(
    'select webhook_id::text, action from webhooks.deliveries where webhook_id = any ($1::bigint[]) order by webhook_id, id',
    [[ownHook.id, otherHook.id]])).rows;
  // until the next migrate: the owner sees the writer's tenant alone, and the company
  // of the assigned user hears nothing
  t.is(await update('Ada L.'), 1);
  t.deepEqual(await announced(), [{ webhook_id: ownHook.id, action: 'contact.updated' }]);
  await t.throwsAsync(migrate(ownerUrl), {
    message: /crm\.contacts has row-level security that applies to bpd_test_engine_owner, the engine's owner: capture reads every company's rows/,
  });

  await db().pool.query(`
    create policy engine_reads on crm.users for select to bpd_test_engine_owner using (true);
    create policy engine_reads on crm.statuses for select to bpd_test_engine_owner using (true);
    create policy engine_reads on crm.contacts for select to bpd_test_engine_owner using (true);`);
  await migrate(ownerUrl);
  t.is(await update('Ada Lovelace'), 1);
  t.deepEqual(await announced(), [
    { webhook_id: ownHook.id, action: 'contact.updated' }, { webhook_id: ownHook.id, action: 'contact.updated' },
    { webhook_id: otherHook.id, action: 'contact.updated' },
  ]);
});

test.serial('FORCE ROW LEVEL SECURITY on a table the engine\'s owner owns is refused by migrate; without FORCE, migrate goes on', async (t) => {
  const ownerUrl = await engineOwnerUrl(db().pool, db().url);
  await withoutRowSecurityGuard(t, db().pool);
  await db().pool.query(`
    alter table crm.companies owner to bpd_test_engine_owner;
    alter table crm.companies enable row level security;
    alter table crm.companies force row level security;
    create policy tenant on crm.companies using (id = nullif(current_setting('crm.tenant', true), '')::bigint);`);
  await t.throwsAsync(migrate(ownerUrl), {
    message: /crm\.companies has row-level security that applies to bpd_test_engine_owner, the engine's owner/,
  });
  await db().pool.query('alter table crm.companies no force row level security');
  await t.notThrowsAsync(migrate(ownerUrl));
});

// A CRM that turns row-level security on after the last migrate: the backfill's walk,
// run as the engine's owner, saw the rows the policy left it and said it was done,
// the other contacts never sent. It fails instead, naming what hides them.
test.serial('row-level security turned on after migrate that hides contacts from the engine\'s owner fails a backfill, not done short', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted'], fields: ['city'] });
  for (const city of ['a', 'hidden', 'b']) await f.contact(company.id, { city });
  const ownerUrl = await engineOwnerUrl(db().pool, db().url);
  await migrate(ownerUrl);
  await withoutRowSecurityGuard(t, db().pool);
  // (restrictive: it hides them whatever the policies that let the owner read every
  // row, the first test's)
  await db().pool.query(`
    alter table crm.contacts enable row level security;
    create policy not_hidden on crm.contacts as restrictive using (city is distinct from 'hidden');`);
  t.teardown(() => db().pool.query('drop policy not_hidden on crm.contacts').then(() => undefined));
  const { rows: [{ id: backfill }] } = await db().pool.query('select webhooks.backfill($1) as id', [hook.id]);
  for (let i = 0; i < 3; i++) await db().pool.query('select webhooks_relay.backfill_step(p_only => $1)', [backfill]);
  const { rows: [row] } = await db().pool.query('select state, queued, error from webhooks.backfills where id = $1', [backfill]);
  t.is(row.state, 'failed');
  t.is(row.queued, '0', 'no batch of the contacts the policy leaves');
  t.regex(row.error, /row-level security on crm\.contacts hides rows from the engine; ask your operator/);
  // and the next migrate refuses it, the restrictive policy as much as none at all
  await t.throwsAsync(migrate(ownerUrl), {
    message: /crm\.contacts has row-level security that applies to bpd_test_engine_owner, the engine's owner/,
  });
});

