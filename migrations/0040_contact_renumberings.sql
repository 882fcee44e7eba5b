-- Up Migration
-- Each change of a contact's id (an UPDATE of crm.contacts.id: a CRM's merge or
-- renumbering tool; sql/25_capture.sql), so that a delivery captured under an id the
-- contact no longer has can be put in the lane of the id it has now when it goes back
-- on its way (a replay: sql/22_outbox.sql, webhooks_private.contact_id_now). Rows
-- older than the kept history are of no use and go with it (webhooks.forget_day,
-- sql/29_retention.sql).
create table if not exists webhooks_private.contact_renumberings (
  id            bigint generated always as identity primary key,
  from_id       bigint not null,
  to_id         bigint not null,
  renumbered_at timestamptz not null default now()
);
-- the next change of an id after a time: one probe
create index if not exists contact_renumberings_from_idx
  on webhooks_private.contact_renumberings (from_id, renumbered_at, id);
-- what the retention removes: the oldest
create index if not exists contact_renumberings_at_idx
  on webhooks_private.contact_renumberings (renumbered_at);
