-- bpd-webhooks engine: the report behind REPORTS >> Webhooks.
--
-- Public API, read-only:
--   webhooks.webhook_report(since, until, webhook_id)
--                                          every webhook of the company (or the one
--                                          named) with times fired / succeeded /
--                                          failed in the range
--                                          (counting: 50_report_counts.sql)
--   webhooks.webhook_report_counts(since, until)
--                                          its counts alone, of every webhook at once
--   webhooks.webhooks_history(webhook, …)  one webhook's deliveries, newest first
--                                          (GraphQL: the field `history` of Webhook),
--                                          a page after the row it is asked to start
--                                          after; webhooks_history_oldest_first the same
--                                          oldest first (`historyOldestFirst`)
--   webhooks.webhooks_history_count(webhook, …)
--                                          how many: the field `historyCount`
--   webhooks.webhooks_history_counts(webhook, since, until)
--                                          how many in all, succeeded, failed and
--                                          pending at once: `historyCounts`
--   webhooks.company_statuses(), webhooks.company_users()
--                                          what a webhook's filters may name, a page
--                                          at a time
--   webhooks.company_statuses_matching(search), webhooks.company_users_matching(search)
--                                          the setup form's search of them, at most
--                                          company_choices_up_to() (and one more)
--   webhooks.company_statuses_named(ids), webhooks.company_users_named(ids)
--                                          the names of some of them (the history of
--                                          changes), at most names_asked_max() ids
--   webhooks.current_company_name()        whose webhooks the page shows
-- The report and the history run as the caller (row-level security applies); the
-- CRM lookups run as their owner (or walk a function that does) and answer for the
-- caller's company only.

------------------------------------------------------------------------------------
-- The caller's company's statuses and users: what a webhook's status_id / user_id
-- may name, and their names for the page. The CRM tables are granted to no API role:
-- the whole lists walk them through a function that runs as its owner, the searches
-- and the lookups below are functions that run as their owner; each answers for the
-- caller's company only.

-- private: a CRM-made name or email as the API answers it: its first 200 characters.
-- The CRM's texts have no bound of their own, and one of a user's name of 10 MB,
-- answered whole, made each admin's page that lists or names that user load 10 MB
-- (test/api/choices.test.ts). The one home of that cut: the whole lists, the searches,
-- the names of some ids, the report's names, the company's name and a delivery's
-- contact; and of the actors kept unbounded: disabledBy, an audit row's actor and a
-- backfill's createdBy. (The indexes of migration 0051 key the same 200 characters, lowered.)
create or replace function webhooks_private.crm_text_shown(p_text text)
returns text
language sql
immutable
parallel safe
as $$
  select left(p_text, 200);
$$;

-- public: who disabled a webhook, who made a change and who started a backfill, as the
-- API answers them (GraphQL's disabledBy, actor and createdBy; sql/70_graphql.sql hides
-- the columns): cut as a CRM name is. A token's subject is bounded when it is read
-- (api/auth.ts), but one written before that bound, or a DBA's session's
-- (jwt.claims.sub, the role), has none: an actor of 10 MB made each page of its
-- company's audit log load 10 MB (test/api/audit.test.ts).
create or replace function webhooks.webhooks_disabled_by(w webhooks.webhooks)
returns text
language sql
stable
parallel safe
as $$
  select webhooks_private.crm_text_shown(w.disabled_by);
$$;

create or replace function webhooks.audit_log_actor(a webhooks.audit_log)
returns text
language sql
stable
parallel safe
as $$
  select webhooks_private.crm_text_shown(a.actor);
$$;

create or replace function webhooks.backfills_created_by(b webhooks.backfills)
returns text
language sql
stable
parallel safe
as $$
  select webhooks_private.crm_text_shown(b.created_by);
$$;

-- public (GraphQL: DeliveryAttempt.succeeded): whether the receiver took this attempt,
-- as the relay's settle judged it (webhooks_private.delivered_status, the one home of
-- the rule): a 302's attempt succeeds and keeps its note "redirect not followed: …" in
-- error, which the page shows as a note beside a success, not as an error.
create or replace function webhooks.delivery_attempts_succeeded(a webhooks.delivery_attempts)
returns boolean
language sql
stable
parallel safe
as $$
  select webhooks_private.delivered_status(a.status_code);
$$;

-- The URL an attempt was sent to (its url_id, sql/30_delivery.sql): null for one
-- recorded before 2026-12-07, when attempts did not keep it. Read as the caller, under
-- row-level security: an attempt's URL is its company's.
create or replace function webhooks.delivery_attempts_url(a webhooks.delivery_attempts)
returns text
language sql
stable
parallel safe
as $$
  select u.url from webhooks_private.webhook_urls u where u.id = a.url_id and u.webhook_id = a.webhook_id;
$$;

-- (views over the CRM's users and statuses for the walk below, until 2026-12-06: the
-- migrate locks the engine's relations ACCESS EXCLUSIVE, and a lock of a view takes the
-- tables it reads in the same mode, so sql/ took crm.users and crm.statuses whole and
-- waited for a DBA's read of them; test/sql/migrate.test.ts)
select webhooks_private.drop_function_unless('webhooks_private.company_user_after(text, bigint)',
  'p_name_key text, p_id bigint', 'TABLE(id bigint, name text, email text, name_key text)');
select webhooks_private.drop_function_unless('webhooks_private.company_status_after(text, bigint)',
  'p_name_key text, p_id bigint', 'TABLE(id bigint, name text, name_key text)');
drop view if exists webhooks_private.company_users_listed;
drop view if exists webhooks_private.company_statuses_listed;

-- private: the caller's company's first user and status after the one given (by its
-- name_key and id; '' and the least id: the first), in the order of its index of
-- migration 0051 (the company, the first 200 characters of the lowered name, the id).
-- One probe of the index: enable_sort off, so that no plan reads the company's every
-- entry to sort them for one (with the indexes of migration 0060 beside it, a company
-- the planner took for small was, at times: 20,000 entries for each row of a page).
-- As their owner (the CRM tables are granted to no API role); the whole lists below
-- that walk them run as the caller and are inlined, so that the page's limit and
-- offset (at most 10,000: PAGE_TOO_DEEP) bound how far the walk goes: a function that
-- runs as its owner is not inlined, and the whole list was read and sorted for each
-- page, every user of the company (20,000 of a brokerage) for a page of a hundred
-- (test/sql/choice-search.test.ts).
create or replace function webhooks_private.company_user_after(p_name_key text, p_id bigint)
returns table (id bigint, name text, email text, name_key text)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
set enable_sort = off
set jit = off
as $$
  select u.id, webhooks_private.crm_text_shown(u.name), webhooks_private.crm_text_shown(u.email), left(lower(u.name), 200) collate "C"
  from crm.users u
  where u.company_id = webhooks.current_company_id()
    and (left(lower(u.name), 200) collate "C", u.id) > (p_name_key collate "C", p_id)
  order by u.company_id, left(lower(u.name), 200) collate "C", u.id
  limit 1;
$$;

create or replace function webhooks_private.company_status_after(p_name_key text, p_id bigint)
returns table (id bigint, name text, name_key text)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
set enable_sort = off
set jit = off
as $$
  select s.id, webhooks_private.crm_text_shown(s.name), left(lower(s.name), 200) collate "C"
  from crm.statuses s
  where s.company_id = webhooks.current_company_id()
    and (left(lower(s.name), 200) collate "C", s.id) > (p_name_key collate "C", p_id)
  order by s.company_id, left(lower(s.name), 200) collate "C", s.id
  limit 1;
$$;

-- private: true, or refused while the CRM's row-level security may hide rows of
-- p_tables from the engine's owner (webhooks_private.refuse_crm_rows_hidden): for the
-- lists below, which run as the caller and walk the tables as the owner a row at a
-- time, and answered fewer rows (until 2026-12-07). Asked once a page: a condition
-- of the walk's first step that names no column, which Postgres evaluates once.
create or replace function webhooks_private.crm_rows_shown_whole(p_tables text[])
returns boolean
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform webhooks_private.refuse_crm_rows_hidden(p_tables);
  return true;
end;
$$;

-- public: the status tags of the caller's company, by name (lowered, in the order of
-- its bytes), a page at a time (above): a walk of the index, one entry after the
-- other (company_status_after); the page's limit stops the walk. (Ordered by the
-- index's key alone, a company the planner took for small, a brokerage imported since
-- the table was last analyzed, was read whole and sorted; the searches below turn the
-- sort off, which a function that is inlined may not.)
create or replace function webhooks.company_statuses()
returns table (id bigint, name text)
language sql
stable
as $$
  with recursive walk as (
    select s.* from webhooks_private.company_status_after('', -9223372036854775808) s
    where webhooks_private.crm_rows_shown_whole(array['crm.statuses'])
    union all
    select n.* from walk w cross join lateral webhooks_private.company_status_after(w.name_key, w.id) n)
  select w.id, w.name from walk w;
$$;

-- public: the users of the caller's company, as above
create or replace function webhooks.company_users()
returns table (id bigint, name text, email text)
language sql
stable
as $$
  with recursive walk as (
    select u.* from webhooks_private.company_user_after('', -9223372036854775808) u
    where webhooks_private.crm_rows_shown_whole(array['crm.users'])
    union all
    select n.* from walk w cross join lateral webhooks_private.company_user_after(w.name_key, w.id) n)
  select w.id, w.name, w.email from walk w;
$$;

-- The setup form's pickers search as one types rather than list every status and
-- user: a brokerage has 20,000 users, and listing them took 200 requests, each
-- reading and sorting all of them (past 10,000 the API refused the page,
-- PAGE_TOO_DEEP, and the form did not open). A search matches a prefix of the name,
-- of the name from any later word on ("Smith" finds "Anna Smith", "Cruz" "Mary Ann de
-- la Cruz", "Jones" "Anna Smith-Jones": whitespace or punctuation starts a word), or
-- of a user's email, case-insensitive: a range of the company's entries of the indexes
-- of migration 0051 and of the table of words of migration 0069, read in their order
-- and cut at one more than the most a search shows, so that it reads about a hundred
-- rows whatever the company's size (test/sql/choice-search.test.ts). (A trigram index, pg_trgm, would
-- find any word, but reads every row a short or common prefix matches, to sort them
-- for the first few.) The text typed is a value compared, never a pattern: % and _
-- are themselves.

-- public: the most rows a search shows; it answers one more when more match (the
-- page then says "keep typing")
create or replace function webhooks.company_choices_up_to()
returns integer
language sql
immutable
as $$
  select 20;
$$;

-- private: the range of a prefix in the indexes' order ("C", lower(), 200 characters:
-- migration 0051): from the prefix to the prefix and the last code point. A name that
-- has U+10FFFF, a noncharacter, right after the prefix sorts after it and is not found.
create or replace function webhooks_private.prefix_range_end(p_prefix text)
returns text
language sql
immutable
strict
set search_path = pg_catalog, pg_temp
as $$
  select p_prefix || chr(1114111);
$$;

-- private: the longest search, in characters (search_max_length, below; the pickers'
-- boxes take no more: webhooks.input_bounds)
create or replace function webhooks_private.search_max_length()
returns integer
language sql
immutable
as $$
  select 1000;
$$;

-- private: what the indexes hold of a text typed (null: nothing typed: the first
-- ones). A search of more than 1,000 characters is refused by name
-- (search_max_length): each row a search reads is compared with all of it, and only
-- the request's size bounded it.
select webhooks_private.drop_function_unless('webhooks_private.indexed_prefix(text)', 'p_search text', 'text');
create or replace function webhooks_private.indexed_prefix(p_search text)
returns text
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
  if length(p_search) > webhooks_private.search_max_length() then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('a search has at most %s characters, not %s', webhooks_private.search_max_length(), length(p_search)),
      constraint = 'search_max_length',
      column = 'search';
  end if;
  return left(lower(coalesce(p_search, '')), 200) collate "C";
end;
$$;

-- public: the most characters the API takes of the text an admin types, by input:
-- a webhook's name and URL (webhook_name_too_long, webhook_url_invalid, 10_config.sql)
-- and a picker's search (search_max_length). The page gives its boxes these bounds
-- (maxlength): past them, what was typed was sent whole and refused by name.
create or replace function webhooks.input_bounds()
returns jsonb
language sql
immutable
as $$
  select jsonb_build_object('name', webhooks_private.webhook_name_max(),
                            'url', webhooks_private.webhook_url_max(),
                            'search', webhooks_private.search_max_length());
$$;

-- (the searches of words 2 to 4 by the indexes of migration 0060, until 2026-12-06:
-- migration 0069's table of every word answers for them)
drop function if exists webhooks_private.users_from_word(text, integer);
drop function if exists webhooks_private.statuses_from_word(text, integer);

-- Migration 0069 keeps that table, and with it what fills it (changed only by a
-- migration that fills it again): webhooks_private.name_words cuts a name in words,
-- and the triggers webhooks_user_words_* and webhooks_status_words_* on crm.users and
-- crm.statuses run
-- webhooks_private.tg_crm_name_words__kept after each statement, which adds and drops
-- the words of the rows it wrote (webhooks_private.crm_name_words_add and
-- webhooks_private.crm_name_words_drop).

-- private: the ids of the caller's company's users (p_kind 'u') or statuses ('s') one
-- of whose words after the first (webhooks_private.crm_name_words, migration 0069), with
-- the rest of the name after it, starts with p_search, in the order of those words, at
-- most company_choices_up_to() + 1; none when nothing is typed (else they would add
-- other first ones to the first ones by name). The range of the company's entries is
-- read in its order until that many ids are found: a name of many words that match
-- is one id (read as such, a name of 100 words starting with "a" was a search's whole
-- answer, and the page took it for all there is). A search longer than the entries'
-- 200 characters is matched on the name after. enable_sort off, as the searches below.
create or replace function webhooks_private.ids_by_word(p_kind "char", p_search text)
returns setof bigint
language plpgsql
stable
rows 21
set search_path = pg_catalog, pg_temp
set enable_sort = off
set jit = off
as $$
declare
  v_prefix constant text := webhooks_private.indexed_prefix(p_search);
  v_found bigint[] := '{}';
  v_word record;
begin
  if coalesce(p_search, '') = '' then
    return;
  end if;
  for v_word in
    select w.id, w.word_at
    from webhooks_private.crm_name_words w
    where w.company_id = webhooks.current_company_id()
      and w.kind = p_kind
      and w.key >= v_prefix
      and w.key <= webhooks_private.prefix_range_end(v_prefix)
      and starts_with(w.key, left(lower(p_search), 200))
    order by w.company_id, w.kind, w.key, w.id
  loop
    continue when v_word.id = any(v_found);
    continue when length(p_search) > 200 and not starts_with(substr(lower(
      case p_kind when 'u' then (select u.name from crm.users u where u.id = v_word.id)
                  else (select s.name from crm.statuses s where s.id = v_word.id) end), v_word.word_at), lower(p_search));
    v_found := v_found || v_word.id;
    return next v_word.id;
    exit when cardinality(v_found) > webhooks.company_choices_up_to();
  end loop;
end;
$$;

-- private: whether p_text, a name or email of a row in the range of the indexes that
-- p_search reads (indexed_prefix), starts with p_search, whatever the case: every row
-- of the range does when the range holds all of p_search (200 characters or fewer,
-- lowered), else the whole text is compared: a name of megabytes is lowered whole once
-- less a row (the order of the range lowers it once more). Taken in whole by its
-- callers (no SET).
create or replace function webhooks_private.range_starts_with(p_text text, p_search text)
returns boolean
language sql
immutable
as $$
  select char_length(lower(coalesce(p_search, ''))) <= 200
         or starts_with(lower(p_text), lower(coalesce(p_search, '')));
$$;

-- The searches answer a name or email by its first 200 characters (crm_text_shown): the
-- CRM's have no bound of their own, and the picker shows a line of each (21 users of 4 MB names and
-- emails answered 168 MB, in 2.6 to 3.5 s; 1.8 s now, test/sql/choice-search.test.ts).

-- public: the caller's company's users whose name, one of its later words (and the
-- rest of the name after it), or email starts with search (case-insensitive; null or
-- empty: the first ones by name), by name, at most company_choices_up_to() + 1. Each
-- of the three reads its index's range in order and stops at that many (no CTE nor
-- join before them: the range's every row was sorted). The words' ids are the
-- company's (ids_by_word), looked up by the key alone: with the company named too, the
-- planner read the company's every entry of the email's index for them.
-- enable_sort off: a company the planner takes for small (a brokerage imported since
-- the table was last analyzed) was read whole by its company_id index and sorted, for
-- 21 rows (test/sql/choice-search.test.ts); the sort of the three's few rows remains.
create or replace function webhooks.company_users_matching(search text)
returns table (id bigint, name text, email text)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
set enable_sort = off
set jit = off
as $$
  select webhooks_private.refuse_crm_rows_hidden(array['crm.users']);
  select f.id, f.name, f.email
  from ((select u.id, webhooks_private.crm_text_shown(u.name) as name, webhooks_private.crm_text_shown(u.email) as email
         from crm.users u
         where u.company_id = webhooks.current_company_id()
           and left(lower(u.name), 200) collate "C" >= webhooks_private.indexed_prefix(search)
           and left(lower(u.name), 200) collate "C" <= webhooks_private.prefix_range_end(webhooks_private.indexed_prefix(search))
           and webhooks_private.range_starts_with(u.name, search)
         order by u.company_id, left(lower(u.name), 200) collate "C", u.id
         limit webhooks.company_choices_up_to() + 1)
        union
        (select u.id, webhooks_private.crm_text_shown(u.name), webhooks_private.crm_text_shown(u.email)
         from crm.users u
         where u.company_id = webhooks.current_company_id()
           and left(lower(u.email), 200) collate "C" >= webhooks_private.indexed_prefix(search)
           and left(lower(u.email), 200) collate "C" <= webhooks_private.prefix_range_end(webhooks_private.indexed_prefix(search))
           and webhooks_private.range_starts_with(u.email, search)
         order by u.company_id, left(lower(u.email), 200) collate "C", u.id
         limit webhooks.company_choices_up_to() + 1)
        union
        select u.id, webhooks_private.crm_text_shown(u.name), webhooks_private.crm_text_shown(u.email)
        from crm.users u
        where u.id = any (array(select webhooks_private.ids_by_word('u', search)))) f
  order by f.name, f.id
  limit webhooks.company_choices_up_to() + 1;
$$;

-- public: the caller's company's statuses whose name, or one of its later words,
-- starts with search, as above
create or replace function webhooks.company_statuses_matching(search text)
returns table (id bigint, name text)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
set enable_sort = off
set jit = off
as $$
  select webhooks_private.refuse_crm_rows_hidden(array['crm.statuses']);
  select f.id, f.name
  from ((select s.id, webhooks_private.crm_text_shown(s.name) as name
         from crm.statuses s
         where s.company_id = webhooks.current_company_id()
           and left(lower(s.name), 200) collate "C" >= webhooks_private.indexed_prefix(search)
           and left(lower(s.name), 200) collate "C" <= webhooks_private.prefix_range_end(webhooks_private.indexed_prefix(search))
           and webhooks_private.range_starts_with(s.name, search)
         order by s.company_id, left(lower(s.name), 200) collate "C", s.id
         limit webhooks.company_choices_up_to() + 1)
        union
        select s.id, webhooks_private.crm_text_shown(s.name)
        from crm.statuses s
        where s.id = any (array(select webhooks_private.ids_by_word('s', search)))) f
  order by left(lower(f.name), 200) collate "C", f.id
  limit webhooks.company_choices_up_to() + 1;
$$;

-- private: the most ids one call of company_users_named / company_statuses_named
-- takes: each is one probe of the key. A page of the history of changes names at
-- most two of each kind an entry (from and to), of a page of at most 1,000 entries
-- (the API's largest page), and the page asks those of its default page (100).
create or replace function webhooks_private.names_asked_max()
returns integer
language sql
immutable
as $$
  select 1000;
$$;

-- private: refuses more ids than names_asked_max() (column: the argument)
create or replace function webhooks_private.require_few_ids(p_ids bigint[])
returns void
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
  if cardinality(p_ids) > webhooks_private.names_asked_max() then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('ask for the names of at most %s ids at once, not %s', webhooks_private.names_asked_max(), cardinality(p_ids)),
      constraint = 'names_asked_max',
      column = 'ids';
  end if;
end;
$$;

-- public: the caller's company's users of those ids (an id not the company's, or not
-- there, has no row), by id: what the history of changes names, for the page shown alone
create or replace function webhooks.company_users_named(ids bigint[])
returns table (id bigint, name text, email text)
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform webhooks_private.require_few_ids(ids);
  perform webhooks_private.refuse_crm_rows_hidden(array['crm.users']);
  -- by the key alone, then the company's kept (offset 0: not planned together, where
  -- the company's index, for a company the planner took for small, read all of it)
  return query
    select u.id, webhooks_private.crm_text_shown(u.name), webhooks_private.crm_text_shown(u.email)
    from (select u.id, u.name, u.email, u.company_id from crm.users u where u.id = any (ids) offset 0) u
    where u.company_id = webhooks.current_company_id()
    order by u.id;
end;
$$;

-- public: the caller's company's statuses of those ids, as above
create or replace function webhooks.company_statuses_named(ids bigint[])
returns table (id bigint, name text)
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform webhooks_private.require_few_ids(ids);
  perform webhooks_private.refuse_crm_rows_hidden(array['crm.statuses']);
  return query
    select s.id, webhooks_private.crm_text_shown(s.name)
    from (select s.id, s.name, s.company_id from crm.statuses s where s.id = any (ids) offset 0) s
    where s.company_id = webhooks.current_company_id()
    order by s.id;
end;
$$;

-- private: the name of the caller's company's status and user of those ids (null: none,
-- or not the company's), as the report names the ones its webhooks filter on: each
-- one row by its key, for the webhooks of the page alone. (The company's every status
-- and user, read for each page to name a few, grew with the company's CRM.) Strict:
-- not called for a webhook without that filter.
create or replace function webhooks_private.company_status_name(p_status_id bigint)
returns text
language sql
stable
strict
security definer
set search_path = pg_catalog, pg_temp
as $$
  select webhooks_private.crm_text_shown(s.name) from crm.statuses s where s.id = p_status_id and s.company_id = webhooks.current_company_id();
$$;

create or replace function webhooks_private.company_user_name(p_user_id bigint)
returns text
language sql
stable
strict
security definer
set search_path = pg_catalog, pg_temp
as $$
  select webhooks_private.crm_text_shown(u.name) from crm.users u where u.id = p_user_id and u.company_id = webhooks.current_company_id();
$$;

------------------------------------------------------------------------------------
-- The report (REPORTS >> Webhooks): every webhook of the company, active and
-- disabled, with how often it fired in a date range and how that went.

-- (made again, with webhook_report, only when its attributes change: drop_type_unless)
select webhooks_private.drop_type_unless('webhooks.webhook_report_row',
  'webhook_id bigint, name text, url text, actions webhooks.action[], fields text[], status_id bigint, status_name text, user_id bigint, user_name text, created_at timestamp with time zone, enabled boolean, disabled_at timestamp with time zone, disabled_by text, disabled_reason text, deleted_filter_target text, ignore_sources text[], watch_fields text[], conditions jsonb, max_in_flight integer, rate_limit integer, times_fired bigint, times_succeeded bigint, times_failed bigint, times_pending bigint, failures_in_a_row integer, failing_since timestamp with time zone, paused_until timestamp with time zone, disables_at timestamp with time zone');
do $type$
begin
  if to_regtype('webhooks.webhook_report_row') is not null then return; end if;
create type webhooks.webhook_report_row as (
  webhook_id      bigint,
  name            text,
  url             text,
  actions         webhooks.action[],
  fields          text[],
  status_id       bigint,
  status_name     text,
  user_id         bigint,
  user_name       text,
  created_at      timestamptz,
  enabled         boolean,
  disabled_at     timestamptz,
  disabled_by     text,
  disabled_reason text,
  -- the user or status it was filtered on, which the CRM deleted, until its admin
  -- chooses again (10_config.sql)
  deleted_filter_target text,
  ignore_sources  text[],
  watch_fields    text[],
  conditions      jsonb,
  -- fleet-wide limits: requests at once (null: webhooks.max_in_flight), per second (null: none)
  max_in_flight   integer,
  rate_limit      integer,
  -- deliveries created in the range, and how many of them ended each way so far
  times_fired     bigint,
  times_succeeded bigint,
  times_failed    bigint,
  times_pending   bigint,
  -- an enabled webhook whose attempts are failing, as the relay's circuit breaker counts
  -- them (28_lanes.sql): attempts failed in a row (0: the last one succeeded), since
  -- when, until when its deliveries wait for the next try (null: they go now), and
  -- when it will be disabled if none succeeds (webhooks.auto_disable_after)
  failures_in_a_row integer,
  failing_since   timestamptz,
  paused_until    timestamptz,
  disables_at     timestamptz
);
end;
$type$;

-- (test sends, webhooks.send_test_webhook in 47_audit.sql, are in the history but not
-- in Times Fired: the counting leaves them out, 50_report_counts.sql)
drop function if exists webhooks_private.count_tests(bigint, timestamptz, timestamptz);

-- private: where the history the caller can read ends, for counting up to p_until
-- (null: open): the start of tomorrow (UTC) when no delivery is created later, which
-- is always so unless a DBA wrote one by hand; else p_until. Counting up to it rather
-- than to an open end leaves out the partitions made two weeks ahead (22_outbox.sql),
-- which every webhook's count of its days not rolled up would otherwise plan (about
-- 0.3 ms a partition: most of the report's time). One probe of those partitions, once
-- a report.
create or replace function webhooks_private.history_end(p_until timestamptz)
returns timestamptz
language plpgsql
stable
as $$
declare
  v_tomorrow constant timestamptz := webhooks_private.utc_day_start(webhooks_private.utc_day(now()) + 1);
  v_later boolean;
begin
  if p_until <= v_tomorrow then
    return p_until;
  end if;
  execute format('select exists (select 1 from webhooks.delivery_history h where h.created_at >= %L)', v_tomorrow)
  into v_later;
  return case when v_later then p_until else v_tomorrow end;
end;
$$;

-- private: refuses half of the row a page starts after: the page starts after the row
-- its key (p_key, as the function's argument names it) and after_id name together,
-- both or neither (history_after_row, 22023, the COLUMN naming the one missing). The
-- message names the list paged (p_list: "the report") and what its rows are (p_row:
-- "webhook"). The one home of that refusal, for every list that pages by a row:
-- history_after (below: the report and a webhook's history) and
-- webhooks.delivery_attempts_latest_first.
drop function if exists webhooks_private.refuse_half_row(text, boolean, boolean);
create or replace function webhooks_private.refuse_half_row(p_list text, p_row text, p_key text,
                                                            p_key_given boolean, p_id_given boolean)
returns void
language plpgsql
immutable
as $$
begin
  if p_key_given <> p_id_given then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('a page of %s starts after the %s named by %s and after_id: give both or neither (%s is missing)',
                       p_list, p_row, p_key, case when p_id_given then p_key else 'after_id' end),
      constraint = 'history_after_row',
      column = case when p_id_given then p_key else 'after_id' end;
  end if;
end;
$$;

-- private: the row a page starts after, as webhooks_history,
-- webhooks_history_oldest_first and the report's pages (webhook_report) take it
-- (after_created_at and after_id: the created_at and id of the last row of the page
-- before, in the list's own order; p_list and p_row: the list and its rows as the
-- refusal names them): both or neither (refuse_half_row, above), its time within what
-- may be asked (requested_time_range, 22008, after_created_at). Its created_at (null:
-- none, the list's first page). Immutable, as requested_time.
drop function if exists webhooks_private.history_after(timestamptz, bigint);
create or replace function webhooks_private.history_after(p_list text, p_row text, p_created_at timestamptz, p_id bigint)
returns timestamptz
language plpgsql
immutable
as $$
begin
  perform webhooks_private.refuse_half_row(p_list, p_row, 'after_created_at', p_created_at is not null, p_id is not null);
  return webhooks_private.requested_time(p_created_at, 'after_created_at');
end;
$$;

-- private: the caller's company's webhook next after (p_created_at, p_id) in the
-- report's order, newest first. One step of the report's walk (webhook_report,
-- below): each step reads one row of the index (company_id, created_at, id). Without
-- sorts, so that its order is the index's whatever the statistics say: a planner
-- that expected a company to have a webhook or two (a table not analyzed yet) took
-- the company's index and sorted all its webhooks at each step, 200 rows read a step
-- for a company of 350. (Its SET keeps it a function of its own, not inlined: one
-- plan for the walk's every step, kept for the statement.) As the caller, so that
-- row-level security keeps it to the caller's company.
create or replace function webhooks_private.next_listed_webhook(p_created_at timestamptz, p_id bigint)
returns setof webhooks.webhooks
language sql
stable
set enable_sort = off
set jit = off
as $$
  select w.* from webhooks.webhooks w
  where (w.created_at, w.id) < (p_created_at, p_id)
  order by w.created_at desc, w.id desc
  limit 1;
$$;

-- public: the report for [since, until); null ends are open. Newest webhooks first.
-- With webhook_id, that webhook's line alone (a history page needs no other: the
-- whole report counts every webhook of the company, 100 at most, each its own
-- statement); nothing when it is not the caller's company's. With_counts false: the
-- webhooks without their counts (null), which are not counted: GraphQL pages the
-- report (API_DEFAULT_PAGE_SIZE a page), and each page counted every webhook of the
-- company again; the page asks the counts once, of webhook_report_counts (below),
-- and its pages without them.
--
-- The page after one is asked after its last row (after_created_at and after_id: its
-- created_at and webhook id, both or neither, as a history's: history_after, above):
-- the webhooks after it in the report's order. They are walked a row at a time by the
-- index (company_id, created_at, id), as far as the page's LIMIT reads them, and
-- come in that order (no sort: a sort reads them all first). Before, each page listed
-- and sorted every webhook of the company and PostGraphile's cursor (after, an
-- offset) threw away those before it: 10 to 20 ms a page at 1,200 webhooks, and all
-- the pages a time that grew with the square of their number; the planner, left to
-- choose, sorted them whenever it expected a company to have about a page of webhooks
-- (test/sql/report-pages.test.ts).
drop function if exists webhooks.webhook_report(timestamptz, timestamptz);
drop function if exists webhooks.webhook_report(timestamptz, timestamptz, bigint);
drop function if exists webhooks.webhook_report(timestamptz, timestamptz, bigint, boolean);
create or replace function webhooks.webhook_report(
  since            timestamptz default null,
  until            timestamptz default null,
  webhook_id       bigint default null,
  with_counts      boolean default true,
  after_created_at timestamptz default null,
  after_id         bigint default null
)
returns setof webhooks.webhook_report_row
language sql
stable
as $$
  with recursive
  -- where the page starts: after the row named (history_after), or at the newest; none
  -- when since or until is out of what may be asked (22_outbox.sql: a named refusal).
  -- Materialized: inlined, its function calls (not LEAKPROOF) waited for row-level
  -- security's condition and were tested on every row instead of bounding the index
  start as materialized (
    select coalesce(webhooks_private.history_after('the report', 'webhook', after_created_at, after_id), 'infinity') as created_at,
           coalesce(after_id, 9223372036854775807) as id
    where webhooks_private.requested_times(since, until)
  ),
  -- the company's webhooks from there on, newest first, one step of the index each,
  -- made only as far as they are read: a page stops at its end. With webhook_id, that
  -- one alone, by its key
  listed as (
    select n.* from start s cross join lateral webhooks_private.next_listed_webhook(s.created_at, s.id) n
    where webhook_report.webhook_id is null
    union all
    select w.* from start s join webhooks.webhooks w
      on w.id = webhook_report.webhook_id and (w.created_at, w.id) < (s.created_at, s.id)
    union all
    select n.* from listed l cross join lateral webhooks_private.next_listed_webhook(l.created_at, l.id) n
    where webhook_report.webhook_id is null
  ),
  -- every listed webhook counted at once (50_report_counts.sql), up to the end of the
  -- readable history (asked once a report), as one value by webhook id. Materialized,
  -- so that with_counts gates the counting itself: inlined into the join, a plan made
  -- for any with_counts (the API's generic plans, api/preset.ts) tested it in the
  -- join's filter, after counting every webhook of the company, and each page of the
  -- report counted them all again. The webhooks it counts are read in one scan, not
  -- walked a step each as listed is
  counted as materialized (
    select jsonb_object_agg(c.webhook_id::text, jsonb_build_array(c.fired, c.succeeded, c.failed)) as counts
    from (select array_agg(w.id) as ids, array_agg(w.company_id) as company_ids
          from start s join webhooks.webhooks w
            on (webhook_report.webhook_id is null or w.id = webhook_report.webhook_id)
           and (w.created_at, w.id) < (s.created_at, s.id)) l
    cross join lateral webhooks_private.count_deliveries_of(l.ids, l.company_ids, since, webhooks_private.history_end(until)) c
    where webhook_report.with_counts
  ),
  -- the failing webhooks of the company (failing_webhooks, 28_lanes.sql), by id
  failing as materialized (
    select jsonb_object_agg(f.webhook_id::text, to_jsonb(f)) as by_id from webhooks_private.failing_webhooks() f
  )
  -- Each webhook's counts and failures are looked up in values made once a page (each
  -- subquery below is computed once), and its status's and user's names by their key
  -- (company_status_name, company_user_name, above), not joined: a join to the
  -- company's statuses, users or lanes was made by hashing every listed webhook, and
  -- the page's order was then a sort of all of them, so no page stopped at its end
  select w.id, w.name, w.url, w.actions, w.fields,
         w.status_id, webhooks_private.company_status_name(w.status_id),
         w.user_id, webhooks_private.company_user_name(w.user_id),
         w.created_at,
         w.enabled, w.disabled_at, webhooks_private.crm_text_shown(w.disabled_by), w.disabled_reason, w.deleted_filter_target,
         w.ignore_sources, w.watch_fields, w.conditions,
         w.max_in_flight, w.rate_limit,
         c.fired, c.succeeded, c.failed, c.fired - c.succeeded - c.failed,
         coalesce((fw.row ->> 'failures')::integer, 0), (fw.row ->> 'failing_since')::timestamptz,
         (fw.row ->> 'paused_until')::timestamptz, (fw.row ->> 'disables_at')::timestamptz
  from listed w
  cross join lateral (select ((select counted.counts from counted) -> w.id::text ->> 0)::bigint as fired,
                             ((select counted.counts from counted) -> w.id::text ->> 1)::bigint as succeeded,
                             ((select counted.counts from counted) -> w.id::text ->> 2)::bigint as failed) c
  cross join lateral (select case when w.enabled then (select failing.by_id from failing) -> w.id::text end as row) fw
  -- (counted, every listed webhook has its counts)
  where not webhook_report.with_counts or (select counted.counts from counted) ? w.id::text;
$$;

-- public: the counts of webhook_report for [since, until), of every webhook of the
-- caller's company at once, as one value: {"<webhook id>": {"fired": n, "succeeded":
-- n, "failed": n, "pending": n}}. The page asks it once a report, and the report's
-- rows, page by page, without their counts (with_counts false): one counting of the
-- company's webhooks, not one a page (GraphQL: webhookReportCounts). One value, not
-- a list of rows: not paged, and at most webhooks.max_webhooks_per_company entries.
create or replace function webhooks.webhook_report_counts(
  since timestamptz default null,
  until timestamptz default null
)
returns jsonb
language sql
stable
as $$
  with listed as (
    select w.id, w.company_id from webhooks.webhooks w
    where webhooks_private.requested_times(since, until)
  )
  select coalesce(jsonb_object_agg(c.webhook_id::text, jsonb_build_object(
           'fired', c.fired, 'succeeded', c.succeeded, 'failed', c.failed,
           'pending', c.fired - c.succeeded - c.failed)), '{}'::jsonb)
  from webhooks_private.count_deliveries_of((select array_agg(l.id) from listed l),
                                            (select array_agg(l.company_id) from listed l),
                                            since, webhooks_private.history_end(until)) c;
$$;

-- private: when the oldest delivery of a webhook on its way was created (infinity:
-- none is), what a history of pending or in-flight deliveries starts at, as queue rows
-- carry their delivery's created_at. Asked once a history (webhooks_history takes its
-- bounds as subqueries of their own); in plpgsql, whose plan the session keeps (a SQL
-- function planned its query again each time, 0.2 ms a call).
create or replace function webhooks_private.oldest_queued_at(p_webhook_id bigint)
returns timestamptz
language plpgsql
stable
as $$
begin
  -- (waiting and in flight apart, each by the queue's index of its kind: asked as
  -- "webhook_id = p_webhook_id" alone, which neither serves, it read every company's
  -- queue rows until 2026-12-06, test/sql/pending-history.test.ts)
  return coalesce(least((select min(q.created_at) from webhooks.delivery_queue q
                         where q.webhook_id = p_webhook_id and q.locked_by is null),
                        (select min(q.created_at) from webhooks.delivery_queue q
                         where q.webhook_id = p_webhook_id and q.locked_by is not null)),
                  'infinity');
end;
$$;

-- private: the state a history is asked for (history, historyOldestFirst,
-- historyCount), or its refusal by name: one of a delivery's states (the check
-- deliveries_state_known of migration 0002), or null, any. Until 2026-12-06 another
-- text ("FAILED", "failure") answered an empty history and a count of 0, as a webhook
-- none of whose deliveries had failed.
create or replace function webhooks_private.known_delivery_state(p_state text)
returns text
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
  if p_state is not null and p_state not in ('pending', 'in_flight', 'succeeded', 'failed') then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('state must be one of pending, in_flight, succeeded, failed (or null: any), got %s',
                       to_jsonb(left(p_state, 40))),
      constraint = 'history_state_unknown',
      column = 'state';
  end if;
  return p_state;
end;
$$;

-- private: one webhook's deliveries created in [since, until), optionally only those
-- in one state, in no order: what webhooks_history and webhooks_history_oldest_first
-- give, each in its order (newest_first, a constant of each). A SQL function of one
-- SELECT, so each caller's query takes it in whole (inlined), and its order and LIMIT
-- reach the index.
--
-- A page reads its rows, not the webhook's history, when the planner joins history to
-- its results partition by partition (enable_partitionwise_join, which the API sets
-- for its requests: api/preset.ts): each day's rows of the webhook, in the page's
-- order by its index, each probing its own day's results, merged across the days,
-- stopped at the page's end. Without it the planner, which expects a webhook to have
-- a row or two a day, sorts every row of the webhook to merge them with its results
-- (30 ms at 28,571 rows in bench:api, growing with the webhook; 8–12 ms with it,
-- 2026-12-04). Pending and in-flight deliveries are in the queue: a history asked for
-- them starts at the oldest queued delivery of the webhook, not at the first it ever had.
--
-- A page after the first starts after the last row of the page before (after_created_at
-- and after_id; history_after, above), in the history's order: its rows are the next
-- ones of (created_at, id), which each day's index reads from that row on, and the days
-- wholly before it in that order are left out by the time bound it adds. So a page in
-- the middle of a history of millions reads about the rows the first page reads, where
-- an offset, or PostGraphile's cursor (which it tests on every row as a filter, not as
-- a bound of the index), read and threw away every row before it
-- (test/sql/history-pages.test.ts).
drop function if exists webhooks_private.history_rows(webhooks.webhooks, timestamptz, timestamptz, text);
create or replace function webhooks_private.history_rows(
  w                webhooks.webhooks,
  since            timestamptz,
  until            timestamptz,
  state            text,
  after_created_at timestamptz,
  after_id         bigint,
  newest_first     boolean
)
returns setof webhooks.deliveries
language sql
stable
as $$
  select d.*
  from webhooks.deliveries d
  where d.webhook_id = w.id
    -- always true; it lets the index (webhook_id, company_id, created_at, id) bound
    -- the scan by time for callers row-level security does not filter (owners, DBAs)
    and d.company_id = w.company_id
    -- (one lower bound and one upper bound, so that each is the index's; since, until
    -- and the row a page starts after within what may be asked, 22_outbox.sql, else a
    -- named refusal: asked in the bounds themselves, which the partitions' pruning
    -- evaluates, as a condition of its own is tested in each partition's scan, and
    -- none is left when until is before them all.
    -- Each bound a subquery of its own, which Postgres computes once (an InitPlan) and
    -- hands to every day's index as a value. Written as the function calls themselves,
    -- a bound under row-level security waited for the policy's condition (the
    -- functions are not LEAKPROOF) and was tested on every row of the webhook instead
    -- of bounding its index: on PostgreSQL 15 always, on 17 when since, until and
    -- state were the statement's parameters, as the Reports page sends them. Each
    -- day's scan then priced higher, and a page sorted all of the webhook's rows
    -- (test/sql/history-pages.test.ts: 3,002 rows read for a page of 25 on 15; 2,132
    -- for a page of a date range on 17; 444 ms for a webhook of 30,000 deliveries).
    -- newest_first is a constant of each caller: its cases are decided as the
    -- function is inlined, and only its own direction's bounds are left)
    and d.created_at >= (select greatest(coalesce(webhooks_private.requested_time(since, 'since'), '-infinity'),
                                         case when webhooks_private.known_delivery_state(history_rows.state) in ('pending', 'in_flight')
                                              then webhooks_private.oldest_queued_at(w.id) end,
                                         case when not newest_first
                                              then webhooks_private.history_after('a webhook''s history', 'delivery', after_created_at, after_id) end))
    and d.created_at < (select least(coalesce(webhooks_private.requested_time(until, 'until'), 'infinity'),
                                     -- (created_at is kept to the microsecond)
                                     case when newest_first
                                          then webhooks_private.history_after('a webhook''s history', 'delivery', after_created_at, after_id) + interval '1 microsecond' end))
    -- within the keyset's own microsecond, by id: a bound of the index too (a row
    -- comparison of its last two columns), true of every row on a first page
    and (not newest_first
         or (d.created_at, d.id) < ((select coalesce(after_created_at, 'infinity')),
                                    (select coalesce(after_id, 9223372036854775807))))
    and (newest_first
         or (d.created_at, d.id) > ((select coalesce(after_created_at, '-infinity')),
                                    (select coalesce(after_id, -9223372036854775808))))
    and (history_rows.state is null or d.state = history_rows.state);
$$;

-- public: one webhook's history (the "Times Fired" click): its deliveries created in
-- [since, until), optionally only those in one state, newest first (history_rows,
-- above). PostGraphile exposes it as the field `history` of a webhook, a connection.
-- The page after one is asked with the created_at and id of that page's last row
-- (after_created_at, after_id; GraphQL afterCreatedAt, afterId): it costs what the
-- first page costs, however deep in the history, as does PostGraphile's cursor
-- (after), a row comparison on the same (created_at, id) that reaches the index once
-- this function is inlined. An offset (GraphQL offset, at most 10,000) is read and
-- thrown away row by row.
drop function if exists webhooks.webhooks_history(webhooks.webhooks, timestamptz, timestamptz, text);
create or replace function webhooks.webhooks_history(
  w                webhooks.webhooks,
  since            timestamptz default null,
  until            timestamptz default null,
  state            text default null,
  after_created_at timestamptz default null,
  after_id         bigint default null
)
returns setof webhooks.deliveries
language sql
stable
as $$
  select h.*
  from webhooks_private.history_rows(w, since, until, state, after_created_at, after_id, true) h
  order by h.created_at desc, h.id desc;
$$;

-- public: the same deliveries as webhooks_history, oldest first (GraphQL: the field
-- `historyOldestFirst` of Webhook): the last pages of a history, read from their own
-- end, and with after_created_at and after_id (a row of the history) the rows newer
-- than it, nearest first: the page before a page of webhooks_history is the rows after
-- its first row here, reversed. Asked newest first, the page's last page was an offset
-- past all the rest of the history, every row of which the database read and threw
-- away (10,000 rows for the last page of 10,000; bounded only by the statement timeout
-- for a webhook of millions); asked in reverse of webhooks_history's order, it sorted
-- all of them. Oldest first, each day's rows are read oldest first by the same index,
-- and the last page costs what the first does (test/sql/history-pages.test.ts).
drop function if exists webhooks.webhooks_history_oldest_first(webhooks.webhooks, timestamptz, timestamptz, text);
create or replace function webhooks.webhooks_history_oldest_first(
  w                webhooks.webhooks,
  since            timestamptz default null,
  until            timestamptz default null,
  state            text default null,
  after_created_at timestamptz default null,
  after_id         bigint default null
)
returns setof webhooks.deliveries
language sql
stable
as $$
  select h.*
  from webhooks_private.history_rows(w, since, until, state, after_created_at, after_id, false) h
  order by h.created_at, h.id;
$$;

-- public: one delivery's HTTP attempts, latest first (GraphQL: the query
-- deliveryAttemptsLatestFirst). The page after one is asked with the attempt and id
-- of that page's last row (after_attempt, after_id: both or neither, refuse_half_row),
-- and costs what the first page costs however many attempts the delivery has (a
-- receiver failing for days, replays by hand): an offset, as deliveryAttemptsByDeliveryId
-- pages, reads and throws away every attempt before the page
-- (test/sql/attempts-pages.test.ts: all 5,000 read for the page after the 4,000th,
-- against 102 here).
--
-- Its attempts are read number by number, from the one the page starts at down, each
-- number one probe of the index (delivery_id, attempt) in the delivery's own day's
-- partition (its created_at, which its id finds: one probe of each day's history
-- index, as deliveryById makes), and the caller's LIMIT stops the walk at the page's
-- end. A plain ORDER BY attempt desc, id desc over the delivery's attempts left the
-- order to the planner, which expects a delivery to have an attempt or two: it read
-- them all by a bitmap and sorted them, for every page. Attempt numbers run 1, 2, …
-- (the claim counts them); two attempts may share a number (nothing makes them
-- unique), and within a number the order is by id. No ORDER BY of its own on the
-- outside: GraphQL asks none of it (it has no orderBy argument), and one would sort
-- every attempt first. A query of its own, not a field of Delivery taking its row: the
-- view's row holds a subquery (held_back), and Postgres inlines no function whose
-- argument holds one, so the caller's LIMIT never reached it and every attempt was
-- read. A SQL function of one SELECT, inlined into the caller's query;
-- each bound a subquery of its own, computed once and handed to the index as a value,
-- as in history_rows (row-level security's condition is not LEAKPROOF).
create or replace function webhooks.delivery_attempts_latest_first(
  delivery_id   bigint,
  after_attempt integer default null,
  after_id      bigint default null
)
returns setof webhooks.delivery_attempts
language sql
stable
as $$
  with delivery as (
    select h.created_at from webhooks.delivery_history h where h.id = delivery_attempts_latest_first.delivery_id
  )
  select a.*
  -- (from the number the page starts at, or the delivery's latest, whichever is
  -- lower: an afterAttempt of 2^31 - 1 walks no number the delivery never reached)
  from generate_series(
         least((select coalesce(after_attempt, 2147483647)
                from webhooks_private.refuse_half_row('a delivery''s attempts', 'attempt', 'after_attempt', after_attempt is not null, after_id is not null)),
               (select coalesce(max(m.attempt), 0) from webhooks.delivery_attempts m
                where m.delivery_id = delivery_attempts_latest_first.delivery_id
                  and m.delivery_created_at = (select d.created_at from delivery d))),
         1, -1) n
  cross join lateral (
    select a.*
    from webhooks.delivery_attempts a
    where a.delivery_id = delivery_attempts_latest_first.delivery_id
      and a.delivery_created_at = (select d.created_at from delivery d)
      and a.attempt = n
      and (a.attempt, a.id) < ((select coalesce(after_attempt, 2147483647)),
                               (select coalesce(after_id, 9223372036854775807)))
    order by a.id desc
  ) a;
$$;

-- public (GraphQL: deliveryAttemptsCountedUpTo): the most attempts of one delivery
-- webhooks.delivery_attempts_count counts.
create or replace function webhooks.delivery_attempts_counted_up_to()
returns integer
language sql
immutable
as $$ select 1000 $$;

-- public (GraphQL: deliveryAttemptsCount): how many attempts one delivery has, counted
-- up to webhooks.delivery_attempts_counted_up_to() (1,000), one more than that when it
-- has more (0: not yours, or not there). The Reports page asks it with a delivery's
-- first page of attempts: the connection's totalCount read every attempt of a delivery
-- a receiver failed for days or that was replayed by hand thousands of times, to show a
-- count that past a thousand or so says no more than "1,000+". Reads at most 1,001 of
-- the delivery's own day's attempts, by the index that pages them.
create or replace function webhooks.delivery_attempts_count(delivery_id bigint)
returns integer
language sql
stable
as $$
  with delivery as (
    select h.created_at from webhooks.delivery_history h where h.id = delivery_attempts_count.delivery_id
  )
  select count(*)::integer
  from (
    select
    from webhooks.delivery_attempts a
    where a.delivery_id = delivery_attempts_count.delivery_id
      and a.delivery_created_at = (select d.created_at from delivery d)
    limit webhooks.delivery_attempts_counted_up_to() + 1
  ) counted;
$$;

-- public (GraphQL: the field `contactName` of Delivery): the contact's name as the
-- delivery's payload shows it: first and last name, else the email, at most 200
-- characters (null: the webhook sends none of them). The page shows it in each
-- row of a history: reading it there took each row's whole payload to the browser (up
-- to webhooks.max_payload_bytes, 1 MiB; fifty to a page, serialised on the API's one
-- thread, which every company shares), where the page needs the payload only when a
-- row is opened. Runs as the caller.
create or replace function webhooks.deliveries_contact_name(d webhooks.deliveries)
returns text
language sql
stable
as $$
  select webhooks_private.crm_text_shown(
    coalesce(nullif(concat_ws(' ', nullif(d.payload #>> '{data,contact,first_name}', ''),
                                   nullif(d.payload #>> '{data,contact,last_name}', '')), ''),
             nullif(d.payload #>> '{data,contact,email}', '')));
$$;

-- private: a webhook's test sends created in [since, until), which the history shows
-- and the report's counts leave out: how many, how many failed, how many are on their
-- way (historyCount and historyCounts add them to the report's). Each one's outcome
-- and place in the queue is looked up by its key: joined to the webhook's results
-- instead, the plan (a generic one, in the functions that ask) hashed every result of
-- the webhook in the range to find those of a few tests (2,739 buffers for 5 tests of
-- a webhook of 100,000 deliveries over 69 days, asked of all time: most of
-- historyCount's cost). Runs as the caller.
create or replace function webhooks_private.count_test_sends(
  p_webhook_id bigint,
  p_company_id bigint,
  since timestamptz,
  until timestamptz
)
-- (a table, one row: inlined into the statement that asks, which is planned with its
-- range, as the join was; not inlined, a range of 27 days probed every partition)
returns table (sent bigint, failed bigint, on_its_way bigint)
language sql
stable
as $$
  select count(*),
         count(*) filter (where (select e.state from webhooks.delivery_results e
                                 where e.delivery_id = d.id and e.created_at = d.created_at
                                   and e.webhook_id = d.webhook_id) = 'failed'),
         count(*) filter (where exists (select from webhooks.delivery_queue q
                                        where q.delivery_id = d.id and q.webhook_id = d.webhook_id))
  from webhooks.delivery_history d
  where d.webhook_id = p_webhook_id and d.company_id = p_company_id and d.action = 'webhook.test'
    and d.created_at >= since and d.created_at < until;
$$;

-- public: the four counts of a webhook's history page at once (GraphQL: the field
-- `historyCounts` of Webhook): how many deliveries webhooks_history gives for the same
-- since and until in all, succeeded, failed and pending (not in flight), from the
-- report's counting (50_report_counts.sql: days and hours rolled up, the rest counted
-- from the rows). Added to it: test sends, which the history shows and the report
-- leaves out (count_test_sends). Pending deliveries are counted from the queue's
-- index. Before the kept history starts, the report still has the totals of what the
-- retention dropped and the history has only what it could not drop yet
-- (29_retention.sql: a day with a delivery on its way): those rows are counted one by
-- one. webhooks_history_count gives one of them. The page asked historyCount four
-- times, which counted the same days three times over (the report's days and hours,
-- the test sends' index, the rows not yet dropped before the kept history): for a
-- webhook of 100,000 deliveries over 69 days, 1,120 buffers for the four of all time
-- where this reads 469 (4,589 before the test sends were counted by their keys,
-- docs/api.md). historyCount stays for a client that wants one. Runs as the caller
-- (row-level security applies), for the webhook's own company.
create or replace function webhooks.webhooks_history_counts(
  w     webhooks.webhooks,
  since timestamptz default null,
  until timestamptz default null,
  out total bigint,
  out succeeded bigint,
  out failed bigint,
  out pending bigint
)
language plpgsql
stable
as $$
declare
  v_kept constant timestamptz := webhooks.kept_since();
  v_until constant timestamptz := coalesce(webhooks_private.history_end(until), 'infinity');
  v_since timestamptz := coalesce(since, '-infinity');
  v_events record;
  v_tests record;
begin
  perform webhooks_private.requested_times(since, until);   -- 22_outbox.sql
  total := 0;
  succeeded := 0;
  failed := 0;
  pending := 0;
  if v_since >= v_until then
    return;
  end if;
  -- (pending apart from in flight, as historyCount's 'pending')
  select count(*) into pending
  from webhooks.delivery_queue q
  where q.webhook_id = w.id and q.company_id = w.company_id and q.locked_by is null
    and q.created_at >= v_since and q.created_at < v_until;
  -- before the kept history: the rows the retention could not drop yet, one by one
  if v_kept > v_since then
    select count(*), count(*) filter (where h.state = 'succeeded'), count(*) filter (where h.state = 'failed')
    into total, succeeded, failed
    from webhooks.webhooks_history(w, v_since, least(v_kept, v_until)) h;
    v_since := least(v_kept, v_until);
    if v_since >= v_until then
      return;
    end if;
  end if;
  select c.fired, c.succeeded, c.failed into v_events
  from webhooks_private.count_deliveries(w.id, w.company_id, v_since, v_until) c;
  select t.sent, t.failed, t.on_its_way into v_tests
  from webhooks_private.count_test_sends(w.id, w.company_id, v_since, v_until) t;
  total := total + v_events.fired + v_tests.sent;
  succeeded := succeeded + v_events.succeeded + v_tests.sent - v_tests.failed - v_tests.on_its_way;
  failed := failed + v_events.failed + v_tests.failed;
end;
$$;

-- public: how many deliveries webhooks_history gives for the same arguments
-- (GraphQL: the field `historyCount` of Webhook), where the connection's totalCount
-- counted every row (12 ms at bench:api's 28,571 deliveries of a webhook, and growing
-- with it; the API offers none since): webhooks_history_counts' figure for the state
-- asked; pending and in-flight deliveries from the queue's indexes alone. Runs as
-- the caller (row-level security applies).
create or replace function webhooks.webhooks_history_count(
  w     webhooks.webhooks,
  since timestamptz default null,
  until timestamptz default null,
  state text default null
)
returns bigint
language plpgsql
stable
as $$
declare
  v_until constant timestamptz := coalesce(webhooks_private.history_end(until), 'infinity');
  v_since constant timestamptz := coalesce(since, '-infinity');
begin
  perform webhooks_private.requested_times(since, until);   -- 22_outbox.sql
  perform webhooks_private.known_delivery_state(state);
  if state in ('pending', 'in_flight') then
    return (select count(*) from webhooks.delivery_queue q
            where q.webhook_id = w.id and q.company_id = w.company_id
              and (q.locked_by is not null) = (webhooks_history_count.state = 'in_flight')
              and q.created_at >= v_since and q.created_at < v_until);
  end if;
  return (select case webhooks_history_count.state
                   when 'succeeded' then c.succeeded
                   when 'failed' then c.failed
                   else c.total end
          from webhooks.webhooks_history_counts(w, since, until) c);
end;
$$;


------------------------------------------------------------------------------------
-- The page says whose webhooks these are. Company names live in the CRM tables, which
-- no API role may read; this reads just the caller's own company's name, as its owner.

-- public: the name of the caller's company (GraphQL: currentCompanyName)
create or replace function webhooks.current_company_name()
returns text
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select webhooks_private.crm_text_shown(c.name) from crm.companies c where c.id = webhooks.current_company_id();
$$;
