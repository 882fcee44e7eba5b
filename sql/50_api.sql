-- bpd-webhooks engine, part 5: the admin API's changes (the report is in 57_report.sql).
--
-- Public API: the functions below are what the GraphQL mutations call (PostGraphile
-- turns webhooks.create_webhook into the mutation createWebhook, and so on). They run as the caller (SECURITY INVOKER): grants and row-level security
-- (sql/60_security.sql) decide what a caller may see and change, here as in psql.
-- A row of another company is invisible, so "not yours" and "does not exist" give the
-- same error and reveal nothing.
--
-- Who is calling comes from the request's JWT claims, which the API server turns into
-- transaction settings: jwt.claims.company_id, jwt.claims.role, jwt.claims.sub.
--
-- Errors carry an SQLSTATE, a CONSTRAINT naming the rule and, where one input is at
-- fault, a COLUMN naming it, like the configuration checks of sql/10_config.sql.

-- public: the company of the caller (null outside an API request)
create or replace function webhooks.current_company_id()
returns bigint
language sql
stable
as $$
  select nullif(current_setting('jwt.claims.company_id', true), '')::bigint;
$$;

-- public: who is acting, for disabled_by: the token's subject, else the database role
create or replace function webhooks.current_actor()
returns text
language sql
stable
as $$
  select coalesce(nullif(current_setting('jwt.claims.sub', true), ''), current_user::text);
$$;

-- public: the contact columns a webhook may choose in `fields`
create or replace function webhooks.contact_fields()
returns text[]
language sql
stable
as $$
  select array_agg(attname::text order by attnum)
  from pg_catalog.pg_attribute
  where attrelid = 'crm.contacts'::regclass and attnum > 0 and not attisdropped;
$$;

------------------------------------------------------------------------------------
-- Handing out a signing secret once.
--
-- The secret table is granted to no API role. A trigger running as its owner copies a
-- secret it has just made into a transaction-local setting; the API function that
-- caused it reads it from there and returns it. After the transaction the setting is
-- gone: the only moment a secret is ever readable through the API is the response to
-- the create or rotate that made it.

-- private: the setting that carries a webhook's new secret to the end of the transaction
create or replace function webhooks_private.issued_secret_setting(p_webhook_id bigint)
returns text
language sql
immutable
as $$
  select 'webhooks.issued_secret_' || p_webhook_id;
$$;

-- public: the secret issued to webhook p_webhook_id in this transaction, else null
create or replace function webhooks.issued_secret(p_webhook_id bigint)
returns text
language sql
volatile
as $$
  select nullif(current_setting('webhooks.issued_secret_' || p_webhook_id, true), '');
$$;

-- AFTER INSERT: the secret made by _500_create_secret is handed out.
-- AFTER UPDATE OF secret_rotated_at: rotate. The current secret becomes the previous
-- one, valid 24 more hours (the relay signs with both meanwhile); a new one replaces it.
create or replace function webhooks_private.tg_webhooks__issue_secret()
returns trigger
language plpgsql
as $$
declare
  v_secret text;
begin
  if tg_op = 'INSERT' then
    select secret into v_secret from webhooks_private.webhook_secrets where webhook_id = new.id;
  elsif new.secret_rotated_at is distinct from old.secret_rotated_at then
    update webhooks_private.webhook_secrets
    set previous_secret = secret,
        previous_expires_at = now() + interval '24 hours',
        secret = webhooks_private.new_secret()
    where webhook_id = new.id
    returning secret into v_secret;
    if not found then
      -- a webhook from before secrets existed: it gets its first one
      insert into webhooks_private.webhook_secrets (webhook_id, secret)
      values (new.id, webhooks_private.new_secret())
      returning secret into v_secret;
    end if;
  else
    return null;
  end if;
  perform pg_catalog.set_config(webhooks_private.issued_secret_setting(new.id), v_secret, true);
  return null;
end;
$$;

drop trigger if exists _600_issue_secret on webhooks.webhooks;
create trigger _600_issue_secret
  after insert or update of secret_rotated_at on webhooks.webhooks
  for each row execute function webhooks_private.tg_webhooks__issue_secret();

------------------------------------------------------------------------------------
-- Configuration

-- internal (not in GraphQL): the caller's webhook p_id, locked, or a not-found error.
-- Helpers that API functions call live in schema webhooks, because API roles have no
-- access at all to webhooks_private.
create or replace function webhooks.webhook_for_update(p_id bigint)
returns webhooks.webhooks
language plpgsql
as $$
declare
  v webhooks.webhooks;
begin
  select * into v from webhooks.webhooks where id = p_id for update;
  if not found then
    raise exception using
      errcode = 'no_data_found',
      message = format('webhook %s not found', p_id),
      constraint = 'webhook_not_found',
      column = 'id';
  end if;
  return v;
end;
$$;

-- public: create a webhook for the caller's company; returns it with its signing
-- secret (whsec_…), shown this once
drop function if exists webhooks.create_webhook(text, text, text[], webhooks.action[], bigint, bigint);
create function webhooks.create_webhook(
  name      text,
  url       text,
  fields    text[],
  actions   webhooks.action[],
  status_id bigint default null,
  user_id   bigint default null,
  out webhook webhooks.webhooks,
  out secret text
)
language plpgsql
volatile
as $$
declare
  v_company_id constant bigint := webhooks.current_company_id();
begin
  if v_company_id is null then
    raise exception using
      errcode = 'insufficient_privilege',
      message = 'no company: the request carries no company_id claim',
      constraint = 'company_required';
  end if;
  insert into webhooks.webhooks (company_id, name, url, fields, actions, status_id, user_id)
  values (v_company_id, create_webhook.name, create_webhook.url, create_webhook.fields,
          create_webhook.actions, create_webhook.status_id, create_webhook.user_id)
  returning * into webhook;
  secret := webhooks.issued_secret(webhook.id);
end;
$$;

-- public: change a webhook. A null argument leaves that setting as it is;
-- clear_status_id / clear_user_id remove the filter, clear_max_in_flight /
-- clear_rate_limit go back to the default (webhooks.max_in_flight) and to no pacing.
drop function if exists webhooks.update_webhook(bigint, text, text, text[], webhooks.action[], bigint, bigint, boolean, boolean);
create or replace function webhooks.update_webhook(
  id              bigint,
  name            text default null,
  url             text default null,
  fields          text[] default null,
  actions         webhooks.action[] default null,
  status_id       bigint default null,
  user_id         bigint default null,
  clear_status_id boolean default false,
  clear_user_id   boolean default false,
  max_in_flight   integer default null,
  rate_limit      integer default null,
  clear_max_in_flight boolean default false,
  clear_rate_limit    boolean default false
)
returns webhooks.webhooks
language plpgsql
volatile
as $$
declare
  v webhooks.webhooks := webhooks.webhook_for_update(update_webhook.id);
begin
  update webhooks.webhooks w
  set name      = coalesce(update_webhook.name, w.name),
      url       = coalesce(update_webhook.url, w.url),
      fields    = coalesce(update_webhook.fields, w.fields),
      actions   = coalesce(update_webhook.actions, w.actions),
      status_id = case when clear_status_id then null else coalesce(update_webhook.status_id, w.status_id) end,
      user_id   = case when clear_user_id then null else coalesce(update_webhook.user_id, w.user_id) end,
      max_in_flight = case when clear_max_in_flight then null
                           else coalesce(update_webhook.max_in_flight, w.max_in_flight) end,
      rate_limit    = case when clear_rate_limit then null
                           else coalesce(update_webhook.rate_limit, w.rate_limit) end
  where w.id = v.id
  returning * into v;
  return v;
end;
$$;

-- public: delete a webhook with its history (deliveries and attempts go with it)
create or replace function webhooks.delete_webhook(id bigint)
returns webhooks.webhooks
language plpgsql
volatile
as $$
declare
  v webhooks.webhooks := webhooks.webhook_for_update(delete_webhook.id);
begin
  delete from webhooks.webhooks w where w.id = v.id;
  return v;
end;
$$;

-- public: stop a webhook firing; records who and why. Deliveries already queued are
-- not sent: the relay settles them as failed ("not sent: the webhook is disabled"),
-- so after enable_webhook, replay_failed(id, disabled_at) sends them after all.
create or replace function webhooks.disable_webhook(id bigint, reason text default null)
returns webhooks.webhooks
language plpgsql
volatile
as $$
declare
  v webhooks.webhooks := webhooks.webhook_for_update(disable_webhook.id);
begin
  if not v.enabled then
    return v;
  end if;
  update webhooks.webhooks w
  set enabled = false,
      disabled_at = now(),
      disabled_by = webhooks.current_actor(),
      disabled_reason = nullif(btrim(reason), '')
  where w.id = v.id
  returning * into v;
  return v;
end;
$$;

-- public: fire again from now on (events while it was disabled are not replayed)
create or replace function webhooks.enable_webhook(id bigint)
returns webhooks.webhooks
language plpgsql
volatile
as $$
declare
  v webhooks.webhooks := webhooks.webhook_for_update(enable_webhook.id);
begin
  if v.enabled then
    return v;
  end if;
  update webhooks.webhooks w
  set enabled = true, disabled_at = null, disabled_by = null, disabled_reason = null
  where w.id = v.id
  returning * into v;
  return v;
end;
$$;

-- public: a new signing secret, returned once; the previous one stays valid until
-- previous_secret_expires_at (24 hours)
drop function if exists webhooks.rotate_webhook_secret(bigint);
create function webhooks.rotate_webhook_secret(
  id bigint,
  out webhook webhooks.webhooks,
  out secret text,
  out previous_secret_expires_at timestamptz
)
language plpgsql
volatile
as $$
declare
  v webhooks.webhooks := webhooks.webhook_for_update(rotate_webhook_secret.id);
begin
  update webhooks.webhooks w
  set secret_rotated_at = clock_timestamp()
  where w.id = v.id
  returning * into webhook;
  secret := webhooks.issued_secret(v.id);
  previous_secret_expires_at := now() + interval '24 hours';
end;
$$;

------------------------------------------------------------------------------------
-- Replay

-- internal (not in GraphQL): put one finished delivery back in the outbox as the same message
-- (same message_id, so the receiver can recognise it); the relay makes it attempt
-- attempts + 1. Pending: due now. In flight: refused (a relay holds it).
create or replace function webhooks.requeue_delivery(p_delivery webhooks.deliveries)
returns webhooks.deliveries
language plpgsql
as $$
declare
  v webhooks.deliveries;
begin
  if p_delivery.state = 'in_flight' then
    raise exception using
      errcode = 'object_not_in_prerequisite_state',
      message = format('delivery %s is being sent right now; replay it once it has finished', p_delivery.id),
      constraint = 'delivery_in_flight',
      column = 'id';
  end if;
  update webhooks.deliveries d
  set state = 'pending', next_attempt_at = now(), completed_at = null
  where d.id = p_delivery.id
  returning * into v;
  return v;
end;
$$;

-- internal (not in GraphQL): refuse to queue for a disabled webhook: it would not be sent
create or replace function webhooks.require_enabled(p_webhook webhooks.webhooks)
returns void
language plpgsql
as $$
begin
  if not p_webhook.enabled then
    raise exception using
      errcode = 'object_not_in_prerequisite_state',
      message = format('webhook %s is disabled; enable it before replaying', p_webhook.id),
      constraint = 'webhook_disabled',
      column = 'webhook_id';
  end if;
end;
$$;

-- public: send one delivery again, as a new attempt of the same message
create or replace function webhooks.replay_delivery(id bigint)
returns webhooks.deliveries
language plpgsql
volatile
as $$
declare
  v webhooks.deliveries;
  v_webhook webhooks.webhooks;
begin
  select * into v from webhooks.deliveries d where d.id = replay_delivery.id for update;
  if not found then
    raise exception using
      errcode = 'no_data_found',
      message = format('delivery %s not found', replay_delivery.id),
      constraint = 'delivery_not_found',
      column = 'id';
  end if;
  v_webhook := webhooks.webhook_for_update(v.webhook_id);
  perform webhooks.require_enabled(v_webhook);
  return webhooks.requeue_delivery(v);
end;
$$;

-- public: send again every failed delivery of a webhook created since a time
create or replace function webhooks.replay_failed(webhook_id bigint, since timestamptz)
returns setof webhooks.deliveries
language plpgsql
volatile
as $$
declare
  v_webhook webhooks.webhooks := webhooks.webhook_for_update(replay_failed.webhook_id);
  v webhooks.deliveries;
begin
  perform webhooks.require_enabled(v_webhook);
  for v in
    select * from webhooks.deliveries d
    where d.webhook_id = v_webhook.id and d.created_at >= coalesce(since, '-infinity') and d.state = 'failed'
    order by d.created_at, d.id
    for update
  loop
    return next webhooks.requeue_delivery(v);
  end loop;
end;
$$;
