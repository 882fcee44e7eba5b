-- Up Migration
-- How far the last roll-up of the report's counts that went through every webhook
-- counted (sql/50_report_counts.sql): every webhook's days before counted_before were
-- counted then, or noted to count again. While that is as far as a roll-up can count
-- now, the next visits only the webhooks with deliveries since or days noted; once a
-- day, when a new day can be counted, it visits them all. No row: none has yet.
create table if not exists webhooks_private.report_counts_rolled_up (
  one            boolean primary key default true check (one),
  counted_before date not null
);
