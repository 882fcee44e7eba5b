-- Up Migration
-- The admin API's company-wide lists (allDeliveries, allDeliveryAttempts, and their
-- totalCount) read one company's rows under row-level security, which filters on
-- company_id, and page in id order. Without an index that starts with company_id each
-- of them walks the primary key of the whole table, filtering (a company with few or
-- no rows reads every row for one page), and counts by scanning the table: time
-- followed the table, not the company. With (company_id, id) the page is an index
-- range of the company in id order, and the count an index-only scan of its range.
-- docs/api-limits.md shows the plans before and after (npm run bench:api-plans).
-- (if not exists: a DBA may build them beforehand with CREATE INDEX CONCURRENTLY, same names.)
create index if not exists deliveries_company_idx on webhooks.deliveries (company_id, id);
create index if not exists delivery_attempts_company_idx on webhooks.delivery_attempts (company_id, id);
