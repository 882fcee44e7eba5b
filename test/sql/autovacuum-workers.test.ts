// Autovacuum workers, as the migrate and the report's roll-up meet them.
//
// A migrate meets an autovacuum of an engine table. The worker holds the table SHARE
// UPDATE EXCLUSIVE and lets go only for a lock request that has waited past
// deadlock_timeout (the server then cancels it); a migrate that gave way and waited for
// it as for any transaction waited for the whole vacuum (minutes on a big table) and
// failed after its holders' wait. An autoanalyze holds a transaction id for a moment,
// and writes no delivery: the roll-up does not wait for it. Both tell a worker as a
// role that is no superuser sees it (test/helpers/crm-role.ts): pg_stat_activity shows
// such a role neither its backend_type nor its query. The autovacuum launcher is made
// to look every second (autovacuum_naptime) while this file runs, and one table of its
// database vacuumed at once and slowly (a cost limit of 1), or analyzed and held
// (heldAnalyze).
import test, { type ExecutionContext } from 'ava';
import pg from 'pg';
import { migrate, yieldingAutovacuum } from '../../tools/migrate.ts';
import { connectAs, engineOwnerRole, engineOwnerUrl } from '../helpers/crm-role.ts';
import { createTestDatabase, ownConnection, type TestDatabase, useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { migrationsWith } from '../helpers/migrations.ts';
import { until } from '../helpers/until.ts';

const db = useTestDatabase(test);

/**
 * That the migrate had the worker cancelled at once, in what it said, not in the time
 * it took (a migrate re-applies sql/, which a loaded machine stretches): one try asked
 * past deadlock_timeout with the worker in its way, and it waited for no transaction
 * (one that waited for the vacuum says so after HOLDERS_SAID_MS, and fails after its
 * holders' wait).
 */
function cancelledAtOnce(t: ExecutionContext, said: string[], worker: number) {
  t.is(said.filter((l) => l.includes(`: only an autovacuum in its way, by server process ${worker} `)).length, 1, said.join('\n'));
  t.false(said.some((l) => l.includes('waiting for the transactions in its way')), said.join('\n'));
}

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
                              database = db(), owner?: string): Promise<{ table: string; worker: number }> {
  const table = `webhooks_private.${name}`;
  // (not to be vacuumed beside the next test's table: the drop waits past
  // deadlock_timeout, and the server cancels the worker for it)
  t.teardown(async () => void await database.pool.query(`drop table if exists ${table}`));
  await database.pool.query(
    `create table ${table} (id int, pad text) with (autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0,
       autovacuum_analyze_threshold = 0, autovacuum_analyze_scale_factor = 0,
       autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1)`);
  // (an engine table is the owner's, which its migrate locks)
  if (owner) await database.pool.query(`alter table ${table} owner to ${owner}`);
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

  cancelledAtOnce(t, said, worker);
  t.log(`applied in ${tookMs} ms; ${writeMs.length} contact writes meanwhile, the longest ${Math.max(...writeMs)} ms`);
  // (one try's wait, 1.5 s, not the vacuum's minutes; four times it, since a loaded
  // machine took a write to 3.6 s at load 12)
  t.true(Math.max(...writeMs) < 6_000, `${Math.max(...writeMs)} ms`);
  const line = said.find((l) => l.startsWith('sql/: only an autovacuum in its way'));
  t.truthy(line, said.join('\n'));
  t.regex(line!, new RegExp(`server process ${worker}\\b`));
  t.regex(line!, /past deadlock_timeout \(1000 ms\)/);
  const { rows } = await db().pool.query(
    `select 1 from pg_stat_activity where pid = $1 and query like 'autovacuum: % ${table}%'`, [worker]);
  t.is(rows.length, 0, 'the worker vacuums that table no more');
});

test.serial('a migrate role that is no superuser, in the way of an autovacuum it is not shown as one: the same', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const ownerUrl = await engineOwnerUrl(database.pool, database.url);
  const owner = await engineOwnerRole(database.pool);
  const { table, worker } = await slowlyVacuumed(t, 'vacuumed_as_the_owner_sees_it', database, owner);
  const seen = new pg.Client({ connectionString: ownerUrl });
  await seen.connect();
  const { rows: [shown] } = await seen.query('select backend_type, query from pg_stat_activity where pid = $1', [worker]).finally(() => seen.end());
  t.deepEqual(shown, { backend_type: null, query: '<insufficient privilege>' });

  const said: string[] = [];
  const started = Date.now();
  await migrate(ownerUrl, (line) => said.push(line), { holdersWaitMs: 10_000 });
  t.log(`applied in ${Date.now() - started} ms`);
  cancelledAtOnce(t, said, worker);
  t.true(said.some((l) => l.startsWith(`sql/: only an autovacuum in its way, by server process ${worker} `)), said.join('\n'));
  const { rows } = await database.pool.query(
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
  t.log(`applied in ${Date.now() - started} ms`);
  cancelledAtOnce(t, said, worker);
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

// A worker the try past deadlock_timeout had cancelled starts on its table again (a new
// transaction) while the migrate waits for a transaction that made that try give way
// after all: the try after is refused by the new worker, has it cancelled in turn, and
// the migration is applied.
test.serial('an autovacuum cancelled by a try that then gave way to a transaction, started again before the next try: cancelled again, and the migration is applied', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const ownerUrl = await engineOwnerUrl(database.pool, database.url);
  const owner = await engineOwnerRole(database.pool);
  const analyzed = 'webhooks_private.analyzed_again';
  const read = 'webhooks_private.read_meanwhile';
  await database.pool.query(`create table ${read} (id int)`);
  await database.pool.query(`alter table ${read} owner to ${owner}`);
  const first = await heldAnalyze(t, database, analyzed, owner);
  const dir = await migrationsWith(t, '9000_both_noted',
                                   `alter table ${analyzed} add column noted boolean;\nalter table ${read} add column noted boolean;`);
  const reader = await ownConnection(database.url, t);
  const { rows: [{ pid: readerPid }] } = await reader.query<{ pid: number }>('select pg_backend_pid() as pid');

  const said: string[] = [];
  let reading: Promise<unknown> | undefined;
  let heardWaiting: () => void;
  const waiting = new Promise<void>((resolve) => (heardWaiting = resolve));
  const migrated = migrate(ownerUrl, (line) => {
    said.push(line);
    // (the try that has the worker cancelled waits deadlock_timeout for it before it asks
    // for the other table, which the read holds by then)
    if (!reading && line.startsWith('the migrations: only an autovacuum in its way')) {
      reading = reader.query(`begin; select count(*) from ${read}`);
    }
    if (line.startsWith('the migrations: waiting for the transactions in its way to end')) heardWaiting();
  }, { migrationsDir: dir, holdersWaitMs: 60_000 });
  await waiting;
  const again = await heldWorker(database, analyzed, first.transaction);
  await reading;
  await reader.query('commit');
  await migrated;

  const cancelling = said.filter((l) => l.startsWith('the migrations: only an autovacuum in its way'));
  t.is(cancelling.length, 2, said.join('\n'));
  t.regex(cancelling[0]!, new RegExp(`by server process ${first.worker} `));
  t.regex(cancelling[1]!, new RegExp(`by server process ${again.worker} `));
  const waited = said.find((l) => l.startsWith('the migrations: waiting for'))!;
  t.regex(waited, new RegExp(`server process ${readerPid} \\(`));
  t.true(said.includes('migrated 9000_both_noted'), said.join('\n'));
  const { rows } = await database.pool.query(
    `select 1 from pg_attribute where attrelid in ($1::regclass, $2::regclass) and attname = 'noted'`, [analyzed, read]);
  t.is(rows.length, 2);
});

/**
 * A table of `database`'s engine (owned by `owner`, if given) that an autovacuum worker
 * vacuums to prevent transaction ID wraparound, slowly, and that worker's process.
 */
async function vacuumedForWraparound(database: TestDatabase, owner?: string): Promise<{ table: string; worker: number }> {
  const table = 'webhooks_private.vacuumed_for_wraparound';
  // vacuumed to prevent wraparound once its oldest transaction id is 100 000 old (the
  // least the setting takes), and slowly; no vacuum before that
  await database.pool.query(
    `create table ${table} (id int, pad text) with (autovacuum_enabled = off, autovacuum_freeze_max_age = 100000,
       autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1)`);
  if (owner) await database.pool.query(`alter table ${table} owner to ${owner}`);
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
  return { table, worker: worker! };
}

test.serial('an autovacuum that prevents wraparound is waited for as any transaction (the server never cancels it): the migrate fails after its wait, naming it', async (t) => {
  // (a database of its own, dropped at the end: a drop of the table would wait for the
  // vacuum, minutes; a drop of the database ends it)
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const { worker } = await vacuumedForWraparound(database);

  const said: string[] = [];
  const error = await t.throwsAsync(migrate(database.url, (line) => said.push(line), { holdersWaitMs: 3_000 }));
  t.regex(error!.message, new RegExp(`^sql/ not applied: the tables they change stayed in use .*server process.* ${worker}\\b`));
  t.false(said.some((l) => l.includes('only an autovacuum')), said.join('\n'));
  t.true(said.some((l) => l.startsWith('sql/: waiting for the transactions in its way to end') && l.includes(String(worker))), said.join('\n'));
});

// A role that is no superuser is not shown the worker's query, which says "(to prevent
// wraparound)": the migrate takes it for one the server cancels, once. It is not
// cancelled, and the migrate waits for it from then on as for any transaction.
test.serial('an autovacuum that prevents wraparound, met by a migrate role that cannot tell it from another: one try asks past deadlock_timeout, then the migrate waits for it and fails after its wait, naming it', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const ownerUrl = await engineOwnerUrl(database.pool, database.url);
  const { worker } = await vacuumedForWraparound(database, await engineOwnerRole(database.pool));

  const said: string[] = [];
  const error = await t.throwsAsync(migrate(ownerUrl, (line) => said.push(line), { holdersWaitMs: 5_000 }));
  t.regex(error!.message, new RegExp(`^sql/ not applied: the tables they change stayed in use .*server process.* ${worker}\\b`));
  t.is(said.filter((l) => l.startsWith(`sql/: only an autovacuum in its way, by server process ${worker} `)).length, 1, said.join('\n'));
  t.true(said.some((l) => l.startsWith('sql/: waiting for the transactions in its way to end') && l.includes(String(worker))), said.join('\n'));
  const { rows } = await database.pool.query('select 1 from pg_stat_activity where pid = $1 and query like $2', [worker, '%(to prevent wraparound)']);
  t.is(rows.length, 1, 'the worker vacuums on');
});

test('which holders the server cancels for a lock request: autovacuum workers, but not one that prevents wraparound, nor any other process; to a role not shown their queries, every worker', (t) => {
  t.true(yieldingAutovacuum({ autovacuum: true, activity: 'autovacuum: VACUUM webhooks_private.outbox' }));
  t.true(yieldingAutovacuum({ autovacuum: true, activity: 'autovacuum: ANALYZE webhooks.webhooks' }));
  t.false(yieldingAutovacuum({ autovacuum: true, activity: 'autovacuum: VACUUM webhooks_private.outbox (to prevent wraparound)' }));
  t.true(yieldingAutovacuum({ autovacuum: true, activity: '<insufficient privilege>' }));
  t.false(yieldingAutovacuum({ autovacuum: false, activity: 'vacuum webhooks_private.outbox' }));
  t.false(yieldingAutovacuum({ autovacuum: false, activity: '<insufficient privilege>' }));
  t.false(yieldingAutovacuum({ autovacuum: false, activity: null }));
});

/**
 * An autovacuum worker that analyzes `table` of `database`'s (made here, owned by
 * `owner` if given), has written its statistics (and so holds a transaction id), and
 * is held, until the test ends, in building the table's statistics on an expression:
 * the expression waits for an advisory lock the test holds. A worker that analyzes it
 * again after this one is cancelled is held so too.
 */
async function heldAnalyze(t: { teardown: (fn: () => Promise<void>) => void }, database: TestDatabase,
                           table: string, owner?: string): Promise<{ worker: number; xid: string; transaction: string }> {
  const holder = await ownConnection(database.url, t);
  const { rows: [{ key }] } = await holder.query<{ key: string }>(
    `select hashtext('heldAnalyze')::bigint as key, pg_advisory_lock(hashtext('heldAnalyze'))`);
  t.teardown(async () => void await holder.query('select pg_advisory_unlock($1)', [key]));
  // (immutable, as a statistics expression must be, which it is not: it waits)
  await database.pool.query(`create or replace function public.held_analyze(n int) returns int immutable language plpgsql as $$
    begin perform pg_advisory_lock_shared(${key}); perform pg_advisory_unlock_shared(${key}); return n; end $$`);
  await database.pool.query(`create table ${table} (id int) with (autovacuum_analyze_threshold = 0, autovacuum_analyze_scale_factor = 0)`);
  if (owner) await database.pool.query(`alter table ${table} owner to ${owner}`);
  await database.pool.query(`create statistics ${table}_held on (public.held_analyze(id)) from ${table}`);
  await database.pool.query(`insert into ${table} select i from generate_series(1, 100) i`);
  return await heldWorker(database, table);
}

/** The autovacuum worker held in analyzing `table` (heldAnalyze), once one is, other than the one of transaction `not`. */
async function heldWorker(database: TestDatabase, table: string, not?: string): Promise<{ worker: number; xid: string; transaction: string }> {
  let worker: { worker: number; xid: string; transaction: string } | undefined;
  await until(`an autoanalyze of ${table} holds a transaction id`, async () => {
    const { rows } = await database.pool.query<{ worker: number; xid: string; transaction: string }>(
      `select a.pid as worker, a.backend_xid::text as xid, l.virtualtransaction as transaction
       from pg_stat_activity a join pg_locks l on l.pid = a.pid and l.relation = $1::regclass and l.granted
       where a.backend_type = 'autovacuum worker' and a.wait_event_type = 'Lock' and a.wait_event = 'advisory'
         and a.backend_xid is not null and l.virtualtransaction is distinct from $2`, [table, not ?? null]);
    worker = rows[0];
    return worker !== undefined;
  }, 60_000);
  return worker!;
}

test.serial('an autoanalyze that holds a transaction id, which the owner is not shown as one, holds the report\'s roll-up back for no moment', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const owner = await engineOwnerRole(database.pool);
  const { worker, xid } = await heldAnalyze(t, database, 'public.analyzed');
  const seen = await connectAs(t, database.pool, owner);
  const { rows: [shown] } = await seen.query('select backend_type, backend_xid::text as xid from pg_stat_activity where pid = $1', [worker]);
  t.deepEqual(shown, { backend_type: null, xid });
  // (the function runs as its owner, whoever calls it)
  const { rows: [{ oldest }] } = await seen.query('select webhooks_private.oldest_writer_xid()::text as oldest');
  t.is(oldest, null);
});
