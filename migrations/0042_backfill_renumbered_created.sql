-- Up Migration
-- A note of a running backfill's contact whose id changed across its walk
-- (backfill_renumbered, 0041) names the contact by its id, which a contact inserted
-- after it was deleted may have too: the walk passed such a contact over, as the one
-- examined. The note now keeps the contact's created_at as well (as text, from the
-- row as JSON: null where the CRM's contacts have none), and is the contact's only
-- while the row with that id has the same (sql/35_backfill.sql).
alter table webhooks_private.backfill_renumbered add column if not exists contact_created_at text;
