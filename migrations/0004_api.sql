-- Up Migration
-- What the admin API needs from the tables.

-- When the signing secret was last rotated. Setting it is how a rotation is asked
-- for (a trigger in sql/50_api.sql makes the new secret), so rotating needs nothing
-- but UPDATE on the webhook row, under the same row-level security as any edit.
alter table webhooks.webhooks add column secret_rotated_at timestamptz;

-- The report and the history read one webhook's deliveries by time. Covering state
-- and company_id lets the report count from the index alone (company_id is what
-- row-level security filters on); id breaks ties so history pages by (created_at, id).
create index deliveries_webhook_history_idx
  on webhooks.deliveries (webhook_id, created_at, id) include (state, company_id);
-- the one it supersedes
drop index webhooks.deliveries_webhook_created_idx;
