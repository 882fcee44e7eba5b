-- Up Migration
-- The Creates made with an idempotency key (sql/45_admin.sql, create_webhook): a
-- Create whose answer was lost (a proxy's 502, a dropped connection) is sent again
-- with the same key and answered with the webhook the first made, not a second one.
-- A key is the company's own, kept 24 hours (webhooks.forget_create_requests, run by
-- maintenance). The input is kept as its digest: a key sent again with other input is
-- refused. No foreign key to the webhook: a key outlives a webhook deleted meanwhile,
-- and is refused then, rather than making the webhook again. Re-runnable.
create table if not exists webhooks_private.create_requests (
  company_id      bigint not null,
  idempotency_key text not null
    constraint create_requests_key_form check (idempotency_key ~ '^[A-Za-z0-9_-]{1,64}$'),
  input_digest    bytea not null,
  webhook_id      bigint,
  made_at         timestamptz not null default now(),
  primary key (company_id, idempotency_key)
);
create index if not exists create_requests_made_at_idx on webhooks_private.create_requests (made_at);
