// Migrating is safe to repeat and to run twice at once.
import test from 'ava';
import pg from 'pg';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ENGINE_FILES, ENGINE_FINGERPRINT } from '../../ops/engine.ts';
import { MIGRATE_LOCK, migrate, migrationsDir } from '../../tools/migrate.ts';
import { createTestDatabase, databaseUrl, ownConnection } from '../helpers/db.ts';
import { MIGRATE_WAITING, migrateProcess } from '../helpers/migrations.ts';
import { until } from '../helpers/until.ts';

let emptyDatabases = 0;

async function withEmptyDatabase(work: (url: string) => Promise<void>) {
  const name = `bpd_test_empty_${process.pid}_${++emptyDatabases}`;
  const server = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await server.connect();
  await server.query(`drop database if exists ${name} with (force)`);
  await server.query(`create database ${name}`);
  try {
    await work(databaseUrl(name));
  } finally {
    await server.query(`drop database if exists ${name} with (force)`);
    await server.end();
  }
}

async function shape(url: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query(`
      select (select count(*) from webhooks_private.migrations)::int as migrations,
             (select count(*) from pg_trigger t join pg_class c on c.oid = t.tgrelid
               join pg_namespace n on n.oid = c.relnamespace
               where not t.tgisinternal and n.nspname in ('crm', 'webhooks'))::int as triggers,
             (select count(*) from pg_proc where pronamespace = 'webhooks_private'::regnamespace)::int as functions`);
    return rows[0];
  } finally {
    await client.end();
  }
}

test('two migrates at once, then a third: same schema, nothing duplicated, capture works', async (t) => {
  await withEmptyDatabase(async (url) => {
    await Promise.all([migrate(url), migrate(url)]);
    const first = await shape(url);
    await migrate(url);
    t.deepEqual(await shape(url), first);
    t.true(first.migrations >= 2);
    t.true(first.triggers >= 9);

    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const { rows: [company] } = await client.query("insert into crm.companies (name) values ('M') returning id");
      await client.query(`insert into webhooks.webhooks (company_id, name, url, fields, actions)
                          values ($1, 'h', 'https://example.com/h', '{email}', '{contact.created}')`, [company.id]);
      await client.query('insert into crm.contacts (company_id, email) values ($1, $2)', [company.id, 'm@example.com']);
      const { rows } = await client.query('select count(*)::int as n from webhooks.deliveries');
      t.is(rows[0].n, 1);
    } finally {
      await client.end();
    }
  });
});

async function migrationsRecorded(url: string, table: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query(`select id, name, run_on from ${table} order by id`);
    return rows;
  } finally {
    await client.end();
  }
}

async function exists(url: string, relation: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query('select to_regclass($1) is not null as found', [relation]);
    return rows[0].found;
  } finally {
    await client.end();
  }
}

test('an install that recorded its migrations in public.migrations keeps them: the table moves, nothing runs again', async (t) => {
  await withEmptyDatabase(async (url) => {
    await migrate(url);
    // the layout of installs migrated before the table moved
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    await client.query('alter table webhooks_private.migrations set schema public');
    await client.end();
    const before = await migrationsRecorded(url, 'public.migrations');
    t.true(before.length >= 5);

    const lines: string[] = [];
    await migrate(url, (line) => lines.push(line));
    t.deepEqual(lines.filter((line) => line.startsWith('migrated')), []);
    t.false(await exists(url, 'public.migrations'));
    t.deepEqual(await migrationsRecorded(url, 'webhooks_private.migrations'), before);
    // and the next migration would get the next id
    t.true(await exists(url, 'webhooks_private.migrations_id_seq'));
  });
});

test('a public.migrations of someone else (not recording ours) is left alone', async (t) => {
  await withEmptyDatabase(async (url) => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    await client.query('create table public.migrations (id serial primary key, name text not null, run_on timestamp not null)');
    await client.query("insert into public.migrations (name, run_on) values ('crm_0001_init', now())");
    await client.end();
    const theirs = await migrationsRecorded(url, 'public.migrations');
    await migrate(url);
    t.deepEqual(await migrationsRecorded(url, 'public.migrations'), theirs);
    const ours = (await readdir(migrationsDir)).filter((name) => name.endsWith('.sql')).map((name) => name.slice(0, -4)).sort();
    t.deepEqual((await migrationsRecorded(url, 'webhooks_private.migrations')).map((row) => row.name), ours);
  });
});

test('re-applied over an install whose backfill functions had the old argument names, sql/ renames them (GraphQL: webhookId, id)', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const names = async () => (await database.pool.query(
    `select proname, proargnames from pg_proc
     where oid in ('webhooks.backfill(bigint)'::regprocedure, 'webhooks.cancel_backfill(bigint)'::regprocedure) order by proname`)).rows;
  // as an install before 2026-12-05 had them
  await database.pool.query(`
    drop function webhooks.backfill(bigint);
    drop function webhooks.cancel_backfill(bigint);
    create function webhooks.backfill(p_webhook_id bigint) returns bigint language sql as 'select p_webhook_id';
    create function webhooks.cancel_backfill(p_backfill_id bigint) returns webhooks.backfills language sql
      as 'select * from webhooks.backfills where id = p_backfill_id'`);
  t.deepEqual(await names(), [
    { proname: 'backfill', proargnames: ['p_webhook_id'] },
    { proname: 'cancel_backfill', proargnames: ['p_backfill_id'] },
  ]);
  await migrate(database.url);
  t.deepEqual(await names(), [
    { proname: 'backfill', proargnames: ['webhook_id'] },
    { proname: 'cancel_backfill', proargnames: ['id'] },
  ]);
});

test('migrate records the sql/ it replaced (the previous release\'s), and keeps that record when it applies the same again', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const record = async () => (await database.pool.query('select fingerprint, replaced from webhooks_private.sql_applied')).rows;
  await database.pool.query(`update webhooks_private.sql_applied set fingerprint = $1`, ['ab'.repeat(32)]);
  await migrate(database.url);
  t.deepEqual(await record(), [{ fingerprint: ENGINE_FINGERPRINT, replaced: 'ab'.repeat(32) }]);
  await migrate(database.url);
  t.deepEqual(await record(), [{ fingerprint: ENGINE_FINGERPRINT, replaced: 'ab'.repeat(32) }]);
});

test('migrate registers its release (fingerprint, newest migration) before its migrations, marks it applied with its sql/, and keeps its place when run again after a later release\'s (a rollback)', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const releases = async () => (await database.pool.query(
    `select fingerprint, migration, first_applied_at is not null as applied from webhooks_private.sql_releases order by n`)).rows;
  const newest = (await readdir(migrationsDir)).filter((name) => name.endsWith('.sql')).sort().at(-1)!.replace(/\.sql$/, '');
  const own = { fingerprint: ENGINE_FINGERPRINT, migration: newest, applied: true };
  t.deepEqual(await releases(), [own]);

  // a migrate whose migration fails is registered, its sql/ not applied
  const dir = await mkdtemp(join(tmpdir(), 'bpd-migrations-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const file of await readdir(migrationsDir)) await symlink(join(migrationsDir, file), join(dir, file));
  const failing = '9000_fails';
  await writeFile(join(dir, `${failing}.sql`), '-- Up Migration\nselect 1 / 0;\n');
  await t.throwsAsync(migrate(database.url, () => {}, { migrationsDir: dir }), { message: `migrations/${failing}.sql: division by zero` });
  t.deepEqual(await releases(), [own, { fingerprint: ENGINE_FINGERPRINT, migration: '9000_fails', applied: false }]);
  await database.pool.query(`delete from webhooks_private.sql_releases where migration = '9000_fails'`);

  // the next release, of sql/ only, migrated; then this release's migrate ran again,
  // rolling back on purpose (without asking, it does nothing: test below)
  await database.pool.query(`insert into webhooks_private.sql_releases (fingerprint, migration, first_applied_at) values ($1, $2, now())`,
    ['cd'.repeat(32), newest]);
  await database.pool.query(`update webhooks_private.sql_applied set replaced = fingerprint, fingerprint = $1`, ['cd'.repeat(32)]);
  await migrate(database.url, () => {}, { rollback: true });
  t.deepEqual(await releases(), [own, { fingerprint: 'cd'.repeat(32), migration: newest, applied: true }]);
  const { rows: [record] } = await database.pool.query('select fingerprint, replaced, migration from webhooks_private.sql_applied');
  t.deepEqual(record, { fingerprint: ENGINE_FINGERPRINT, replaced: 'cd'.repeat(32), migration: newest });
});

test('a rollback to a release whose migrate never ran here (a later release\'s sql/ in force, with a function this sql/ does not make) places it before every release registered, marked rolled back to; a release after it, migrated the same way, goes last', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const releases = async () => (await database.pool.query(
    `select fingerprint, first_applied_at is not null as applied, rolled_back_to from webhooks_private.sql_releases order by n`)).rows;
  const later = { fingerprint: 'cd'.repeat(32), applied: true, rolled_back_to: false };
  // the database as a later release of the same migrations left it, this release's migrate never run here
  const laterReleaseOnly = async () => {
    await database.pool.query(`delete from webhooks_private.sql_releases`);
    await database.pool.query(`insert into webhooks_private.sql_releases (fingerprint, migration, first_applied_at)
                               select $1, migration, now() from webhooks_private.sql_applied`, [later.fingerprint]);
    await database.pool.query(`update webhooks_private.sql_applied set fingerprint = $1, replaced = null`, [later.fingerprint]);
  };
  await laterReleaseOnly();
  await database.pool.query(`create function webhooks_private.of_a_later_release() returns integer language sql as 'select 1'`);
  // (not asked to roll back, it applies nothing, and says why)
  await t.throwsAsync(migrate(database.url), { message: /^sql\/ not applied: it does not name webhooks_private\.of_a_later_release\(\), functions of a later release's sql\/ in force here: .*, or made by hand in the engine's schemas \(drop or move them\)\. Nothing was applied\. To roll back on purpose: npm run migrate -- --rollback \(its embedded database: npm start -- --rollback\)$/ });
  t.is((await database.pool.query('select fingerprint from webhooks_private.sql_applied')).rows[0].fingerprint, later.fingerprint);
  await migrate(database.url, () => {}, { rollback: true });
  t.deepEqual(await releases(), [{ fingerprint: ENGINE_FINGERPRINT, applied: true, rolled_back_to: true }, later]);
  const { rows: [{ record }] } = await database.pool.query('select webhooks_ops.sql_releases() as record');
  t.deepEqual(record.releases.map((release: { rolledBackTo: boolean }) => release.rolledBackTo), [true, false]);

  // the same, the later release's sql/ making no function this one lacks (it changed bodies only): not asked to
  // roll back, this one reads as the release after it, which the database cannot tell from an older one;
  // asked to, it is the older one, whatever the later one changed
  await database.pool.query(`drop function webhooks_private.of_a_later_release()`);
  await laterReleaseOnly();
  await migrate(database.url);
  t.deepEqual(await releases(), [later, { fingerprint: ENGINE_FINGERPRINT, applied: true, rolled_back_to: false }]);
  await laterReleaseOnly();
  await migrate(database.url, () => {}, { rollback: true });
  t.deepEqual(await releases(), [{ fingerprint: ENGINE_FINGERPRINT, applied: true, rolled_back_to: true }, later]);
});

/** The releases registered here, in order: this code's as `own`, the others by their fingerprint's first two digits. */
async function releasesNamed(database: { pool: pg.Pool }) {
  const { rows } = await database.pool.query<{ fingerprint: string; applied: boolean; rolled_back_to: boolean }>(
    `select fingerprint, first_applied_at is not null as applied, rolled_back_to from webhooks_private.sql_releases order by n`);
  return rows.map(({ fingerprint, applied, rolled_back_to }) =>
    `${fingerprint === ENGINE_FINGERPRINT ? 'own' : fingerprint.slice(0, 2)}${applied ? '' : ' (not applied)'}${rolled_back_to ? ' (rolled back to)' : ''}`);
}

/** The releases `names` registered here in that order, of the same migrations as this one, `inForce`'s sql/ in force ('own': this code's). */
async function registered(database: { pool: pg.Pool }, inForce: string, ...names: Array<string | [string, 'not applied']>) {
  const fingerprint = (name: string) => (name === 'own' ? ENGINE_FINGERPRINT : name.repeat(32));
  const { rows: [{ migration }] } = await database.pool.query('select migration from webhooks_private.sql_applied');
  await database.pool.query('delete from webhooks_private.sql_releases');
  for (const entry of names) {
    const [name, notApplied] = typeof entry === 'string' ? [entry, undefined] : entry;
    await database.pool.query(`insert into webhooks_private.sql_releases (fingerprint, migration, first_applied_at) values ($1, $2, $3)`,
      [fingerprint(name), migration, notApplied ? null : new Date()]);
  }
  await database.pool.query(`update webhooks_private.sql_applied set fingerprint = $1, replaced = null`, [fingerprint(inForce)]);
}

/** Whose sql/ is in force, named as releasesNamed names them. */
async function inForce(database: { pool: pg.Pool }) {
  const { rows: [{ fingerprint }] } = await database.pool.query('select fingerprint from webhooks_private.sql_applied');
  return fingerprint === ENGINE_FINGERPRINT ? 'own' : fingerprint.slice(0, 2);
}

test('a release whose migrate stopped before its sql/ here, a later release\'s sql/ applied since (its bodies changed only), refuses to roll that one back unless asked', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  // this release's migrate stopped (killed, or failed) before its sql/; the next one's (N mended, or a release of sql/ only) ran to its end
  await registered(database, 'cd', ['own', 'not applied'], 'cd');
  await t.throwsAsync(migrate(database.url), { message: /^this database runs the sql\/ of a later release than this one \(cdcdcdcdcdcd, migrated to \w+\): .* Nothing was applied\. To roll back on purpose: npm run migrate -- --rollback/ });
  t.is(await inForce(database), 'cd');
  await migrate(database.url, () => {}, { rollback: true });
  t.is(await inForce(database), 'own');
  t.deepEqual(await releasesNamed(database), ['own', 'cd']);
});

test('a rollback made on purpose is kept by npm start over a shared database (cautious): a later release\'s migrate there does nothing and says so; npm run migrate of it moves the database forward again', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const refused = /^this database was rolled back on purpose to an earlier release's sql\/ \(abababababab, migrated to \w+\), after a later release's was applied here: npm start does not undo that\. Nothing was applied\. To move it forward again on purpose: npm run migrate$/;
  // this release applied, then the one before it rolled back to (npm run migrate -- --rollback)
  await registered(database, 'ab', 'ab', 'own');
  await t.throwsAsync(migrate(database.url, () => {}, { cautious: true }), { message: refused });
  t.is(await inForce(database), 'ab');
  // a release after the one rolled back from, its migrate not run here yet, is held back as well
  await registered(database, 'ab', 'ab', 'cd');
  await t.throwsAsync(migrate(database.url, () => {}, { cautious: true }), { message: refused });
  t.deepEqual(await releasesNamed(database), ['ab', 'cd']);
  // the rollback to a release that never migrated here, placed before the rest
  await registered(database, 'ab', 'ab', 'own');
  await database.pool.query(`update webhooks_private.sql_releases set rolled_back_to = true where fingerprint = $1`, ['ab'.repeat(32)]);
  await t.throwsAsync(migrate(database.url, () => {}, { cautious: true }), { message: refused });
  t.is(await inForce(database), 'ab');
  // the release rolled back to, migrated again (its own hosts' npm start), undoes no rollback
  await registered(database, 'own', 'own', 'cd');
  await migrate(database.url, () => {}, { cautious: true });
  t.is(await inForce(database), 'own');
  // npm run migrate (not cautious) moves it forward again
  await registered(database, 'ab', 'ab', 'own');
  await migrate(database.url);
  t.is(await inForce(database), 'own');
  t.deepEqual(await releasesNamed(database), ['ab', 'own']);
});

test('npm start over a shared database (cautious) applies no sql/ never applied here over another release\'s of the same migrations, an earlier release\'s or a later one\'s (the database cannot tell); npm run migrate does; with a migration of its own, it is the later release', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  await registered(database, 'cd', 'cd');
  const { rows: [{ migration }] } = await database.pool.query('select migration from webhooks_private.sql_applied');
  await t.throwsAsync(migrate(database.url, () => {}, { cautious: true }), { message:
    `this release's sql/ was never applied here, and another release's of the same migrations is in force (cdcdcdcdcdcd, migrated to ${migration}): ` +
    'which of the two is the later, the database cannot tell, and npm start rolls back only when asked. Nothing was applied. ' +
    'To apply it on purpose: npm run migrate (a release of sql/ only, after that one), or npm run migrate -- --rollback (an earlier release)' });
  t.is(await inForce(database), 'cd');
  t.deepEqual(await releasesNamed(database), ['cd']);
  // the release in force migrated to an earlier migration than this one's: this one is later
  await database.pool.query(`update webhooks_private.sql_releases set migration = '0001_crm'`);
  await database.pool.query(`update webhooks_private.sql_applied set migration = '0001_crm'`);
  await migrate(database.url, () => {}, { cautious: true });
  t.is(await inForce(database), 'own');
  t.deepEqual(await releasesNamed(database), ['cd', 'own']);
  // npm run migrate applies it (the next release of sql/ only, Upgrading's first step), and says what it took it for
  await registered(database, 'cd', 'cd');
  const said: string[] = [];
  await migrate(database.url, (line) => said.push(line));
  t.deepEqual(said.filter((line) => line.includes('cdcdcdcdcdcd')), [
    `applied over the sql/ of another release of the same migrations (cdcdcdcdcdcd, migrated to ${migration}), never applied here before: ` +
      'taken for the release after it; if this is an earlier release, run npm run migrate -- --rollback to have it taken for that']);
  t.is(await inForce(database), 'own');
  t.deepEqual(await releasesNamed(database), ['cd', 'own']);
});

test('npm run migrate of a release whose sql/ a later release\'s replaced here (an older host\'s npm start mid-rollout) applies nothing and exits 1, saying so; with --rollback it rolls back, and with the --rollback npm kept for itself (no -- before it) it does nothing and says how to write it', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  // the next release, of sql/ only, migrated after this one
  await database.pool.query(`insert into webhooks_private.sql_releases (fingerprint, migration, first_applied_at)
                             select $1, migration, now() from webhooks_private.sql_applied`, ['cd'.repeat(32)]);
  await database.pool.query(`update webhooks_private.sql_applied set replaced = fingerprint, fingerprint = $1`, ['cd'.repeat(32)]);
  let environment: Record<string, string> = {};
  const run = async (...args: string[]) => {
    const child = spawn(process.execPath, [fileURLToPath(new URL('../../tools/migrate.ts', import.meta.url)), ...args],
      { env: { ...process.env, DATABASE_URL: database.url, ...environment }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const [code] = await once(child, 'exit');
    return { code, stderr: stderr.trim() };
  };
  const applied = async () => (await database.pool.query('select fingerprint from webhooks_private.sql_applied')).rows[0].fingerprint;
  const { rows: [{ migration }] } = await database.pool.query('select migration from webhooks_private.sql_applied');
  t.deepEqual(await run(), { code: 1, stderr: `this database runs the sql/ of a later release than this one (cdcdcdcdcdcd, migrated to ${migration}): ` +
    'applying this release\'s would roll it back under that release\'s processes (an older host\'s npm start?). ' +
    'Nothing was applied. To roll back on purpose: npm run migrate -- --rollback (its embedded database: npm start -- --rollback)' });
  t.is(await applied(), 'cd'.repeat(32));
  // npm run migrate --rollback, without the -- before it: npm keeps the flag as an option of its own
  environment = { npm_config_rollback: 'true' };
  t.deepEqual(await run(), { code: 1, stderr: 'npm took --rollback for an option of its own (npm_config_rollback): nothing was done. ' +
    'Write it after --: npm run migrate -- --rollback' });
  t.is(await applied(), 'cd'.repeat(32));
  environment = {};
  t.deepEqual(await run('--rollback'), { code: 0, stderr: '' });
  t.is(await applied(), ENGINE_FINGERPRINT);
});

test('migrate over a database migrated by newer code does nothing and says so; asked to roll back, it says that a rollback undoes no migration', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  await database.pool.query(`insert into webhooks_private.migrations (name, run_on) values ('9999_from_the_future', now())`);
  const refused = 'this database was migrated by newer code (9999_from_the_future: no such file in migrations/); ' +
    'nothing was done, so as not to put this older engine under it: run the newer code, or its migrate';
  await t.throwsAsync(migrate(database.url), { message: refused });
  await t.throwsAsync(migrate(database.url, () => {}, { rollback: true }), { message: `${refused}. ` +
    'A rollback (--rollback) undoes no migration: roll back only to a release that has them all' });
  t.is((await database.pool.query('select fingerprint from webhooks_private.sql_applied')).rows[0].fingerprint, ENGINE_FINGERPRINT);
});

test('a second migrate waits for the first (up to MIGRATE_LOCK_WAIT_MS, run-lock.test.ts), whatever lock_timeout and statement_timeout the database sets its sessions', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  await database.pool.query(`alter database ${database.name} set lock_timeout = '50ms'`);
  await database.pool.query(`alter database ${database.name} set statement_timeout = '200ms'`);
  const other = await ownConnection(database.url, t);
  await other.query('select pg_advisory_lock($1)', [MIGRATE_LOCK]);
  const migrating = migrate(database.url);
  migrating.catch(() => {});
  await until('the migrate waits for the other', async () => (await database.pool.query(
    `select 1 from pg_stat_activity where datname = current_database() and application_name = 'bpd-webhooks-migrate'
       and wait_event_type = 'Lock' and state_change < now() - interval '500 milliseconds'`)).rowCount! > 0);
  await other.query('select pg_advisory_unlock($1)', [MIGRATE_LOCK]);
  await t.notThrowsAsync(migrating);
});

test('no migration after the CRM\'s own changes a table of the CRM: its prepared statements (select *, returning *) keep their row type across a migrate', async (t) => {
  const changes: string[] = [];
  for (const file of (await readdir(migrationsDir)).filter((name) => name.endsWith('.sql') && name !== '0001_crm.sql')) {
    const text = await readFile(join(migrationsDir, file), 'utf8');
    for (const [statement] of text.matchAll(/\balter\s+table\s+(?:if\s+exists\s+)?(?:only\s+)?crm\.\w+/gi)) changes.push(`${file}: ${statement}`);
  }
  t.deepEqual(changes, []);
});

test('a migrate whose session is ended (pg_terminate_backend) exits non-zero with one sentence saying what was applied and to run it again; the next migrate finishes', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  await database.pool.query(`update webhooks_private.sql_applied set fingerprint = $1`, ['ab'.repeat(32)]);
  // another migrate holds the lock: this one waits for it, and is ended while it waits
  const other = await ownConnection(database.url, t);
  await other.query('select pg_advisory_lock($1)', [MIGRATE_LOCK]);
  const { exited, stderr } = migrateProcess(t, database.url);
  await until('the migrate waits for the other', async () => (await database.pool.query(MIGRATE_WAITING)).rowCount! > 0);
  await database.pool.query(`select pg_terminate_backend(pid) from (${MIGRATE_WAITING}) m`);
  const [code] = await exited;

  t.is(code, 1);
  const lines = stderr().trim().split('\n');
  t.is(lines.length, 1, stderr());
  t.regex(lines[0]!, /^migrate lost its connection to the database while it waited for another migrate to end \(terminating connection due to administrator command\): nothing was applied; run migrate again to finish$/);
  t.is((await database.pool.query('select fingerprint from webhooks_private.sql_applied')).rows[0].fingerprint, 'ab'.repeat(32));

  await other.query('select pg_advisory_unlock($1)', [MIGRATE_LOCK]);
  await migrate(database.url);
  t.is((await database.pool.query('select fingerprint from webhooks_private.sql_applied')).rows[0].fingerprint, ENGINE_FINGERPRINT);
});

test('a migrate whose session is ended while it applies sql/ rejects with what was applied (the migrations, not sql/), and does not crash its process', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  await database.pool.query(`update webhooks_private.sql_applied set fingerprint = $1`, ['ab'.repeat(32)]);
  // a transaction reading a table of the engine's: sql/'s lock waits for it
  const report = await ownConnection(database.url, t);
  await report.query('begin');
  await report.query('select count(*) from webhooks.deliveries');
  const migrating = migrate(database.url, () => {}, { holdersWaitMs: 60_000 });
  migrating.catch(() => {});
  const waiting = `select pid from pg_stat_activity
                   where datname = current_database() and application_name = 'bpd-webhooks-migrate'
                     and (wait_event_type = 'Lock' or query like '%virtualtransaction = any%')`;
  await until('the migrate waits for the report', async () => (await database.pool.query(waiting)).rowCount! > 0);
  await database.pool.query(`select pg_terminate_backend(pid) from pg_stat_activity
                             where datname = current_database() and application_name = 'bpd-webhooks-migrate'`);
  const error = await t.throwsAsync(migrating);
  t.regex(error!.message, /^migrate lost its connection to the database while it applied sql\/ \(terminating connection due to administrator command\): the migrations were applied, sql\/ not; run migrate again to finish$/);
  await report.query('rollback');
  t.is((await database.pool.query('select fingerprint from webhooks_private.sql_applied')).rows[0].fingerprint, 'ab'.repeat(32));
});

test('over a function whose result or argument names differ from this sql/\'s, migrate drops and makes it again; over its own, it keeps it (the same oid)', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const shape = async () => (await database.pool.query(
    `select oid::int as oid, pg_get_function_result(oid) as result, proargnames as names from pg_proc
     where oid in ('webhooks_private.wake_relay()'::regprocedure,
                   'webhooks_private.status_event(webhooks.action, bigint, bigint)'::regprocedure) order by proname`)).rows;
  const [status, wake] = await shape();
  // as an older release might have had them: another result, other argument names
  await database.pool.query(`
    drop function webhooks_private.wake_relay() cascade;
    create function webhooks_private.wake_relay() returns void language sql as 'select';
    drop function webhooks_private.status_event(webhooks.action, bigint, bigint) cascade;
    create function webhooks_private.status_event(a webhooks.action, c bigint, s bigint) returns integer language sql as 'select 0'`);
  const [olderStatus, olderWake] = await shape();
  await migrate(database.url);
  const [newStatus, newWake] = await shape();
  t.deepEqual([newStatus.result, newStatus.names, newWake.result], [status.result, status.names, wake.result]);
  t.not(newStatus.oid, olderStatus.oid);
  t.not(newWake.oid, olderWake.oid);
  await migrate(database.url);
  t.deepEqual(await shape(), [newStatus, newWake]);
});

test('over a report row type whose attributes differ from this sql/\'s, migrate makes it and its report again; over its own, it keeps both', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const made = async () => (await database.pool.query(
    `select 'webhooks.webhook_report_row'::regtype::oid::int as type,
            (select count(*)::int from pg_attribute where attrelid = 'webhooks.webhook_report_row'::regclass and attnum > 0) as attributes,
            to_regprocedure('webhooks.webhook_report(timestamptz, timestamptz, bigint, boolean, timestamptz, bigint)')::oid::int as report`)).rows[0];
  const own = await made();
  // as an older release might have had it
  await database.pool.query(`drop type webhooks.webhook_report_row cascade;
                             create type webhooks.webhook_report_row as (webhook_id bigint, name text)`);
  await migrate(database.url);
  const again = await made();
  t.is(again.attributes, own.attributes);
  t.truthy(again.report);
  await migrate(database.url);
  t.deepEqual(await made(), again);
});

test('sql/ locks the CRM\'s tables against writes only (SHARE ROW EXCLUSIVE at most), so that a contact write\'s capture can read them while it is applied', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const client = await database.pool.connect();
  t.teardown(() => client.release());
  await client.query('begin');
  try {
    for (const { text } of ENGINE_FILES) await client.query(text);
    const { rows } = await client.query<{ relation: string; mode: string }>(
      `select l.relation::regclass::text as relation, l.mode from pg_locks l
       join pg_class c on c.oid = l.relation
       where l.pid = pg_backend_pid() and c.relnamespace = 'crm'::regnamespace
         and l.mode in ('ExclusiveLock', 'AccessExclusiveLock') order by 1, 2`);
    t.deepEqual(rows, []);
  } finally {
    await client.query('rollback');
  }
});

test('no view of the engine\'s reads a table of the CRM\'s: migrate locks the engine\'s relations ACCESS EXCLUSIVE, and a lock of a view takes what it reads in the same mode', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const { rows } = await database.pool.query<{ view: string; reads: string }>(
    `select distinct v.oid::regclass::text as view, r.oid::regclass::text as reads
     from pg_class v
     join pg_rewrite w on w.ev_class = v.oid
     join pg_depend d on d.classid = 'pg_rewrite'::regclass and d.objid = w.oid and d.refclassid = 'pg_class'::regclass
     join pg_class r on r.oid = d.refobjid
     where v.relkind in ('v', 'm') and v.relnamespace::regnamespace::text like 'webhooks%'
       and r.relnamespace = 'crm'::regnamespace
     order by 1, 2`);
  t.deepEqual(rows, []);
});

test('over an install whose capture triggers had their names of before, migrate drops those and keeps one trigger each', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const triggers = async () => (await database.pool.query<{ name: string }>(
    `select tgrelid::regclass::text || ' ' || tgname as name from pg_trigger
     where tgrelid in ('crm.contacts'::regclass, 'crm.contact_statuses'::regclass) and not tgisinternal order by 1`)).rows;
  const ours = await triggers();
  // as an older release named them (each fired the same function again)
  await database.pool.query(`
    create trigger _500_webhooks_created after insert on crm.contacts
      for each row execute function webhooks_private.tg_contacts__created();
    create trigger "~webhooks_deleted" after delete on crm.contacts
      for each row execute function webhooks_private.tg_contacts__deleted();
    create trigger _500_webhooks_status_added after insert on crm.contact_statuses
      for each row execute function webhooks_private.tg_contact_statuses__added()`);
  t.is((await triggers()).length, ours.length + 3);
  await migrate(database.url);
  t.deepEqual(await triggers(), ours);
});

// migrate's own session holds the migrate lock for the whole run: on a host that died
// (no reset sent) the server kept it, and every later migrate waited behind it, for the
// system's tcp_keepalive_time (two hours unless the host sets it). It asks for the
// engine's server keepalives, as the relay's and maintain's sessions do
// (SERVER_KEEPALIVE, relay/database.ts), and their timeouts, whatever the database sets.
// (a migration of this test's own, made in a folder of its own: named so that the
// check of the files the tree names, reading-order.test.ts, does not look for it)
const SAYS_ITS_SETTINGS = `${9000}_says_its_settings.sql`;
test('migrate\'s session has the server probe a silent peer after 30 s, every 10 s, 3 times, whatever the database sets', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  await database.pool.query(`alter database ${database.name} set tcp_keepalives_idle = 7200`);
  await database.pool.query(`alter database ${database.name} set idle_in_transaction_session_timeout = '1h'`);
  const dir = await mkdtemp(join(tmpdir(), 'bpd-migrations-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const file of await readdir(migrationsDir)) await symlink(join(migrationsDir, file), join(dir, file));
  // (a migration that says what its session has, in its error)
  await writeFile(join(dir, SAYS_ITS_SETTINGS), `-- Up Migration
do $$ begin
  raise exception 'over tcp %, idle %, interval %, count %, idle in transaction %', (inet_server_addr() is not null)::text,
    current_setting('tcp_keepalives_idle'), current_setting('tcp_keepalives_interval'), current_setting('tcp_keepalives_count'),
    current_setting('idle_in_transaction_session_timeout');
end $$;
`);
  await t.throwsAsync(migrate(database.url, () => {}, { migrationsDir: dir }), {
    message: `migrations/${SAYS_ITS_SETTINGS}: over tcp true, idle 30, interval 10, count 3, idle in transaction 0` });
});
