-- Up Migration
-- An assignment or a status tag written before the contact it names, which a CRM's
-- deferrable foreign key allows within one transaction (sql/25_capture.sql): its
-- trigger finds no contact yet, and notes it here; a deferred trigger of this table
-- announces it at the commit, when the contact is there, and takes the row away. A
-- row lives no longer than its transaction.
create table if not exists webhooks_private.written_before_contact (
  contact_id bigint not null,
  user_id    bigint,
  status_id  bigint,
  check ((user_id is null) <> (status_id is null))
);
