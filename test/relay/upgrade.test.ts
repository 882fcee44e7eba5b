// `npm run migrate` of a new release over a running installation: a relay delivering,
// the CRM writing contacts, and a long transaction (a report, a backup's snapshot)
// holding a table a migration must change.
import test from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ENGINE_FINGERPRINT } from '../../ops/engine.ts';
import { migrate, migrationsDir } from '../../tools/migrate.ts';
import { ownConnection } from '../helpers/db.ts';
import { relayScene, testRelay, waitForFinalDeliveries } from '../helpers/relay.ts';
import { until } from '../helpers/until.ts';

/** This release's migrations/ and one more, `name`.sql (as a next release's would be). */
async function migrationsWith(t: { teardown: (fn: () => Promise<void>) => void }, name: string, sql: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bpd-migrations-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const file of await readdir(migrationsDir)) await symlink(join(migrationsDir, file), join(dir, file));
  await writeFile(join(dir, `${name}.sql`), `-- Up Migration\n${sql}\n`);
  return dir;
}

test('a migration waiting for a table a long transaction reads gives way: contact writes and deliveries go on meanwhile, and it is applied once that transaction ends', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: hook.secret });
  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  const dir = await migrationsWith(t, '9000_contacts_nickname', 'alter table crm.contacts add column nickname text;');

  const report = await ownConnection(database.url, t);
  await report.query('begin');
  await report.query('select count(*) from crm.contacts');
  let migrated = false;
  const migrating = migrate(database.url, () => {}, { migrationsDir: dir }).then(() => (migrated = true));
  migrating.catch(() => {});
  await until('the migrate waits for crm.contacts', async () => (await database.pool.query(
    `select 1 from pg_locks where relation = 'crm.contacts'::regclass and mode = 'AccessExclusiveLock' and not granted`)).rowCount! > 0);

  try {
    // while the report's transaction stays open, the CRM writes (each write within 10 s,
    // not queued behind the migrate until the report ends) and the relay delivers
    const crm = await ownConnection(database.url, t);
    await crm.query(`set statement_timeout = '10s'`);
    for (let i = 0; i < 5; i++) {
      await crm.query(`insert into crm.contacts (company_id, first_name) values ($1, $2)`, [company.id, `During ${i}`]);
    }
    await receiver.waitFor(5, { path: '/hook' });
    t.false(migrated);
  } finally {
    await report.query('commit');
    await migrating;
  }
  const { rows: [column] } = await database.pool.query(
    `select count(*)::int as n from information_schema.columns where table_schema = 'crm' and table_name = 'contacts' and column_name = 'nickname'`);
  t.is(column.n, 1);
  await f.contact(company.id, { first_name: 'After' });
  const deliveries = await waitForFinalDeliveries(database.pool, [hook.id], 6);
  t.deepEqual(deliveries.map((d) => d.state), Array(6).fill('succeeded'));
});

test('a migrate killed in a long migration lets go of its tables at once, leaves nothing of that migration, and the next migrate finishes', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: hook.secret });
  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  // a migration that moves data for a long time, holding the table it changes
  const dir = await migrationsWith(t, '9000_contacts_moved',
    'lock table crm.contacts in share mode;\nselect pg_sleep(60);\nalter table crm.contacts add column moved boolean;');
  const migrateUrl = new URL('../../tools/migrate.ts', import.meta.url).href;
  const child = spawn(process.execPath, ['--input-type=module', '-e',
    `import { migrate } from ${JSON.stringify(migrateUrl)}; await migrate(process.argv[1], () => {}, { migrationsDir: process.argv[2] });`,
    database.url, dir], { stdio: 'ignore' });
  t.teardown(() => { child.kill('SIGKILL'); });
  await until('the migration runs', async () => (await database.pool.query(
    `select 1 from pg_stat_activity where datname = current_database() and query like '%pg_sleep(60)%' and pid <> pg_backend_pid()`)).rowCount! > 0);
  child.kill('SIGKILL');
  await once(child, 'exit');

  // within 10 s, not once the migration's statement has ended
  const crm = await ownConnection(database.url, t);
  await crm.query(`set statement_timeout = '10s'`);
  await crm.query(`insert into crm.contacts (company_id, first_name) values ($1, 'After the kill')`, [company.id]);
  await receiver.waitFor(1, { path: '/hook' });

  await migrate(database.url);
  const { rows: [state] } = await database.pool.query(
    `select (select count(*)::int from webhooks_private.migrations where name like '9000%') as recorded,
            (select count(*)::int from information_schema.columns where table_schema = 'crm' and column_name = 'moved') as columns,
            (select fingerprint from webhooks_private.sql_applied) as fingerprint`);
  t.deepEqual(state, { recorded: 0, columns: 0, fingerprint: ENGINE_FINGERPRINT });
  await f.contact(company.id, { first_name: 'After the migrate' });
  const deliveries = await waitForFinalDeliveries(database.pool, [hook.id], 2);
  t.deepEqual(deliveries.map((d) => d.state), ['succeeded', 'succeeded']);
});
