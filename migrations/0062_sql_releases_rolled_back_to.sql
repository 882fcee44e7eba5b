-- Up Migration
-- A release whose first migrate here found the sql/ of a later release in force (a
-- rollback to a release that never migrated this database, found by the functions of
-- the engine its sql/ does not make: tools/migrate.ts) is placed before every release
-- registered, and marked: how many releases older it is, nothing here says, so /readyz
-- (ops/operations.ts) counts no release as its next.
alter table webhooks_private.sql_releases add column if not exists rolled_back_to boolean not null default false;
