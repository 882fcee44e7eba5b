-- bpd-webhooks engine: who may see and do what. Every role, every grant,
-- row-level security, and which functions run as their owner: all in this file.
--
-- Roles (cluster-wide, so created once and left alone afterwards):
--   webhook_viewer         reads its company's webhooks, deliveries and attempts
--   webhook_admin          a viewer who may also configure, disable, replay, rotate
--   webhook_authenticator  the API server's login: per request it becomes
--                          webhook_admin or webhook_viewer (SET ROLE, from the JWT)
--                          with jwt.claims.company_id set; of its own it may only
--                          roll up the report's daily counts
--   bpd_webhooks_relay     the relay: claim, settle, release, rescue, idle
--                          announcements (schema webhooks_relay) and the health
--                          questions (webhooks_ops), nothing else
--   bpd_webhooks_reader    DBAs and support reading the fire history in SQL: every
--                          company's, read only, no secret
-- The company comes from the request (jwt.claims.company_id) and row-level security
-- applies it to every exposed table: a company sees only its own rows, and a row it
-- cannot see it cannot change. No table of webhooks_private holding secrets or
-- subscriptions is granted to any role (what is granted of it, below, the views read);
-- its functions are executable only where granted below.

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

-- The relay's role. bpd_webhooks_relay may do exactly what the relay does, through
-- the functions of schema webhooks_relay (claim, settle, release and rescue in
-- 30_delivery.sql, the idle announcements in 20_wakeup.sql), and nothing else: no
-- grant on any table, so it can neither read contacts nor change a webhook's
-- configuration. It is NOLOGIN: the relay connects as whatever user DATABASE_URL
-- names and switches to this role for its work (the role setting at connection
-- start), so that user must be a member of it:
--   GRANT bpd_webhooks_relay TO my_relay_login;
-- Its LISTEN connection needs no grant at all. Creating it is idempotent and safe
-- when two migrations of one cluster race.
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'bpd_webhooks_relay') then
    create role bpd_webhooks_relay nologin;
  end if;
exception
  when duplicate_object or unique_violation then null;
end;
$$;

-- The readers' role. bpd_webhooks_reader reads what a DBA reads of the fire history
-- (docs/sql.md, "Reading fire history"): the views and tables beneath them, the
-- questions asked of them, the day counts, the audit trail and the settings, of
-- every company, and nothing else: no signing secret, no write, no replay, backfill
-- or maintenance. It is NOLOGIN, for analysts and support to be made members of
-- without being handed the owner:
--   GRANT bpd_webhooks_reader TO some_login;
-- Its grants are below (after the health endpoints'), and its row-level security
-- with the API roles': a policy of its own on each table, which reads every row.
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'bpd_webhooks_reader') then
    create role bpd_webhooks_reader nologin;
  end if;
exception
  when duplicate_object or unique_violation then null;
end;
$$;

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
  webhooks.fire_history, webhooks.delivery_day_counts, webhooks.delivery_hour_counts, webhooks.backfills to webhook_viewer;
-- webhooks.deliveries is a view that runs as its caller: reading it reads these
-- (under their row-level security below)
grant select on webhooks.delivery_history, webhooks.delivery_queue, webhooks.delivery_results to webhook_viewer;
-- the totals per webhook and day, kept or dropped (29_retention.sql)
grant select on webhooks.daily_counts to webhook_viewer;
-- which counted days are to be counted again: the report counts them from the rows
-- (webhooks_private.count_deliveries_of, 50_report_counts.sql)
grant select on webhooks_private.delivery_days_to_count to webhook_viewer;
-- the URLs an attempt names (webhooks.delivery_attempts_url, 55_report.sql)
grant select on webhooks_private.webhook_urls to webhook_viewer;
-- the outbox's upkeep (22_outbox.sql, 29_retention.sql) is its owner's: migrate and
-- tools/maintain.ts; where the kept history starts is for anyone to read
revoke all on function webhooks.create_partitions(integer), webhooks.expired_days(),
  webhooks.keep_day_on_its_way(text), webhooks.detached_history_days(), webhooks.detached_day_partitions(), webhooks.held_past_retention(), webhooks.fail_held_snapshots_past_retention(), webhooks.forget_day(date), webhooks.outbox_tails(), webhooks.bound_tail(text, date),
  webhooks.validate_tail(text), webhooks.tail_to_span(text), webhooks.readmit_detached_tails(),
  webhooks.purge_deleted_webhooks(integer), webhooks.recheck_deleted_webhooks(),
  webhooks.forget_audit_log(integer), webhooks.forget_create_requests() from public;
-- where the backlog is (58_operations.sql): every company's webhooks, for operators
revoke all on function webhooks.backlog_by_webhook() from public;
-- the DBAs' questions of the fire history (40_history.sql): for DBAs and support, in psql
revoke all on function webhooks.contact_fire_history(bigint, timestamptz, timestamptz),
  webhooks.find_message(text, timestamptz) from public;
grant execute on function webhooks.kept_since() to webhook_viewer;

grant insert (company_id, name, url, fields, actions, status_id, user_id, ignore_sources, watch_fields, conditions,
              max_in_flight, rate_limit, coalesce_window, ordered)
  on webhooks.webhooks to webhook_admin;
-- a Create's idempotency key (45_admin.sql): recorded and looked up as their owner
grant execute on function webhooks_private.create_request_claim(text, bytea),
  webhooks_private.create_request_made(text, bigint), webhooks_private.create_request_kept() to webhook_admin;
grant update (name, url, fields, actions, status_id, user_id, ignore_sources, watch_fields, conditions,
              enabled, disabled_at, disabled_by, disabled_reason, secret_rotated_at,
              max_in_flight, rate_limit, deleted_filter_target)
  on webhooks.webhooks to webhook_admin;
grant delete on webhooks.webhooks to webhook_admin;
-- the audit trail (47_audit.sql) is read, never written, by the API roles: its rows
-- come from triggers and from the test send, which run as their owner
grant select on webhooks.audit_log to webhook_viewer;
revoke all on function webhooks.send_test_webhook(bigint) from public;
grant execute on function webhooks.send_test_webhook(bigint) to webhook_admin;
-- the company's statuses and users run as their owner (55_report.sql): callers
-- are the API roles only; the whole lists run as the caller and walk functions that
-- run as their owner
revoke all on function webhooks_private.company_user_after(text, bigint),
  webhooks_private.company_status_after(text, bigint) from public;
grant execute on function webhooks_private.company_user_after(text, bigint),
  webhooks_private.company_status_after(text, bigint),
  webhooks_private.crm_rows_shown_whole(text[]) to webhook_viewer;
revoke all on function webhooks.company_statuses(), webhooks.company_users(),
  webhooks.company_statuses_matching(text), webhooks.company_users_matching(text),
  webhooks.company_statuses_named(bigint[]), webhooks.company_users_named(bigint[]) from public;
grant execute on function webhooks.company_statuses(), webhooks.company_users(),
  webhooks.company_statuses_matching(text), webhooks.company_users_matching(text),
  webhooks.company_statuses_named(bigint[]), webhooks.company_users_named(bigint[]) to webhook_viewer;
-- replay: put a finished delivery back in the outbox (through the view, whose
-- INSTEAD OF trigger writes history and queue as their owner; the rows it can reach
-- are those the caller reads, under row-level security)
grant update (state, next_attempt_at, completed_at) on webhooks.deliveries to webhook_admin;
-- backfill: start one, cancel it (its snapshots not sent yet fail with the reason);
-- how many contacts it would examine, asked before (runs as its owner, 35_backfill.sql)
revoke all on function webhooks.backfill_contacts_count() from public;
grant execute on function webhooks.backfill_contacts_count() to webhook_admin;
grant insert (webhook_id, company_id, created_by) on webhooks.backfills to webhook_admin;
grant update (state, finished_at) on webhooks.backfills to webhook_admin;
grant update (last_error) on webhooks.deliveries to webhook_admin;
-- how the webhook's deliveries go (45_admin.sql: set_webhook_delivery)
grant update (coalesce_window, ordered) on webhooks.webhooks to webhook_admin;

-- private: the engine's owner, as which capture reads the CRM's tables (the capture
-- functions' owner: the role that first migrated, or the one a DBA gave them)
create or replace function webhooks_private.capture_owner()
returns oid
language sql
stable
as $$
  select p.proowner from pg_catalog.pg_proc p
  where p.oid = 'webhooks_private.tg_contacts__updated()'::regprocedure;
$$;

-- private: refused, naming the first of the CRM's tables whose row-level security may
-- hide rows from the engine's owner, while there is one: by migrate and by the event
-- trigger after the CRM's DDL (at the end of this file, with why)
create or replace function webhooks_private.refuse_crm_rows_hidden_from_owner()
returns void
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_owner constant oid := webhooks_private.capture_owner();
  v_hidden record;
begin
  for v_hidden in
    select t.named, pg_catalog.pg_get_userbyid(v_owner) as rolname
    from webhooks_private.crm_tables_hiding_rows_from(v_owner) t(named)
  loop
    raise exception using
      errcode = 'feature_not_supported',
      message = format('%s has row-level security that applies to %s, the engine''s owner: capture reads every company''s rows of the CRM''s tables',
                       v_hidden.named, v_hidden.rolname),
      hint = format('Give it a policy that reads every row (create policy ... on %s for select to %I using (true)), before row-level security is turned on, or BYPASSRLS.',
                    v_hidden.named, v_hidden.rolname);
  end loop;
end;
$$;

-- private (the event trigger's, at the end of this file): the CRM's DDL after the last migrate that would
-- have its policies hide rows from the engine's owner (ENABLE or FORCE ROW LEVEL
-- SECURITY, a policy made, changed or dropped, the table given another owner) is
-- refused by the check above and undone. Capture reads the CRM's users, statuses,
-- assignments and contacts as that owner, and a row hidden from it left a payload's
-- status or user out, or a company concerned unannounced, without an error (until
-- 2026-12-07; test/sql/crm-row-security.test.ts). Paid by that DDL alone, a look at the
-- catalog's rows of six tables; capture pays nothing. An ALTER TABLE or a policy of
-- another table is let by (a DROP POLICY is not told apart: it names no table here).
-- Not seen by it: the owner's role changed (ALTER ROLE … NOBYPASSRLS, a membership
-- revoked), which no event trigger hears; the next migrate refuses that.
create or replace function webhooks_private.tg_crm_row_security__hiding()
returns event_trigger
language plpgsql
-- (as its owner: the CRM's role that issued the DDL may not use the engine's schemas)
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if tg_tag <> 'DROP POLICY'
     and not exists (select 1
                     from pg_catalog.pg_event_trigger_ddl_commands() c
                     left join pg_catalog.pg_policy p on c.classid = 'pg_catalog.pg_policy'::regclass and p.oid = c.objid
                     where coalesce(p.polrelid, c.objid) in (select pg_catalog.to_regclass(n)
                                                             from unnest(webhooks_private.crm_table_names()) n)) then
    return;
  end if;
  perform webhooks_private.refuse_crm_rows_hidden_from_owner();
end;
$$;

-- The helpers the API functions call live in webhooks_private, which PostGraphile
-- does not show. A function there may be called by a role only if granted here: the
-- API roles get exactly the helpers of the functions they call, which run as the
-- caller, so grants and row-level security still decide what they reach.
-- (Trigger functions need no grant: Postgres checks none when a trigger fires.)
revoke execute on all functions in schema webhooks_private from public;
-- (webhooks_private.name_from_word too, migration 0060's: the CRM's writers needed it
-- while it was the expression of indexes of crm.users and crm.statuses, which
-- migration 0069 dropped)
grant usage on schema webhooks_private to webhook_viewer, bpd_webhooks_relay;
-- the report's counting (webhooks.webhook_report)
grant execute on function webhooks_private.count_deliveries(bigint, bigint, timestamptz, timestamptz),
  webhooks_private.count_deliveries_of(bigint[], bigint[], timestamptz, timestamptz),
  webhooks_private.count_rows(bigint, bigint, timestamptz, timestamptz),
  -- (and the test sends historyCount and historyCounts add to it)
  webhooks_private.count_test_sends(bigint, bigint, timestamptz, timestamptz),
  webhooks_private.history_end(timestamptz),
  webhooks_private.all_counted_before(),
  webhooks_private.utc_day(timestamptz),
  webhooks_private.utc_day_start(date),
  webhooks_private.failing_webhooks(),
  -- (and its rows, a page at a time, with the names of the status and user each filters on)
  webhooks_private.next_listed_webhook(timestamptz, bigint),
  webhooks_private.company_status_name(bigint),
  webhooks_private.company_user_name(bigint),
  -- (and a delivery's contactName, cut as the CRM's names are)
  webhooks_private.crm_text_shown(text),
  -- (and the bounds of what an admin types, webhooks.input_bounds)
  webhooks_private.webhook_name_max(),
  webhooks_private.webhook_url_max(),
  webhooks_private.search_max_length(),
  -- (and the history's and replay's: the times that may be asked)
  webhooks_private.requested_time(timestamptz, text),
  webhooks_private.requested_times(timestamptz, timestamptz),
  -- (and each webhook's latest backfill, webhooks.latest_backfills)
  webhooks_private.snapshot_backfill(bigint, timestamptz)
  to webhook_viewer;
-- a webhook's history (webhooks.webhooks_history and its oldest first)
grant execute on function webhooks_private.oldest_queued_at(bigint),
  webhooks_private.history_after(text, text, timestamptz, bigint),
  webhooks_private.known_delivery_state(text),
  -- (and a delivery's attempts, webhooks.delivery_attempts_latest_first, each with
  -- whether it succeeded, webhooks.delivery_attempts_succeeded)
  webhooks_private.refuse_half_row(text, text, text, boolean, boolean),
  webhooks_private.delivered_status(integer),
  webhooks_private.history_rows(webhooks.webhooks, timestamptz, timestamptz, text, timestamptz, bigint, boolean) to webhook_viewer;
-- (webhooks.deliveries.held_back asks the claim's question, 22_outbox.sql)
grant execute on function webhooks_private.held_back(bigint, bigint, bigint) to webhook_viewer;
-- what webhooks.deliveries, webhooks.daily_counts and the attempts' row-level
-- security leave out (22_outbox.sql)
grant execute on function webhooks_private.deleted_webhooks() to webhook_viewer, bpd_webhooks_relay;
-- the admin functions (45_admin.sql, 15_secrets.sql, replay in 30_delivery.sql and
-- 47_audit.sql,
-- cancel_backfill in 35_backfill.sql)
grant execute on function
  webhooks_private.raise_not_found(text, bigint, text),
  webhooks_private.webhook_for_update(bigint, text),
  webhooks_private.issued_secret(bigint),
  webhooks_private.issued_secret_setting(bigint),
  webhooks_private.secret_grace(),
  webhooks_private.require_enabled(webhooks.webhooks, text, text),
  webhooks_private.requeue_deliveries(bigint[], timestamptz[]),
  webhooks_private.requeue_failed(bigint, bigint, bigint[], timestamptz[]),
  webhooks_private.payload_omitted(jsonb),
  webhooks_private.refuse_omitted_payload(bigint, jsonb, text),
  webhooks_private.replay_max_deliveries(),
  webhooks_private.first_kept_day(),
  webhooks_private.fail_unsent_snapshots(webhooks.backfills, bigint[]),
  webhooks_private.deleted_filter_column(text),
  -- (create_webhook's and update_webhook's conditions read as jsonb, what it cannot hold refused by name: 15_filters.sql)
  webhooks_private.conditions_jsonb(json),
  webhooks_private.config_error(text, text, text)
  to webhook_admin;

-- the authenticator's one right of its own: rolling up the report's daily counts
-- (50_report_counts.sql), which the API server does every few minutes. It runs as
-- its owner.
grant usage on schema webhooks to webhook_authenticator;
revoke all on function webhooks.roll_up_report_counts_after(bigint, integer, date, timestamptz) from public;
revoke all on procedure webhooks.roll_up_report_counts(integer, integer, integer, timestamptz) from public;
grant execute on function webhooks.roll_up_report_counts_after(bigint, integer, date, timestamptz) to webhook_authenticator;
grant execute on procedure webhooks.roll_up_report_counts(integer, integer, integer, timestamptz) to webhook_authenticator;

-- The relay: its entry points, and the lock keys its idle announcements take
-- (20_wakeup.sql; the claim, settle, release and rescue functions run as their owner).
-- Functions are executable by PUBLIC unless revoked: the relay's are for it alone.
grant usage on schema webhooks_relay to bpd_webhooks_relay;
revoke all on all functions in schema webhooks_relay from public;
grant execute on all functions in schema webhooks_relay to bpd_webhooks_relay;
grant execute on function
  webhooks_private.lock_space(),
  webhooks_private.capturing_lock(),
  webhooks_private.relay_idle_lock(),
  webhooks_private.relay_id_lock(text)
  to bpd_webhooks_relay;

-- The health endpoints of the API and the relay (58_operations.sql): counts only,
-- answered by functions that run as their owner.
revoke all on schema webhooks_ops from public;
revoke all on all functions in schema webhooks_ops from public;
grant usage on schema webhooks_ops to webhook_authenticator, bpd_webhooks_relay;
grant execute on all functions in schema webhooks_ops to webhook_authenticator, bpd_webhooks_relay;
-- (a DBA's, which takes the CRM's users and statuses against writes while it runs:
-- its owner's alone. "All functions" above leaves procedures out, and a procedure
-- is executable by PUBLIC until revoked from it)
revoke all on procedure webhooks_ops.refill_crm_name_words() from public, webhook_authenticator, bpd_webhooks_relay;

-- The readers: SELECT on what the DBAs' questions read, EXECUTE on the questions and
-- on the helpers they call as their caller, and nothing that writes. Each named, none
-- by "all ... in schema": a function added to the engine is not the readers' until
-- it is listed here (test/sql/reader-role.test.ts holds the list).
grant usage on schema webhooks, webhooks_private, webhooks_ops to bpd_webhooks_reader;
grant select on webhooks.webhooks, webhooks.fire_history, webhooks.deliveries, webhooks.delivery_attempts,
  webhooks.daily_counts, webhooks.audit_log, webhooks.settings,
  -- (read beneath the views, which run as their caller: 22_outbox.sql, 50_report_counts.sql)
  webhooks.delivery_history, webhooks.delivery_queue, webhooks.delivery_results,
  webhooks.delivery_day_counts, webhooks.delivery_hour_counts,
  -- (the counted days to count again, read by daily_counts: webhook, company and day)
  webhooks_private.delivery_days_to_count,
  -- (the URLs the attempts name: webhooks.delivery_attempts_url)
  webhooks_private.webhook_urls
  to bpd_webhooks_reader;
-- (the circuit breaker's state of each webhook, "which webhooks of company 7 are failing
-- right now", docs/sql.md: not when each lane was last served or paced)
grant select (webhook_id, company_id, failures, failing_since, open_until) on webhooks_private.lanes
  to bpd_webhooks_reader;
grant execute on function
  -- the questions (40_history.sql, 22_outbox.sql, 30_delivery.sql, 55_report.sql, 58_operations.sql)
  webhooks.contact_fire_history(bigint, timestamptz, timestamptz),
  webhooks.find_message(text, timestamptz),
  webhooks.kept_since(),
  webhooks.backlog_by_webhook(),
  webhooks.retry_schedule(integer),
  webhooks.webhooks_history(webhooks.webhooks, timestamptz, timestamptz, text, timestamptz, bigint),
  webhooks.webhooks_history_oldest_first(webhooks.webhooks, timestamptz, timestamptz, text, timestamptz, bigint),
  webhooks.webhooks_history_count(webhooks.webhooks, timestamptz, timestamptz, text),
  webhooks.webhooks_history_counts(webhooks.webhooks, timestamptz, timestamptz),
  webhooks_ops.upkeep(),
  -- (an attempt's URL, 55_report.sql)
  webhooks.delivery_attempts_url(webhooks.delivery_attempts),
  -- what the views call (webhooks.deliveries, webhooks.daily_counts, webhooks.settings)
  webhooks_private.deleted_webhooks(),
  webhooks_private.held_back(bigint, bigint, bigint),
  webhooks_private.utc_day(timestamptz),
  webhooks_private.utc_day_start(date),
  webhooks_private.all_counted_before(),
  webhooks_private.setting_rules(),
  webhooks_private.setting_rule(text),
  webhooks_private.setting_check(text, text),
  webhooks_private.setting_canonical(text, text),
  webhooks_private.setting_magnitude(text, text),
  webhooks_private.payload_bytes_floor(),
  webhooks_private.database_setting(text),
  -- what the questions call as their caller
  webhooks_private.fire_history_between(timestamptz, timestamptz, bigint, text),
  webhooks_private.requested_time(timestamptz, text),
  webhooks_private.requested_times(timestamptz, timestamptz),
  webhooks_private.max_coalesce_window(),
  webhooks_private.outbox_partitions(),
  webhooks_private.outbox_partitioned(),
  webhooks_private.partition_days(text, text),
  webhooks_private.bounds_as_named(pg_catalog.pg_class, date, date),
  webhooks_private.history_rows(webhooks.webhooks, timestamptz, timestamptz, text, timestamptz, bigint, boolean),
  webhooks_private.history_after(text, text, timestamptz, bigint),
  webhooks_private.refuse_half_row(text, text, text, boolean, boolean),
  webhooks_private.known_delivery_state(text),
  webhooks_private.oldest_queued_at(bigint),
  webhooks_private.history_end(timestamptz),
  webhooks_private.count_deliveries(bigint, bigint, timestamptz, timestamptz),
  webhooks_private.count_deliveries_of(bigint[], bigint[], timestamptz, timestamptz),
  webhooks_private.count_test_sends(bigint, bigint, timestamptz, timestamptz)
  to bpd_webhooks_reader;

-- Nothing of the engine's is executable by PUBLIC. Postgres grants EXECUTE to PUBLIC
-- on every function and procedure it creates: harmless while only the roles above may
-- use these schemas, but one `grant usage on schema … to public` from handing them all
-- out. Revoked here, after every file has (re)created its functions, in the same
-- transaction: none is ever committed executable by PUBLIC, a new one or one dropped
-- and created again included. Those of schema webhooks that PUBLIC could execute (what
-- PostGraphile shows, its queries, mutations and computed columns, and what row-level
-- security calls) go to webhook_viewer, and webhook_admin through it, which had them
-- through PUBLIC; those revoked above keep the grants named there. CRM writers need
-- none: Postgres checks EXECUTE on a trigger function when the trigger is created, not
-- when it fires (test/sql/function-privileges.test.ts). (Default privileges cannot do
-- this: a schema's only add to the global default, which grants PUBLIC EXECUTE, and a
-- global one would change every function the migrating role makes, the CRM's too.)
do $$
declare
  v_routine record;
begin
  for v_routine in
    select p.oid::regprocedure as signature, n.nspname = 'webhooks' as shown
    from pg_catalog.pg_proc p
    join pg_catalog.pg_namespace n on n.oid = p.pronamespace
    where n.nspname = any (webhooks_private.engine_schema_names())
      and exists (select from pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
                  where a.grantee = 0 and a.privilege_type = 'EXECUTE')
  loop
    execute format('revoke execute on routine %s from public', v_routine.signature);
    if v_routine.shown then
      execute format('grant execute on routine %s to webhook_viewer', v_routine.signature);
    end if;
  end loop;
end;
$$;

-- The owners of the crm tables may make partitions of them: Postgres copies the
-- engine's row triggers to each, as their maker (sql/25_capture.sql, where it says why).
select webhooks_private.grant_row_trigger_functions_to_crm_owners();

-- The database's owner sets the engine's settings for the database (alter database …
-- set webhooks.retention, docs/operations.md). Every webhooks.* is a parameter no
-- module defines, which Postgres lets a role that is no superuser set at a database
-- or role only with SET on it: that owner was refused, "permission denied to set
-- parameter" (until 2026-12-08, test/sql/database-owner-settings.test.ts). A superuser
-- alone grants it (on the whole cluster: parameters are not a database's); an owner
-- given the database after this gets it from the next such migrate.
do $parameters$
declare
  v_owner oid := (select d.datdba from pg_catalog.pg_database d where d.datname = pg_catalog.current_database());
  v_name text;
begin
  if not (select r.rolsuper from pg_catalog.pg_roles r where r.rolname = current_user) then
    return;
  end if;
  for v_name in
    select r.name from webhooks_private.setting_rules() r
    where not pg_catalog.has_parameter_privilege(v_owner, r.name, 'SET')
  loop
    execute format('grant set on parameter %s to %s', v_name, v_owner::regrole);
  end loop;
end;
$parameters$;

------------------------------------------------------------------------------------
-- Row-level security: the company of the request, on every exposed table.
-- (select webhooks.current_company_id()) is evaluated once per query, not per row.
-- Owners and superusers (migrations, the relay, DBAs in psql) are not filtered.

alter table webhooks.webhooks enable row level security;
alter table webhooks.delivery_history enable row level security;
alter table webhooks.delivery_queue enable row level security;
alter table webhooks.delivery_results enable row level security;
alter table webhooks.delivery_attempts enable row level security;
alter table webhooks.delivery_day_counts enable row level security;
alter table webhooks.delivery_hour_counts enable row level security;
alter table webhooks_private.delivery_days_to_count enable row level security;
alter table webhooks_private.webhook_urls enable row level security;
alter table webhooks.backfills enable row level security;
alter table webhooks.audit_log enable row level security;

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

drop policy if exists company_reads on webhooks.delivery_history;
create policy company_reads on webhooks.delivery_history
  for select to webhook_viewer
  using (company_id = (select webhooks.current_company_id()));
drop policy if exists company_reads on webhooks.delivery_results;
create policy company_reads on webhooks.delivery_results
  for select to webhook_viewer
  using (company_id = (select webhooks.current_company_id()));
drop policy if exists company_reads on webhooks.delivery_queue;
create policy company_reads on webhooks.delivery_queue
  for select to webhook_viewer
  using (company_id = (select webhooks.current_company_id()));

drop policy if exists company_reads on webhooks.delivery_day_counts;
create policy company_reads on webhooks.delivery_day_counts
  for select to webhook_viewer
  using (company_id = (select webhooks.current_company_id()));

drop policy if exists company_reads on webhooks_private.delivery_days_to_count;
create policy company_reads on webhooks_private.delivery_days_to_count
  for select to webhook_viewer
  using (company_id = (select webhooks.current_company_id()));

drop policy if exists company_reads on webhooks_private.webhook_urls;
create policy company_reads on webhooks_private.webhook_urls
  for select to webhook_viewer
  using (company_id = (select webhooks.current_company_id()));

drop policy if exists company_reads on webhooks.delivery_hour_counts;
create policy company_reads on webhooks.delivery_hour_counts
  for select to webhook_viewer
  using (company_id = (select webhooks.current_company_id()));

drop policy if exists company_reads on webhooks.delivery_attempts;
create policy company_reads on webhooks.delivery_attempts
  for select to webhook_viewer
  -- (a deleted webhook's attempts are removed in batches after it: 22_outbox.sql)
  using (company_id = (select webhooks.current_company_id())
         and webhook_id <> all ((select webhooks_private.deleted_webhooks())::bigint[]));

drop policy if exists company_reads on webhooks.backfills;
create policy company_reads on webhooks.backfills
  for select to webhook_viewer
  using (company_id = (select webhooks.current_company_id()));
drop policy if exists company_inserts on webhooks.backfills;
create policy company_inserts on webhooks.backfills
  for insert to webhook_admin
  with check (company_id = (select webhooks.current_company_id()));
drop policy if exists company_updates on webhooks.backfills;
create policy company_updates on webhooks.backfills
  for update to webhook_admin
  using (company_id = (select webhooks.current_company_id()))
  with check (company_id = (select webhooks.current_company_id()));
drop policy if exists company_reads on webhooks.audit_log;
create policy company_reads on webhooks.audit_log
  for select to webhook_viewer
  using (company_id = (select webhooks.current_company_id()));

-- The readers (bpd_webhooks_reader) read every company's rows, as the owner does: a
-- policy of their own that holds of every row, so that each question costs them what
-- it costs the owner. A condition that always holds is no condition to the planner:
-- the partitions' pruning and the indexes take the question's bounds as they are, and
-- the plans are the owner's (test/sql/reader-role.test.ts), but that a scan may test a
-- cheap leakproof condition of the question before its others, as row-level security
-- orders them. For SELECT alone: the readers are granted no write.
do $$
declare
  v_table regclass;
begin
  foreach v_table in array array['webhooks.webhooks', 'webhooks.delivery_history', 'webhooks.delivery_queue',
                                 'webhooks.delivery_results', 'webhooks.delivery_attempts',
                                 'webhooks.delivery_day_counts', 'webhooks.delivery_hour_counts',
                                 'webhooks_private.delivery_days_to_count', 'webhooks.audit_log',
                                 'webhooks_private.webhook_urls']::regclass[] loop
    execute format('drop policy if exists readers_read_all on %s', v_table);
    execute format('create policy readers_read_all on %s for select to bpd_webhooks_reader using (true)', v_table);
  end loop;
end;
$$;

------------------------------------------------------------------------------------
-- The CRM's own row-level security. The capture functions run as their owner and read
-- every company's users, statuses, assignments and contacts (the companies concerned
-- by a contact, what a payload shows). A CRM that turns row-level security on for its
-- tables, a tenant's rows to each, hides the other companies' rows from an owner
-- subject to it, and capture then misses their webhooks without an error
-- (test/sql/crm-row-security.test.ts). Applying sql/ stops while that is so, naming
-- the table and the role: the owner needs a policy of its own that reads every row
-- (USING (true)) and no restrictive one that reads fewer, BYPASSRLS, or the table's
-- ownership without FORCE (webhooks_private.crm_tables_hiding_rows_from, 00_schemas.sql).
-- The CRM's DDL that does so after this migrate is refused by the event trigger below.
select webhooks_private.refuse_crm_rows_hidden_from_owner();

-- (a superuser's migrate alone makes it: without it, the CRM's row-level security
-- turned on after that migrate goes unrefused until the next one)
select webhooks_private.make_event_trigger('bpd_webhooks_crm_row_security',
  array['ALTER TABLE', 'CREATE POLICY', 'ALTER POLICY', 'DROP POLICY'], 'webhooks_private.tg_crm_row_security__hiding');
