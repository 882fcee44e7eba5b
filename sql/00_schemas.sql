-- bpd-webhooks engine, part 0: the schemas and what each is for.
--
-- Every file in sql/ is applied, in name order, in one transaction after the
-- migrations, every time `npm run migrate` runs. Each file is therefore written to be
-- re-applied: CREATE OR REPLACE, DROP ... IF EXISTS then CREATE.
--
-- Public API (stable names other programs and DBAs rely on):
--   webhooks.webhooks, webhooks.deliveries, webhooks.delivery_attempts,
--   webhooks.fire_history, the type webhooks.action, the NOTIFY channel bpd_webhooks,
--   and the transaction setting webhooks.source.
-- Private (may change between versions; do not call from applications):
--   everything in schema webhooks_private.

comment on schema webhooks is
  'bpd-webhooks public API: webhook configuration, the delivery outbox and its history.';
comment on schema webhooks_private is
  'bpd-webhooks internals: secrets, subscriptions, trigger functions. Not an API.';

-- private: a Postgres setting of the engine (webhooks.source, webhooks.retry_base, ...),
-- or its default when unset or empty. A DBA sets them per database, role or session.
create or replace function webhooks_private.setting(p_name text, p_default text)
returns text
language sql
stable
as $$
  select coalesce(nullif(current_setting(p_name, true), ''), p_default);
$$;
