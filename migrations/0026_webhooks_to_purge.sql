-- Up Migration
-- The webhooks deleted whose kept history is still being removed (sql/22_outbox.sql).
-- A webhook's delete used to delete its history in the same statement: about 0.5 s
-- per 100,000 kept deliveries, so a busy webhook's delete ran past the API's
-- statement timeout and only a DBA could do it. Now the delete of a webhook with
-- more than a few kept deliveries notes the webhook here, and maintenance removes
-- them in batches of one day each (webhooks.purge_deleted_webhooks()); until then no
-- view and no company reads them.
create table if not exists webhooks_private.webhooks_to_purge (
  webhook_id bigint primary key,
  company_id bigint not null,
  deleted_at timestamptz not null default now()
);
