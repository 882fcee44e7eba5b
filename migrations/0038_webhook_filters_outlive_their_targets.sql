-- Up Migration
-- A webhook filtered on a CRM user or status tag is kept when the CRM deletes that
-- user or status: sql/10_config.sql disables it, says why, and clears the filter.
-- Until now both keys cascaded, and deleting a user (someone leaving the company)
-- deleted the webhooks filtered on them with every firing they had recorded, Times
-- Fired included. The keys now refuse (NO ACTION) instead: the engine's trigger
-- clears them first, and were it ever skipped, the delete fails rather than a
-- webhook being lost or, by SET NULL, made to fire for every user.
-- The indexes serve the key's check on each delete of a user or status (and the
-- trigger's update): without them each delete read every webhook.
alter table webhooks.webhooks
  drop constraint if exists webhooks_status_id_fkey,
  drop constraint if exists webhooks_user_id_fkey;
alter table webhooks.webhooks
  add constraint webhooks_status_id_fkey foreign key (status_id) references crm.statuses,
  add constraint webhooks_user_id_fkey foreign key (user_id) references crm.users;
create index if not exists webhooks_status_id_idx on webhooks.webhooks (status_id) where status_id is not null;
create index if not exists webhooks_user_id_idx on webhooks.webhooks (user_id) where user_id is not null;
