// Keeps the report's daily counts up to date (sql/50_report_counts.sql): a roll-up
// now and then every interval, one at a time, on the API's own connection (the
// authenticator may run it; no request role is involved).
import type pg from 'pg';
import type { Logger } from 'pino';

export interface RollUp {
  /** the roll-up running now, if any, finished */
  stop(): Promise<void>;
}

export function rollUpReportCounts(pool: pg.Pool, everyMs: number, log: Logger): RollUp {
  let running: Promise<void> | undefined;
  let stopped = false;
  const run = () => {
    if (running || stopped) return;
    running = pool
      .query('call webhooks.roll_up_report_counts()')
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
