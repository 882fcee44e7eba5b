import type pg from 'pg';

/** Runs work in one transaction that first runs setup (e.g. SET LOCAL webhooks.source). */
export async function inTransaction<T>(pool: pg.Pool, setup: string, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('begin');
    await client.query(setup);
    const result = await work(client);
    await client.query('commit');
    return result;
  } catch (error) {
    await client.query('rollback');
    throw error;
  } finally {
    client.release();
  }
}
