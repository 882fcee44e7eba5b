-- Up Migration
-- Coalesced bursts and ordered delivery (#13; docs/backfill.md).
--   coalesce_window  null: off. Else a contact.updated or contact.saved delivery
--                    waits up to this long before its first attempt, and further
--                    changes of the same contact with the same action merge into it.
--   ordered          one delivery of a contact at a time to this webhook, in the order
--                    of the changes.
alter table webhooks.webhooks
  add column coalesce_window interval,
  add column ordered boolean not null default false,
  add constraint webhooks_coalesce_window_range
    check (coalesce_window is null or (coalesce_window > interval '0' and coalesce_window <= interval '1 hour'));

-- A webhook's unfinished deliveries of one contact: what a change merges into, and
-- what holds an ordered delivery back. A short range per question.
create index deliveries_unfinished_contact_idx on webhooks.deliveries (webhook_id, contact_id, id)
  where state in ('pending', 'in_flight');
-- the claim's question "which webhooks are ordered?" reads this alone
create index webhooks_ordered_idx on webhooks.webhooks (id) where ordered;
