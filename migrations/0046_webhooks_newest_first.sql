-- Up Migration
-- A company's webhooks newest first, as the report lists them (webhooks.webhook_report,
-- sql/55_report.sql): a page of the report reads its own rows by this index, from the
-- row the page before ended at, where it read and sorted every webhook of the company
-- for each page. Webhooks are written rarely (an admin's change), and none of these
-- columns changes after the insert.
create index if not exists webhooks_company_newest_idx on webhooks.webhooks (company_id, created_at, id);
