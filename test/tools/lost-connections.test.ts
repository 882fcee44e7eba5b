// The short-lived connections of the API's and `npm start`'s own set-up (the
// authenticator's password, the database's creation, the first company named in the
// start-up lines): one the server ends while it is in use (a restart, a failover, a
// DBA's pg_terminate_backend) is an error of the caller's, never an uncaught 'error'
// event that ends the process. Each is held by a lock the test holds, its backend
// ended from the server's side while it waits.
import { randomBytes } from 'node:crypto';
import test from 'ava';
import type pg from 'pg';
import { authenticatorUrl, AUTHENTICATOR_ROLE } from '../../api/authenticator.ts';
import { ensureDatabase } from '../../tools/ensure-database.ts';
import { firstCompany } from '../../tools/first-company.ts';
import { ownConnection, useTestDatabase } from '../helpers/db.ts';
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

/** Runs `work` with `lock` held in a transaction of the test's own, ending `statement`'s backend meanwhile. */
async function endedWhileHeld<T>(t: { teardown: (fn: () => Promise<void>) => void }, lock: string, statement: string, work: () => Promise<T>): Promise<unknown> {
  const holder: pg.Client = await ownConnection(db().url, t);
  await holder.query('begin');
  await holder.query(lock);
  const outcome = work().then(() => 'no error', (error: unknown) => error);
  await endOnceWaiting(statement);
  await holder.query('rollback');
  return outcome;
}

test.serial('firstCompany: the connection ended while its query runs is the caller\'s error', async (t) => {
  const error = await endedWhileHeld(t, 'lock table crm.companies in access exclusive mode', 'select min(id)', () => firstCompany(db().url));
  t.like(error, { code: '57P01' });
  t.is(await firstCompany(db().url), null, 'the next call answers');
});

test.serial('authenticatorUrl: the connection ended while it sets the password is the caller\'s error', async (t) => {
  const error = await endedWhileHeld(t, `alter role ${AUTHENTICATOR_ROLE} password 'held by the test'`, 'alter role',
    () => authenticatorUrl(db().url, 'ended-meanwhile'));
  t.like(error, { code: '57P01' });
  t.regex(await authenticatorUrl(db().url, 'the-next-one'), /the-next-one/, 'the next call answers');
});

test.serial('ensureDatabase: the connection ended while it creates the database is the caller\'s error', async (t) => {
  const name = `bpd_test_${randomBytes(5).toString('hex')}`;
  t.teardown(async () => void (await db().pool.query(`drop database if exists ${name}`)));
  // (a share lock on pg_database lets the look-up read it and holds the create)
  const error = await endedWhileHeld(t, 'lock table pg_catalog.pg_database in share mode', 'create database', () => ensureDatabase(db().url, name));
  t.like(error, { code: '57P01' });
  t.is((await db().pool.query('select 1 from pg_database where datname = $1', [name])).rowCount, 0, 'nothing was created');
  await ensureDatabase(db().url, name);
  t.is((await db().pool.query('select 1 from pg_database where datname = $1', [name])).rowCount, 1, 'the next call creates it');
});
