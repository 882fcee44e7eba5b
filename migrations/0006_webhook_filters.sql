-- Up Migration
-- A webhook's filters (sql/15_filters.sql): what it ignores, which fields it watches,
-- the condition a contact must meet. The defaults keep every existing webhook firing
-- exactly as before.
alter table webhooks.webhooks
  add column ignore_sources text[] not null default '{}',
  add column watch_fields   text[] not null default '{}',
  add column conditions     jsonb;
