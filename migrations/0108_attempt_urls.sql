-- Up Migration
-- The URL each attempt was sent to (webhooks_relay.settle_deliveries, sql/30_delivery.sql):
-- once an admin changes a webhook's URL, its history still says which attempts went
-- to the old one. Each URL a webhook has had is kept once (webhook_urls, written as
-- the webhook is made or its URL changed: sql/10_config.sql), and each attempt names
-- it by its id (url_id, four bytes an attempt: the URL's text on every attempt was
-- 44 bytes more WAL a delivery for a URL of 43 characters, up to 2 KB for a long one).
-- url_id null: an attempt recorded before this migration (its URL was not kept).
-- The column is added without a default: no partition is rewritten. Re-runnable.
create table if not exists webhooks_private.webhook_urls (
  id         integer generated always as identity primary key,
  webhook_id bigint not null references webhooks.webhooks (id) on delete cascade,
  company_id bigint not null,
  url        text not null,
  constraint webhook_urls_webhook_url unique (webhook_id, url)
);
insert into webhooks_private.webhook_urls (webhook_id, company_id, url)
select w.id, w.company_id, w.url
from webhooks.webhooks w
on conflict do nothing;
alter table webhooks.delivery_attempts add column if not exists url_id integer;
