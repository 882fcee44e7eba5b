// A migrate whose connection is ended while a migration runs (the server ends it:
// pg_terminate_backend, a restart; or its network path closes): it says which
// migrations stay and to run it again, the migration it was in left nothing behind,
// and the next run finishes it. (test/sql/migrate.test.ts has the same while it waits
// for another migrate and while it applies sql/.)
import test from 'ava';
import { ENGINE_FINGERPRINT } from '../../ops/engine.ts';
import { migrate, MIGRATE_LOCK, MIGRATIONS_SCHEMA, MIGRATIONS_TABLE } from '../../tools/migrate.ts';
import { createTestDatabase, ownConnection } from '../helpers/db.ts';
import { MIGRATE_WAITING, migrateProcess, migrationsWith } from '../helpers/migrations.ts';
import { freezableProxy } from '../helpers/proxy.ts';
import { until } from '../helpers/until.ts';

const MIGRATION = '9999_lost_midway';

for (const ending of ['the server ends it', 'its network path closes'] as const) {
  test(`a migrate whose connection is ended while a migration runs (${ending}): what stays, nothing of that migration, and the next run finishes`, async (t) => {
    const database = await createTestDatabase();
    t.teardown(() => database.drop());
    // the migration makes a table, then reads a table the test holds
    const dir = await migrationsWith(t, MIGRATION,
      'create table webhooks_private.lost_midway (id int);\nselect count(*) from crm.companies;');
    const holder = await ownConnection(database.url, t);
    await holder.query('begin');
    await holder.query('lock table crm.companies in access exclusive mode');
    const proxy = await freezableProxy(new URL(database.url));
    t.teardown(() => proxy.close());
    const migrating = migrate(proxy.url, () => {}, { migrationsDir: dir, holdersWaitMs: 60_000 });
    migrating.catch(() => {});
    const waiting = `select pid from pg_stat_activity
                     where datname = current_database() and application_name = 'bpd-webhooks-migrate'
                       and (wait_event_type = 'Lock' or query like '%virtualtransaction = any%')`;
    await until('the migration waits for the test\'s lock', async () => (await database.pool.query(waiting)).rowCount! > 0);
    if (ending === 'its network path closes') await proxy.close();
    else await database.pool.query(`select pg_terminate_backend(pid) from pg_stat_activity
                                    where datname = current_database() and application_name = 'bpd-webhooks-migrate'`);
    const error = await t.throwsAsync(migrating);
    // (the cause in brackets is what the connection said last: closed on its way, it may
    // have carried the wait's own lock_timeout first, as on a loaded machine it did)
    const said = ending === 'the server ends it' ? 'terminating connection due to administrator command' : '[^()]+';
    t.regex(error!.message, new RegExp(`^migrate lost its connection to the database while it ran the migrations \\(${said}\\): ` +
      `the migrations before ${MIGRATION} were applied, ${MIGRATION} and the rest not, nor sql/; run migrate again to finish$`));
    await holder.query('rollback');
    // (a backend whose client went away is ended within client_connection_check_interval)
    await until('the migrate\'s backend is gone', async () => (await database.pool.query(
      `select 1 from pg_stat_activity where datname = current_database() and application_name = 'bpd-webhooks-migrate'`)).rowCount === 0);
    const recorded = async () => (await database.pool.query(
      `select 1 from ${MIGRATIONS_SCHEMA}.${MIGRATIONS_TABLE} where name = $1`, [MIGRATION])).rowCount;
    t.is(await recorded(), 0);
    t.is((await database.pool.query(`select to_regclass('webhooks_private.lost_midway') as t`)).rows[0].t, null);

    await migrate(database.url, () => {}, { migrationsDir: dir });
    t.is(await recorded(), 1);
    t.is((await database.pool.query(`select to_regclass('webhooks_private.lost_midway')::text as t`)).rows[0].t, 'webhooks_private.lost_midway');
    t.is((await database.pool.query('select fingerprint from webhooks_private.sql_applied')).rows[0].fingerprint, ENGINE_FINGERPRINT);
  });
}

// (a network path that goes silent without a reset: the migrate waited for the answer
// as long as TCP does, many minutes, saying nothing, and its session on the server
// held the migrate lock meanwhile)
test('npm run migrate whose answer is lost on a silent network path exits 1 within its bound, in one line, and its session is ended', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  await database.pool.query(`update webhooks_private.sql_applied set fingerprint = $1`, ['ab'.repeat(32)]);
  const proxy = await freezableProxy(new URL(database.url));
  t.teardown(() => proxy.close());
  // another migrate holds the lock: this one waits for it (a wait the bound must not cut)
  const other = await ownConnection(database.url, t);
  await other.query('select pg_advisory_lock($1)', [MIGRATE_LOCK]);
  // The bound is also the time the migrate's look gets to connect over a connection of
  // its own and ask (tools/migrate.ts, watchAnswers): at 1 s, on a loaded machine, that
  // connection once took longer, and the migrate gave up on "the database could not be
  // asked" (a healthy wait so ended, or the lost answer said so). 3 s: thirty times the
  // slowest connection and question measured at a load average of 25 (104 ms).
  const silenceMs = 3_000;
  const { child, exited, stderr } = migrateProcess(t, proxy.url, { MIGRATE_ANSWER_SILENCE_MS: String(silenceMs) });
  let waiting: number | undefined;
  await until('the migrate waits for the other', async () => {
    waiting = (await database.pool.query(MIGRATE_WAITING)).rows[0]?.pid;
    return waiting !== undefined;
  });
  // a wait longer than the bound, its session at work, is waited out (a time, not a
  // signal: what is shown is that nothing happens meanwhile): two looks at least, and
  // a step of the wait ended and begun again (every 5 s)
  await new Promise((resolve) => setTimeout(resolve, 2 * silenceMs + 500));
  t.is(child.exitCode, null, `still waiting: ${stderr()}`);
  // its session, the same, still there. (Not "waiting for a lock" at this instant: the
  // migrate waits in steps of RUN_LOCK_SAY_EVERY_MS, 5 s, a few statements between two,
  // and on a loaded machine the wait above could end on such a boundary.)
  t.deepEqual((await database.pool.query(`select pid from pg_stat_activity
    where datname = current_database() and application_name = 'bpd-webhooks-migrate'`)).rows, [{ pid: waiting }]);
  // the answers stop on their way back, then the lock is given: the migrate's session
  // takes it and answers into the silence
  proxy.deafen();
  const released = Date.now();
  await other.query('select pg_advisory_unlock($1)', [MIGRATE_LOCK]);
  const [code] = await exited;
  const tookMs = Date.now() - released;
  t.log(`exited ${tookMs} ms after the answer was lost (bound ${silenceMs} ms)`);

  t.is(code, 1);
  const lines = stderr().trim().split('\n');
  t.is(lines.length, 1, stderr());
  t.regex(lines[0]!, new RegExp(`^migrate lost its connection to the database while it waited for another migrate to end ` +
    `\\(no answer for ${silenceMs} ms, and its session there is not running the statement: the answer was lost on the way\\): ` +
    'nothing was applied; run migrate again to finish$'));
  // (the silence, then one look over a connection of its own, then the exit)
  t.true(tookMs < 4 * silenceMs, `${tookMs} ms`);
  t.is((await database.pool.query(`select 1 from pg_stat_activity
    where datname = current_database() and application_name = 'bpd-webhooks-migrate'`)).rowCount, 0, 'its session was ended');
  await migrate(database.url);
  t.is((await database.pool.query('select fingerprint from webhooks_private.sql_applied')).rows[0].fingerprint, ENGINE_FINGERPRINT);
});

// (node runs a timer longer than 2^31 - 1 ms after 1 ms, and the bound is the migrate's
// connect timeout too: a bound past that failed the migrate's connection at once,
// "timeout expired", where the operator had asked for a long wait)
test('npm run migrate with a MIGRATE_ANSWER_SILENCE_MS longer than a timer runs stops at start, naming it; the longest a timer runs migrates', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  await database.pool.query(`update webhooks_private.sql_applied set fingerprint = $1`, ['ab'.repeat(32)]);
  for (const value of ['2147483648', '9999999999']) {
    const { exited, stderr } = migrateProcess(t, database.url, { MIGRATE_ANSWER_SILENCE_MS: value });
    const [code] = await exited;
    t.is(code, 2, stderr());
    t.is(stderr(), `MIGRATE_ANSWER_SILENCE_MS=${value}: not a whole number of milliseconds from 1 to 2147483647\n`);
    t.is((await database.pool.query('select fingerprint from webhooks_private.sql_applied')).rows[0].fingerprint, 'ab'.repeat(32), 'nothing applied');
  }
  const { exited, stderr } = migrateProcess(t, database.url, { MIGRATE_ANSWER_SILENCE_MS: '2147483647' });
  const [code] = await exited;
  t.is(code, 0, stderr());
  t.is((await database.pool.query('select fingerprint from webhooks_private.sql_applied')).rows[0].fingerprint, ENGINE_FINGERPRINT);
});
