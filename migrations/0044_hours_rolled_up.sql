-- Up Migration
-- How far the report's roll-up (sql/50_report_counts.sql) has looked for finished
-- hours: a run that starts sets hours_rolling_before (the first hour it will not
-- count), and a run that ends copies it to hours_counted_before. The next run of the
-- same day visits only the webhooks with deliveries in the hours finished since, with
-- hours waiting for a delivery on its way (below), or with days noted. Null: no run
-- has ended since this column came.
alter table webhooks_private.report_counts_rolled_up add column if not exists hours_rolling_before timestamptz;
alter table webhooks_private.report_counts_rolled_up add column if not exists hours_counted_before timestamptz;
-- The webhooks a roll-up left with a finished hour not counted because a delivery of
-- it was still on its way: the next run visits them again (a success that ends it
-- writes nothing the roll-up could find). Written by the roll-up alone.
create table if not exists webhooks_private.hours_on_their_way (
  webhook_id bigint primary key
);
