-- Up Migration
-- What the admin API needs from the tables.

-- When the signing secret was last rotated. Setting it is how a rotation is asked
-- for (a trigger in sql/50_api.sql makes the new secret), so rotating needs nothing
-- but UPDATE on the webhook row, under the same row-level security as any edit.
alter table webhooks.webhooks add column secret_rotated_at timestamptz;

-- The report and the history read one webhook's deliveries by time, under row-level
-- security that filters on company_id. company_id is a key column (second, after
-- webhook_id, which decides it) so that filter is an index condition: the planner
-- then knows how few rows a company's webhook has and walks the index in
-- (created_at, id) order for a history page instead of sorting the webhook's whole
-- history. state is carried along so the report counts from the index alone.
create index deliveries_webhook_history_idx
  on webhooks.deliveries (webhook_id, company_id, created_at, id) include (state);
-- the index it supersedes
drop index webhooks.deliveries_webhook_created_idx;

-- The report's daily counts: for a webhook and a UTC day long past, how many of its
-- deliveries created that day there were and how they ended. A row exists only while
-- it is exact (sql/55_report_counts.sql rolls days up and drops a row as soon as a
-- delivery of its day changes); the report counts the rest from the outbox itself.
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
