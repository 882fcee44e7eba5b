// `npm run migrate` of a new release over a running installation: a relay delivering,
// the CRM writing contacts, and a long transaction (a report, a backup's snapshot)
// holding a table a migration must change.
import test from 'ava';
import { mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { migrate, migrationsDir } from '../../tools/migrate.ts';
import { ownConnection } from '../helpers/db.ts';
import { relayScene, testRelay, waitForFinalDeliveries } from '../helpers/relay.ts';
import { until } from '../helpers/until.ts';

/** This release's migrations/ and one more, named `name` (as a next release's would be). */
async function migrationsWith(t: { teardown: (fn: () => Promise<void>) => void }, name: string, sql: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bpd-migrations-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const file of await readdir(migrationsDir)) await symlink(join(migrationsDir, file), join(dir, file));
  await writeFile(join(dir, name), `-- Up Migration\n${sql}\n`);
  return dir;
}

test('a migration waiting for a table a long transaction reads gives way: contact writes and deliveries go on meanwhile, and it is applied once that transaction ends', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: hook.secret });
  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  const dir = await migrationsWith(t, '9000_contacts_nickname.sql', 'alter table crm.contacts add column nickname text;');

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
