-- Up Migration
-- The setup form's search of a company's users and statuses finds a prefix of any word
-- of a name, not of its first four alone ("Cruz" finds "Mary Ann de la Cruz"), and a
-- word is what whitespace or punctuation starts ("Brien" finds "Conan O'Brien", "Jones"
-- "Anna Smith-Jones", "doe" "jane.doe"): webhooks.company_users_matching,
-- company_statuses_matching (sql/55_report.sql). A btree holds one entry a row for an
-- expression, so the indexes of migration 0060 (one for each of words 2 to 4) could not
-- hold every word; a table beside the CRM's does, one row for each word after the first
-- of each user's and status's name, kept by triggers on crm.users and crm.statuses. Its
-- key starts with the company, so that a search reads a range of its own company's
-- entries in their order and stops at the most a search shows: a company never reads
-- another's entries, and a company of 10,000 users reads a few dozen. (A trigram index,
-- pg_trgm, answers a short prefix by reading every row that matches, to sort them.)
-- The triggers, functions and table are here, not in sql/: the table is filled from
-- them, and a change of how a name is cut in words needs it filled again (a migration
-- of its own). Re-runnable: create … if not exists, create or replace, on conflict.

-- The words of a name after its first: for each, the name from that word on, lowered,
-- its first 200 characters (key, as migration 0051's of the whole name, which is the
-- first word's), and the place where it starts (word_at, 1 the first character). A word
-- starts where a separator is followed by a character that is not one. Separators:
-- whitespace, ASCII punctuation, the no-break space, the Unicode hyphens and dashes
-- and the curly quotes; named characters, not the database's classes ([:punct:]
-- depends on its locale), so that a letter of any script is never one. Only the words
-- that start in the name's first 200 characters: at most 100 of a name, the CRM's
-- names having no bound of their own. One pass of a regular expression a name (a test
-- of each character cost an import of 20,000 users 8 s more), in a function its
-- callers take in whole (inlined: neither strict nor SET, which kept each call apart
-- and cost the same import 1 s more; it names only pg_catalog's functions, which
-- every search_path reads first). A null name has no words. Its first 400 characters
-- alone are lowered, once: lowered whole for each word, a name of 10 MB took its write
-- 12 to 19 s.
create or replace function webhooks_private.name_words(p_name text)
returns table (key text, word_at integer)
language sql
immutable
parallel safe
as $$
  select left(substr(w.lowered, w.word_at), 200) collate "C", w.word_at
  from (select n.lowered, p.n,
               1 + coalesce(sum(length(p.piece)) over (order by p.n rows between unbounded preceding and 1 preceding), 0)::integer
                 as word_at
        from (select lower(left(p_name, 400)) as lowered) n
        cross join lateral regexp_split_to_table(left(n.lowered, 200),
               '(?<=[\s!-/:-@\[-`{-~\u00a0\u2010-\u2015\u2018\u2019\u201c\u201d])(?=[^\s!-/:-@\[-`{-~\u00a0\u2010-\u2015\u2018\u2019\u201c\u201d])')
             with ordinality p(piece, n)) w
  where w.n > 1;
$$;

-- kind: 'u' a user of crm.users, 's' a status of crm.statuses (id: its id). The key
-- (company, kind, word) is the order a search reads; id last, as each of a name's words
-- is another key.
create table if not exists webhooks_private.crm_name_words (
  company_id bigint not null,
  kind       "char" not null check (kind in ('u', 's')),
  key        text collate "C" not null,
  id         bigint not null,
  word_at    integer not null,
  primary key (company_id, kind, key, id)
);

-- The words of some rows of a kind go, or come.
create or replace function webhooks_private.crm_name_words_drop(p_kind "char", p_rows jsonb)
returns void
language sql
set search_path = pg_catalog, pg_temp
as $$
  delete from webhooks_private.crm_name_words w
  using jsonb_to_recordset(p_rows) as r(id bigint, company_id bigint, name text)
  cross join lateral webhooks_private.name_words(r.name) k
  where w.company_id = r.company_id and w.kind = p_kind and w.key = k.key and w.id = r.id;
$$;

create or replace function webhooks_private.crm_name_words_add(p_kind "char", p_rows jsonb)
returns void
language sql
set search_path = pg_catalog, pg_temp
as $$
  insert into webhooks_private.crm_name_words (company_id, kind, key, id, word_at)
  select r.company_id, p_kind, k.key, r.id, k.word_at
  from jsonb_to_recordset(p_rows) as r(id bigint, company_id bigint, name text)
  cross join lateral webhooks_private.name_words(r.name) k
  on conflict do nothing;
$$;

-- After each statement that writes crm.users or crm.statuses (tg_argv[0]: the kind):
-- the words of the rows it removed or changed go, the words of those it added or
-- changed come. A row whose company and name stayed keeps its words (an update of a
-- user's email writes none). As the table's owner: the CRM's roles are granted none
-- of the engine's tables. (Each statement names only the transition tables its
-- operation has: a statement naming another is refused as it is planned.)
create or replace function webhooks_private.tg_crm_name_words__kept()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_kind constant "char" := tg_argv[0];
begin
  if tg_op = 'INSERT' then
    perform webhooks_private.crm_name_words_add(v_kind,
      (select coalesce(jsonb_agg(jsonb_build_object('id', n.id, 'company_id', n.company_id, 'name', n.name)), '[]') from new_rows n));
  elsif tg_op = 'DELETE' then
    perform webhooks_private.crm_name_words_drop(v_kind,
      (select coalesce(jsonb_agg(jsonb_build_object('id', o.id, 'company_id', o.company_id, 'name', o.name)), '[]') from old_rows o));
  elsif tg_op = 'UPDATE' then
    perform webhooks_private.crm_name_words_drop(v_kind,
      (select coalesce(jsonb_agg(jsonb_build_object('id', c.id, 'company_id', c.company_id, 'name', c.name)), '[]')
       from (select o.id, o.company_id, o.name from old_rows o except select n.id, n.company_id, n.name from new_rows n) c));
    perform webhooks_private.crm_name_words_add(v_kind,
      (select coalesce(jsonb_agg(jsonb_build_object('id', c.id, 'company_id', c.company_id, 'name', c.name)), '[]')
       from (select n.id, n.company_id, n.name from new_rows n except select o.id, o.company_id, o.name from old_rows o) c));
  elsif tg_op = 'TRUNCATE' then
    delete from webhooks_private.crm_name_words where kind = v_kind;
  end if;
  return null;
end;
$$;

-- The triggers first: they take the tables against writes until this commits, so that
-- none is missed between the fill below and them.
create or replace trigger webhooks_user_words_inserted
  after insert on crm.users referencing new table as new_rows
  for each statement execute function webhooks_private.tg_crm_name_words__kept('u');
create or replace trigger webhooks_user_words_updated
  after update on crm.users referencing old table as old_rows new table as new_rows
  for each statement execute function webhooks_private.tg_crm_name_words__kept('u');
create or replace trigger webhooks_user_words_deleted
  after delete on crm.users referencing old table as old_rows
  for each statement execute function webhooks_private.tg_crm_name_words__kept('u');
create or replace trigger webhooks_user_words_truncated
  after truncate on crm.users
  for each statement execute function webhooks_private.tg_crm_name_words__kept('u');
create or replace trigger webhooks_status_words_inserted
  after insert on crm.statuses referencing new table as new_rows
  for each statement execute function webhooks_private.tg_crm_name_words__kept('s');
create or replace trigger webhooks_status_words_updated
  after update on crm.statuses referencing old table as old_rows new table as new_rows
  for each statement execute function webhooks_private.tg_crm_name_words__kept('s');
create or replace trigger webhooks_status_words_deleted
  after delete on crm.statuses referencing old table as old_rows
  for each statement execute function webhooks_private.tg_crm_name_words__kept('s');
create or replace trigger webhooks_status_words_truncated
  after truncate on crm.statuses
  for each statement execute function webhooks_private.tg_crm_name_words__kept('s');

insert into webhooks_private.crm_name_words (company_id, kind, key, id, word_at)
select u.company_id, 'u', k.key, u.id, k.word_at
from crm.users u cross join lateral webhooks_private.name_words(u.name) k
on conflict do nothing;
insert into webhooks_private.crm_name_words (company_id, kind, key, id, word_at)
select s.company_id, 's', k.key, s.id, k.word_at
from crm.statuses s cross join lateral webhooks_private.name_words(s.name) k
on conflict do nothing;

-- The indexes of migration 0060 (words 2 to 4) the table above answers for: each cost
-- every write of a user's or status's name.
drop index if exists crm.users_company_name_word2_idx;
drop index if exists crm.users_company_name_word3_idx;
drop index if exists crm.users_company_name_word4_idx;
drop index if exists crm.statuses_company_name_word2_idx;
drop index if exists crm.statuses_company_name_word3_idx;
drop index if exists crm.statuses_company_name_word4_idx;
