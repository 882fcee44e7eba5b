-- Up Migration
-- A webhook whose user or status filter the CRM deleted (sql/10_config.sql) says so
-- until its admin chooses again: deleted_filter_target names what it was filtered on
-- ("user 42 (Jane Doe)"). Cleared, the filter would have it fire for every user or
-- status: so it stays disabled while this is set, and a new filter, or the filter
-- cleared on purpose (update_webhook's clear_user_id / clear_status_id), clears it.
alter table webhooks.webhooks add column if not exists deleted_filter_target text;
alter table webhooks.webhooks drop constraint if exists webhooks_deleted_filter_target_disabled;
alter table webhooks.webhooks
  add constraint webhooks_deleted_filter_target_disabled check (deleted_filter_target is null or not enabled);
