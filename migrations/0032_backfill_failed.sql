-- Up Migration
-- A backfill may fail: a batch the database refuses (sql/35_backfill.sql). It used to
-- fail the step that wrote it, and every step after, which served every company's
-- backfills in one transaction: one company's stuck backfill held all the others.
-- Now that backfill alone stops, with the reason its company can read.
alter table webhooks.backfills add column if not exists error text;
alter table webhooks.backfills drop constraint if exists backfills_state_known;
alter table webhooks.backfills add constraint backfills_state_known
  check (state in ('running', 'done', 'cancelled', 'failed'));
alter table webhooks.backfills drop constraint if exists backfills_error_iff_failed;
alter table webhooks.backfills add constraint backfills_error_iff_failed
  check ((state = 'failed') = (error is not null));
