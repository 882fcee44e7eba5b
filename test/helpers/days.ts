// UTC days as the engine counts them (sql/22_outbox.sql: partitions, retention and
// the report's counts go by UTC day), for tests that write deliveries into the past.

const DAY_MS = 86_400_000;

/** The start of the UTC day `offsetDays` from today (-12: twelve days ago). */
export function utcDay(offsetDays: number): Date {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()) + offsetDays * DAY_MS);
}
