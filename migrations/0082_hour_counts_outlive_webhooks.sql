-- Up Migration
-- An hour's count no longer has a foreign key to its webhook. A capture that read the
-- subscriptions before a webhook's delete committed (a REPEATABLE READ snapshot, or a
-- delete still open) writes its delivery after it, and, written an hour or more after
-- its transaction began, marks the delivery's hour (webhooks_private.recount_day,
-- sql/22_outbox.sql): the key's check then failed the CRM's write (a serialization
-- failure under REPEATABLE READ, a key violation under READ COMMITTED). The webhook's
-- delete removes its hour counts itself, and the purge those written after it
-- (tg_webhooks__forget_deliveries, purge_deleted_webhooks). Re-runnable.
alter table webhooks.delivery_hour_counts drop constraint if exists delivery_hour_counts_webhook_id_fkey;
