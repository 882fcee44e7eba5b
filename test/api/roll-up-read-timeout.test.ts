// The report's roll-up runs on the API's pool, whose statements are given up when the
// database says nothing for longer than a request may run (query_timeout,
// apiDatabaseReadTimeoutMs); a roll-up is one CALL that runs for minutes on a large
// install, so it has its own bound (ROLL_UP_READ_TIMEOUT_MS, api/report-counts.ts).
// Here a pool whose read timeout is short, and a roll-up kept waiting on a lock.
import test from 'ava';
import pg from 'pg';
import { rollUpReportCounts } from '../../api/report-counts.ts';
import { EngineClient } from '../../relay/database.ts';
import { ownConnection, useTestDatabase } from '../helpers/db.ts';
import { logLines } from '../helpers/lines.ts';
import { until } from '../helpers/until.ts';

const db = useTestDatabase(test);

/** The read timeout of the pool the roll-up runs on (the API's is 15 s by default). */
const POOL_READ_TIMEOUT_MS = 300;
/** How long the roll-up is kept waiting: past the pool's read timeout, several times. */
const KEPT_WAITING_MS = POOL_READ_TIMEOUT_MS * 5;

/** A pool that gives its statements up as the API's does (EngineClient, query_timeout), and the lines logged. */
function apiLikePool(t: import('ava').ExecutionContext, readTimeoutMs = POOL_READ_TIMEOUT_MS) {
  const pool = new pg.Pool({ Client: EngineClient, connectionString: db().url, max: 1, query_timeout: readTimeoutMs });
  t.teardown(() => pool.end());
  return { pool, ...logLines() };
}

/** The roll-up's backend, once it waits for the test's lock. */
async function rollUpWaiting(): Promise<number> {
  let pid = 0;
  await until('the roll-up waits for the lock', async () => {
    pid = (await db().pool.query<{ pid: number }>(`select pid from pg_stat_activity
      where datname = current_database() and wait_event_type = 'Lock' and query like 'call webhooks.roll_up_report_counts%'`)).rows[0]?.pid ?? 0;
    return pid !== 0;
  });
  return pid;
}

/** The test's lock on what every roll-up reads first, held until released. */
async function lockRollUp(t: import('ava').ExecutionContext) {
  const holder = await ownConnection(db().url, t);
  await holder.query('begin');
  await holder.query('lock table webhooks_private.report_counts_rolled_up in access exclusive mode');
  return () => holder.query('rollback');
}

test.serial('the roll-up is not given up at the pool\'s read timeout: it waits past it and finishes', async (t) => {
  const { pool, lines, log } = apiLikePool(t);
  const release = await lockRollUp(t);
  const rollUp = rollUpReportCounts(pool, 60 * 60_000, log);
  t.teardown(() => rollUp.stop());
  const pid = await rollUpWaiting();
  // (a wait of a duration, the thing under test: nothing signals a give-up that must not come)
  await new Promise((resolve) => setTimeout(resolve, KEPT_WAITING_MS));
  await release();
  await rollUp.stop(); // (waits for the running roll-up)
  t.deepEqual(lines, [], 'nothing failed');
  const after = await db().pool.query('select state from pg_stat_activity where datname = current_database() and pid = $1', [pid]);
  t.is(after.rows[0]?.state, 'idle', 'its connection kept, the CALL answered');
});

test.serial('the roll-up\'s own bound, set short, gives it up where the pool\'s would not', async (t) => {
  const { pool, lines, log } = apiLikePool(t, 60_000);
  const release = await lockRollUp(t);
  t.teardown(release);
  const rollUp = rollUpReportCounts(pool, 60 * 60_000, log, { readTimeoutMs: POOL_READ_TIMEOUT_MS });
  t.teardown(() => rollUp.stop());
  await rollUpWaiting();
  await until('the roll-up is given up', async () => lines.length > 0);
  t.regex(lines[0]!, /rolling up the report's daily counts failed/);
  t.regex(lines[0]!, /Query read timeout/);
});
