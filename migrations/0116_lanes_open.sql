-- Up Migration
-- The webhooks whose circuit breaker is open, for the backlog figure of /metrics
-- (webhooks_ops.backlog, sql/58_operations.sql), which leaves out the deliveries
-- they hold: read at every scrape, a few entries rather than a row per webhook.
-- Partial: a lane's update that leaves open_until null, as every claim's does, stays
-- a HOT update; only a breaker that opens, probes or closes writes an entry.
create index if not exists lanes_open_idx on webhooks_private.lanes (webhook_id) where open_until is not null;
