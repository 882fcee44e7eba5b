// Keeps the report's daily counts up to date (sql/50_report_counts.sql): a roll-up
// now and then every interval, one at a time, on the API's own connection (the
// authenticator may run it; no request role is involved).
import type pg from 'pg';
import type { Logger } from 'pino';

export interface RollUp {
  /** the roll-up running now, if any, finished */
  stop(): Promise<void>;
}

/**
 * How long a roll-up may go without an answer before it is given up with its
 * connection: the API's pool gives up a statement silent past a request's bound
 * (apiDatabaseReadTimeoutMs, api/limits.ts), and a roll-up is one statement that runs
 * far longer (the first of a large install took 77 s, docs/api.md). One cut short
 * loses nothing: its committed batches stay counted and the next run counts the rest
 * (test/sql/roll-up-cancelled.test.ts).
 */
export const ROLL_UP_READ_TIMEOUT_MS = 60 * 60_000;

/** The roll-up's statement, with its own read timeout (pg reads a query's own query_timeout; its typings do not name it). */
const rollUpStatement = (readTimeoutMs: number): pg.QueryConfig & { query_timeout: number } => ({
  text: 'call webhooks.roll_up_report_counts()',
  query_timeout: readTimeoutMs,
});

export function rollUpReportCounts(
  pool: pg.Pool, everyMs: number, log: Logger,
  { readTimeoutMs = ROLL_UP_READ_TIMEOUT_MS }: { readTimeoutMs?: number } = {},
): RollUp {
  const statement = rollUpStatement(readTimeoutMs);
  let running: Promise<void> | undefined;
  let stopped = false;
  const run = () => {
    if (running || stopped) return;
    running = pool
      .query(statement)
      .then(() => undefined)
      .catch((error: Error) => {
        if (!stopped) log.error({ err: error }, "rolling up the report's daily counts failed");
      })
      .finally(() => {
        running = undefined;
      });
  };
  const first = setTimeout(run, 1_000);
  const timer = setInterval(run, everyMs);
  first.unref();
  timer.unref();
  return {
    async stop() {
      stopped = true;
      clearTimeout(first);
      clearInterval(timer);
      await running;
    },
  };
}
