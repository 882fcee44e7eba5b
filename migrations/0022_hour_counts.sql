-- Up Migration
-- Counts of the recent hours (sql/50_report_counts.sql): the days of the last two
-- days are counted by the roll-up only once they ended two days ago, so the report
-- counted them from the rows (about 2,800 deliveries a webhook a day for the biggest
-- company of the history benchmark). The finished hours of those days are counted
-- here, and removed once their day is counted. A row is true while it is not stale: a
-- write to a delivery of its hour marks it stale and moves its version on, and the
-- roll-up replaces only a row whose version it read before counting. (If not exists:
-- test/sql/migrate-day-counts.test.ts runs the migrations from 0021 on again.)
create table if not exists webhooks.delivery_hour_counts (
  webhook_id bigint not null references webhooks.webhooks on delete cascade,
  company_id bigint not null,
  hour       timestamptz not null,
  fired      bigint not null,
  succeeded  bigint not null,
  failed     bigint not null,
  stale      boolean not null,
  version    bigint not null default 1,
  primary key (webhook_id, hour),
  constraint delivery_hour_counts_whole_hour check (extract(epoch from hour)::bigint % 3600 = 0),
  constraint delivery_hour_counts_add_up check (fired >= 0 and succeeded >= 0 and failed >= 0 and succeeded + failed = fired)
);
