-- Up Migration
-- The webhooks deleted lately, until no transaction that may still write for them is
-- running (sql/22_outbox.sql). A change written while a webhook's delete was not yet
-- committed saw the webhook, and wrote its delivery after the delete had removed the
-- webhook's rows: that delivery was left behind, in the queue for ever (no lane, so
-- no relay sends it) and in history, where it kept its day from ever being dropped.
-- Maintenance looks for such rows of the webhooks noted here and removes them
-- (webhooks.recheck_deleted_webhooks()).
create table if not exists webhooks_private.webhooks_deleted_recently (
  webhook_id bigint primary key,
  company_id bigint not null,
  deleted_at timestamptz not null default now(),
  -- the next transaction id when maintenance first saw the delete committed: once
  -- every transaction before it has ended, nothing more can be written for the webhook
  settled_after xid8
);
