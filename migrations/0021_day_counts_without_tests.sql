-- Up Migration
-- The day counts (webhooks.delivery_day_counts) leave test sends out from now on, as
-- the report's Times Fired always did. The report used to take the tests off the
-- counts by reading the tests still kept, so a day's Times Fired grew back once
-- retention dropped that day (sql/50_report_counts.sql now counts without them).
-- Counts written before hold the tests of their day: take off those still kept. A day
-- already dropped keeps what it has: its tests can no longer be told apart, and the
-- report has shown them there since the drop. (A counted day has nothing on its way,
-- so a test that did not fail succeeded.)
update webhooks.delivery_day_counts c
set fired = c.fired - t.fired,
    succeeded = c.succeeded - t.succeeded,
    failed = c.failed - t.failed
from (select h.webhook_id, (h.created_at at time zone 'utc')::date as day, count(*) as fired,
             count(*) filter (where r.state is distinct from 'failed') as succeeded,
             count(*) filter (where r.state = 'failed') as failed
      from webhooks.delivery_history h
      left join webhooks.delivery_results r on r.delivery_id = h.id and r.created_at = h.created_at
      where h.action = 'webhook.test'
      group by 1, 2) t
where c.webhook_id = t.webhook_id and c.day = t.day;
