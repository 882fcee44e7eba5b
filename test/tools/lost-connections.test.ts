// The short-lived connections of the API's and `npm start`'s own set-up (the
// authenticator's password, the database's creation, the first company named in the
// start-up lines): one the server ends while it is in use (a restart, a failover, a
// DBA's pg_terminate_backend) is an error of the caller's, never an uncaught 'error'
// event that ends the process. Each is held by a lock the test holds and its
// connection ended while it waits: by the server (pg_terminate_backend), or by its
// network path closing (a reset; the backend is ended too, so nothing goes on).
import { randomBytes } from 'node:crypto';
import test from 'ava';
import type pg from 'pg';
import { authenticatorUrl, AUTHENTICATOR_ROLE } from '../../api/authenticator.ts';
import { ensureDatabase } from '../../tools/ensure-database.ts';
import { firstCompany } from '../../tools/first-company.ts';
import { ownConnection, useTestDatabase } from '../helpers/db.ts';
import { freezableProxy } from '../helpers/proxy.ts';
import { until } from '../helpers/until.ts';

const db = useTestDatabase(test);

/** Ends the backend of this database whose statement starts with `statement` once it waits for a lock. */
async function endOnceWaiting(statement: string): Promise<void> {
  const waiting = `select pid from pg_stat_activity
    where datname = current_database() and wait_event_type = 'Lock' and query like $1 || '%'`;
  await until(`"${statement}" waits for the test's lock`, async () => (await db().pool.query(waiting, [statement])).rowCount === 1);
  const { rows } = await db().pool.query(`select pg_terminate_backend(pid) as ended from (${waiting}) w`, [statement]);
  if (!rows[0]?.ended) throw new Error(`"${statement}" was not ended`);
}

type Ending = 'the server ends it' | 'its network path closes';
const endings: Ending[] = ['the server ends it', 'its network path closes'];

/**
 * Runs `work` (given the URL to connect to) with `lock` held in a transaction of the
 * test's own, ending `statement`'s connection the given way while it waits.
 */
async function endedWhileHeld(t: { teardown: (fn: () => Promise<void>) => void }, ending: Ending, lock: string, statement: string,
  work: (url: string) => Promise<unknown>): Promise<unknown> {
  const proxy = await freezableProxy(new URL(db().url));
  t.teardown(() => proxy.close());
  const holder: pg.Client = await ownConnection(db().url, t);
  await holder.query('begin');
  await holder.query(lock);
  const outcome = work(proxy.url).then(() => 'no error', (error: unknown) => error);
  if (ending === 'its network path closes') {
    await until(`"${statement}" waits for the test's lock`, async () => (await db().pool.query(
      `select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query like $1 || '%'`,
      [statement])).rowCount === 1);
    await proxy.close();
  }
  await endOnceWaiting(statement);
  await holder.query('rollback');
  return outcome;
}

/** What the caller is told: the server's SQLSTATE, or the closed path's message. */
const told = (ending: Ending) => (ending === 'the server ends it' ? { code: '57P01' } : { message: 'Connection terminated unexpectedly' });

for (const ending of endings) {
  test.serial(`firstCompany: the connection ended while its query runs (${ending}) is the caller's error`, async (t) => {
    const error = await endedWhileHeld(t, ending, 'lock table crm.companies in access exclusive mode', 'select min(id)', (url) => firstCompany(url));
    t.like(error, told(ending));
    t.is(await firstCompany(db().url), null, 'the next call answers');
  });

  test.serial(`authenticatorUrl: the connection ended while it sets the password (${ending}) is the caller's error`, async (t) => {
    const error = await endedWhileHeld(t, ending, `alter role ${AUTHENTICATOR_ROLE} password 'held by the test'`, 'alter role',
      (url) => authenticatorUrl(url, 'ended-meanwhile'));
    t.like(error, told(ending));
    t.regex(await authenticatorUrl(db().url, 'the-next-one'), /the-next-one/, 'the next call answers');
  });

  test.serial(`ensureDatabase: the connection ended while it creates the database (${ending}) is the caller's error`, async (t) => {
    const name = `bpd_test_${randomBytes(5).toString('hex')}`;
    t.teardown(async () => void (await db().pool.query(`drop database if exists ${name}`)));
    // (a share lock on pg_database lets the look-up read it and holds the create)
    const error = await endedWhileHeld(t, ending, 'lock table pg_catalog.pg_database in share mode', 'create database',
      (url) => ensureDatabase(url, name));
    t.like(error, told(ending));
    t.is((await db().pool.query('select 1 from pg_database where datname = $1', [name])).rowCount, 0, 'nothing was created');
    await ensureDatabase(db().url, name);
    t.is((await db().pool.query('select 1 from pg_database where datname = $1', [name])).rowCount, 1, 'the next call creates it');
  });
}
