// `npm run migrate` of a new release over a running installation (docs/operations.md,
// "Upgrading"): a relay delivering, the CRM writing contacts, a long transaction (a
// report, a backup's snapshot) holding a table a migration must change, a migrate
// killed or failing halfway, and the previous release's relay and API running on.
import test, { type ExecutionContext } from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pino from 'pino';
import { signToken } from '../../api/auth.ts';
import { authenticatorUrl } from '../../api/authenticator.ts';
import { ENGINE_FINGERPRINT } from '../../ops/engine.ts';
import { migrate } from '../../tools/migrate.ts';
import { createTestDatabase, ownConnection, type TestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { migrationsWith } from '../helpers/migrations.ts';
import { prepareTransaction, rollBackPrepared, transactionName } from '../helpers/two-phase.ts';
import { startReceiver } from '../helpers/receiver.ts';
import { relayScene, rememberedLog, spawnRelay, testRelay, waitForFinalDeliveries } from '../helpers/relay.ts';
import { until } from '../helpers/until.ts';

/** This release's migrations/ and one more, `name`.sql (as a next release's would be). */
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
  let gaveWay!: () => void;
  const givenWay = new Promise<void>((resolve) => (gaveWay = resolve));
  const migrating = migrate(database.url, (line) => {
    if (line.startsWith('the migrations: waiting for the transactions in its way to end')) gaveWay();
  }, { migrationsDir: dir }).then(() => (migrated = true));
  migrating.catch(() => {});
  await Promise.race([givenWay, migrating]);

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

test('a migrate that gave way to a long transaction waits for it to end without asking for its locks again: the CRM\'s writes meanwhile wait for nothing', async (t) => {
  const { database, f, company } = await relayScene(t);
  const report = await ownConnection(database.url, t);
  await report.query('begin');
  // (a DBA's read of the fire history: sql/ replaces the engine's tables' triggers,
  // policies and views, while of the CRM's tables it stops only writes)
  await report.query('select count(*) from webhooks.deliveries');
  const { rows: [{ pid }] } = await report.query('select pg_backend_pid() as pid');
  let gaveWay!: () => void;
  const givenWay = new Promise<void>((resolve) => (gaveWay = resolve));
  const said: string[] = [];
  const migrating = migrate(database.url, (line) => {
    said.push(line);
    if (line.startsWith('sql/: waiting for the transactions in its way to end')) gaveWay();
  });
  migrating.catch(() => {});
  // the migrate's locks on the engine's tables and the CRM's, asked for (granted or not)
  const migrateAsks = async () => (await database.pool.query(
    `select 1 from pg_locks l join pg_stat_activity a on a.pid = l.pid
     join pg_class c on c.oid = l.relation join pg_namespace n on n.oid = c.relnamespace
     where a.application_name = 'bpd-webhooks-migrate' and a.datname = current_database()
       and n.nspname in ('crm', 'webhooks', 'webhooks_private')`)).rowCount! > 0;
  try {
    await Promise.race([givenWay, migrating]);
    t.regex(said.at(-1)!, new RegExp(`^sql/: waiting for the transactions in its way to end, by server process ${pid} \\(pg_stat_activity\\)…$`));
    // the migrate's tries, each asking for the locks for up to 500 ms, came every
    // second or less: it held the CRM's writes behind it each time
    const crm = await ownConnection(database.url, t);
    await crm.query(`set lock_timeout = '300ms'`);
    const failed: string[] = [];
    let asked = 0;
    let writes = 0;
    for (const started = Date.now(); Date.now() - started < 3_000; writes++) {
      await crm.query(`insert into crm.contacts (company_id, first_name) values ($1, 'While the report runs')`, [company.id])
        .catch((error: Error) => failed.push(error.message));
      if (await migrateAsks()) asked++;
    }
    t.deepEqual(failed, []);
    t.is(asked, 0);
    t.true(writes > 0);
  } finally {
    await report.query('commit');
    await migrating.catch(() => {});
  }
  await migrating;
  const { rows: [applied] } = await database.pool.query('select fingerprint from webhooks_private.sql_applied');
  t.is(applied.fingerprint, ENGINE_FINGERPRINT);
  await f.contact(company.id, { first_name: 'After' });
});

/**
 * A long transaction reads `longRead` (a report); the CRM writes contacts, each
 * allowed 250 ms for a lock, from before `migrating` starts until it says `step` gave
 * way (a first try that held the contacts while it waited for `longRead` held them for
 * up to 500 ms). Asserts that no write failed and that the migrate had not finished
 * meanwhile; then the long transaction ends, and the migrate with it.
 */
async function writesWhileAStepGivesWay(t: ExecutionContext, database: TestDatabase, companyId: string, longRead: string,
                                        step: string, start: (log: (line: string) => void) => Promise<unknown>): Promise<void> {
  const report = await ownConnection(database.url, t);
  await report.query('begin');
  await report.query(`select count(*) from ${longRead}`);
  const crm = await ownConnection(database.url, t);
  // (a try that fails keeps what it locked until its ROLLBACK reaches the server, a
  // round trip of the migrate's: a loaded CI run's outlasted 50 ms, 2026-12-08)
  await crm.query(`set lock_timeout = '250ms'`);
  let gaveWay = false;
  const failed: string[] = [];
  let writes = 0;
  const writing = (async () => {
    while (!gaveWay) {
      await crm.query(`insert into crm.contacts (company_id, first_name) values ($1, 'While the migrate gives way')`, [companyId])
        .catch((error: Error) => failed.push(error.message));
      writes++;
    }
  })();
  let migrated = false;
  const migrating = start((line) => {
    if (line.startsWith(`${step}: waiting for the transactions in its way to end`)) gaveWay = true;
  }).then(() => (migrated = true));
  migrating.catch(() => (gaveWay = true));
  try {
    await writing;
    t.deepEqual(failed, []);
    t.true(writes > 0);
    t.false(migrated);
  } finally {
    gaveWay = true;
    await writing;
    await report.query('commit');
  }
  await migrating;
}

test('sql/\'s first try, meeting a long transaction on an engine\'s table it locks after the CRM\'s, gives way at once: writes to the CRM\'s contacts meanwhile wait for nothing, and it applies sql/ once that transaction ends', async (t) => {
  const { database, company } = await relayScene(t);
  await database.pool.query(`update webhooks_private.sql_applied set fingerprint = $1`, ['ab'.repeat(32)]);
  await writesWhileAStepGivesWay(t, database, company.id, 'webhooks.deliveries', 'sql/', (log) => migrate(database.url, log));
  const { rows: [applied] } = await database.pool.query('select fingerprint from webhooks_private.sql_applied');
  t.is(applied.fingerprint, ENGINE_FINGERPRINT);
});

test('a migration\'s first try, meeting a long transaction on the queue after it has locked the CRM\'s contacts, gives way at once: writes to the contacts meanwhile wait for nothing, and it is applied once that transaction ends', async (t) => {
  const { database, company } = await relayScene(t);
  // (a migration that moves data takes its locks at its start: the contacts it reads
  // first, then the queue it changes, which a long transaction holds)
  const dir = await migrationsWith(t, '9000_queue_noted',
    'lock table crm.contacts in share row exclusive mode;\nalter table webhooks.delivery_queue add column noted boolean;');
  await writesWhileAStepGivesWay(t, database, company.id, 'webhooks.delivery_queue', 'the migrations',
    (log) => migrate(database.url, log, { migrationsDir: dir }));
  const { rows: [state] } = await database.pool.query(
    `select (select count(*)::int from webhooks_private.migrations where name = '9000_queue_noted') as recorded,
            (select count(*)::int from information_schema.columns
             where table_schema = 'webhooks' and table_name = 'delivery_queue' and column_name = 'noted') as columns`);
  t.deepEqual(state, { recorded: 1, columns: 1 });
});

test('a migrate whose tables a transaction holds past its wait fails, naming that transaction\'s server process or prepared name, with sql/ as it was; run again once it ends, it finishes', async (t) => {
  const { database, company } = await relayScene(t);
  t.teardown(() => rollBackPrepared(database.url).then(() => {}));
  const applied = async () => (await database.pool.query('select fingerprint from webhooks_private.sql_applied')).rows[0].fingerprint;
  await database.pool.query(`update webhooks_private.sql_applied set fingerprint = $1`, ['ab'.repeat(32)]);
  const report = await ownConnection(database.url, t);
  await report.query('begin');
  // (a DBA's read of the fire history: sql/ replaces the engine's tables' triggers,
  // policies and views, while of the CRM's tables it stops only writes)
  await report.query('select count(*) from webhooks.deliveries');
  const { rows: [{ pid }] } = await report.query('select pg_backend_pid() as pid');
  const held = await t.throwsAsync(migrate(database.url, () => {}, { holdersWaitMs: 1_000 }));
  t.regex(held?.message ?? '', new RegExp(`^sql/ not applied: .* by server process(es)? [0-9, ]*\\b${pid}\\b`));
  t.is(await applied(), 'ab'.repeat(32));
  await report.query('commit');

  if (Number(process.env.TEST_MAX_PREPARED_TRANSACTIONS ?? 0) > 0) {
    // a transaction manager's prepared write, undecided: no server process holds it
    const name = transactionName();
    await prepareTransaction(database.pool, name, '', (client) =>
      client.query(`insert into crm.contacts (company_id, first_name) values ($1, 'Prepared')`, [company.id]));
    const prepared = await t.throwsAsync(migrate(database.url, () => {}, { holdersWaitMs: 1_000 }));
    t.regex(prepared?.message ?? '', new RegExp(`prepared transaction '${name}'`));
    await rollBackPrepared(database.url);
  }
  await migrate(database.url);
  t.is(await applied(), ENGINE_FINGERPRINT);
});

test('two migrates of a new release at once (two deploy hosts), while the relay delivers and the CRM writes: both finish, the migration runs once, no write fails, every contact is delivered once', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: hook.secret });
  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  const dir = await migrationsWith(t, '9000_contacts_nickname', 'alter table crm.contacts add column nickname text;');
  let writing = true;
  let written = 0;
  const failed: string[] = [];
  const writer = async () => {
    while (writing) await f.contact(company.id, { first_name: 'W' }).then(() => written++, (error: Error) => failed.push(error.message));
  };
  const writers = [writer(), writer()];
  const lines: string[][] = [[], []];
  try {
    await Promise.all(lines.map((host) => migrate(database.url, (line) => host.push(line), { migrationsDir: dir })));
  } finally {
    writing = false;
    await Promise.all(writers);
  }
  t.deepEqual(failed, []);
  t.deepEqual(lines.flat().filter((line) => line.startsWith('migrated')), ['migrated 9000_contacts_nickname']);
  const { rows: [recorded] } = await database.pool.query(`select count(*)::int as n from webhooks_private.migrations where name = '9000_contacts_nickname'`);
  t.is(recorded.n, 1);
  const deliveries = await waitForFinalDeliveries(database.pool, [hook.id], written);
  t.true(deliveries.length === written && deliveries.every((d) => d.state === 'succeeded' && d.attempts === 1));
  t.is(receiver.received('/hook').length, written);
});

test('sql/ applied again and again while the CRM writes (contacts, status tags, in transactions of several statements) and the relay claims and settles: no write fails, no claim or settle fails, and no function is dropped', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.updated', 'contact.status_added'],
                                 url: receiver.url('/hook') });
  receiver.route('/hook', { secret: hook.secret });
  const status = await f.status(company.id);
  const remembered = rememberedLog(10_000);
  const relay = testRelay(database.url, {}, { log: remembered.log });
  t.teardown(() => relay.stop());
  await relay.start();
  const functions = async () => (await database.pool.query<{ oid: number; name: string }>(
    `select p.oid, p.oid::regprocedure::text as name from pg_proc p
     where p.pronamespace::regnamespace::text like 'webhooks%' order by p.oid`)).rows;
  const before = await functions();

  let writing = true;
  let written = 0;
  let longest = 0;
  const failed: string[] = [];
  const writer = async () => {
    while (writing) {
      const client = await database.pool.connect();
      const began = performance.now();
      try {
        await client.query('begin');
        const { rows: [contact] } = await client.query(
          `insert into crm.contacts (company_id, first_name) values ($1, 'W') returning id`, [company.id]);
        await client.query('insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [contact.id, status.id]);
        await client.query(`update crm.contacts set first_name = 'W2' where id = $1`, [contact.id]);
        await client.query('commit');
        written++;
        longest = Math.max(longest, performance.now() - began);
      } catch (error) {
        failed.push((error as Error).message);
        await client.query('rollback');
      } finally {
        client.release();
      }
    }
  };
  const writers = [writer(), writer(), writer()];
  try {
    await receiver.waitFor(10, { path: '/hook' });
    for (let i = 0; i < 4; i++) await migrate(database.url);
  } finally {
    writing = false;
    await Promise.all(writers);
  }
  t.deepEqual(failed, []);
  // (a settle that meets sql/'s lock gives way and writes its results again: a warning, not a failure)
  t.deepEqual(remembered.lines().filter((line) => /claim failed|cache lookup failed/.test(line)), []);
  t.deepEqual(await functions(), before, 'every function kept its oid: re-applied, none was dropped');
  t.true(written > 0);
  t.log(`${written} write transactions, the longest ${Math.round(longest)} ms (each waits for sql/'s locks while it is applied)`);
});

test('a contact write under way while sql/ is applied, whose status tag\'s capture reads the users and assignments the migrate has locked, finishes; the migrate waits for it and applies sql/ in the same try', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.status_added'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: hook.secret });
  const status = await f.status(company.id);
  // the migrate's first try, finding a contact write under way, gives way at once
  // (NOWAIT) and waits for it; the try after asks with a wait, and finds another
  const first = await ownConnection(database.url, t);
  await first.query('begin');
  await first.query(`insert into crm.contacts (company_id, first_name) values ($1, 'First')`, [company.id]);
  // waited for long enough that a deadlock is found (1 s) before the migrate would give way
  const migrating = migrate(database.url, () => {}, { lockTimeout: '30s' });
  migrating.catch(() => {});
  const migrateTransaction = async () => (await database.pool.query<{ began: Date; waits: string | null; query: string }>(
    `select a.xact_start as began, (select l.relation::regclass::text from pg_locks l where l.pid = a.pid and not l.granted) as waits,
            a.query
     from pg_stat_activity a where a.application_name = 'bpd-webhooks-migrate' and a.datname = current_database()`)).rows[0];
  // (until's own bound, 60 s: on a loaded machine the migrate's steps before sql/ took
  // more than 10, and in a run beside the suite more than 30)
  await until('the migrate waits for the first write to end, asking for no lock',
    async () => /virtualtransaction = any/.test((await migrateTransaction())?.query ?? ''));
  const writer = await ownConnection(database.url, t);
  await writer.query('begin');
  const { rows: [contact] } = await writer.query(
    `insert into crm.contacts (company_id, first_name) values ($1, 'Under way') returning id`, [company.id]);
  await first.query('commit');
  await until('the migrate waits for the contacts', async () => (await migrateTransaction())?.waits === 'crm.contacts');
  const waiting = await migrateTransaction();
  try {
    await writer.query(`set statement_timeout = '10s'`);
    await writer.query('insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [contact.id, status.id]);
    const still = await migrateTransaction();
    t.deepEqual([still?.began, still?.waits], [waiting!.began, waiting!.waits], 'the migrate still waits in the same transaction: it did not give way');
    await writer.query('commit');
  } finally {
    await writer.query('rollback').catch(() => {});
    await migrating.catch(() => {});
  }
  await migrating;
  const { rows } = await database.pool.query(
    `select action::text from webhooks.deliveries where webhook_id = $1`, [hook.id]);
  t.deepEqual(rows, [{ action: 'contact.status_added' }]);
});

test('a DBA\'s long read of the CRM\'s contacts does not hold sql/ up: sql/ stops writes to them, not reads', async (t) => {
  const { database } = await relayScene(t);
  await database.pool.query(`update webhooks_private.sql_applied set fingerprint = $1`, ['ab'.repeat(32)]);
  const report = await ownConnection(database.url, t);
  await report.query('begin');
  await report.query('select count(*) from crm.contacts, crm.contact_statuses, crm.contact_assignments, crm.users, crm.statuses');
  try {
    // (30 s for the holders of a step that gave way, as the tests beside: an autovacuum
    // of the new database may be one, and on a loaded machine 1 s was not always
    // enough for it to end; a migrate that waited for the read would still fail, at 30 s)
    await migrate(database.url, () => {}, { holdersWaitMs: 30_000 });
  } finally {
    await report.query('commit');
  }
  const { rows: [applied] } = await database.pool.query('select fingerprint from webhooks_private.sql_applied');
  t.is(applied.fingerprint, ENGINE_FINGERPRINT);
});

/**
 * A DBA's long read of the contacts and a contact write under way; `start` runs a
 * migrate that gives way (its `step`) to the write: it names that write's server
 * process, and it finishes once the write ends, the read still open.
 */
async function waitsForTheWriteNotTheRead(t: ExecutionContext, database: TestDatabase, companyId: string, step: string,
                                          start: (log: (line: string) => void) => Promise<unknown>): Promise<void> {
  const report = await ownConnection(database.url, t);
  await report.query('begin');
  await report.query('select count(*) from crm.contacts');
  const writer = await ownConnection(database.url, t);
  await writer.query('begin');
  await writer.query(`insert into crm.contacts (company_id, first_name) values ($1, 'Under way')`, [companyId]);
  let gaveWay!: () => void;
  const givenWay = new Promise<void>((resolve) => (gaveWay = resolve));
  const said: string[] = [];
  const migrating = start((line) => {
    said.push(line);
    if (line.startsWith(`${step}: waiting for the transactions in its way to end`)) gaveWay();
  });
  migrating.catch(() => {});
  try {
    await Promise.race([givenWay, migrating]);
    const { rows: [{ pid }] } = await writer.query('select pg_backend_pid() as pid');
    t.is(said.at(-1), `${step}: waiting for the transactions in its way to end, by server process ${pid} (pg_stat_activity)…`);
    await writer.query('commit');
    await migrating;
  } finally {
    await writer.query('rollback').catch(() => {});
    await report.query('commit');
    await migrating.catch(() => {});
  }
}

test('a migrate that gave way to a contact write waits for that write, not for a DBA\'s long read of the contacts: it applies sql/ once the write ends, the read still open', async (t) => {
  const { database, company } = await relayScene(t);
  await database.pool.query(`update webhooks_private.sql_applied set fingerprint = $1`, ['ab'.repeat(32)]);
  await waitsForTheWriteNotTheRead(t, database, company.id, 'sql/', (log) => migrate(database.url, log, { holdersWaitMs: 5_000 }));
  const { rows: [applied] } = await database.pool.query('select fingerprint from webhooks_private.sql_applied');
  t.is(applied.fingerprint, ENGINE_FINGERPRINT);
});

test('a migration that gave way to a contact write waits for that write, not for a DBA\'s long read of the contacts: it is applied once the write ends, the read still open', async (t) => {
  const { database, company } = await relayScene(t);
  const dir = await migrationsWith(t, '9000_queue_noted',
    'lock table crm.contacts in share row exclusive mode;\nalter table webhooks.delivery_queue add column noted boolean;');
  // (a wait long enough for an autovacuum of the new database, slow on a loaded
  // machine: a migrate waiting for the read would fail after it, the read open to the end)
  await waitsForTheWriteNotTheRead(t, database, company.id, 'the migrations',
    (log) => migrate(database.url, log, { migrationsDir: dir, holdersWaitMs: 30_000 }));
  const { rows: [recorded] } = await database.pool.query(
    `select count(*)::int as n from webhooks_private.migrations where name = '9000_queue_noted'`);
  t.is(recorded.n, 1);
});

test('a migration that gave way waits for the transactions holding the table it changes, not for a DBA\'s long read of another engine table: it is applied while the read is still open (sql/, which locks every engine table, then waits for it)', async (t) => {
  const { database } = await relayScene(t);
  const dir = await migrationsWith(t, '9000_queue_noted', 'alter table webhooks.delivery_queue add column noted boolean;');
  const report = await ownConnection(database.url, t);
  await report.query('begin');
  await report.query('select count(*) from webhooks.delivery_history');
  // (a claim's transaction, or anyone's, holding the queue the migration changes)
  const claim = await ownConnection(database.url, t);
  await claim.query('begin');
  await claim.query('select count(*) from webhooks.delivery_queue');
  const { rows: [{ pid }] } = await claim.query('select pg_backend_pid() as pid');
  const said: string[] = [];
  const heard = (start: string) => {
    let resolve!: () => void;
    const promise = new Promise<void>((done) => (resolve = done));
    return { start, promise, resolve };
  };
  const gaveWay = heard('the migrations: waiting for the transactions in its way to end');
  const migrated = heard('migrated 9000_queue_noted');
  const migrating = migrate(database.url, (line) => {
    said.push(line);
    for (const awaited of [gaveWay, migrated]) if (line.startsWith(awaited.start)) awaited.resolve();
  }, { migrationsDir: dir, holdersWaitMs: 30_000 }); // (an autovacuum of the new database, slow on a loaded machine, may be in its way too)
  migrating.catch(() => {});
  try {
    await Promise.race([gaveWay.promise, migrating]);
    t.is(said.at(-1), `the migrations: waiting for the transactions in its way to end, by server process ${pid} (pg_stat_activity)…`);
    await claim.query('commit');
    await Promise.race([migrated.promise, migrating]);
    const { rows: [recorded] } = await database.pool.query(
      `select count(*)::int as n from webhooks_private.migrations where name = '9000_queue_noted'`);
    t.is(recorded.n, 1);
  } finally {
    await claim.query('rollback').catch(() => {});
    await report.query('commit');
    await migrating.catch(() => {});
  }
  await migrating;
});

test('a migration that locks a table it does not name as schema.table (quoted) is refused again after its first wait, then waits for every holder of an engine table: it is applied once the read in its way ends', async (t) => {
  const { database } = await relayScene(t);
  const dir = await migrationsWith(t, '9000_queue_noted', 'alter table "webhooks"."delivery_queue" add column noted boolean;');
  const report = await ownConnection(database.url, t);
  await report.query('begin');
  await report.query('select count(*) from webhooks.delivery_queue');
  const { rows: [{ pid }] } = await report.query('select pg_backend_pid() as pid');
  let gaveWay!: () => void;
  const givenWay = new Promise<void>((resolve) => (gaveWay = resolve));
  const said: string[] = [];
  const migrating = migrate(database.url, (line) => {
    said.push(line);
    if (line.startsWith('the migrations: waiting for the transactions in its way to end')) gaveWay();
  }, { migrationsDir: dir, holdersWaitMs: 30_000 }); // (an autovacuum of the new database, slow on a loaded machine, may be in its way too)
  migrating.catch(() => {});
  try {
    await Promise.race([givenWay, migrating]);
    t.is(said.at(-1), `the migrations: waiting for the transactions in its way to end, by server process ${pid} (pg_stat_activity)…`);
  } finally {
    await report.query('commit');
  }
  await migrating;
  const { rows: [recorded] } = await database.pool.query(
    `select count(*)::int as n from webhooks_private.migrations where name = '9000_queue_noted'`);
  t.is(recorded.n, 1);
});

test('a DBA\'s long read of one partition of the fire history is in sql/\'s way (it locks the partitioned table, its partitions with it): a migrate that gave way to it names it, not transactions that ended', async (t) => {
  const { database } = await relayScene(t);
  await database.pool.query(`update webhooks_private.sql_applied set fingerprint = $1`, ['ab'.repeat(32)]);
  const { rows: [partition] } = await database.pool.query(
    `select i.inhrelid::regclass::text as name from pg_inherits i where i.inhparent = 'webhooks.delivery_history'::regclass limit 1`);
  const report = await ownConnection(database.url, t);
  await report.query('begin');
  await report.query(`select count(*) from ${partition.name}`);
  const { rows: [{ pid }] } = await report.query('select pg_backend_pid() as pid');
  const tries: string[] = [];
  try {
    const held = await t.throwsAsync(migrate(database.url, (line) => tries.push(line), { holdersWaitMs: 1_000 }));
    t.regex(held?.message ?? '', new RegExp(`^sql/ not applied: .* by server process ${pid} \\(pg_stat_activity\\): run migrate again once they end$`));
  } finally {
    await report.query('commit');
  }
  await migrate(database.url);
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

test('a migration that fails stops the migrate, naming its file: the migrations before it stay, nothing of it, sql/ as it was; the next migrate, the file mended, finishes', async (t) => {
  const { database, f, company } = await relayScene(t);
  const { rows: [before] } = await database.pool.query('select fingerprint from webhooks_private.sql_applied');
  await database.pool.query(`update webhooks_private.sql_applied set fingerprint = $1`, ['ab'.repeat(32)]);
  const broken = await migrationsWith(t, '9000_contacts_nickname', 'alter table crm.contacts add column nickname text;');
  const failing = '9001_contacts_checked';
  await writeFile(join(broken, `${failing}.sql`), '-- Up Migration\nalter table crm.contacts add column checked boolean;\nselect 1 / 0;\n');
  const error = await t.throwsAsync(migrate(database.url, () => {}, { migrationsDir: broken }));
  t.is(error?.message, `migrations/${failing}.sql: division by zero`);
  const state = async () => (await database.pool.query(
    `select array(select name from webhooks_private.migrations where name like '9%' order by name) as recorded,
            array(select column_name::text from information_schema.columns
                  where table_schema = 'crm' and table_name = 'contacts' and column_name in ('nickname', 'checked')
                  order by column_name) as columns,
            (select fingerprint from webhooks_private.sql_applied) as fingerprint`)).rows[0];
  t.deepEqual(await state(), { recorded: ['9000_contacts_nickname'], columns: ['nickname'], fingerprint: 'ab'.repeat(32) });
  await f.contact(company.id, { first_name: 'Between' });

  await writeFile(join(broken, `${failing}.sql`), '-- Up Migration\nalter table crm.contacts add column checked boolean;\n');
  await migrate(database.url, () => {}, { migrationsDir: broken });
  t.deepEqual(await state(), { recorded: ['9000_contacts_nickname', failing], columns: ['checked', 'nickname'],
                               fingerprint: before.fingerprint });
});

/**
 * The release before this one, whose relays and API still run while this release's
 * migrate changes their database (docs/operations.md, "Upgrading"). Moved forward
 * with each release.
 */
const PREVIOUS_RELEASE = '83416ff851a9f578581b8cb5f8b44248eb9ab2f8';
const root = fileURLToPath(new URL('../../', import.meta.url));

/** The previous release's files, with this checkout's node_modules; null when git has not that commit. */
async function previousRelease(t: { teardown: (fn: () => Promise<void>) => void }): Promise<string | null> {
  const dir = await mkdtemp(join(tmpdir(), 'bpd-previous-release-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  try {
    const archive = execFileSync('git', ['archive', PREVIOUS_RELEASE], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 1 << 28 });
    execFileSync('tar', ['-x', '-C', dir], { input: archive });
  } catch {
    return null;
  }
  await symlink(join(root, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}

test('the previous release\'s relay and API work on across this release\'s migrate: every contact written before, during and after it delivered once, its history read and a webhook changed; this release\'s relay takes over', async (t) => {
  const previous = await previousRelease(t);
  if (!previous) {
    t.log(`no commit ${PREVIOUS_RELEASE} in this checkout (a shallow clone?): nothing to run the previous release from`);
    t.pass();
    return;
  }
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  // the database as the previous release left it: its migrate, from its own folder
  await database.pool.query(`drop schema if exists webhooks, webhooks_private, webhooks_relay, webhooks_ops, crm cascade`);
  execFileSync(process.execPath, [join(previous, 'tools/migrate.ts')], { env: { PATH: process.env.PATH, DATABASE_URL: database.url } });
  await database.pool.query(`alter database ${database.name} set webhooks.retry_base = '20 milliseconds'`);
  const receiver = await startReceiver();
  t.teardown(() => receiver.close());
  const f = factories(database.pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: hook.secret });
  const old = spawnRelay(database.url, {}, [], previous);
  // and its API, its schema read from the database as the previous release left it
  const { startApi: startPreviousApi } = await import(pathToFileURL(join(previous, 'api/server.ts')).href);
  const jwtSecret = randomBytes(32).toString('base64url');
  const oldApi = await startPreviousApi({ databaseUrl: await authenticatorUrl(database.url, 'authenticator-for-tests'),
                                          jwtSecret, port: 0, poolSize: 2, reportCountsEveryMs: 0, log: pino({ level: 'silent' }) });
  t.teardown(() => oldApi.stop());
  const token = await signToken(jwtSecret, { companyId: company.id, role: 'webhook_admin' });
  const askOldApi = async (query: string, variables: Record<string, unknown>) => {
    const response = await fetch(`${oldApi.url}/graphql`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query, variables }) });
    return { status: response.status, ...(await response.json()) };
  };
  let oldExited: number | null | undefined;
  old.on('exit', (code) => (oldExited = code));
  t.teardown(() => { old.kill('SIGKILL'); });

  let writing = true;
  const failed: string[] = [];
  const written: string[] = [];
  const writer = async () => {
    while (writing) {
      await f.contact(company.id, { first_name: `${written.length}` })
        .then((contact) => written.push(contact.id), (error: Error) => failed.push(error.message));
    }
  };
  const writers = [writer(), writer()];
  try {
    await receiver.waitFor(20, { path: '/hook' });
    await migrate(database.url);
    const migratedAt = written.length;
    await receiver.waitFor(migratedAt + 20, { path: '/hook' });
  } finally {
    writing = false;
    await Promise.all(writers);
  }
  t.deepEqual(failed, []);
  t.is(oldExited, undefined, 'the previous release\'s relay runs on');
  const deliveries = await waitForFinalDeliveries(database.pool, [hook.id], written.length);
  t.is(deliveries.length, written.length);
  t.true(deliveries.every((d) => d.state === 'succeeded' && d.attempts === 1));
  t.is(receiver.received('/hook').length, written.length, 'each sent once');
  t.true(receiver.received('/hook').every((request) => request.verified));
  // the previous release's API reads and changes what this release's engine keeps
  const read = await askOldApi(`query($id: BigInt!) { webhookById(id: $id) { name history(first: 3) { totalCount nodes { action state } } } }`,
                               { id: hook.id });
  t.deepEqual(read.errors, undefined);
  t.is(read.data.webhookById.history.totalCount, written.length);
  t.deepEqual(read.data.webhookById.history.nodes, Array(3).fill({ action: 'CONTACT_CREATED', state: 'succeeded' }));
  const renamed = await askOldApi(`mutation($id: BigInt!) { updateWebhook(input: { id: $id, name: "Renamed" }) { result { name } } }`,
                                  { id: hook.id });
  t.deepEqual(renamed.errors, undefined);
  t.is(renamed.data.updateWebhook.result.name, 'Renamed');

  // the rollout replaces it
  const current = testRelay(database.url);
  t.teardown(() => current.stop());
  await current.start();
  old.kill('SIGTERM');
  await once(old, 'exit');
  await f.contact(company.id, { first_name: 'After the rollout' });
  await waitForFinalDeliveries(database.pool, [hook.id], written.length + 1);
  t.is(receiver.received('/hook').length, written.length + 1);
});
