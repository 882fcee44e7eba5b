-- bpd-webhooks engine: the schemas, and the facts every other file shares.
--
-- Every file in sql/ is applied, in name order, in one transaction after the
-- migrations, every time `npm run migrate` runs. Each file is therefore written to be
-- re-applied: CREATE OR REPLACE, DROP ... IF EXISTS then CREATE. Files read top to
-- bottom: each one calls only what an earlier file (or itself) defines.
--
-- Public API (stable names other programs and DBAs rely on):
--   webhooks.webhooks, webhooks.deliveries, webhooks.delivery_attempts,
--   webhooks.fire_history, webhooks.audit_log, the type webhooks.action, the NOTIFY channel bpd_webhooks,
--   the transaction setting webhooks.source, and the engine's settings (webhooks.settings).
-- Private (may change between versions; do not call from applications):
--   everything in schema webhooks_private, the relay's entry points in schema
--   webhooks_relay, and the health questions in schema webhooks_ops.
--
-- The files after this one:
--   02_settings        the engine's settings: names, defaults, bounds, webhooks.settings
--   05_caller          who is calling (the request's claims)
--   10_config          webhook configuration: validation, subscriptions
--   15_filters         a webhook's filters: what they may say, how they are evaluated
--   15_secrets         signing secrets: made, handed out once, rotated with a grace
--   20_wakeup          when a capturing transaction wakes the relay
--   25_capture         the triggers on crm.* that write the outbox
--   30_delivery        the delivery state machine: claim, settle, release, rescue, replay
--   35_backfill        backfill: every contact a company has, paced, resumable
--   40_history         webhooks.fire_history, the DBAs' view
--   45_admin           the admin API's changes to webhooks
--   47_audit           the audit trail of every change to a webhook, and test sends
--   50_report_counts   daily counts that keep the report fast, and counting
--   55_report          the report, a webhook's history, what the page shows
--   58_operations      what the health endpoints ask (readiness, backlog)
--   60_access          roles, grants, row-level security, functions run as owner
--   70_graphql         what PostGraphile shows (smart comments)

-- The schemas exist already on a migrated database (migrations create the tables in
-- them); created here too so that the engine states every schema it uses.
create schema if not exists webhooks;
create schema if not exists webhooks_private;
create schema if not exists webhooks_relay;
create schema if not exists webhooks_ops;

comment on schema webhooks is
  'bpd-webhooks public API: webhook configuration, the delivery outbox and its history.';
comment on schema webhooks_private is
  'bpd-webhooks internals: secrets, subscriptions, trigger functions, helpers of the API functions. Not an API.';
comment on schema webhooks_relay is
  'bpd-webhooks internals: the relay''s entry points (claim, settle, rescue). Not an API.';
comment on schema webhooks_ops is
  'bpd-webhooks operations: readiness, backlog and refused-settings questions for the API''s and the relay''s health endpoints.';

-- private: the schemas above, the engine's own: the one home of that list
-- (60_access.sql revokes PUBLIC's EXECUTE on every function in them)
create or replace function webhooks_private.engine_schema_names()
returns text[]
language sql
immutable
as $$
  select array['webhooks', 'webhooks_private', 'webhooks_relay', 'webhooks_ops'];
$$;

------------------------------------------------------------------------------------
-- private: the CRM's tables capture reads, by name: the one home of that list (this
-- file's check below, and 60_access.sql's of the CRM's row-level security)
create or replace function webhooks_private.crm_table_names()
returns text[]
language sql
immutable
as $$
  select array['crm.companies', 'crm.users', 'crm.statuses', 'crm.contacts', 'crm.contact_statuses', 'crm.contact_assignments'];
$$;

-- private: the CRM's tables whose row-level security may hide rows from p_role (the
-- engine's owner, as which capture and the backfill's walk read them), in name order:
-- RLS on, the role no superuser, without BYPASSRLS, and not exempt as the table's
-- owner (or FORCE), and either no permissive policy of it reads every row (USING
-- (true)) or a restrictive one of it reads fewer. Migrate refuses them (60_access.sql);
-- a backfill step fails a backfill while there are any (35_backfill.sql): turned on
-- after the last migrate, they left the walk the rows the policies showed it, and
-- the backfill said it was done with contacts never sent (until 2026-12-07,
-- test/sql/crm-row-security.test.ts). Postgres's row_security = off, which makes a
-- query that a policy would filter fail instead, fails one under a USING (true)
-- policy too, which a CRM may give the owner: hence the question to the catalog.
create or replace function webhooks_private.crm_tables_hiding_rows_from(p_role oid)
returns setof text
language sql
stable
as $$
  select c.oid::regclass::text
  from pg_catalog.pg_class c
  cross join pg_catalog.pg_roles r
  -- (by to_regclass: a table renamed away, which the CRM's DDL may leave for a moment,
  -- is no error here; the event trigger of 60_access.sql asks after such DDL)
  where c.oid in (select pg_catalog.to_regclass(n) from unnest(webhooks_private.crm_table_names()) n)
    and r.oid = p_role
    and c.relrowsecurity and not r.rolsuper and not r.rolbypassrls
    and (c.relforcerowsecurity or not pg_catalog.pg_has_role(r.oid, c.relowner, 'USAGE'))
    and (not exists (select 1 from pg_catalog.pg_policy p
                     where p.polrelid = c.oid and p.polpermissive and p.polcmd in ('r', '*')
                       and (0 = any (p.polroles)
                            or exists (select 1 from unnest(p.polroles) g(role)
                                       where pg_catalog.pg_has_role(r.oid, g.role, 'USAGE')))
                       and pg_catalog.pg_get_expr(p.polqual, p.polrelid) = 'true')
         or exists (select 1 from pg_catalog.pg_policy p
                    where p.polrelid = c.oid and not p.polpermissive and p.polcmd in ('r', '*')
                      and (0 = any (p.polroles)
                           or exists (select 1 from unnest(p.polroles) g(role)
                                      where pg_catalog.pg_has_role(r.oid, g.role, 'USAGE')))
                      and pg_catalog.pg_get_expr(p.polqual, p.polrelid) is distinct from 'true'))
  order by 1;
$$;

-- private: for what a tenant asks of the CRM's tables as the engine's owner (the setup
-- form's searches of its users and statuses, the contacts a backfill will examine:
-- 35_backfill.sql, 55_report.sql): refused while the CRM's row-level security may hide
-- rows of p_tables from the owner, which answered fewer without a word (turned on
-- after the last migrate, which refuses it; until 2026-12-07,
-- test/sql/crm-row-security.test.ts). Called in the caller's SECURITY DEFINER function,
-- whose current_user is the owner. A look at the catalog's rows of six tables, about
-- 55 µs (as the backfill step's), once a question.
create or replace function webhooks_private.refuse_crm_rows_hidden(p_tables text[])
returns void
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_hidden constant text := (select string_agg(t, ', ')
                             from webhooks_private.crm_tables_hiding_rows_from(current_user::regrole) t
                             where t = any (p_tables));
begin
  if v_hidden is not null then
    -- (the role and the remedy for the operator's log alone)
    raise warning 'row-level security on % applies to %, the engine''s owner, and hides rows from it: give it a policy that reads every row (using (true)), or BYPASSRLS',
      v_hidden, current_user;
    raise exception using
      errcode = 'object_not_in_prerequisite_state',
      constraint = 'crm_rows_hidden',
      message = format('the CRM''s row-level security on %s hides rows from the engine; ask your operator', v_hidden);
  end if;
end;
$$;

------------------------------------------------------------------------------------
-- What the engine needs of the CRM's tables, checked before anything is applied, so
-- that a CRM that changed them hears which and why, and nothing of the engine's is
-- changed (test/sql/crm-tables-moved.test.ts, test/sql/crm-keys.test.ts):
-- * the six tables under their names, as tables (partitioned or not): the capture
--   triggers go on them by name (25_capture.sql). A table renamed or moved to another
--   schema keeps the triggers it had, so capture goes on until it is named back;
--   applying sql/ failed on whatever statement first named it ('relation
--   "crm.contacts" does not exist', '"contacts" is a view');
-- * the keys the engine reads, integers: it keeps contacts, users, statuses and
--   companies by bigint id (deliveries, lanes, first assignments, subscriptions). A
--   contacts.id made text or uuid failed this file on an operator ("text = bigint").
do $crm$
declare
  v_table text;
  v_key record;
begin
  for v_table in
    select t.name
    from unnest(webhooks_private.crm_table_names()) t(name)
    where not exists (select 1 from pg_catalog.pg_class c
                      where c.oid = pg_catalog.to_regclass(t.name) and c.relkind in ('r', 'p'))
  loop
    raise exception using
      errcode = 'feature_not_supported',
      message = format('%s %s: the engine''s capture triggers go on the CRM''s tables by their names', v_table,
                       coalesce((select case c.relkind when 'v' then 'is a view' when 'm' then 'is a materialized view'
                                                       when 'f' then 'is a foreign table' else 'is no table' end
                                 from pg_catalog.pg_class c where c.oid = pg_catalog.to_regclass(v_table)),
                                'does not exist')),
      hint = 'Name the CRM''s table so again (a table renamed or moved keeps the triggers it had, and capture goes on meanwhile).';
  end loop;
  for v_key in
    select format('%s.%I', c.oid::regclass, a.attname) as named, a.atttypid::regtype::text as type
    from (values ('crm.contacts', 'id'), ('crm.contacts', 'company_id'),
                 ('crm.contact_assignments', 'contact_id'), ('crm.contact_assignments', 'user_id'),
                 ('crm.contact_statuses', 'contact_id'), ('crm.contact_statuses', 'status_id'),
                 ('crm.users', 'id'), ('crm.users', 'company_id'),
                 ('crm.statuses', 'id'), ('crm.statuses', 'company_id'), ('crm.companies', 'id')) k(rel, col)
    join pg_catalog.pg_class c on c.oid = pg_catalog.to_regclass(k.rel)
    join pg_catalog.pg_attribute a on a.attrelid = c.oid and a.attname = k.col and not a.attisdropped
    where a.atttypid not in ('bigint'::regtype, 'integer'::regtype, 'smallint'::regtype)
  loop
    raise exception using
      errcode = 'feature_not_supported',
      message = format('%s is %s: the engine needs the CRM''s ids to be integers (bigint, integer or smallint)',
                       v_key.named, v_key.type),
      hint = 'Keep an integer key of that name for the engine, or leave the engine''s triggers off the CRM''s tables.';
  end loop;
end;
$crm$;

-- sql/ only: drops the engine's functions that take or return the row of a table that
-- is no longer one of the CRM's six by name (crm.contacts rebuilt beside itself and
-- swapped in by two renames, as an online rewrite does it): the later files make them
-- again for the table of that name now. They were the old table's (its row type goes
-- with it when renamed): applying sql/ failed on the first made again ("cannot change
-- return type of existing function", 35_backfill.sql), and the old table could not be
-- dropped but with CASCADE ("other objects depend on it"; until 2026-12-08,
-- test/sql/crm-owner-ddl.test.ts). After the check above: a table renamed with nothing
-- in its place stops the migrate before this.
create or replace function webhooks_private.drop_functions_of_crm_rows_gone()
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_function regprocedure;
begin
  for v_function in
    select p.oid::regprocedure
    from pg_catalog.pg_proc p
    where p.pronamespace::regnamespace::text = any (webhooks_private.engine_schema_names())
      and exists (select 1
                  from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]) || p.prorettype) a(type)
                  join pg_catalog.pg_type t on t.oid = a.type or t.typarray = a.type
                  join pg_catalog.pg_class c on c.oid = t.typrelid
                  where c.relkind in ('r', 'p')
                    -- (a table of the catalog's, pg_class, is no CRM table)
                    and c.relnamespace::regnamespace::text <> all (webhooks_private.engine_schema_names()
                                                                   || array['webhooks_partitions', 'pg_catalog', 'information_schema'])
                    and c.oid <> all (select pg_catalog.to_regclass(n) from unnest(webhooks_private.crm_table_names()) n))
  loop
    execute format('drop function %s', v_function);
  end loop;
end;
$$;

select webhooks_private.drop_functions_of_crm_rows_gone();

------------------------------------------------------------------------------------
-- One home for each shared fact. Immutable SQL functions: the planner inlines them
-- and folds them to constants, so calling one costs nothing at run time.
--
-- The NOTIFY channel bpd_webhooks: a wake-up hint for the relay, never the data (the
-- table is the truth); its payload is empty. (The relay listens on the same name:
-- relay/listener.ts, CHANNEL.)
create or replace function webhooks_private.notify_channel()
returns text
language sql
immutable
as $$
  select 'bpd_webhooks';
$$;

-- Advisory locks. Postgres has one advisory lock space per database, shared with the
-- CRM and any other program, so every key of the engine lives here:
--   (lock_space, capturing_lock)   capture vs. a relay going idle    20_wakeup.sql
--   (lock_space, relay_idle_lock)  a relay waiting for work          20_wakeup.sql
--   day_counts_lock(webhook_id)    one webhook's report day counts   50_report_counts.sql
--   partition_lock()               making outbox partitions          22_outbox.sql
--   day_drop_lock(day)             a late capture vs. its day's drop 22_outbox.sql
--   company_webhooks_lock(company) creating one company's webhooks   10_config.sql
--   relay_id_lock(relay_id)        a running relay's RELAY_ID        30_delivery.sql
--   relay_claims_lock(relay_id)    a relay's claims vs. its hand-back 30_delivery.sql
--   4204204204 (one bigint)        a migrate is running              tools/migrate.ts
--   4204204205 (one bigint)        the outbox's upkeep is running    tools/maintain.ts
-- (The migrate lock is taken before sql/ exists, so it lives in tools/migrate.ts.)

-- the engine's two-key lock space: 'bpdw' read as a 32-bit integer
create or replace function webhooks_private.lock_space()
returns integer
language sql
immutable
as $$
  select 1651532919;
$$;

-- held SHARED by every transaction that wrote a delivery and did not notify
create or replace function webhooks_private.capturing_lock()
returns integer
language sql
immutable
as $$
  select 1;
$$;

-- held SHARED by every relay that is waiting for work, on its own connection
create or replace function webhooks_private.relay_idle_lock()
returns integer
language sql
immutable
as $$
  select 2;
$$;

-- the advisory lock of making partitions of the outbox (one for all: two makers each
-- holding one parent's lock and waiting for another's would deadlock)
create or replace function webhooks_private.partition_lock()
returns bigint
language sql
immutable
as $$
  select hashtextextended('bpd_webhooks.partitions', 0);
$$;

-- the advisory lock of one UTC day of the outbox's history: held SHARED by a capture
-- late in its transaction that found its day kept (capture_time, 22_outbox.sql) until
-- that transaction ends, taken by the retention's forget_day (29_retention.sql) before
-- the day goes; one bigint key per day
create or replace function webhooks_private.day_drop_lock(p_day date)
returns bigint
language sql
immutable
as $$
  select hashtextextended('bpd_webhooks.day_drop', p_day - date '2000-01-01');
$$;

-- the advisory lock of creating one company's webhooks (one bigint key per company):
-- two creations count the company's webhooks one after the other
create or replace function webhooks_private.company_webhooks_lock(p_company_id bigint)
returns bigint
language sql
immutable
as $$
  select hashtextextended('bpd_webhooks.company_webhooks', p_company_id);
$$;

-- the advisory lock of one RELAY_ID (one bigint key per id): held by a running relay
-- on a connection of its own, so that a second relay given the same id (whose leases
-- would be taken for its own) is seen
create or replace function webhooks_private.relay_id_lock(p_relay_id text)
returns bigint
language sql
immutable
as $$
  select hashtextextended('bpd_webhooks.relay_id:' || p_relay_id, 0);
$$;

-- the advisory lock of one relay's claims and releases (one bigint key per RELAY_ID,
-- apart from relay_id_lock's: that one is a session's, held for as long as the relay
-- runs): held SHARED by each of them until its transaction ends, taken by the
-- relay's hand-back of the unheld (release_unheld_leases, 30_delivery.sql), which so
-- comes after every claim or release of that relay sent before it has ended
create or replace function webhooks_private.relay_claims_lock(p_relay_id text)
returns bigint
language sql
immutable
as $$
  select hashtextextended('bpd_webhooks.relay_claims:' || p_relay_id, 0);
$$;

-- sql/ only: drops the function p_signature unless it already takes p_arguments and
-- returns p_result (as pg_get_function_arguments and pg_get_function_result write
-- them), all that the create or replace after it cannot change. A function dropped
-- and made again is a new one: a contact write's capture, a claim or a settle that had
-- looked up the old one when sql/ committed failed ("cache lookup failed for
-- function"), so sql/ applied again drops none (test/relay/upgrade.test.ts).
create or replace function webhooks_private.drop_function_unless(p_signature text, p_arguments text, p_result text)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_function regprocedure := to_regprocedure(p_signature);
begin
  if v_function is not null
     and (pg_get_function_arguments(v_function), pg_get_function_result(v_function)) is distinct from (p_arguments, p_result) then
    execute format('drop function %s', v_function);
  end if;
end;
$$;

-- sql/ only: makes the event trigger p_name (on p_event, ddl_command_end unless
-- named, for the command tags p_tags, running p_function) unless it exists. An event
-- trigger may be made by a superuser alone: an owner that is none migrates without it,
-- and what it guards goes unguarded until a superuser's migrate (docs/operations.md
-- has each statement).
select webhooks_private.drop_function_unless(
  'webhooks_private.make_event_trigger(text, text[], text)',
  'p_name text, p_tags text[], p_function text, p_event text DEFAULT ''ddl_command_end''::text',
  'void');
create or replace function webhooks_private.make_event_trigger(p_name text, p_tags text[], p_function text,
                                                               p_event text default 'ddl_command_end')
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  if (select r.rolsuper from pg_roles r where r.rolname = current_user)
     and not exists (select 1 from pg_event_trigger e where e.evtname = p_name) then
    execute format('create event trigger %I on %I when tag in (%s) execute function %s()',
                   p_name, p_event, (select string_agg(quote_literal(t), ', ') from unnest(p_tags) t), p_function::regproc);
  end if;
end;
$$;

-- sql/ only: drops the composite type p_type, and what uses it, unless its attributes
-- are already p_attributes (name and type, as format_type writes them, comma-separated),
-- for the same reason: the functions that return it would be made again with it.
create or replace function webhooks_private.drop_type_unless(p_type text, p_attributes text)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_type regtype := to_regtype(p_type);
begin
  if v_type is not null
     and (select string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' order by a.attnum)
          from pg_attribute a
          where a.attrelid = (select t.typrelid from pg_type t where t.oid = v_type) and a.attnum > 0 and not a.attisdropped)
         is distinct from p_attributes then
    execute format('drop type %s cascade', v_type);
  end if;
end;
$$;

-- sql/ only: drops the trigger p_name of p_table if it is there. DROP TRIGGER IF EXISTS
-- locks the table ACCESS EXCLUSIVE even when there is no such trigger: on the CRM's
-- tables, which sql/ otherwise locks only against writes (CREATE OR REPLACE TRIGGER,
-- SHARE ROW EXCLUSIVE; tools/migrate.ts), that lock would stop the reads a contact
-- write's capture makes of them too, and deadlock with it.
create or replace function webhooks_private.drop_trigger_if_present(p_table regclass, p_name text)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  if exists (select 1 from pg_trigger where tgrelid = p_table and tgname = p_name and not tgisinternal) then
    execute format('drop trigger %I on %s', p_name, p_table);
  end if;
end;
$$;

-- (whether a user is a company's first on a contact was decided under an advisory
-- lock a contact and company until 2026-12-06: a row lock of first_assignments now,
-- 25_capture.sql, which takes no room in the server's lock table)
drop function if exists webhooks_private.first_assignment_lock(bigint, bigint);

-- the advisory lock of one webhook's report day counts (one bigint key per webhook)
create or replace function webhooks_private.day_counts_lock(p_webhook_id bigint)
returns bigint
language sql
immutable
as $$
  select hashtextextended('bpd_webhooks.delivery_day_counts', p_webhook_id);
$$;
