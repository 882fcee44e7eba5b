-- Up Migration
-- The retention a DBA set for this database (ALTER DATABASE … SET webhooks.retention),
-- as maintenance last read it (webhooks_private.note_retention, sql/22_outbox.sql): a
-- row of the data, which a dump and a copy carry, where the database's own settings
-- are left behind by a dump restored without --create and by create database …
-- template. A copy that lost the setting kept its history for the default 90 days,
-- and its first maintenance dropped what the original kept (400 days set there: the
-- 310 days between, their totals kept; test/sql/copied-database.test.ts). Read by
-- retention() when the database sets none. Re-runnable.
create table if not exists webhooks_private.retention_last_set (
  one       boolean primary key default true check (one),
  retention interval not null,
  noted_at  timestamptz not null
);
