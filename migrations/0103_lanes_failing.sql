-- Up Migration
-- The webhooks in a run of failed attempts, by company, for the failing figures of
-- /metrics (webhooks_ops.failing, sql/58_operations.sql): whether failures are
-- widespread, read at every scrape from the failing lanes alone. Partial on
-- failing_since, which a run's first failure sets and its end clears: a claim's update
-- of a lane, and a failed settle's within a run (failures one more), stay HOT updates;
-- only the one that starts or ends a run is not, as one that opens or closes a breaker
-- (lanes_open_idx, migration 0101). Re-runnable.
create index if not exists lanes_failing_idx on webhooks_private.lanes (company_id) where failing_since is not null;
