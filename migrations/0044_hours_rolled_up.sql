-- Up Migration
-- How far the report's roll-up (sql/50_report_counts.sql) has looked for finished
-- hours: a run that starts sets hours_rolling_before (the first hour it will not
-- count), and a run that ends copies it to hours_counted_before. The next run of the
-- same day visits only the webhooks with deliveries in the hours finished since, those
-- noted for it (below), and those with days noted. Null: no run has ended since this
-- column came.
alter table webhooks_private.report_counts_rolled_up add column if not exists hours_rolling_before timestamptz;
alter table webhooks_private.report_counts_rolled_up add column if not exists hours_counted_before timestamptz;
-- The webhooks the next roll-up visits whatever the hours: noted by the roll-up for a
-- finished hour left for a delivery on its way (a success that ends it writes nothing
-- the roll-up could find) or an hour's row still stale, and by a write to a delivery
-- older than an hour (a replay, a DBA's write) but the relay's settle.
create table if not exists webhooks_private.webhooks_to_roll_up (
  webhook_id bigint primary key
);
