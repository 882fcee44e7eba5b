-- Up Migration
-- The report's daily counts (sql/50_report_counts.sql).

-- For a webhook and a UTC day long past, how many of its deliveries created that day
-- there were and how they ended. A row exists only while it is exact (the roll-up
-- writes it, any later change to a delivery of its day drops it); the report counts
-- the rest from the outbox itself.
create table webhooks.delivery_day_counts (
  webhook_id bigint not null references webhooks.webhooks on delete cascade,
  company_id bigint not null,
  day        date not null,
  fired      bigint not null,
  succeeded  bigint not null,
  failed     bigint not null,
  primary key (webhook_id, day)
);

-- Days to roll up again: a delivery of theirs changed after they were counted, or
-- they still had deliveries on their way when last looked at.
-- (no foreign key: a webhook's delete cascades to its deliveries, whose triggers note
-- their days here while the webhook is already gone; the roll-up drops such rows)
create table webhooks_private.delivery_days_to_count (
  webhook_id bigint not null,
  day        date not null,
  primary key (webhook_id, day)
);
