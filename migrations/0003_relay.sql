-- Up Migration
-- What the relay needs beyond the outbox of 0002.

-- Which relay made an attempt: with several relays on one database, the history
-- says who sent what (and which relay's lease expired).
alter table webhooks.delivery_attempts add column relay_id text;

-- The rescue's question, "which leases have run out?", is one index range scan.
create index deliveries_in_flight_lease_idx on webhooks.deliveries (locked_until) where state = 'in_flight';

-- A claim that refills one webhook reads that webhook's due rows alone, however long
-- the other webhooks' queues are.
create index deliveries_pending_webhook_due_idx on webhooks.deliveries (webhook_id, next_attempt_at) where state = 'pending';
