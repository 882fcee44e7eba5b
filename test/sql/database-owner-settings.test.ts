// The database's owner that is no superuser sets the engine's settings for the
// database (`alter database … set webhooks.retention`), as docs/operations.md says to.
// Postgres lets a role that is no superuser set a parameter no module defines (a
// placeholder, as every webhooks.* is) at a database or role only with SET on it: a
// superuser's migrate grants it on each of the engine's settings to the database's
// owner (sql/60_access.sql). Until 2026-12-08 the owner was refused, "permission
// denied to set parameter "webhooks.retention"".
import test from 'ava';
import pg from 'pg';
import { useTestDatabase } from '../helpers/db.ts';
import { connectAs } from '../helpers/crm-role.ts';
import { migrate } from '../../tools/migrate.ts';

const db = useTestDatabase(test);
const OWNER = 'bpd_test_database_owner';

test.serial('the database\'s owner, no superuser, sets the engine\'s settings for the database, and they are in force', async (t) => {
  await db().pool.query(`do $$ begin create role ${OWNER} nologin nosuperuser; exception when duplicate_object or unique_violation then null; end $$`);
  await db().pool.query(`alter database ${db().name} owner to ${OWNER}`);
  await migrate(db().url);

  const owner = await connectAs(t, db().pool, OWNER);
  await t.notThrowsAsync(owner.query(`alter database ${db().name} set webhooks.retention = '30 days'`));
  await t.notThrowsAsync(owner.query(`alter database ${db().name} set webhooks.max_attempts = 5`));

  const fresh = new pg.Client({ connectionString: db().url });
  await fresh.connect();
  t.teardown(() => fresh.end());
  const { rows: [row] } = await fresh.query(`select webhooks_private.retention()::text as retention,
                                                    current_setting('webhooks.max_attempts') as attempts`);
  t.deepEqual(row, { retention: '30 days', attempts: '5' });
});
