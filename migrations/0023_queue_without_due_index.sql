-- Up Migration
-- The queue's index of every pending row by due time alone: the claim found its rows
-- there until it learned to find what is due webhook by webhook (a loose scan of
-- delivery_queue_webhook_due_idx, sql/28_lanes.sql). Since then only the backlog
-- figure of the operations endpoint read it (sql/58_operations.sql, which now walks
-- the webhooks' ranges too). Dropped: every delivery captured, and every retry, writes
-- one index entry fewer, and vacuum has one index fewer to clean.
drop index if exists webhooks.delivery_queue_due_idx;
