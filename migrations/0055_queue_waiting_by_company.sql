-- Up Migration
-- The deliveries waiting (not in flight) by company, then webhook and due time: a
-- discovery (sql/28_lanes.sql) finds the companies with deliveries waiting by a loose
-- scan of it, one index probe per company, and puts a lane of each into its window
-- of lanes. Its window walked in webhook order alone was filled by a company with
-- thousands of webhooks with work, and another company's webhook came into one only
-- every (lanes ÷ window) discoveries (test/fleet/many-webhooks.test.ts). An entry per
-- row waiting: written by a capture and by a retry or a release; a lease writes none.
-- (if not exists: a DBA may build it beforehand with CREATE INDEX CONCURRENTLY, same name.)
create index if not exists delivery_queue_company_due_idx
  on webhooks.delivery_queue (company_id, webhook_id, next_attempt_at)
  where locked_by is null;
