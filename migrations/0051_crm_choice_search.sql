-- Up Migration
-- The setup form's search of a company's users and statuses as one types
-- (webhooks.company_users_matching, company_statuses_matching, sql/55_report.sql):
-- a prefix of the name (or of a user's email), case-insensitive, read as a range of
-- the company's entries of these indexes in their order, so that a search reads at
-- most a few dozen rows however many users the company has. Until these, the form
-- read every user and status of the company, a page of a hundred at a time.
-- lower() of at most 200 characters: an index entry holds at most about 2,700 bytes,
-- and the CRM's names and emails have no bound of their own (a longer one would make
-- the CRM's own insert fail); a longer search is matched on the whole name after.
-- collate "C": the order of the bytes, which a prefix's range needs whatever the
-- database's collation (in another, "ab" may sort after "ab…" of other letters).
-- (if not exists: a DBA may build them beforehand with CREATE INDEX CONCURRENTLY, same names.)
create index if not exists users_company_name_prefix_idx
  on crm.users (company_id, (left(lower(name), 200) collate "C"), id);
create index if not exists users_company_email_prefix_idx
  on crm.users (company_id, (left(lower(email), 200) collate "C"), id);
create index if not exists statuses_company_name_prefix_idx
  on crm.statuses (company_id, (left(lower(name), 200) collate "C"), id);
