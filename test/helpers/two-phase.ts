// Tests of writers that commit in two phases (PREPARE TRANSACTION, then COMMIT
// PREPARED or ROLLBACK PREPARED). A prepared transaction outlives its connection, holds
// its locks across connections and survives a restart of the server, and a database
// that has one cannot be dropped: every test rolls back what it left prepared.
import { randomBytes } from 'node:crypto';
import type { TestFn } from 'ava';
import pg from 'pg';

/**
 * `test.serial` for a file's two-phase tests; against a server that allows no prepared
 * transaction (a DATABASE_URL of one's own with max_prepared_transactions = 0),
 * `test.serial.skip`, and a skipped entry whose title says why. (test/run.ts reads the
 * setting: ava wants every test declared before any query could answer.)
 */
export function twoPhaseTest(test: TestFn): TestFn['serial'] {
  if (Number(process.env.TEST_MAX_PREPARED_TRANSACTIONS ?? 0) > 0) return test.serial;
  test.serial.skip('two-phase commit: not tested, the server has max_prepared_transactions = 0 (set it to 4 or more to test it)', () => {});
  return test.serial.skip as unknown as TestFn['serial'];
}

/** A name for PREPARE TRANSACTION, unique on the server (names are cluster-wide). */
export function transactionName(): string {
  return `bpd_test_${randomBytes(6).toString('hex')}`;
}

/** Rolls back every transaction left prepared in the database at `url` (a test's afterEach). */
export async function rollBackPrepared(url: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ gid: string }>('select gid from pg_prepared_xacts where database = current_database()');
    for (const { gid } of rows) await client.query(`rollback prepared '${gid.replaceAll("'", "''")}'`);
    return rows.map((r) => r.gid);
  } finally {
    await client.end();
  }
}

/**
 * Runs `work` in a transaction on a connection of `pool`, after `setup` (say `set local
 * webhooks.two_phase = on`; '' for none), and prepares it as `name`; rolled back if
 * anything fails. The connection is free again after: the prepared transaction is not
 * its own.
 */
export async function prepareTransaction(pool: pg.Pool, name: string, setup: string,
  work: (client: pg.PoolClient) => Promise<unknown>): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('begin');
    if (setup) await client.query(setup);
    await work(client);
    await client.query(`prepare transaction '${name}'`);
  } catch (error) {
    await client.query('rollback').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}
