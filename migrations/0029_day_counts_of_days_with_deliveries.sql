-- Up Migration
-- The report's day counts (sql/50_report_counts.sql) had a row for every day of every
-- webhook from its first delivery on, a day without any included: a row a day for each
-- quiet webhook, kept for ever. From now on a day without deliveries has no row: the
-- report knows such a day from one noted to be counted again by the notes themselves,
-- which its callers may now read for their own company: the notes carry the company.
alter table webhooks_private.delivery_days_to_count add column if not exists company_id bigint;
update webhooks_private.delivery_days_to_count n
set company_id = w.company_id
from webhooks.webhooks w
where w.id = n.webhook_id and n.company_id is null;
-- (the notes of webhooks gone: the roll-up would have dropped them)
delete from webhooks_private.delivery_days_to_count where company_id is null;
alter table webhooks_private.delivery_days_to_count alter column company_id set not null;

-- the rows of days without deliveries
delete from webhooks.delivery_day_counts where fired = 0 and succeeded = 0 and failed = 0;
