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

-- Days with deliveries that a roll-up skipped: until now a webhook's new days started
-- after its last day noted, and a writer notes days not countable yet too (a retry's
-- settle a day after its delivery), so the days before such a note were never counted.
-- The report counted them from the rows; now it reads a day without a row as empty, so
-- they are noted, to be counted by the next roll-up. (Only days before where the last
-- roll-up through every webhook counted: the report reads only those as empty.)
insert into webhooks_private.delivery_days_to_count (webhook_id, company_id, day)
select h.webhook_id, h.company_id, (h.created_at at time zone 'utc')::date
from webhooks.delivery_history h
join webhooks.webhooks w on w.id = h.webhook_id
where h.action <> 'webhook.test'
  and h.created_at < (select r.counted_before::timestamp at time zone 'utc' from webhooks_private.report_counts_rolled_up r)
  and not exists (select 1 from webhooks.delivery_day_counts c
                  where c.webhook_id = h.webhook_id and c.day = (h.created_at at time zone 'utc')::date)
group by 1, 2, 3
on conflict do nothing;
