-- Up Migration
-- The setup form's search of a company's users and statuses finds a prefix of any of
-- the name's first four words, not of its first alone ("Smith" finds "Anna Smith"):
-- webhooks.company_users_matching, company_statuses_matching (sql/55_report.sql). One
-- index for each word's place, 2 to 4, of the name from that word on (lowered, its
-- first 200 characters, in the order of its bytes, as migration 0051's of the whole
-- name, which is the first word's): a search reads a range of each, cut at one more
-- than the most a search shows, so that it reads at most about a hundred rows however
-- many users the company has. A btree holds one entry a row for an expression, so a
-- word past the fourth is not found: each word's place is an index more, and an
-- index of every word (a trigram index, pg_trgm) answers a short or common prefix by
-- reading every row that matches, not a few. Name without that many words: null, no
-- entry. Words are what whitespace separates.
-- The name from its p_word-th word on (1: the name without its leading spaces), lowered;
-- null when it has fewer words. Immutable, as the indexes need: lower() as the
-- indexes of 0051 use it. Here, not in sql/: the indexes are built from it, and a
-- change of it would need them built again (a migration of its own).
create or replace function webhooks_private.name_from_word(p_name text, p_word integer)
returns text
language sql
immutable
strict
parallel safe
set search_path = pg_catalog, pg_temp
as $$
  select substring(lower(p_name) from '^\s*(?:\S+\s+){' || (p_word - 1) || '}(\S.*)$');
$$;

-- (if not exists: a DBA may build them beforehand with CREATE INDEX CONCURRENTLY, same names.)
create index if not exists users_company_name_word2_idx
  on crm.users (company_id, (left(webhooks_private.name_from_word(name, 2), 200) collate "C"), id);
create index if not exists users_company_name_word3_idx
  on crm.users (company_id, (left(webhooks_private.name_from_word(name, 3), 200) collate "C"), id);
create index if not exists users_company_name_word4_idx
  on crm.users (company_id, (left(webhooks_private.name_from_word(name, 4), 200) collate "C"), id);
create index if not exists statuses_company_name_word2_idx
  on crm.statuses (company_id, (left(webhooks_private.name_from_word(name, 2), 200) collate "C"), id);
create index if not exists statuses_company_name_word3_idx
  on crm.statuses (company_id, (left(webhooks_private.name_from_word(name, 3), 200) collate "C"), id);
create index if not exists statuses_company_name_word4_idx
  on crm.statuses (company_id, (left(webhooks_private.name_from_word(name, 4), 200) collate "C"), id);
