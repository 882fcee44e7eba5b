-- bpd-webhooks engine: the admin API's changes to webhooks.
--
-- Public API: the functions below are what the GraphQL mutations call (PostGraphile
-- turns webhooks.create_webhook into the mutation createWebhook, and so on). They run
-- as the caller (SECURITY INVOKER): grants and row-level security (60_access.sql)
-- decide what a caller may see and change, here as in psql. A row of another company
-- is invisible, so "not yours" and "does not exist" give the same error and reveal
-- nothing (webhooks_private.webhook_for_update, 10_config.sql).
--
-- The caller is webhooks.current_company_id() and webhooks.current_actor()
-- (05_caller.sql). Rotating a secret is in 15_secrets.sql, replaying deliveries in
-- 30_delivery.sql, the report in 55_report.sql.
--
-- Errors carry an SQLSTATE, a CONSTRAINT naming the rule and, where one input is at
-- fault, a COLUMN naming it, like the configuration checks of 10_config.sql.

-- private: how long a Create's idempotency key is kept (webhooks_private.create_requests,
-- migration 0109): a Create sent again with it within this answers the webhook the
-- first made; after it the key is forgotten (forget_create_requests, by maintenance)
create or replace function webhooks_private.create_request_kept()
returns interval
language sql
immutable
as $$
  select interval '24 hours';
$$;

-- private (create_webhook): the webhook an earlier Create of the caller's company made
-- with idempotency key p_key, and its secret while it has not been rotated since (null
-- after: a rotation's secret is shown to its rotation alone). Neither: none made yet,
-- and p_key is recorded for this Create (a Create with the same key at the same time
-- waits here for this one's end, and then answers its webhook). A key of another form
-- is refused (idempotency_key_invalid), one sent before with other input too
-- (idempotency_key_reused: p_digest, the input's), as is one whose webhook was deleted
-- since (idempotency_key_webhook_deleted: made again, it would be a second). As its
-- owner: the keys and secrets are no API role's to read.
create or replace function webhooks_private.create_request_claim(p_key text, p_digest bytea,
                                                                  out webhook_id bigint, out secret text)
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_company_id constant bigint := webhooks.current_company_id();
  v_request webhooks_private.create_requests;
  v_rotated_at timestamptz;
begin
  if p_key is null or char_length(p_key) not between 1 and 64 or p_key !~ '^[A-Za-z0-9_-]+$' then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('idempotency_key must be 1 to 64 letters, digits, - or _ (a UUID, say), got %s characters of another form',
                       coalesce(char_length(p_key), 0)),
      constraint = 'idempotency_key_invalid',
      column = 'idempotency_key';
  end if;
  delete from webhooks_private.create_requests r
  where r.company_id = v_company_id and r.idempotency_key = p_key
    and r.made_at <= now() - webhooks_private.create_request_kept();
  insert into webhooks_private.create_requests (company_id, idempotency_key, input_digest)
  values (v_company_id, p_key, p_digest)
  on conflict do nothing;
  if found then
    return;
  end if;
  select * into v_request from webhooks_private.create_requests r
  where r.company_id = v_company_id and r.idempotency_key = p_key;
  if v_request.input_digest is distinct from p_digest then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = 'idempotency_key was sent before with other input: a key is for one Create and its retries, the same input each time; a new webhook needs a new key',
      constraint = 'idempotency_key_reused',
      column = 'idempotency_key';
  end if;
  select w.id, w.secret_rotated_at, s.secret into webhook_id, v_rotated_at, secret
  from webhooks.webhooks w
  join webhooks_private.webhook_secrets s on s.webhook_id = w.id
  where w.id = v_request.webhook_id and w.company_id = v_company_id;
  if webhook_id is null then
    raise exception using
      errcode = 'object_not_in_prerequisite_state',
      message = format('the webhook made with this idempotency_key (%s) was deleted since: nothing was made again; a new webhook needs a new key',
                       v_request.webhook_id),
      constraint = 'idempotency_key_webhook_deleted',
      column = 'idempotency_key';
  end if;
  if v_rotated_at is not null then
    secret := null;
  end if;
end;
$$;

-- private (create_webhook): the webhook made under the key create_request_claim recorded
create or replace function webhooks_private.create_request_made(p_key text, p_webhook_id bigint)
returns void
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
  update webhooks_private.create_requests r
  set webhook_id = p_webhook_id
  where r.company_id = webhooks.current_company_id() and r.idempotency_key = p_key;
$$;

-- public (maintenance, tools/maintain.ts; as the owner): forgets the idempotency keys
-- older than create_request_kept(); returns how many
create or replace function webhooks.forget_create_requests()
returns integer
language sql
volatile
as $$
  with forgotten as (
    delete from webhooks_private.create_requests r
    where r.made_at <= now() - webhooks_private.create_request_kept()
    returning 1
  )
  select count(*)::integer from forgotten;
$$;

-- public: create a webhook for the caller's company, with how its deliveries go
-- (max_in_flight, rate_limit, coalesce_window, ordered: left out, the defaults; a
-- coalesce_window of 0 is off), in one transaction: a setting refused makes nothing.
-- Returns it with its signing secret (whsec_…), shown this once. idempotency_key: a
-- key the client makes once per webhook it means to make (a UUID), so that a Create
-- sent again after its answer was lost answers the webhook the first made, with its
-- secret (create_request_claim above), rather than making a second one.
-- (conditions: json, its text as written, read as jsonb by conditions_jsonb, which
-- names what jsonb cannot hold; jsonb until 2026-12-07, read by Postgres before the
-- call, 1e1000000 failed unnamed. GraphQL shows both as JSON)
drop function if exists webhooks.create_webhook(text, text, text[], webhooks.action[], bigint, bigint);
drop function if exists webhooks.create_webhook(text, text, text[], webhooks.action[], bigint, bigint, text[], text[], jsonb);
drop function if exists webhooks.create_webhook(text, text, text[], webhooks.action[], bigint, bigint, text[], text[], json);
select webhooks_private.drop_function_unless(
  'webhooks.create_webhook(text, text, text[], webhooks.action[], bigint, bigint, text[], text[], json, integer, integer, interval, boolean, text)',
  'name text, url text, fields text[], actions webhooks.action[], status_id bigint DEFAULT NULL::bigint, user_id bigint DEFAULT NULL::bigint, ignore_sources text[] DEFAULT NULL::text[], watch_fields text[] DEFAULT NULL::text[], conditions json DEFAULT NULL::json, max_in_flight integer DEFAULT NULL::integer, rate_limit integer DEFAULT NULL::integer, coalesce_window interval DEFAULT NULL::interval, ordered boolean DEFAULT NULL::boolean, idempotency_key text DEFAULT NULL::text, OUT webhook webhooks.webhooks, OUT secret text',
  'record');
create or replace function webhooks.create_webhook(
  name           text,
  url            text,
  fields         text[],
  actions        webhooks.action[],
  status_id      bigint default null,
  user_id        bigint default null,
  ignore_sources text[] default null,
  watch_fields   text[] default null,
  conditions     json default null,
  max_in_flight  integer default null,
  rate_limit     integer default null,
  coalesce_window interval default null,
  ordered        boolean default null,
  idempotency_key text default null,
  out webhook webhooks.webhooks,
  out secret text
)
language plpgsql
volatile
as $$
declare
  v_company_id constant bigint := webhooks.current_company_id();
  v_earlier record;
  v_conditions jsonb;
begin
  if v_company_id is null then
    raise exception using
      errcode = 'insufficient_privilege',
      message = 'no company: the request carries no company_id claim',
      constraint = 'company_required';
  end if;
  -- (read before the key's digest: what jsonb cannot hold is refused by name first)
  v_conditions := webhooks_private.conditions_jsonb(create_webhook.conditions);
  if create_webhook.idempotency_key is not null then
    v_earlier := webhooks_private.create_request_claim(create_webhook.idempotency_key,
      sha256(convert_to(jsonb_build_array(create_webhook.name, create_webhook.url, create_webhook.fields,
        create_webhook.actions, create_webhook.status_id, create_webhook.user_id, create_webhook.ignore_sources,
        create_webhook.watch_fields, v_conditions, create_webhook.max_in_flight,
        create_webhook.rate_limit, create_webhook.coalesce_window, create_webhook.ordered)::text, 'UTF8')));
    if v_earlier.webhook_id is not null then
      select * into webhook from webhooks.webhooks w where w.id = v_earlier.webhook_id;
      secret := v_earlier.secret;
      return;
    end if;
  end if;
  insert into webhooks.webhooks (company_id, name, url, fields, actions, status_id, user_id,
                                 ignore_sources, watch_fields, conditions,
                                 max_in_flight, rate_limit, coalesce_window, ordered)
  values (v_company_id, create_webhook.name, create_webhook.url, create_webhook.fields,
          create_webhook.actions, create_webhook.status_id, create_webhook.user_id,
          coalesce(create_webhook.ignore_sources, '{}'), coalesce(create_webhook.watch_fields, '{}'),
          v_conditions,
          create_webhook.max_in_flight, create_webhook.rate_limit,
          nullif(create_webhook.coalesce_window, interval '0'),
          -- (left out: not ordered, the column's default)
          coalesce(create_webhook.ordered, false))
  returning * into webhook;
  secret := webhooks_private.issued_secret(webhook.id);
  if create_webhook.idempotency_key is not null then
    perform webhooks_private.create_request_made(create_webhook.idempotency_key, webhook.id);
  end if;
exception when foreign_key_violation then
  -- A token may name a company the CRM has no row for yet (a fresh npm start has
  -- none): say so by name, where the foreign key would name only the tables.
  declare
    v_constraint text;
  begin
    get stacked diagnostics v_constraint = constraint_name;
    if v_constraint is distinct from 'webhooks_company_id_fkey' then
      raise;
    end if;
    raise exception using
      errcode = 'foreign_key_violation',
      message = format('company %s is not a company of the CRM (no row of crm.companies): webhooks are made for the CRM''s companies only', v_company_id),
      constraint = 'company_unknown';
  end;
end;
$$;

-- public: change a webhook. A null argument leaves that setting as it is;
-- clear_status_id / clear_user_id / clear_conditions remove the filter, an empty
-- ignore_sources / watch_fields empties it; clear_max_in_flight / clear_rate_limit go
-- back to the default (webhooks.max_in_flight) and to no pacing. A call that
-- leaves every setting as it is changes nothing (10_config.sql, _900_skip_unchanged)
-- and answers the webhook as it is. expected_version: the version the caller read the
-- webhook at (an editor's); if another change came since, nothing is written and the
-- call is refused by name (webhook_changed_since), so that two admins saving the same
-- webhook do not overwrite each other without a word. Without it the last write wins.
drop function if exists webhooks.update_webhook(bigint, text, text, text[], webhooks.action[], bigint, bigint, boolean, boolean);
drop function if exists webhooks.update_webhook(bigint, text, text, text[], webhooks.action[], bigint, bigint, boolean, boolean, text[], text[], jsonb, boolean, integer, integer, boolean, boolean);
drop function if exists webhooks.update_webhook(bigint, text, text, text[], webhooks.action[], bigint, bigint, boolean, boolean, integer, integer, boolean, boolean);
drop function if exists webhooks.update_webhook(bigint, text, text, text[], webhooks.action[], bigint, bigint, boolean, boolean, text[], text[], jsonb, boolean);
drop function if exists webhooks.update_webhook(bigint, text, text, text[], webhooks.action[], bigint, bigint, boolean, boolean, text[], text[], jsonb, boolean, integer, integer, boolean, boolean, integer);
create or replace function webhooks.update_webhook(
  id               bigint,
  name             text default null,
  url              text default null,
  fields           text[] default null,
  actions          webhooks.action[] default null,
  status_id        bigint default null,
  user_id          bigint default null,
  clear_status_id  boolean default false,
  clear_user_id    boolean default false,
  ignore_sources   text[] default null,
  watch_fields     text[] default null,
  conditions       json default null,
  clear_conditions boolean default false,
  max_in_flight    integer default null,
  rate_limit       integer default null,
  clear_max_in_flight boolean default false,
  clear_rate_limit    boolean default false,
  expected_version    integer default null
)
returns webhooks.webhooks
language plpgsql
volatile
as $$
declare
  v webhooks.webhooks := webhooks_private.webhook_for_update(update_webhook.id);
  v_updated webhooks.webhooks;
  v_conditions constant jsonb := webhooks_private.conditions_jsonb(update_webhook.conditions);
begin
  -- (read under the row's lock, webhook_for_update: no change comes between it and the update)
  if expected_version is not null and v.version is distinct from expected_version then
    raise exception using
      errcode = 'object_not_in_prerequisite_state',
      message = format('webhook %s was changed since it was read (version %s, read at %s): nothing was saved; read it again and make the change over it',
                       v.id, v.version, expected_version),
      constraint = 'webhook_changed_since',
      column = 'version';
  end if;
  update webhooks.webhooks w
  set name      = coalesce(update_webhook.name, w.name),
      url       = coalesce(update_webhook.url, w.url),
      fields    = coalesce(update_webhook.fields, w.fields),
      actions   = coalesce(update_webhook.actions, w.actions),
      status_id = case when clear_status_id then null else coalesce(update_webhook.status_id, w.status_id) end,
      user_id   = case when clear_user_id then null else coalesce(update_webhook.user_id, w.user_id) end,
      -- (a filter the CRM deleted, cleared on purpose: the user filter for a deleted
      -- user, the status filter for a deleted status: deleted_filter_column,
      -- 10_config.sql)
      deleted_filter_target = case webhooks_private.deleted_filter_column(w.deleted_filter_target)
                                when 'user_id' then case when clear_user_id then null else w.deleted_filter_target end
                                when 'status_id' then case when clear_status_id then null else w.deleted_filter_target end
                                else w.deleted_filter_target
                              end,
      ignore_sources = coalesce(update_webhook.ignore_sources, w.ignore_sources),
      watch_fields   = coalesce(update_webhook.watch_fields, w.watch_fields),
      conditions     = case when clear_conditions then null else coalesce(v_conditions, w.conditions) end,
      max_in_flight = case when clear_max_in_flight then null
                           else coalesce(update_webhook.max_in_flight, w.max_in_flight) end,
      rate_limit    = case when clear_rate_limit then null
                           else coalesce(update_webhook.rate_limit, w.rate_limit) end
  where w.id = v.id
  returning * into v_updated;
  if not found then
    return v;   -- nothing changed: not written
  end if;
  return v_updated;
end;
$$;

-- public: delete a webhook with its history (deliveries and attempts go with it)
create or replace function webhooks.delete_webhook(id bigint)
returns webhooks.webhooks
language plpgsql
volatile
as $$
declare
  v webhooks.webhooks;
begin
  -- (locked for the delete at once, FOR UPDATE: taken FOR NO KEY UPDATE first, as
  -- webhook_for_update does, the delete's stronger lock waited for a writer with a
  -- key to the webhook that came between)
  perform 1 from webhooks.webhooks w where w.id = delete_webhook.id for update;
  v := webhooks_private.webhook_for_update(delete_webhook.id);
  delete from webhooks.webhooks w where w.id = v.id;
  return v;
end;
$$;

-- public: stop a webhook firing; records who and why. Deliveries already queued are
-- not sent: the relay settles them as failed ("not sent: the webhook is disabled"),
-- so after enable_webhook, replay_failed(id, since) sends them after all, since the
-- time the first of them fired (not disabled_at: they fired before it). A
-- backfill's snapshots are held instead, and go once it is enabled (30_delivery.sql,
-- snapshot_held()).
create or replace function webhooks.disable_webhook(id bigint, reason text default null)
returns webhooks.webhooks
language plpgsql
volatile
as $$
declare
  v webhooks.webhooks := webhooks_private.webhook_for_update(disable_webhook.id);
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
  v webhooks.webhooks := webhooks_private.webhook_for_update(enable_webhook.id);
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

-- public: how the webhook's deliveries go (docs/backfill.md): coalesce_window merges a
-- burst of updates or saves of one contact into one message (at most 1 hour; null or
-- 0: off, a window of 0 being no window); ordered sends a contact's deliveries one at
-- a time, in order (null: as it is, as update_webhook's null arguments do). Either
-- left out leaves its setting as it is: until 2026-12-07 a call that left out the
-- window (GraphQL setWebhookDelivery with ordered alone) turned coalescing off, and
-- one that left out ordered (or gave null) turned ordering off; each lost what a
-- receiver relied on. The window's default says "left out": a null given stays off,
-- as it always was (PostGraphile passes an argument left out as nothing, so that the
-- default applies, and a null given as null). It is negative, which no window given
-- can be: that is refused (webhooks_coalesce_window_range). The same settings again
-- change nothing, as in update_webhook.
create or replace function webhooks.set_webhook_delivery(id bigint,
                                                         coalesce_window interval default interval '-1 microsecond',
                                                         ordered boolean default null)
returns webhooks.webhooks
language plpgsql
volatile
as $$
declare
  v webhooks.webhooks := webhooks_private.webhook_for_update(set_webhook_delivery.id);
  v_updated webhooks.webhooks;
  v_left_out constant boolean := set_webhook_delivery.coalesce_window is not distinct from interval '-1 microsecond';
begin
  update webhooks.webhooks w
  set coalesce_window = case when v_left_out then w.coalesce_window
                             else nullif(set_webhook_delivery.coalesce_window, interval '0') end,
      ordered = coalesce(set_webhook_delivery.ordered, w.ordered)
  where w.id = v.id
  returning * into v_updated;
  if not found then
    return v;   -- nothing changed: not written
  end if;
  return v_updated;
end;
$$;
