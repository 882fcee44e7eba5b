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
-- roll-up through every webhook counted: the report reads only those as empty. Grouped
-- by webhook and day before the probes: 1.2 s over 1,000,000 kept deliveries.)
insert into webhooks_private.delivery_days_to_count (webhook_id, company_id, day)
select d.webhook_id, d.company_id, d.day
from (select h.webhook_id, h.company_id, (h.created_at at time zone 'utc')::date as day
      from webhooks.delivery_history h
      where h.action <> 'webhook.test'
        and h.created_at < (select r.counted_before::timestamp at time zone 'utc'
                            from webhooks_private.report_counts_rolled_up r)
      group by 1, 2, 3) d
where exists (select 1 from webhooks.webhooks w where w.id = d.webhook_id)
  and not exists (select 1 from webhooks.delivery_day_counts c where c.webhook_id = d.webhook_id and c.day = d.day)
on conflict do nothing;
