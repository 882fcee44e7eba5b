// A migrate meets an autovacuum of an engine table. The worker holds the table SHARE
// UPDATE EXCLUSIVE and lets go only for a lock request that has waited past
// deadlock_timeout (the server then cancels it); a migrate that gave way and waited for
// it as for any transaction waited for the whole vacuum (minutes on a big table) and
// failed after its holders' wait. This file's cluster is its own: its autovacuum
// launcher is made to look every second (autovacuum_naptime), and one table of its
// database vacuumed at once and slowly (a cost limit of 1).
import test from 'ava';
import pg from 'pg';
import { migrate, yieldingAutovacuum } from '../../tools/migrate.ts';
import { createTestDatabase, ownConnection, type TestDatabase, useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { migrationsWith } from '../helpers/migrations.ts';
import { until } from '../helpers/until.ts';

const db = useTestDatabase(test);

async function onServer(...statements: string[]): Promise<void> {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  try {
    // (one by one: ALTER SYSTEM refuses the implicit transaction of several)
    for (const statement of statements) await client.query(statement);
  } finally {
    await client.end();
  }
}

test.before(() => onServer(`alter system set autovacuum_naptime = '1s'`, 'select pg_reload_conf()'));
test.after.always(() => onServer('alter system reset autovacuum_naptime', 'select pg_reload_conf()'));

/** The server process of an autovacuum worker that holds `table`, once one does. */
async function autovacuumHolding(database: TestDatabase, table: string): Promise<number> {
  let pid: number | undefined;
  await until(`an autovacuum worker holds ${table}`, async () => {
    const { rows } = await database.pool.query<{ pid: number }>(
      `select l.pid from pg_locks l join pg_stat_activity a on a.pid = l.pid
       where l.relation = $1::regclass and l.granted and a.backend_type = 'autovacuum worker'`, [table]);
    pid = rows[0]?.pid;
    return pid !== undefined;
  }, 60_000);
  return pid!;
}

/**
 * An engine table (webhooks_private.`name`) that an autovacuum worker vacuums at once
 * and for minutes (a cost limit of 1 over some 600 pages), and that worker's process.
 */
async function slowlyVacuumed(t: { teardown: (fn: () => Promise<void>) => void }, name: string,
                              database = db()): Promise<{ table: string; worker: number }> {
  const table = `webhooks_private.${name}`;
  // (not to be vacuumed beside the next test's table: the drop waits past
  // deadlock_timeout, and the server cancels the worker for it)
  t.teardown(async () => void await database.pool.query(`drop table if exists ${table}`));
  await database.pool.query(
    `create table ${table} (id int, pad text) with (autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0,
       autovacuum_analyze_threshold = 0, autovacuum_analyze_scale_factor = 0,
       autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1)`);
  await database.pool.query(`insert into ${table} select i, repeat('x', 200) from generate_series(1, 20000) i`);
  await database.pool.query(`delete from ${table} where id % 2 = 0`);
  return { table, worker: await autovacuumHolding(database, table) };
}

test.serial('sql/ in the way of an autovacuum of an engine table: the migrate asks past deadlock_timeout, the server cancels the worker, and the migrate is applied at once, saying so', async (t) => {
  const { table, worker } = await slowlyVacuumed(t, 'vacuumed_slowly');
  const company = await factories(db().pool).company();

  const said: string[] = [];
  const started = Date.now();
  // contact writes meanwhile: the trade, each waits behind the try that has the worker
  // cancelled (up to deadlock_timeout and the margin), none fails
  let migrating = true;
  const writeMs: number[] = [];
  const writes = (async () => {
    while (migrating) {
      const began = Date.now();
      await db().pool.query(`insert into crm.contacts (company_id, first_name) values ($1, 'During')`, [company.id]);
      writeMs.push(Date.now() - began);
    }
  })();
  // a holders' wait far shorter than the vacuum (minutes, at a cost limit of 1)
  await migrate(db().url, (line) => said.push(line), { holdersWaitMs: 10_000 }).finally(() => (migrating = false));
  const tookMs = Date.now() - started;
  await writes;

  t.true(tookMs < 10_000, `${tookMs} ms`);
  t.log(`applied in ${tookMs} ms; ${writeMs.length} contact writes meanwhile, the longest ${Math.max(...writeMs)} ms`);
  t.true(Math.max(...writeMs) < 3_000, `${Math.max(...writeMs)} ms`);
  const line = said.find((l) => l.startsWith('sql/: only an autovacuum in its way'));
  t.truthy(line, said.join('\n'));
  t.regex(line!, new RegExp(`server process ${worker}\\b`));
  t.regex(line!, /past deadlock_timeout \(1000 ms\)/);
  const { rows } = await db().pool.query(
    `select 1 from pg_stat_activity where pid = $1 and query like 'autovacuum: % ${table}%'`, [worker]);
  t.is(rows.length, 0, 'the worker vacuums that table no more');
});

test.serial('a migration in the way of an autovacuum of the table it changes: the same, at its try after the first', async (t) => {
  // (a database of its own: the migration it records is in no other migrate's folder)
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const { table, worker } = await slowlyVacuumed(t, 'vacuumed_by_migration', database);
  const dir = await migrationsWith(t, '9000_vacuumed_noted', `alter table ${table} add column noted boolean;`);
  const said: string[] = [];
  const started = Date.now();
  await migrate(database.url, (line) => said.push(line), { migrationsDir: dir, holdersWaitMs: 10_000 });
  const tookMs = Date.now() - started;
  t.true(tookMs < 10_000, `${tookMs} ms`);
  t.log(`applied in ${tookMs} ms`);
  t.true(said.some((l) => l.startsWith(`the migrations: only an autovacuum in its way, by server process ${worker} `)), said.join('\n'));
  t.true(said.includes('migrated 9000_vacuumed_noted'), said.join('\n'));
  const { rows } = await database.pool.query(
    `select 1 from pg_attribute where attrelid = $1::regclass and attname = 'noted'`, [table]);
  t.is(rows.length, 1);
});

test.serial('an autovacuum beside a transaction in the way: the migrate waits for the transaction alone, then has the autovacuum cancelled', async (t) => {
  const { table, worker } = await slowlyVacuumed(t, 'vacuumed_beside_a_read');
  const reader = await ownConnection(db().url, t);
  await reader.query('begin');
  await reader.query(`select count(*) from ${table}`);
  const { rows: [{ pid: readerPid }] } = await reader.query<{ pid: number }>('select pg_backend_pid() as pid');

  const said: string[] = [];
  let heardWaiting: () => void;
  const waiting = new Promise<void>((resolve) => (heardWaiting = resolve));
  const migrated = migrate(db().url, (line) => {
    said.push(line);
    if (line.startsWith('sql/: waiting for the transactions in its way to end')) heardWaiting();
  }, { holdersWaitMs: 20_000 });
  await waiting;
  await reader.query('commit');
  await migrated;

  const waited = said.find((l) => l.startsWith('sql/: waiting for'))!;
  t.regex(waited, new RegExp(`server process ${readerPid} \\(`));
  t.notRegex(waited, new RegExp(`\\b${worker}\\b`));
  t.true(said.some((l) => l.startsWith(`sql/: only an autovacuum in its way, by server process ${worker} `)), said.join('\n'));
});

test.serial('an autovacuum that prevents wraparound is waited for as any transaction (the server never cancels it): the migrate fails after its wait, naming it', async (t) => {
  // (a database of its own, dropped at the end: a drop of the table would wait for the
  // vacuum, minutes; a drop of the database ends it)
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const table = 'webhooks_private.vacuumed_for_wraparound';
  // vacuumed to prevent wraparound once its oldest transaction id is 100 000 old (the
  // least the setting takes), and slowly; no vacuum before that
  await database.pool.query(
    `create table ${table} (id int, pad text) with (autovacuum_enabled = off, autovacuum_freeze_max_age = 100000,
       autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1)`);
  await database.pool.query(`insert into ${table} select i, repeat('x', 200) from generate_series(1, 20000) i`);
  // 100 000 transaction ids spent (a subtransaction that writes takes one)
  await database.pool.query(`create table public.spent (n int)`);
  await database.pool.query(`do $$ begin
    for i in 1..100001 loop begin insert into public.spent values (i); exception when division_by_zero then null; end; end loop;
  end $$`);
  let worker: number | undefined;
  await until(`an autovacuum to prevent wraparound holds ${table}`, async () => {
    const { rows } = await database.pool.query<{ pid: number }>(
      `select l.pid from pg_locks l join pg_stat_activity a on a.pid = l.pid
       where l.relation = $1::regclass and l.granted and a.query like '%(to prevent wraparound)'`, [table]);
    worker = rows[0]?.pid;
    return worker !== undefined;
  }, 60_000);

  const said: string[] = [];
  const error = await t.throwsAsync(migrate(database.url, (line) => said.push(line), { holdersWaitMs: 3_000 }));
  t.regex(error!.message, new RegExp(`^sql/ not applied: the tables they change stayed in use .*server process.* ${worker}\\b`));
  t.false(said.some((l) => l.includes('only an autovacuum')), said.join('\n'));
  t.true(said.some((l) => l.startsWith('sql/: waiting for the transactions in its way to end') && l.includes(String(worker))), said.join('\n'));
});

test('which holders the server cancels for a lock request: autovacuum workers, but not one that prevents wraparound, nor any other process', (t) => {
  t.true(yieldingAutovacuum({ backend_type: 'autovacuum worker', activity: 'autovacuum: VACUUM webhooks_private.outbox' }));
  t.true(yieldingAutovacuum({ backend_type: 'autovacuum worker', activity: 'autovacuum: ANALYZE webhooks.webhooks' }));
  t.false(yieldingAutovacuum({ backend_type: 'autovacuum worker',
                               activity: 'autovacuum: VACUUM webhooks_private.outbox (to prevent wraparound)' }));
  t.false(yieldingAutovacuum({ backend_type: 'client backend', activity: 'vacuum webhooks_private.outbox' }));
  t.false(yieldingAutovacuum({ backend_type: null, activity: null }));
});
