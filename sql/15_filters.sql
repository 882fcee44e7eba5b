-- bpd-webhooks engine: a webhook's filters, what they may say and what they mean.
--
-- Three settings of webhooks.webhooks narrow what a webhook hears. Capture decides
-- them inside the writer's transaction, after its cheap "does anyone listen" probe and
-- before it builds a payload (25_capture.sql), so a filtered change writes nothing:
--   ignore_sources  sources (webhooks.source, 'unknown' when unset) whose changes the
--                   webhook never hears, for every action: an integration's own echoes
--   watch_fields    empty: any. Else contact.updated and contact.saved fire only when
--                   one of these columns changed in that update; other actions as ever
--   conditions      null: always. Else a predicate over the contact as it is after the
--                   change (for contact.deleted, as it was), for every action:
--                     {"all": [c, ...]}  {"any": [c, ...]}  {"not": c}
--                     {"field": F, "op": OP, "value": V}
--                   F is a column of crm.contacts or custom.KEY (a top-level key of
--                   custom); OP is eq, ne, in, not_in (V a list), lt, lte, gt, gte,
--                   contains, starts_with (case-insensitive), is_null, not_null or
--                   changed (these three take no V). docs/filters.md tells the rules
--                   of comparison in full.
--
-- Conditions are a tenant's input, so they are data, never SQL: a recursive function
-- walks the jsonb tree and applies fixed, typed comparisons. No text of a condition
-- ever reaches a SQL parser, at configuration or per row. And no condition can make a
-- writer's transaction fail: configuration refuses what could not be evaluated
-- (unknown fields and operators, values of the wrong type, dates that are no dates),
-- and evaluation casts a contact's value only after checking its shape; a value that
-- does not compare makes its leaf false.
--
-- Bounds, each refused by name (every tenant input is hostile):
--   ignore_sources  at most 20 names of 1 to 100 characters, each showing
--                   something, without control characters, line or paragraph
--                   separators or bidi controls           webhook_ignore_sources_invalid
--   watch_fields    columns of crm.contacts, at most 100 entries  webhook_watch_field_unknown
--   conditions      at most 16 KB as text, 100 conditions (all/any/not and leaves
--                   together), 50 entries in one all/any, nesting 8 deep, 100 values in
--                   one in/not_in, 500 characters in one value, numbers a double
--                   holds as written (within ±1.7976931348623157e308, not 1e-400,
--                   no 17th digit lost)                 webhook_conditions_invalid
--                   and a company's webhooks together at most
--                   webhooks.max_conditions_per_company (1,000 unless set; a
--                   contains weighs one per 10 characters of its text, an in or
--                   not_in one per 10 values: condition_weight)
--                                                      webhook_conditions_limit_reached
-- And what one evaluation examines is bounded, whatever the contact holds: a text is
-- looked at by its first 10,000 characters (condition_subject, below), so that a
-- company's conditions cost a write about the same on a contact of a megabyte.
-- A refusal is a check_violation (23514) whose CONSTRAINT is the rule, whose COLUMN is
-- the setting and whose message starts with the part at fault: all[1].op: unknown
-- operator "equals".

------------------------------------------------------------------------------------
-- What a condition may say (configuration)

-- private: how a field of a condition compares: number, date, timestamp, boolean,
-- text, custom (custom.KEY: whatever the tenant stored), other (only is_null,
-- not_null and changed apply); null for no such field
create or replace function webhooks_private.condition_field_kind(p_field text)
returns text
language sql
stable
as $$
  select case
    when left(p_field, 7) = 'custom.' then
      case when length(p_field) between 8 and 107 then 'custom' end
    else (
      select case
               when t.typcategory = 'N' then 'number'
               when t.oid = 'pg_catalog.date'::regtype then 'date'
               when t.oid = 'pg_catalog.timestamptz'::regtype then 'timestamp'
               when t.typcategory = 'B' then 'boolean'
               when t.typcategory = 'S' then 'text'
               else 'other'
             end
      from pg_catalog.pg_attribute a
      join pg_catalog.pg_type t on t.oid = a.atttypid
      where a.attrelid = 'crm.contacts'::regclass and a.attname = p_field
        and a.attnum > 0 and not a.attisdropped)
  end;
$$;

-- private: true when p_text is a date (YYYY-MM-DD) or, with p_with_time, a time with
-- its zone (2026-01-31T09:00:00Z). Only configuration calls it: it may try the cast.
create or replace function webhooks_private.is_iso_time(p_text text, p_with_time boolean)
returns boolean
language plpgsql
immutable
as $$
begin
  if p_with_time then
    if p_text !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]{1,6})?)?(Z|[+-][0-9]{2}(:[0-9]{2})?)$' then
      return false;
    end if;
    perform p_text::timestamptz;
  else
    if p_text !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' then
      return false;
    end if;
    perform p_text::date;
  end if;
  return true;
exception when others then
  return false;
end;
$$;

-- private (condition_compare): does a text read as a time without error, as a time
-- is_iso_time accepts? Decided without casting it, so without a subtransaction, in
-- the writer's transaction: a value saved while its column was text (anything at
-- all) is compared to the column once the CRM makes it a timestamptz, and a cast
-- that fails would fail the write. ([0-9], not \d: under an ICU collation \d
-- matches every script's digits.)
create or replace function webhooks_private.reads_as_time(p_text text)
returns boolean
language sql
immutable
as $$
  -- (a CASE: its branches run in order, so the integers are read only from digits)
  select case when p_text ~ '^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9]([.][0-9]{1,6})?)?(Z|[+-](0[0-9]|1[0-5])(:[0-5][0-9])?)$'
                   and left(p_text, 4) <> '0000'
              -- (the day within its month: the cast refuses 2026-02-30)
              then substr(p_text, 9, 2)::integer
                   <= extract(day from make_date(left(p_text, 4)::integer, substr(p_text, 6, 2)::integer, 1)
                                       + interval '1 month - 1 day')
              else false end;
$$;

-- private: what a JSON reader makes of a JSON number: the double nearest it (the API's,
-- the page's and a receiver's readers hold no other number), written as Postgres
-- writes one, shortest first (0.1, 5e-324, 9.007199254740992e+15); null beyond
-- ±1.7976931348623157e308, which they read as infinity. jsonb holds a number exactly
-- (a numeric): one this tells otherwise (1e-400, read as 0; 9007199254740993, read as
-- 9007199254740992) a JSON reader does not hold as written. Only configuration calls
-- it (extra_float_digits set here: a session's 0 writes 15 digits, not the shortest).
create or replace function webhooks_private.json_number_read(p_number numeric)
returns text
language plpgsql
immutable
set extra_float_digits = 1
as $$
begin
  if abs(p_number) > 1.7976931348623157e308 then
    return null;
  end if;
  if p_number <> 0 and abs(p_number) < 5e-324 then
    begin
      return p_number::double precision::text;
    exception when numeric_value_out_of_range then
      return '0';   -- nearer 0 than the least double (1e-400): Postgres's cast refuses what strtod reads as 0
    end;
  end if;
  return p_number::double precision::text;
end;
$$;

-- private: what is wrong with one value V of a leaf (null: nothing)
create or replace function webhooks_private.condition_value_problem(p_kind text, p_op text, p_field text, p_value jsonb)
returns text
language plpgsql
immutable
as $$
declare
  v_type constant text := jsonb_typeof(p_value);
  v_ordering constant boolean := p_op in ('lt', 'lte', 'gt', 'gte');
  v_read text;
begin
  if v_type = 'string' and length(p_value #>> '{}') > 500 then
    return 'at most 500 characters';
  end if;
  -- a number a JSON reader holds as written (a double): jsonb holds 1e400, but the
  -- API's reader, the page's and a receiver's take it as infinity, and the API served
  -- such a condition back with null in its place; 1e-400 they take as 0, and the page
  -- showed "amount gt 1e-400" as "gt 0" (and saved it so), 9007199254740993 as
  -- 9007199254740992, another contact's id
  if v_type = 'number' then
    v_read := webhooks_private.json_number_read(p_value::numeric);
    if v_read is null then
      return 'a number beyond ±1.7976931348623157e308 is not accepted: JSON readers take it as infinity';
    elsif v_read::numeric <> p_value::numeric then
      return format('a number JSON readers do not hold as written is not accepted: they read it as %s', v_read);
    end if;
  end if;
  if p_op in ('contains', 'starts_with') then
    if v_type <> 'string' or p_value #>> '{}' = '' then
      return format('%s needs non-empty text', p_op);
    end if;
    return null;
  end if;
  case p_kind
    when 'number' then
      if v_type <> 'number' then
        return format('must be a number (%s is a number)', p_field);
      end if;
    when 'boolean' then
      if v_type <> 'boolean' then
        return format('must be true or false (%s is true or false)', p_field);
      end if;
    when 'date' then
      if v_type <> 'string' or not webhooks_private.is_iso_time(p_value #>> '{}', false) then
        return format('must be a date written YYYY-MM-DD (%s is a date)', p_field);
      end if;
    when 'timestamp' then
      if v_type <> 'string' or not webhooks_private.is_iso_time(p_value #>> '{}', true) then
        return format('must be a time with its zone, such as "2026-01-31T09:00:00Z" (%s is a time)', p_field);
      end if;
    when 'text' then
      if v_type <> 'string' then
        return format('must be text (%s is text)', p_field);
      end if;
    else -- custom.KEY: whatever the tenant stores there
      if v_type not in ('string', 'number', 'boolean') or (v_ordering and v_type = 'boolean') then
        return case when v_ordering then 'must be a number or text'
                    else 'must be text, a number, true or false' end;
      end if;
  end case;
  return null;
end;
$$;

-- private: what is wrong with a condition (null: nothing), as "<part>: <what>", the
-- part being where it sits (all[1].op). p_path is the node's own part ('' at the top).
create or replace function webhooks_private.condition_problem(p_node jsonb, p_path text, p_depth integer)
returns text
language plpgsql
stable
as $$
declare
  v_here constant text := coalesce(nullif(p_path, ''), 'conditions');
  v_prefix constant text := case when p_path = '' then '' else p_path || '.' end;
  v_operators constant text[] := '{eq,ne,in,not_in,lt,lte,gt,gte,contains,starts_with,is_null,not_null,changed}';
  v_key text;
  v_items jsonb;
  v_problem text;
  v_field text;
  v_kind text;
  v_op text;
  v_value jsonb;
begin
  if p_depth > 8 then
    return format('%s: nested deeper than 8 levels', v_here);
  end if;
  if jsonb_typeof(p_node) is distinct from 'object' then
    return format('%s: a condition is an object: {"all": [...]}, {"any": [...]}, {"not": {...}} or {"field": ..., "op": ..., "value": ...}', v_here);
  end if;

  if p_node ?| '{all,any,not}' then
    v_key := case when p_node ? 'all' then 'all' when p_node ? 'any' then 'any' else 'not' end;
    select k into v_problem from jsonb_object_keys(p_node) k where k <> v_key limit 1;
    if found then
      return format('%s: %s stands alone; unexpected key %s', v_here, v_key, to_jsonb(webhooks_private.quoted_part(v_problem)));
    end if;
    if v_key = 'not' then
      return webhooks_private.condition_problem(p_node -> 'not', v_prefix || 'not', p_depth + 1);
    end if;
    v_items := p_node -> v_key;
    if jsonb_typeof(v_items) <> 'array' then
      return format('%s%s: a list of conditions', v_prefix, v_key);
    elsif jsonb_array_length(v_items) = 0 then
      return format('%s%s: must not be empty', v_prefix, v_key);
    elsif jsonb_array_length(v_items) > 50 then
      return format('%s%s: at most 50 conditions', v_prefix, v_key);
    end if;
    for i in 0 .. jsonb_array_length(v_items) - 1 loop
      v_problem := webhooks_private.condition_problem(v_items -> i, format('%s%s[%s]', v_prefix, v_key, i), p_depth + 1);
      if v_problem is not null then
        return v_problem;
      end if;
    end loop;
    return null;
  end if;

  -- a leaf
  select k into v_key from jsonb_object_keys(p_node) k where k not in ('field', 'op', 'value') limit 1;
  if found then
    return format('%s: unknown key %s; a leaf has field, op and value', v_here, to_jsonb(webhooks_private.quoted_part(v_key)));
  end if;
  if not p_node ? 'field' then
    return format('%sfield: missing', v_prefix);
  end if;
  v_field := p_node ->> 'field';
  v_kind := case when jsonb_typeof(p_node -> 'field') = 'string' then webhooks_private.condition_field_kind(v_field) end;
  if v_kind is null then
    return format('%sfield: unknown contact field %s; a column of the contact (%s) or custom.KEY',
                  v_prefix, webhooks_private.quoted_part((p_node -> 'field')::text), array_to_string(webhooks.contact_fields(), ', '));
  end if;
  if not p_node ? 'op' then
    return format('%sop: missing', v_prefix);
  end if;
  v_op := p_node ->> 'op';
  if jsonb_typeof(p_node -> 'op') <> 'string' or v_op <> all (v_operators) then
    return format('%sop: unknown operator %s; one of %s', v_prefix,
                  webhooks_private.quoted_part((p_node -> 'op')::text), array_to_string(v_operators, ', '));
  end if;
  if (v_op in ('contains', 'starts_with') and v_kind not in ('text', 'custom'))
     or (v_op in ('lt', 'lte', 'gt', 'gte') and v_kind not in ('number', 'date', 'timestamp', 'text', 'custom'))
     or (v_op in ('eq', 'ne', 'in', 'not_in') and v_kind = 'other') then
    return format('%sop: %s does not apply to %s', v_prefix, v_op, v_field);
  end if;

  if v_op in ('is_null', 'not_null', 'changed') then
    if p_node ? 'value' then
      return format('%svalue: %s takes no value', v_prefix, v_op);
    end if;
    return null;
  end if;
  if not p_node ? 'value' then
    return format('%svalue: missing', v_prefix);
  end if;
  v_value := p_node -> 'value';
  if v_op in ('in', 'not_in') then
    if jsonb_typeof(v_value) <> 'array' or jsonb_array_length(v_value) = 0 then
      return format('%svalue: %s needs a non-empty list', v_prefix, v_op);
    elsif jsonb_array_length(v_value) > 100 then
      return format('%svalue: at most 100 values', v_prefix);
    end if;
    for i in 0 .. jsonb_array_length(v_value) - 1 loop
      v_problem := webhooks_private.condition_value_problem(v_kind, v_op, v_field, v_value -> i);
      if v_problem is not null then
        return format('%svalue[%s]: %s', v_prefix, i, v_problem);
      end if;
    end loop;
    return null;
  end if;
  v_problem := webhooks_private.condition_value_problem(v_kind, v_op, v_field, v_value);
  if v_problem is not null then
    return format('%svalue: %s', v_prefix, v_problem);
  end if;
  return null;
end;
$$;

-- private: how many conditions a webhook's conditions hold: all/any/not and leaves
-- together (every JSON object of the tree), 0 for none
create or replace function webhooks_private.condition_count(p_conditions jsonb)
returns integer
language sql
immutable
as $$
  select count(*)::integer from jsonb_path_query(coalesce(p_conditions, 'null'::jsonb), 'strict $.**') n
  where jsonb_typeof(n) = 'object';
$$;

-- private: what a webhook's conditions weigh in its company's
-- webhooks.max_conditions_per_company: one a condition (condition_count), but a
-- contains one per 10 characters of its text and an in or not_in one per 10 values
-- (each at least one). Those leaves cost a write more than one comparison: contains
-- compares its text at each place of the field's first 500 characters
-- (condition_contains_max: until 2026-12-07 its first 10,000, 20 times what its weight
-- allowed), each of its characters in the worst case ("b" and 499 "a" in a field of
-- "a"), and in compares
-- each value. Counted as one, a company's 1,000 made one update of its contact take 5
-- to 8 s, or call condition_compare 95,700 times (test/sql/filters.test.ts). Only
-- configuration calls it.
create or replace function webhooks_private.condition_weight(p_conditions jsonb)
returns integer
language sql
immutable
as $$
  select coalesce(sum(case
           when n ->> 'op' = 'contains' and jsonb_typeof(n -> 'value') = 'string'
             then greatest(1, ceil(length(n ->> 'value') / 10.0))
           when n ->> 'op' in ('in', 'not_in') and jsonb_typeof(n -> 'value') = 'array'
             then greatest(1, ceil(jsonb_array_length(n -> 'value') / 10.0))
           else 1 end), 0)::integer
  from jsonb_path_query(coalesce(p_conditions, 'null'::jsonb), 'strict $.**') n
  where jsonb_typeof(n) = 'object';
$$;

-- private: conditions as create_webhook and update_webhook take them (json: the text as
-- written, which Postgres reads as no number) as the column holds them (jsonb), or a
-- named refusal of what jsonb cannot hold: a number past a numeric's (1e1000000, read
-- as jsonb before any rule here could look: Postgres's own 22003, "value overflows
-- numeric format", naming nothing), \u0000 (22P05). A write of the column itself, a
-- DBA's, meets Postgres's reading of its text first, and its error.
create or replace function webhooks_private.conditions_jsonb(p_conditions json)
returns jsonb
language plpgsql
immutable
as $$
begin
  return p_conditions::jsonb;
exception
  when numeric_value_out_of_range then
    perform webhooks_private.config_error('webhook_conditions_invalid', 'conditions',
      'conditions: a number past what Postgres holds (a numeric: 131072 digits before the point, 16383 after) is not accepted: JSON readers take it as infinity or 0');
  when untranslatable_character then
    perform webhooks_private.config_error('webhook_conditions_invalid', 'conditions',
      'conditions: a text with the NUL character (U+0000) is not accepted: Postgres text cannot hold it');
end;
$$;

-- BEFORE INSERT OR UPDATE, after _100_validate: refuse bad filters, store them tidy.
create or replace function webhooks_private.tg_webhooks__validate_filters()
returns trigger
language plpgsql
as $$
declare
  v_bad text;
  v_problem text;
  v_count integer;
  v_others integer;
  v_max integer;
begin
  if tg_op = 'UPDATE'
     and new.ignore_sources is not distinct from old.ignore_sources
     and new.watch_fields is not distinct from old.watch_fields
     and new.conditions is not distinct from old.conditions then
    return new;
  end if;

  -- Each filter is checked when it is written: a webhook stored before a rule was
  -- added, or watching a column the CRM has dropped since, can still have its other
  -- filters changed (until 2026-12-06 every filter was checked again on any change of
  -- one; test/sql/filters-config.test.ts)
  if tg_op = 'INSERT' or new.ignore_sources is distinct from old.ignore_sources then
    if cardinality(new.ignore_sources) > 20 then
      perform webhooks_private.config_error('webhook_ignore_sources_invalid', 'ignore_sources',
        format('ignore_sources: at most 20 sources, got %s', cardinality(new.ignore_sources)));
    end if;
    -- the setup form shows them: as a webhook's name (10_config.sql), none reorders the
    -- text around it or breaks its line, and each shows (named by its place: no message
    -- echoes a source that holds one)
    select n into v_count from unnest(new.ignore_sources) with ordinality t(s, n)
    where webhooks_private.has_bidi_control(s) order by n limit 1;
    if found then
      perform webhooks_private.config_error('webhook_ignore_sources_invalid', 'ignore_sources',
        format('ignore_sources: a source must not contain bidi controls (%s), as source %s does',
               webhooks_private.bidi_controls_in_words(), v_count));
    end if;
    select n into v_count from unnest(new.ignore_sources) with ordinality t(s, n)
    where s ~ ('[' || webhooks_private.control_characters() || webhooks_private.line_separators() || ']') order by n limit 1;
    if found then
      perform webhooks_private.config_error('webhook_ignore_sources_invalid', 'ignore_sources',
        format('ignore_sources: a source must not contain control characters (tabs, line breaks, escapes, …) nor line or paragraph separators (U+2028, U+2029), as source %s does',
               v_count));
    end if;
    select s into v_bad from unnest(new.ignore_sources) s
    where s is null or btrim(s) = '' or length(s) > 100 limit 1;
    if found then
      perform webhooks_private.config_error('webhook_ignore_sources_invalid', 'ignore_sources',
        format('ignore_sources: a source is a name of 1 to 100 characters, got %s', coalesce(to_jsonb(webhooks_private.quoted_part(v_bad))::text, 'null')));
    end if;
    select n into v_count from unnest(new.ignore_sources) with ordinality t(s, n)
    where webhooks_private.shows_nothing(s) order by n limit 1;
    if found then
      perform webhooks_private.config_error('webhook_ignore_sources_invalid', 'ignore_sources',
        format('ignore_sources: a source must have a character that shows, which source %s has not', v_count));
    end if;
    new.ignore_sources := array(select s from unnest(new.ignore_sources) with ordinality t(s, n) group by s order by min(n));
  end if;

  if tg_op = 'INSERT' or new.watch_fields is distinct from old.watch_fields then
    if cardinality(new.watch_fields) > 100 then
      perform webhooks_private.config_error('webhook_watch_field_unknown', 'watch_fields',
        format('watch_fields: at most 100 fields, got %s', cardinality(new.watch_fields)));
    end if;
    select f into v_bad from unnest(new.watch_fields) f
    where f is null or f <> all (webhooks.contact_fields()) limit 1;
    if found then
      perform webhooks_private.config_error('webhook_watch_field_unknown', 'watch_fields',
        format('watch_fields: unknown contact field %s; known fields: %s',
               coalesce(to_jsonb(webhooks_private.quoted_part(v_bad))::text, 'null'), array_to_string(webhooks.contact_fields(), ', ')));
    end if;
    new.watch_fields := array(select f from unnest(new.watch_fields) with ordinality t(f, n) group by f order by min(n));
  end if;

  if tg_op = 'INSERT' or new.conditions is distinct from old.conditions then
    if new.conditions = 'null'::jsonb then
      new.conditions := null;   -- JSON null says "always", as SQL null does
    end if;
    if new.conditions is not null then
      if octet_length(new.conditions::text) > 16384 then
        v_problem := 'conditions: at most 16384 bytes';
      elsif webhooks_private.condition_count(new.conditions) > 100 then
        v_problem := 'conditions: at most 100 conditions in all';
      else
        v_problem := webhooks_private.condition_problem(new.conditions, '', 1);
      end if;
      if v_problem is not null then
        perform webhooks_private.config_error('webhook_conditions_invalid', 'conditions', v_problem);
      end if;
      -- the company's webhooks together: every contact write that concerns the company
      -- may evaluate all of them, another company's contact too (through a user of this
      -- company assigned to it). One change of a company's conditions at a time, so that
      -- two cannot both see room (the sum's snapshot is taken after the lock).
      v_count := webhooks_private.condition_weight(new.conditions);
      perform pg_advisory_xact_lock(webhooks_private.company_webhooks_lock(new.company_id));
      v_max := webhooks_private.integer_setting('webhooks.max_conditions_per_company');
      select coalesce(sum(webhooks_private.condition_weight(w.conditions)), 0) into v_others
      from webhooks.webhooks w
      where w.company_id = new.company_id and w.id <> new.id and w.conditions is not null;
      -- (a company past it, the limit lowered or the conditions weighed more strictly
      -- since they were written, may still lessen a webhook's: only growing is refused)
      if v_others + v_count > v_max
         and (tg_op = 'INSERT' or v_count > webhooks_private.condition_weight(old.conditions)) then
        perform webhooks_private.config_error('webhook_conditions_limit_reached', 'conditions',
          format('conditions: company %s''s webhooks may have at most %s conditions together (webhooks.max_conditions_per_company; a contains counts one per 10 characters of its text, an in or not_in one per 10 values); its others have %s, this one %s',
                 new.company_id, v_max, v_others, v_count));
      end if;
    end if;
  end if;
  return new;
end;
$$;

drop trigger if exists _110_validate_filters on webhooks.webhooks;
create trigger _110_validate_filters
  before insert or update on webhooks.webhooks
  for each row execute function webhooks_private.tg_webhooks__validate_filters();

------------------------------------------------------------------------------------
-- What a condition means (capture). These run inside every matching contact write:
-- nothing here may raise for any contact value. Their patterns hold no backslash
-- ([0-9], [.]): a literal is read by the writer's session's standard_conforming_strings,
-- and off (an old driver's, a script's) '\.' read as '.', so that "12x5" passed for a
-- number and its cast failed the write; '\d' as 'd', so that a time compared as text
-- (until 2026-12-07; test/sql/filters.test.ts).

-- private: p_actual (a contact's value) against p_value (a condition's value): -1, 0
-- or 1, or null when they do not compare. The condition's value decides how:
--   a number      numerically, with a number or a text that is a plain decimal number
--   true / false  with true / false
--   a time with its zone, on a timestamptz column: as times
--   a date (YYYY-MM-DD)  with a text that starts with a date, as dates
--   other text    with text, byte by byte (case-sensitive; "B" < "a")
-- p_time_field: the leaf's field is a timestamptz column (condition_time_field), asked
-- by the caller once a leaf, not here once a value: the question is a look at the
-- catalog, and an in of 100 time-like texts on a text field asked it 100 times a
-- leaf, ten times what its 100 comparisons cost (test/sql/filters.test.ts).
-- (its third argument was the field's name until 2026-12-07)
drop function if exists webhooks_private.condition_compare(jsonb, jsonb, text);
create or replace function webhooks_private.condition_compare(p_actual jsonb, p_value jsonb, p_time_field boolean)
returns integer
language plpgsql
stable
as $$
declare
  v_actual_type constant text := jsonb_typeof(p_actual);
  v_a_number numeric;
  v_b_number numeric;
  v_a text;
  v_b text;
begin
  if p_actual is null then
    return null;
  end if;
  case jsonb_typeof(p_value)
    when 'number' then
      if v_actual_type = 'number' then
        v_a_number := p_actual::numeric;
      -- ([0-9], not \d: in a database whose collation is ICU, \d matches the digits of
      -- every script, which numeric does not read)
      elsif v_actual_type = 'string'
            and (p_actual #>> '{}') ~ '^[+-]?([0-9]{1,40}([.][0-9]{0,40})?|[.][0-9]{1,40})([eE][+-]?[0-9]{1,3})?$' then
        v_a_number := (p_actual #>> '{}')::numeric;
      else
        return null;
      end if;
      v_b_number := p_value::numeric;
      return case when v_a_number < v_b_number then -1 when v_a_number > v_b_number then 1 else 0 end;
    when 'boolean' then
      if v_actual_type <> 'boolean' then
        return null;
      end if;
      return case when p_actual = p_value then 0 when p_actual::boolean then 1 else -1 end;
    when 'string' then
      if v_actual_type <> 'string' then
        return null;
      end if;
      v_a := p_actual #>> '{}';
      v_b := p_value #>> '{}';
      if p_time_field and v_b ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ]' and webhooks_private.reads_as_time(v_b) then
        -- both sides cast: the column's text is Postgres's own output, the value is
        -- a time (it passed is_iso_time when it was configured, unless the column was
        -- text then: such a value, no time, compares as text, below)
        return case when v_a::timestamptz < v_b::timestamptz then -1
                    when v_a::timestamptz > v_b::timestamptz then 1 else 0 end;
      elsif v_b ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' then
        if v_a !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}' then
          return null;
        end if;
        v_a := left(v_a, 10);   -- ISO dates order as their text does
      end if;
      return case when v_a < v_b collate "C" then -1 when v_a > v_b collate "C" then 1 else 0 end;
    else
      return null;
  end case;
end;
$$;

-- private (condition_holds): is a leaf's field a timestamptz column, so that a value
-- that reads as a time compares with it as one (condition_compare)? A look at the
-- catalog: condition_holds asks it once a leaf, and only of a leaf with a value that
-- begins as a time does. Never of a key of custom.
create or replace function webhooks_private.condition_time_field(p_field text)
returns boolean
language sql
stable
as $$
  select left(p_field, 7) <> 'custom.'
         and coalesce(webhooks_private.condition_field_kind(p_field) = 'timestamp', false);
$$;

-- private: the most characters of one text a condition examines (one home)
create or replace function webhooks_private.condition_text_max()
returns integer
language sql
immutable
as $$
  select 10000;
$$;

-- private: the most characters of a field contains searches for its text. It compares
-- its text (500 characters at most) at each place of the field, each of its characters
-- in the worst case (a text whose prefix repeats, "b" and 499 "a", in a field of "a"):
-- in condition_text_max() characters 5,000,000 comparisons for a leaf that weighs 50 in
-- its company's conditions (condition_weight), about 20 times what 50 other conditions
-- cost a write; in 500, 250,000, 5,000 a unit of weight whatever its text.
create or replace function webhooks_private.condition_contains_max()
returns integer
language sql
immutable
as $$
  select 500;
$$;

-- private: a value of the contact as a condition sees it: a text cut to its first
-- condition_text_max() characters; an object or an array, which no operator but
-- is_null and not_null looks into, empty
create or replace function webhooks_private.condition_value(p_value jsonb)
returns jsonb
language sql
immutable
as $$
  select case jsonb_typeof(p_value)
           when 'string' then
             case when length(p_value #>> '{}') > webhooks_private.condition_text_max()
                  then to_jsonb(left(p_value #>> '{}', webhooks_private.condition_text_max()))
                  else p_value end
           when 'object' then '{}'::jsonb
           when 'array' then '[]'::jsonb
           else p_value
         end;
$$;

-- private: the contact (as capture turns it into JSON) as conditions see it, made
-- once a write: each column's value and each of custom's through condition_value.
-- Conditions run inside the writer's transaction, for every company the contact
-- concerns; without the cut, contains on a text of a megabyte lowered the whole text
-- for every leaf: 10 ms a leaf, 50 s for one update of a contact another company's
-- hundred webhooks watched (BENCHMARKS.md, "What a write's conditions may cost").
-- A contact of at most condition_text_max() bytes (nearly all) holds no text to cut
-- and is taken as it is; a custom that is an array is emptied even then, so that
-- custom.0 never reads its first element (condition_holds reads custom.KEY by path).
-- p_contact must be a value built in memory (to_jsonb of a row): pg_column_size of
-- one stored and compressed would be its compressed size.
create or replace function webhooks_private.condition_subject(p_contact jsonb)
returns jsonb
language plpgsql
immutable
as $$
begin
  -- (plpgsql, not sql: a sql function with a subquery is not inlined, and is planned
  -- again in every statement that calls it, hundreds of µs a write)
  if pg_column_size(p_contact) <= webhooks_private.condition_text_max()
     and jsonb_typeof(p_contact -> 'custom') is distinct from 'array' then
    return p_contact;
  end if;
  return (select jsonb_object_agg(e.key,
                   case when e.key = 'custom' and jsonb_typeof(e.value) = 'object'
                        then (select coalesce(jsonb_object_agg(c.key, webhooks_private.condition_value(c.value)), '{}'::jsonb)
                              from jsonb_each(e.value) c)
                        else webhooks_private.condition_value(e.value) end)
          from jsonb_each(p_contact) e);
end;
$$;

-- private: the keys of custom an update changed (their values differ, or one side
-- lacks them); null for no update (p_old null). Made once a write, from the whole
-- values, so that "changed" sees a change past what condition_subject keeps.
create or replace function webhooks_private.custom_changes(p_old jsonb, p_new jsonb)
returns text[]
language plpgsql
immutable
strict
as $$
begin
  if p_old = p_new then
    return '{}';
  end if;
  return array(select coalesce(o.key, n.key)
               from jsonb_each(case when jsonb_typeof(p_old) = 'object' then p_old else '{}' end) o
               full join jsonb_each(case when jsonb_typeof(p_new) = 'object' then p_new else '{}' end) n on n.key = o.key
               where o.value is distinct from n.value);
end;
$$;

-- private: does the contact meet the condition? p_contact: the contact as conditions
-- see it (condition_subject of the row the payload is built from). For an update,
-- p_changed names the columns it changed and p_changed_custom the keys of custom
-- (custom_changes); for every other action both are null (changed is false).
-- An update's p_changed may be null while it is not known yet: capture asks first,
-- before it compares the two rows (25_capture.sql). Then "changed" on a column is
-- unknown, and so may be the answer: null, "perhaps", true or false only when that
-- leaf cannot decide it (SQL's three-valued logic: false and unknown is false, true
-- or unknown is true). Every other leaf is true or false, never null.
drop function if exists webhooks_private.condition_holds(jsonb, jsonb, jsonb);
drop function if exists webhooks_private.condition_holds(jsonb, jsonb, text[], jsonb);
create or replace function webhooks_private.condition_holds(p_condition jsonb, p_contact jsonb, p_changed text[], p_changed_custom text[])
returns boolean
language plpgsql
stable
as $$
declare
  v_field text;
  v_op text;
  v_value jsonb;
  v_actual jsonb;
  v_items jsonb;
  v_holds boolean;
  v_result boolean;
  v_found boolean;
  v_time boolean;   -- the field is a time (condition_time_field); null: not asked yet
begin
  -- all/any walk their list by index: plain expressions, no query per node
  if p_condition ? 'all' then
    v_items := p_condition -> 'all';
    v_result := true;
    for i in 0 .. jsonb_array_length(v_items) - 1 loop
      v_holds := webhooks_private.condition_holds(v_items -> i, p_contact, p_changed, p_changed_custom);
      if not v_holds then
        return false;
      elsif v_holds is null then
        v_result := null;
      end if;
    end loop;
    return v_result;
  elsif p_condition ? 'any' then
    v_items := p_condition -> 'any';
    v_result := false;
    for i in 0 .. jsonb_array_length(v_items) - 1 loop
      v_holds := webhooks_private.condition_holds(v_items -> i, p_contact, p_changed, p_changed_custom);
      if v_holds then
        return true;
      elsif v_holds is null then
        v_result := null;
      end if;
    end loop;
    return v_result;
  elsif p_condition ? 'not' then
    return not webhooks_private.condition_holds(p_condition -> 'not', p_contact, p_changed, p_changed_custom);
  end if;

  v_field := p_condition ->> 'field';
  v_op := p_condition ->> 'op';
  v_value := p_condition -> 'value';
  -- by path: custom is not copied out for each leaf, only the value read
  v_actual := case when left(v_field, 7) = 'custom.' then p_contact #> array['custom', substr(v_field, 8)]
                   else p_contact -> v_field end;
  if v_actual = 'null'::jsonb then
    v_actual := null;
  end if;

  -- (is the field a time? asked once a leaf, and only when a value begins as a time
  -- does: condition_time_field, a look at the catalog)
  if v_op in ('eq', 'ne', 'lt', 'lte', 'gt', 'gte') and v_actual is not null then
    v_time := coalesce(jsonb_typeof(v_value) = 'string' and (v_value #>> '{}') ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ]', false)
              and webhooks_private.condition_time_field(v_field);
  end if;

  case v_op
    when 'eq' then
      return coalesce(webhooks_private.condition_compare(v_actual, v_value, v_time) = 0, false);
    when 'ne' then
      return coalesce(webhooks_private.condition_compare(v_actual, v_value, v_time) <> 0, true);
    when 'in', 'not_in' then
      -- text in a list of texts is one lookup; the loop is for numbers, dates, times
      v_found := coalesce(jsonb_typeof(v_actual) = 'string' and v_value ? (v_actual #>> '{}'), false);
      if not v_found and v_actual is not null
         and (jsonb_typeof(v_actual) <> 'string' or (v_actual #>> '{}') ~ '^[-+.0-9]') then
        for i in 0 .. jsonb_array_length(v_value) - 1 loop
          if v_time is null and jsonb_typeof(v_value -> i) = 'string' and (v_value ->> i) ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ]' then
            v_time := webhooks_private.condition_time_field(v_field);
          end if;
          if webhooks_private.condition_compare(v_actual, v_value -> i, coalesce(v_time, false)) = 0 then
            v_found := true;
            exit;
          end if;
        end loop;
      end if;
      return v_found = (v_op = 'in');
    when 'lt' then
      return coalesce(webhooks_private.condition_compare(v_actual, v_value, v_time) < 0, false);
    when 'lte' then
      return coalesce(webhooks_private.condition_compare(v_actual, v_value, v_time) <= 0, false);
    when 'gt' then
      return coalesce(webhooks_private.condition_compare(v_actual, v_value, v_time) > 0, false);
    when 'gte' then
      return coalesce(webhooks_private.condition_compare(v_actual, v_value, v_time) >= 0, false);
    when 'contains' then
      -- (coalesce: an empty field is false, not unknown, inside all/any/not as well)
      return coalesce(jsonb_typeof(v_actual) = 'string'
                      and strpos(lower(left(v_actual #>> '{}', webhooks_private.condition_contains_max())),
                                 lower(v_value #>> '{}')) > 0, false);
    when 'starts_with' then
      return coalesce(jsonb_typeof(v_actual) = 'string'
                      and starts_with(lower(v_actual #>> '{}'), lower(v_value #>> '{}')), false);
    when 'is_null' then
      return v_actual is null;
    when 'not_null' then
      return v_actual is not null;
    when 'changed' then
      if p_changed_custom is null then
        return false;   -- not an update
      elsif left(v_field, 7) = 'custom.' then
        return substr(v_field, 8) = any (p_changed_custom);
      elsif p_changed is null then
        return null;    -- an update whose changed columns are not known yet
      end if;
      return v_field = any (p_changed);
    else
      return false;   -- configuration refuses any other operator
  end case;
end;
$$;
