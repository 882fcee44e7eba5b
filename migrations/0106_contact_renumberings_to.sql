-- Up Migration
-- The changes of ids by the id given (to_id): a statement that renumbers many
-- contacts asks, for each row, whether an earlier row of the same statement gave its
-- id to another contact (two ids swapped: webhooks_private.contact_id_changed,
-- sql/25_capture.sql), one probe of this index. Re-runnable.
create index if not exists contact_renumberings_to_idx on webhooks_private.contact_renumberings (to_id, id);
