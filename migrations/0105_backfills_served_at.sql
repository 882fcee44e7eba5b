-- Up Migration
-- When a step of the backfills (webhooks_relay.backfill_step_waiting, sql/35_backfill.sql)
-- last served each backfill: a step takes the least recently served first, so that no
-- backfill, of whatever company, is served at every step while another waits. Null:
-- not served yet (first). Not indexed: a step sorts the running backfills, a few a
-- company, and the column changes at every step (the row's update stays HOT).
-- Re-runnable.
alter table webhooks.backfills add column if not exists served_at timestamptz;
