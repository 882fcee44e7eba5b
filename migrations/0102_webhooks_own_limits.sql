-- Up Migration
-- The webhooks with a limit of their own (rate_limit, max_in_flight), for the backlog
-- figure of /metrics (webhooks_ops.backlog, sql/58_operations.sql), which leaves out
-- the due deliveries of those at their limit: they wait for the pace their company
-- chose, not for a relay. Read at every scrape: the few webhooks so limited rather than
-- every webhook. Partial on columns an admin's edit alone changes, on the webhooks
-- rather than on the lanes: a claim's update of a lane (paced_until at each claim of a
-- paced webhook) stays a HOT update. Re-runnable.
create index if not exists webhooks_own_limits_idx on webhooks.webhooks (id)
  where rate_limit is not null or max_in_flight is not null;
