-- The queue's indexes, so that a claim's lease writes one index entry fewer (#15).
--
-- A lease makes a queue row leave the pending indexes and enter the lease index
-- (no HOT update is possible: locked_by is in their predicates). The contact index
-- was whole, so every lease also added an entry to it. Now it holds pending rows
-- only (what coalescing merges into), and the lease index carries the contact for
-- what ordered webhooks ask of the rows in flight ("is one of this contact's
-- deliveries being sent?"): same questions, each a short range, and a lease writes
-- two index entries (primary key, lease) instead of three.

drop index webhooks.delivery_queue_contact_idx;
create index delivery_queue_contact_idx on webhooks.delivery_queue (webhook_id, contact_id, delivery_id)
  where locked_by is null;

drop index webhooks.delivery_queue_leases_idx;
-- rows in flight, per webhook (what the fleet has in flight to one webhook), per
-- contact (ordered webhooks), and when their lease runs out (the rescue)
create index delivery_queue_leases_idx on webhooks.delivery_queue (webhook_id, contact_id, locked_until)
  where locked_by is not null;
