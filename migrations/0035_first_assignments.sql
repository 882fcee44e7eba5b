-- Up Migration
-- The companies' firsts on each contact (sql/25_capture.sql, assignments_made): a row
-- per contact and company that has been sent contact.first_company_user_assigned,
-- written again (a new row version) by every transaction that sends one. A writer in
-- REPEATABLE READ or SERIALIZABLE asks "first?" in its transaction's snapshot, which
-- misses a colleague's assignment committed after it was taken; writing this row, it
-- meets the version that transaction wrote, and Postgres fails it with a serialization
-- failure (40001) instead of letting it send a second first.
create table if not exists webhooks_private.first_assignments (
  contact_id bigint not null,
  company_id bigint not null,
  sent_at    timestamptz not null default now(),
  primary key (contact_id, company_id)
);
