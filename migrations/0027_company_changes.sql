-- Up Migration
-- Each company's changes to its webhooks through the API, as a bucket that refills
-- (sql/47_audit.sql): every change an admin makes is an audit row, and some write
-- more (a test send writes a delivery), so a script changing webhooks in a loop
-- would grow the database without end. One row per company that has made a change:
-- what is left of its hour's allowance, and when that was reckoned.
create table if not exists webhooks_private.company_changes (
  company_id bigint primary key,
  tokens     double precision not null,
  at         timestamptz not null
);
