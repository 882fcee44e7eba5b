-- Up Migration
-- A company's backfills by an index of their own (GraphQL: allBackfills, its pages and
-- its totalCount): row-level security filters on company_id, and with no index that
-- starts with it a page walked every company's backfills in id order, testing each for
-- the caller's (2,002 rows read for a company of 2 beside one of 2,000:
-- test/sql/backfills-list.test.ts). A row a backfill run: building it is quick.
create index if not exists backfills_company_idx on webhooks.backfills (company_id, id);
