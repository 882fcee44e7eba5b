// UTC days as the engine counts them (sql/22_outbox.sql: partitions, retention and
// the report's counts go by UTC day), for tests that write deliveries into the past.

const DAY_MS = 86_400_000;

/** The start of the UTC day `offsetDays` from today (-12: twelve days ago). */
export function utcDay(offsetDays: number): Date {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()) + offsetDays * DAY_MS);
}

/**
 * Each test of a file starts as a database that never dropped a day: a day once
 * dropped takes no writes (webhooks_private.ensure_day), and tests of one file write
 * into days an earlier one dropped.
 */
export function noDayDroppedBeforeEachTest(
  test: { afterEach: { always: (fn: () => Promise<unknown>) => void } },
  db: () => { pool: { query: (sql: string) => Promise<unknown> } },
): void {
  test.afterEach.always(() => db().pool.query('delete from webhooks_private.outbox_kept_since'));
}
