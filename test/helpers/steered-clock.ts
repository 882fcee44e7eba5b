// The engine reads the time of day in one place, webhooks_private.clock()
// (sql/22_outbox.sql): how late a write is, which days the retention keeps. A test
// database's own copy of it is set ahead here by bpd_test.clock_shift (an interval;
// unset, the real clock), for the connections that set it (SET, or ALTER DATABASE
// for those opened after): what a transaction open for hours or days meets, which no
// test can wait for. Only that clock moves: now() stays each transaction's start, as
// Postgres keeps it.
import type pg from 'pg';

export async function steerClock(pool: Pick<pg.Pool, 'query'>): Promise<void> {
  await pool.query(`
    create or replace function webhooks_private.clock()
    returns timestamptz
    language sql
    volatile
    as $$
      select pg_catalog.clock_timestamp()
             + coalesce(nullif(pg_catalog.current_setting('bpd_test.clock_shift', true), ''), '0')::interval;
    $$`);
}
