-- Up Migration
-- A subscription row carries its webhook's coalesce_window too: capture hands it to
-- webhooks_private.enqueue with the delivery, which then needs no lookup of the
-- webhook for every delivery it writes (sql/25_capture.sql; about 10 µs a matching
-- write, measured). sql/10_config.sql keeps it in step with webhooks.webhooks.
alter table webhooks_private.subscriptions add column coalesce_window interval;
update webhooks_private.subscriptions s
  set coalesce_window = w.coalesce_window
  from webhooks.webhooks w
  where w.id = s.webhook_id and w.coalesce_window is not null;
