-- Up Migration
-- The webhooks whose circuit breaker is open, for the backlog figure of /metrics
-- (webhooks_ops.backlog, sql/58_operations.sql), which leaves out the deliveries
-- they hold: read at every scrape, a few entries rather than a row per webhook.
-- Partial, on a column no update changes: a lane's update that leaves open_until as it
-- was, as every claim's does, stays a HOT update; only one that changes it (a breaker
-- that opens, probes or closes) is not, and only an open breaker has an entry.
create index if not exists lanes_open_idx on webhooks_private.lanes (webhook_id) where open_until is not null;
