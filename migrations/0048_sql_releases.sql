-- Up Migration
-- The releases whose migrate ran on this database, in the order each first ran
-- (tools/migrate.ts): a release is its sql/'s fingerprint (ops/engine.ts) and its
-- newest migration, registered as its migrate begins and marked when its sql/ is
-- first applied. /readyz (ops/operations.ts) tells by this order what the one record
-- of sql_applied cannot: the next release's sql/ from an earlier release's that a
-- migrate rolled back to, and a process one release behind the database from one
-- two behind.
create table if not exists webhooks_private.sql_releases (
  n bigint generated always as identity primary key,
  fingerprint text not null,
  migration text not null,
  first_applied_at timestamptz,
  unique (fingerprint, migration)
);
-- The newest migration of the release whose sql/ is in force (null: applied by a
-- release before this record).
alter table webhooks_private.sql_applied add column if not exists migration text;
