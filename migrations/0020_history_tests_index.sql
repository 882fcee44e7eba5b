-- Up Migration
-- The report's test sends (webhooks_private.count_tests, sql/55_report.sql) are read
-- from a partial index of them. Row-level security adds company_id to the report's
-- question, and an index of (webhook_id, created_at) alone lost to the webhook's
-- index of every message (webhook_id, company_id, created_at, id), filtered on the
-- action: the report of a company read every message of each of its webhooks
-- (measured: 9.5 s for a company with 2,500,000 deliveries; npm run bench:history).
-- With company_id in it, the partial index answers the whole question.
drop index webhooks.delivery_history_tests_idx;
create index delivery_history_tests_idx on webhooks.delivery_history (webhook_id, company_id, created_at)
  where action = 'webhook.test';
