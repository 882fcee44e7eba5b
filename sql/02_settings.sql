-- bpd-webhooks engine: its settings, one home for each name, default and bound.
--
-- A DBA sets them as Postgres settings, per database, role or session:
--   alter database bpd set webhooks.max_attempts = 8;
-- ALTER DATABASE … SET accepts any text for a name with a dot and checks nothing, and
-- these are read by every claim, settle and contact write. So a value the engine
-- cannot use must not stop it: one that is not of its kind (a typo, "thirty") leaves
-- the default in force, one out of bounds is held to the bound it passed, and neither
-- is ever an error. What is in force, and why a value was refused, is one query away:
--   select * from webhooks.settings;
-- and each relay logs the refusals when it starts (webhooks_ops.refused_settings()).
--
-- The bounds keep each setting where the engine's arithmetic and promises hold: a
-- retry factor of 1e400 overflowed every failed attempt's settle, a negative retention
-- would have maintenance drop today's partitions and those made ahead (and contact
-- writes then fail for want of one), a max_in_flight of 0 would send nothing ever.

-- private: no max_payload_bytes is allowed below this (64 KiB), so a payload up to
-- this size never pays for reading the setting (inlined: a constant; capture compares
-- every payload's size to it)
create or replace function webhooks_private.payload_bytes_floor()
returns integer
language sql
immutable
as $$
  select 65536;
$$;

-- private: the settings, with their kind (integer, number or interval), default,
-- least and most values, and what each is. The one home of these facts: the readers
-- below, webhooks.settings and docs/operations.md's table follow it.
create or replace function webhooks_private.setting_rules()
returns table (name text, kind text, default_value text, least_value text, most_value text, about text)
language sql
immutable
as $$
  values
    ('webhooks.max_attempts', 'integer', '10', '1', '100',
     'attempts before a delivery fails (a webhook''s own max_attempts overrides it)'),
    ('webhooks.retry_base', 'interval', '10 seconds', '0 seconds', '1 day',
     'the wait after the first failed attempt'),
    ('webhooks.retry_factor', 'number', '3', '1', '100',
     'each further wait is this many times the one before'),
    ('webhooks.retry_max_delay', 'interval', '12 hours', '0 seconds', '30 days',
     'no single wait between attempts is longer'),
    ('webhooks.retry_jitter', 'number', '0.25', '0', '1',
     'each wait is varied at random by ± this fraction'),
    ('webhooks.retry_after_max', 'interval', '6 hours', '0 seconds', '30 days',
     'a receiver''s Retry-After is honoured up to this'),
    ('webhooks.max_in_flight', 'integer', '32', '1', '1000',
     'requests in flight to one webhook, all relays together (a webhook''s own max_in_flight overrides it)'),
    ('webhooks.breaker_after', 'integer', '5', '1', '1000',
     'failed attempts in a row that open a webhook''s circuit breaker'),
    ('webhooks.breaker_probe_interval', 'interval', '30 seconds', '0 seconds', '1 day',
     'the wait before an open breaker''s first probe; each further probe waits twice the one before'),
    ('webhooks.breaker_probe_max_interval', 'interval', '1 hour', '0 seconds', '7 days',
     'no wait between probes is longer'),
    ('webhooks.auto_disable_after', 'interval', '5 days', '0 seconds', '365 days',
     'a webhook whose every attempt has failed for this long is disabled by the relay'),
    ('webhooks.retention', 'interval', '90 days', '1 day', '36500 days',
     'history older than this is dropped, a day at a time (its totals stay in the report)'),
    ('webhooks.audit_retention', 'interval', '400 days', '1 day', '36500 days',
     'audit trail rows older than this are removed by maintenance, in batches'),
    ('webhooks.backfill_defer', 'interval', '0 seconds', '0 seconds', '1 hour',
     'how long a backfill''s snapshots wait before they are due'),
    ('webhooks.backfill_batch', 'integer', '500', '1', '10000',
     'contacts one step of a backfill examines'),
    ('webhooks.backfill_batch_time', 'interval', '250 milliseconds', '0 seconds', '1 hour',
     'how long one backfill''s batch, and one step of every backfill, may take before it stops short (the rest left to the next step): the longest an ordered webhook''s backfill holds its contacts locked'),
    ('webhooks.backfill_outstanding', 'integer', '1000', '1', '100000',
     'unfinished snapshots a backfill may have before its next batch waits (and no more than four times its webhook''s max_in_flight)'),
    ('webhooks.max_payload_bytes', 'integer', '1048576', webhooks_private.payload_bytes_floor()::text, '67108864',
     'a delivery whose payload is larger is not sent: it is written failed, with the reason'),
    ('webhooks.max_payload_bytes_per_change', 'integer', '16777216', webhooks_private.payload_bytes_floor()::text, '1073741824',
     'the payloads over 64 KiB that one contact change writes for one company''s webhooks together: those past it are written failed, with the reason'),
    ('webhooks.max_webhooks_per_company', 'integer', '100', '1', '100000',
     'webhooks one company may have, disabled ones included'),
    ('webhooks.max_conditions_per_company', 'integer', '1000', '1', '1000000',
     'conditions (all, any, not and leaves; a contains one per 10 characters of its text, an in or not_in one per 10 values) one company''s webhooks may have together: each contact write that concerns the company may evaluate them all'),
    ('webhooks.max_changes_per_hour', 'integer', '1000', '1', '1000000',
     'changes one company may make to its webhooks through the API in an hour (each a row of the audit trail: creates, updates, deletes, replays, test sends, backfills)');
$$;

-- private: the rule of one setting as [kind, default, least, most], null for a name
-- that is not one. Generated from setting_rules() each time this file is applied: a
-- CASE over constants, so that a reader called with a constant name (all of them)
-- has its default folded into its plan, and a setting nobody set costs a
-- current_setting() and no query.
do $generate$
declare
  v_cases text;
begin
  select string_agg(format('when %L then array[%L, %L, %L, %L]', r.name, r.kind, r.default_value, r.least_value,
                           r.most_value), ' ' order by r.name)
  into v_cases
  from webhooks_private.setting_rules() r;
  execute format($f$
    create or replace function webhooks_private.setting_rule(p_name text)
    returns text[]
    language sql
    immutable
    as $body$ select case p_name %s end $body$
  $f$, v_cases);
end;
$generate$;

-- private: a bound or default of a setting's kind, as Postgres prints it (an
-- interval) or as written (a number); and its magnitude, to compare with the value set
-- (an interval's seconds). Stable, not immutable: reading an interval depends on the
-- session's IntervalStyle, and an immutable SQL function that does is not inlined.
create or replace function webhooks_private.setting_canonical(p_kind text, p_value text)
returns text
language sql
stable
as $$
  select case when p_kind = 'interval' then p_value::interval::text else p_value end;
$$;

create or replace function webhooks_private.setting_magnitude(p_kind text, p_value text)
returns numeric
language sql
stable
as $$
  select case when p_kind = 'interval' then extract(epoch from p_value::interval) else p_value::numeric end;
$$;

-- private: a setting's value as set (p_set, the text of current_setting) checked
-- against its rule: the value in force, canonical (an interval as Postgres prints it),
-- and, when that is not what was set, why. Strict: a setting not set is null here,
-- and the reader takes the default without calling it. Intervals are compared by
-- their length in seconds, as extract(epoch …) counts it, and with the least value
-- also by the least it can be (a month of 28 days, or of 31 when taken away).
create or replace function webhooks_private.setting_check(p_name text, p_set text, out value text, out refusal text)
language plpgsql
stable
strict
as $$
declare
  v_rule constant text[] := webhooks_private.setting_rule(p_name);
  v_kind constant text := v_rule[1];
  v_set constant text := pg_catalog.btrim(p_set);
  v_set_value text;
  v_number numeric;
  -- (interval) its least length: extract(epoch …) counts a month as 30 days, and one
  -- is 28 to 31
  v_shortest numeric;
  v_interval interval;
  v_months numeric;
begin
  if v_rule is null then
    raise exception 'webhooks.setting_check: % is not a setting of the engine', p_name;
  end if;
  if v_set = '' then
    select c.value, c.refusal into value, refusal from webhooks_private.setting_check(p_name, v_rule[2]) c;
    return;
  end if;
  -- of its kind? A whole number, or (number) a decimal with at most a four-digit
  -- exponent, so that no text numeric could refuse reaches the cast; an interval as
  -- Postgres reads one ([.], not a backslash: a session with standard_conforming_strings
  -- off read that as an escape, and "3x5" failed its cast; 15_filters.sql)
  if v_kind = 'interval' then
    begin
      v_interval := v_set::interval;
      v_set_value := v_interval::text;
      v_number := extract(epoch from v_interval);
      v_months := extract(year from v_interval) * 12 + extract(month from v_interval);
      v_shortest := v_number - case when v_months > 0 then v_months * 2 else -v_months end * 86400;
    exception when data_exception then
      v_set_value := null;
    end;
  elsif v_kind = 'integer' and v_set ~ '^[+-]?[0-9]{1,30}$'
        or v_kind = 'number' and v_set ~ '^[+-]?([0-9]{1,30}([.][0-9]{0,30})?|[.][0-9]{1,30})([eE][+-]?[0-9]{1,4})?$' then
    v_number := v_set::numeric;
    v_set_value := pg_catalog.trim_scale(v_number)::text;
    -- (number) and one double precision, which the readers use, can hold: 1e-400 is
    -- within a bound of 0, but reading it would be an error in every settle
    if v_kind = 'number' and v_number <> 0 and abs(v_number) < 1e-300 then
      v_set_value := null;
    end if;
  end if;
  if v_set_value is null then
    value := webhooks_private.setting_canonical(v_kind, v_rule[2]);
    refusal := format('not %s: the default holds',
                      case v_kind when 'interval' then 'an interval' when 'integer' then 'a whole number' else 'a number' end);
    return;
  end if;
  -- within its bounds? (an interval of months less days, as '1 mon -29 days', is
  -- within them by its epoch in every month but the shortest: a month back from
  -- March is 28 days, and that retention reached a day into the future)
  if v_number < webhooks_private.setting_magnitude(v_kind, v_rule[3]) then
    value := webhooks_private.setting_canonical(v_kind, v_rule[3]);
    refusal := format('less than %s, the least allowed: %s holds', v_rule[3], v_rule[3]);
  elsif v_shortest < webhooks_private.setting_magnitude(v_kind, v_rule[3]) then
    value := webhooks_private.setting_canonical(v_kind, v_rule[3]);
    refusal := format('less than %s in the shortest months (a month is 28 to 31 days), the least allowed: %s holds',
                      v_rule[3], v_rule[3]);
  elsif v_number > webhooks_private.setting_magnitude(v_kind, v_rule[4]) then
    value := webhooks_private.setting_canonical(v_kind, v_rule[4]);
    refusal := format('more than %s, the most allowed: %s holds', v_rule[4], v_rule[4]);
  else
    value := v_set_value;
  end if;
end;
$$;

-- (the readers before these, re-applied over an older engine)
drop function if exists webhooks_private.setting(text, text);

-- private: the readers, one per kind. Each is inlined into its caller: with the name a
-- constant, a setting not set costs one current_setting() (its default is a constant
-- of the plan); one set is checked by setting_check.
create or replace function webhooks_private.setting_in_force(p_name text)
returns text
language sql
stable
as $$
  select coalesce((webhooks_private.setting_check(p_name, nullif(pg_catalog.current_setting(p_name, true), ''))).value,
                  (webhooks_private.setting_rule(p_name))[2]);
$$;

-- private: a setting as the database has it (ALTER DATABASE … SET), whatever a role or
-- this session set; null: not set there. For a setting whose value must be the same in
-- every session (webhooks.retention: the days a capture writes into must be the days
-- maintenance keeps), where a session's own would let one writer disagree with the
-- rest. A read of pg_db_role_setting (a query, not a current_setting()): for callers
-- off the hot path.
create or replace function webhooks_private.database_setting(p_name text)
returns text
language sql
stable
as $$
  select substr(c.entry, length(p_name) + 2)
  from pg_catalog.pg_db_role_setting s
  cross join lateral unnest(s.setconfig) c(entry)
  where s.setdatabase = (select d.oid from pg_catalog.pg_database d where d.datname = pg_catalog.current_database())
    and s.setrole = 0
    and lower(split_part(c.entry, '=', 1)) = p_name
  limit 1;
$$;

drop function if exists webhooks_private.integer_setting(text, integer, integer, integer);
create or replace function webhooks_private.integer_setting(p_name text)
returns integer
language sql
stable
as $$
  select webhooks_private.setting_in_force(p_name)::integer;
$$;

create or replace function webhooks_private.number_setting(p_name text)
returns double precision
language sql
stable
as $$
  select webhooks_private.setting_in_force(p_name)::double precision;
$$;

create or replace function webhooks_private.interval_setting(p_name text)
returns interval
language sql
stable
as $$
  select webhooks_private.setting_in_force(p_name)::interval;
$$;

-- public (DBAs; not in GraphQL, not granted to the API's roles): every setting of the
-- engine in this session (the database's, the role's, or one SET here; the
-- retention's, the database's alone), the value in
-- force, as set (null: not set), its default, why the value set is not the one in
-- force, and what it is.
create or replace view webhooks.settings as
select r.name, coalesce(l.last_set::text, c.value) as value, s.set_to, r.default_value,
       coalesce(c.refusal, case when l.last_set is not null then
         'not set in this database: the retention it set last holds until it is set again '
         || '(a copy, or a dump restored without --create, leaves the database''s settings behind)' end) as refusal,
       r.about
from webhooks_private.setting_rules() r
-- (the retention as the database has it, the one the engine reads: retention(), 22_outbox.sql)
cross join lateral (select case when r.name = 'webhooks.retention'
                                then nullif(webhooks_private.database_setting(r.name), '')
                                else nullif(pg_catalog.current_setting(r.name, true), '') end as set_to) s
-- (not set: checked as empty, which is the default)
cross join lateral webhooks_private.setting_check(r.name, coalesce(s.set_to, '')) c
-- (the retention not set: the one the database set last, if any, holds: retention())
left join lateral (select k.retention as last_set from webhooks_private.retention_last_set k
                   where r.name = 'webhooks.retention' and s.set_to is null) l on true;

-- operations (the relay and the API; their roles: 60_access.sql): the settings whose
-- value set is not the one in force. Names and settings only: nothing a tenant wrote.
-- Also those set for a role no session logs in as (bpd_webhooks_relay, webhook_admin:
-- the relay's and the API's sessions take them with SET ROLE), in this database or
-- all: a role's settings reach only the sessions that log in as it, so such a value is
-- in force nowhere, and it was said nowhere either.
create or replace function webhooks_ops.refused_settings()
returns table (name text, set_to text, value text, refusal text)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select s.name, s.set_to, s.value, s.refusal
  from webhooks.settings s
  where s.refusal is not null
  union all
  select e.name, e.set_to, webhooks_private.setting_in_force(e.name),
         format('set for role %s, which no session logs in as (the relay''s and the API''s sessions take it with '
                || 'SET ROLE): not used; set it for the login of their DATABASE_URL (alter role … set) or for the '
                || 'database (alter database … set)', e.rolname)
  from (select lower(split_part(c.entry, '=', 1)) as name, substr(c.entry, strpos(c.entry, '=') + 1) as set_to,
               r.rolname
        from pg_db_role_setting d
        join pg_roles r on r.oid = d.setrole and not r.rolcanlogin
        cross join lateral unnest(d.setconfig) c(entry)
        where d.setdatabase in (0, (select x.oid from pg_database x where x.datname = current_database()))) e
  where webhooks_private.setting_rule(e.name) is not null
  order by 1, 4;
$$;
