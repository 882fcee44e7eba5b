-- Up Migration
-- What the last migrate applied of sql/: the fingerprint of its files (ops/engine.ts),
-- written in the transaction that applied them (tools/migrate.ts), so that /readyz can
-- tell a database whose migrations are current but whose functions, triggers and views
-- are another release's (or whose sql/ step never ran) from one that runs this code's.
-- One row at most; none until the first migrate that records it.
create table if not exists webhooks_private.sql_applied (
  one boolean primary key default true check (one),
  fingerprint text not null,
  applied_at timestamptz not null default now()
);
