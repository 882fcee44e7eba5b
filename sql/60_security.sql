-- bpd-webhooks engine, part 6: who may see and do what.
--
-- Roles (cluster-wide, so created once and left alone afterwards):
--   webhook_viewer         reads its company's webhooks, deliveries and attempts
--   webhook_admin          a viewer who may also configure, disable, replay, rotate
--   webhook_authenticator  the API server's login: per request it becomes
--                          webhook_admin or webhook_viewer (SET ROLE, from the JWT)
--                          with jwt.claims.company_id set; of its own it may only
--                          roll up the report's daily counts
-- The company comes from the request (jwt.claims.company_id) and row-level security
-- applies it to every exposed table: a company sees only its own rows, and a row it
-- cannot see it cannot change. webhooks_private (secrets, subscriptions) is granted to
-- no API role at all. The last part of this file is what PostGraphile shows.

do $$
declare
  v_role text;
begin
  foreach v_role in array array['webhook_viewer', 'webhook_admin', 'webhook_authenticator'] loop
    if not exists (select 1 from pg_roles where rolname = v_role) then
      begin
        execute format('create role %I %s', v_role,
                       case when v_role = 'webhook_authenticator' then 'login noinherit' else 'nologin' end);
      exception when duplicate_object or unique_violation then
        null; -- another database of this cluster created it meanwhile
      end;
    end if;
  end loop;
end;
$$;

grant webhook_viewer to webhook_admin;
grant webhook_admin, webhook_viewer to webhook_authenticator;

comment on role webhook_viewer is 'bpd-webhooks API: reads its company''s webhooks and their history';
comment on role webhook_admin is 'bpd-webhooks API: configures its company''s webhooks, replays deliveries';
comment on role webhook_authenticator is 'bpd-webhooks API server login; becomes webhook_admin or webhook_viewer per request';

------------------------------------------------------------------------------------
-- Functions that write private tables run as their owner.
--
-- Every trigger function of the engine lives in webhooks_private and touches tables
-- no API role (and no CRM application role) is granted: secrets, subscriptions, the
-- outbox. Running them as their owner keeps those tables closed, and keeps
-- row-level security on webhooks.* from hiding webhooks from the capture triggers,
-- whichever role writes the CRM. Set here, for all of them at once, after every
-- file before this one has (re)created its functions.
do $$
declare
  v_function regprocedure;
begin
  for v_function in
    select p.oid::regprocedure
    from pg_proc p
    where p.pronamespace = 'webhooks_private'::regnamespace
      and p.prorettype = 'trigger'::regtype
  loop
    execute format('alter function %s security definer set search_path = pg_catalog, pg_temp', v_function);
  end loop;
end;
$$;

------------------------------------------------------------------------------------
-- Grants: least privilege. Reading is the viewer's; the admin adds exactly the
-- writes the API functions make. Sequences need nothing (identity columns).

revoke all on schema webhooks_private from public;
revoke all on all tables in schema webhooks from webhook_viewer, webhook_admin;

grant usage on schema webhooks to webhook_viewer;
grant select on webhooks.webhooks, webhooks.deliveries, webhooks.delivery_attempts,
  webhooks.fire_history, webhooks.delivery_day_counts to webhook_viewer;

-- the authenticator's one right of its own: rolling up the report's daily counts
-- (sql/55_report_counts.sql), which the API server does every few minutes
grant usage on schema webhooks to webhook_authenticator;
revoke all on function webhooks.roll_up_report_counts() from public;
grant execute on function webhooks.roll_up_report_counts() to webhook_authenticator;

grant insert (company_id, name, url, fields, actions, status_id, user_id)
  on webhooks.webhooks to webhook_admin;
grant update (name, url, fields, actions, status_id, user_id,
              enabled, disabled_at, disabled_by, disabled_reason, secret_rotated_at,
              max_in_flight, rate_limit)
  on webhooks.webhooks to webhook_admin;
grant delete on webhooks.webhooks to webhook_admin;
-- the company's statuses and users run as their owner (sql/50_api.sql): callers
-- are the API roles only
revoke all on function webhooks.company_statuses(), webhooks.company_users() from public;
grant execute on function webhooks.company_statuses(), webhooks.company_users() to webhook_viewer;
-- replay: put a finished delivery back in the outbox
grant update (state, next_attempt_at, completed_at) on webhooks.deliveries to webhook_admin;

------------------------------------------------------------------------------------
-- Row-level security: the company of the request, on every exposed table.
-- (select webhooks.current_company_id()) is evaluated once per query, not per row.
-- Owners and superusers (migrations, the relay, DBAs in psql) are not filtered.

alter table webhooks.webhooks enable row level security;
alter table webhooks.deliveries enable row level security;
alter table webhooks.delivery_attempts enable row level security;
alter table webhooks.delivery_day_counts enable row level security;

drop policy if exists company_reads on webhooks.webhooks;
create policy company_reads on webhooks.webhooks
  for select to webhook_viewer
  using (company_id = (select webhooks.current_company_id()));
drop policy if exists company_inserts on webhooks.webhooks;
create policy company_inserts on webhooks.webhooks
  for insert to webhook_admin
  with check (company_id = (select webhooks.current_company_id()));
drop policy if exists company_updates on webhooks.webhooks;
create policy company_updates on webhooks.webhooks
  for update to webhook_admin
  using (company_id = (select webhooks.current_company_id()))
  with check (company_id = (select webhooks.current_company_id()));
drop policy if exists company_deletes on webhooks.webhooks;
create policy company_deletes on webhooks.webhooks
  for delete to webhook_admin
  using (company_id = (select webhooks.current_company_id()));

drop policy if exists company_reads on webhooks.deliveries;
create policy company_reads on webhooks.deliveries
  for select to webhook_viewer
  using (company_id = (select webhooks.current_company_id()));
drop policy if exists company_updates on webhooks.deliveries;
create policy company_updates on webhooks.deliveries
  for update to webhook_admin
  using (company_id = (select webhooks.current_company_id()))
  with check (company_id = (select webhooks.current_company_id()));

drop policy if exists company_reads on webhooks.delivery_day_counts;
create policy company_reads on webhooks.delivery_day_counts
  for select to webhook_viewer
  using (company_id = (select webhooks.current_company_id()));

drop policy if exists company_reads on webhooks.delivery_attempts;
create policy company_reads on webhooks.delivery_attempts
  for select to webhook_viewer
  using (company_id = (select webhooks.current_company_id()));

------------------------------------------------------------------------------------
-- What PostGraphile shows (smart comments: the first lines document the GraphQL
-- type or field, an @behavior line adds or removes what it generates).
-- Writes go through the API functions only, never the generated CRUD mutations.

comment on table webhooks.webhooks is $$
@behavior -insert -update -delete
A webhook: where to POST which contact fields when which actions happen. The signing secret is not here: it is shown once, by createWebhook and rotateWebhookSecret.$$;
comment on column webhooks.webhooks.company_id is 'The company that owns the webhook (always the caller''s).';
comment on column webhooks.webhooks.fields is 'The contact fields sent (besides id); see contactFields.';
comment on column webhooks.webhooks.actions is 'The actions that fire the webhook.';
comment on column webhooks.webhooks.status_id is 'Only for status actions: fire for this status tag only.';
comment on column webhooks.webhooks.user_id is 'Only for contact.user_assigned: fire for this user only.';
comment on column webhooks.webhooks.enabled is 'False: disabled ("Webhook Status: Disabled"); nothing new is queued.';
comment on column webhooks.webhooks.disabled_by is 'Who disabled it (the token subject), or the relay: when the receiver answered 410, or when every attempt had failed for webhooks.auto_disable_after.';
comment on column webhooks.webhooks.secret_rotated_at is 'When the signing secret was last rotated.';
comment on column webhooks.webhooks.max_in_flight is 'At most this many requests to this webhook at once, all relays together (null: the default, 32 unless the database says otherwise).';
comment on column webhooks.webhooks.rate_limit is 'At most this many requests to this webhook per second, all relays together (null: no pacing).';

comment on table webhooks.deliveries is $$
@behavior -insert -update -delete
One message to one webhook (one event), with its delivery state. Retries are attempts of the same message.$$;
comment on column webhooks.deliveries.message_id is 'The webhook-id header: the same on every attempt and replay.';
comment on column webhooks.deliveries.payload is 'The body sent, as it was when the event happened.';
comment on column webhooks.deliveries.state is 'pending, in_flight, succeeded or failed.';
comment on column webhooks.deliveries.locked_by is '@behavior -*';
comment on column webhooks.deliveries.locked_until is '@behavior -*';

comment on table webhooks.delivery_attempts is $$
@behavior -insert -update -delete
One HTTP attempt of a delivery.$$;

comment on type webhooks.webhook_report_row is
  'One line of the webhooks report: a webhook and what it did in the date range.';

comment on function webhooks.create_webhook(text, text, text[], webhooks.action[], bigint, bigint) is
  'Create a webhook for your company. The response carries its signing secret: store it, it is never shown again.';
comment on function webhooks.update_webhook(bigint, text, text, text[], webhooks.action[], bigint, bigint, boolean, boolean, integer, integer, boolean, boolean) is
  'Change a webhook. Arguments left out keep their value; clearStatusId / clearUserId remove a filter; clearMaxInFlight / clearRateLimit go back to the default limit and to no pacing.';
comment on function webhooks.delete_webhook(bigint) is
  'Delete a webhook and its history.';
comment on function webhooks.disable_webhook(bigint, text) is
  'Disable a webhook ("Webhook Status: Disabled"), recording who and why.';
comment on function webhooks.enable_webhook(bigint) is
  'Enable a webhook again.';
comment on function webhooks.rotate_webhook_secret(bigint) is
  'Replace the signing secret; returns the new one once. The previous secret stays valid for 24 hours.';
comment on function webhooks.replay_delivery(bigint) is
  'Send a delivery again, as a new attempt of the same message (same webhook-id).';
comment on function webhooks.replay_failed(bigint, timestamptz) is
  'Send again every failed delivery of a webhook created since the given time.';
comment on function webhooks.webhook_report(timestamptz, timestamptz) is
  'The webhooks report: every webhook of your company with times fired / succeeded / failed for deliveries created in [since, until).';
comment on function webhooks.webhooks_history(webhooks.webhooks, timestamptz, timestamptz, text) is $$
@fieldName history
@behavior +order
The deliveries of this webhook created in [since, until), optionally in one state, newest first. Cursors are keysets on (created_at, id): pages stay put while new deliveries arrive.$$;
comment on function webhooks.current_company_id() is 'The company of the caller.';
comment on function webhooks.current_actor() is 'Who the caller is (the token subject).';
comment on function webhooks.contact_fields() is 'The contact fields a webhook may send.';
comment on function webhooks.company_statuses() is 'The status tags of your company (what statusId may name).';
comment on function webhooks.company_users() is 'The users of your company (what userId may name).';

-- internals
comment on table webhooks.delivery_day_counts is $$
@behavior -*
The report's counts of days long past (sql/55_report_counts.sql): read them through webhooks.webhook_report.$$;
comment on function webhooks.count_deliveries(bigint, bigint, timestamptz, timestamptz) is '@behavior -*';
comment on function webhooks.roll_up_report_counts() is '@behavior -*';
comment on function webhooks.issued_secret(bigint) is '@behavior -*';
comment on function webhooks.webhook_for_update(bigint) is '@behavior -*';
comment on function webhooks.requeue_delivery(webhooks.deliveries) is '@behavior -*';
comment on function webhooks.require_enabled(webhooks.webhooks) is '@behavior -*';
