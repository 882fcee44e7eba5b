-- Up Migration
-- A running backfill's count of its total, as far as its steps have gone
-- (webhooks_private.backfill_count, sql/35_backfill.sql): the contacts it examines
-- with ids up to counted_to are counted. A step counts a part of them, so that the
-- step that serves every company's backfills never reads a company's contacts whole
-- (it did, for each backfill's first step). Rows live while their backfill counts.
-- Re-runnable.
create table if not exists webhooks_private.backfill_counts (
  backfill_id bigint primary key references webhooks.backfills on delete cascade,
  counted_to  bigint not null,
  counted     bigint not null
);
