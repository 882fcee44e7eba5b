-- Up Migration
-- What the admin API needs from the tables.

-- When the signing secret was last rotated. Setting it is how a rotation is asked
-- for (a trigger in sql/15_secrets.sql makes the new secret), so rotating needs nothing
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
