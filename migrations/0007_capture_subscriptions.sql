-- Up Migration
-- Capture's first question, "does anyone concerned listen?", is one probe of
-- webhooks_private.subscriptions. The rows now also carry what capture needs to decide
-- and build a delivery (the webhook's filters and which contact fields to leave out of
-- its payload), so a match is answered by the same index scan, without a join to the
-- webhook. sql/10_config.sql keeps them in step with webhooks.webhooks.
alter table webhooks_private.subscriptions
  add column status_id      bigint,
  add column user_id        bigint,
  add column payload_omit   text[] not null default '{}',
  add column ignore_sources text[] not null default '{}',
  add column watch_fields   text[] not null default '{}',
  add column conditions     jsonb;

-- The message id: the hex of a random uuid, without formatting the uuid as text and
-- cutting its dashes out again (same form: msg_ and 32 hex digits).
alter table webhooks.deliveries
  alter column message_id set default 'msg_' || encode(uuid_send(gen_random_uuid()), 'hex');
