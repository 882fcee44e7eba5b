// Backfill steps whose time no machine's load reaches, for a test that counts what one
// step writes: each batch, and the step, end early once they have spent
// webhooks.backfill_batch_time (250 ms by default), and on a loaded machine a batch of
// two contacts did, the step writing one. Only the tests of that bound keep the default.
import type pg from 'pg';
import { inTransaction } from './sql.ts';

/** The setting, for a session that steps more than once. */
export const UNTIMED_STEPS = "set webhooks.backfill_batch_time = '1 hour'";

/** `sql` (a step, or a step's wait) run in a transaction of its own with the steps untimed. */
export function untimed(pool: pg.Pool, sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
  return inTransaction(pool, UNTIMED_STEPS.replace('set ', 'set local '), (c) => c.query(sql, params));
}

/** One step of the backfill `id` (every backfill when null), untimed: what it wrote. */
export async function untimedStep(pool: pg.Pool, id: string | null): Promise<number> {
  return (await untimed(pool, 'select webhooks_relay.backfill_step(p_only => $1) as written', [id])).rows[0].written;
}
