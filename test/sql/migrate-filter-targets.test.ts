// Migration 0038: the keys from a webhook's status_id and user_id to the CRM's rows
// no longer cascade. An install migrated before it, with a webhook filtered on a
// user, keeps that webhook when the user is deleted once migrated.
import test from 'ava';
import { migrate } from '../../tools/migrate.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);
const MIGRATION = '0038_webhook_filters_outlive_their_targets';

async function keys() {
  const { rows } = await db().pool.query(
    `select conname, confdeltype from pg_constraint
     where conrelid = 'webhooks.webhooks'::regclass and conname in ('webhooks_status_id_fkey', 'webhooks_user_id_fkey')
     order by conname`);
  return rows;
}

test('an install whose keys cascaded: migrated, they refuse, and a deleted user\'s webhook is kept, disabled', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const user = await f.user(company.id);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.user_assigned'], userId: user.id });
  // the keys as they were before 0038
  await db().pool.query(`
    alter table webhooks.webhooks
      drop constraint webhooks_status_id_fkey, drop constraint webhooks_user_id_fkey;
    alter table webhooks.webhooks
      add constraint webhooks_status_id_fkey foreign key (status_id) references crm.statuses on delete cascade,
      add constraint webhooks_user_id_fkey foreign key (user_id) references crm.users on delete cascade`);
  t.deepEqual(await keys(), [
    { conname: 'webhooks_status_id_fkey', confdeltype: 'c' }, { conname: 'webhooks_user_id_fkey', confdeltype: 'c' }]);

  await db().pool.query('delete from webhooks_private.migrations where name >= $1', [MIGRATION]);
  await migrate(db().url);

  t.deepEqual(await keys(), [
    { conname: 'webhooks_status_id_fkey', confdeltype: 'a' }, { conname: 'webhooks_user_id_fkey', confdeltype: 'a' }]);
  await db().pool.query('delete from crm.users where id = $1', [user.id]);
  const { rows } = await db().pool.query('select enabled, disabled_by, user_id from webhooks.webhooks where id = $1', [hook.id]);
  t.deepEqual(rows, [{ enabled: false, disabled_by: 'crm', user_id: null }]);
});
