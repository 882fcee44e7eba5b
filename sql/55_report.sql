-- bpd-webhooks engine: the report behind REPORTS >> Webhooks.
--
-- Public API, read-only:
--   webhooks.webhook_report(since, until)  every webhook of the company with times
--                                          fired / succeeded / failed in the range
--                                          (counting: 50_report_counts.sql)
--   webhooks.webhooks_history(webhook, …)  one webhook's deliveries, newest first
--                                          (GraphQL: the field `history` of Webhook)
--   webhooks.company_statuses(), webhooks.company_users()
--                                          what a webhook's filters may name
--   webhooks.current_company_name()        whose webhooks the page shows
-- The report and the history run as the caller (row-level security applies); the
-- CRM lookups run as their owner and answer for the caller's company only.

------------------------------------------------------------------------------------
-- The caller's company's statuses and users: what a webhook's status_id / user_id
-- may name, and their names for the page. The CRM tables are granted to no API role;
-- these run as their owner and return the rows of the caller's company only.

-- public: the status tags of the caller's company
create or replace function webhooks.company_statuses()
returns table (id bigint, name text)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select s.id, s.name from crm.statuses s
  where s.company_id = webhooks.current_company_id()
  order by s.name, s.id;
$$;

-- public: the users of the caller's company
create or replace function webhooks.company_users()
returns table (id bigint, name text, email text)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select u.id, u.name, u.email from crm.users u
  where u.company_id = webhooks.current_company_id()
  order by u.name, u.id;
$$;

------------------------------------------------------------------------------------
-- The report (REPORTS >> Webhooks): every webhook of the company, active and
-- disabled, with how often it fired in a date range and how that went.

drop type if exists webhooks.webhook_report_row cascade;
create type webhooks.webhook_report_row as (
  webhook_id      bigint,
  name            text,
  url             text,
  actions         webhooks.action[],
  fields          text[],
  status_id       bigint,
  status_name     text,
  user_id         bigint,
  user_name       text,
  created_at      timestamptz,
  enabled         boolean,
  disabled_at     timestamptz,
  disabled_by     text,
  disabled_reason text,
  ignore_sources  text[],
  watch_fields    text[],
  conditions      jsonb,
  -- fleet-wide limits: requests at once (null: webhooks.max_in_flight), per second (null: none)
  max_in_flight   integer,
  rate_limit      integer,
  -- deliveries created in the range, and how many of them ended each way so far
  times_fired     bigint,
  times_succeeded bigint,
  times_failed    bigint,
  times_pending   bigint
);

-- private: the test sends of a webhook in [since, until)
-- (webhooks.send_test_webhook, 47_audit.sql), which the report takes off its
-- counts: tests show in the history but are not fired by events. A small partial
-- index holds them (delivery_history_tests_idx: the condition is written as its
-- predicate, action = 'webhook.test', so that the planner proves it and reads that
-- index alone; as action::text it read every message of the webhook).
create or replace function webhooks_private.count_tests(p_webhook_id bigint, p_since timestamptz, p_until timestamptz)
returns table (fired bigint, succeeded bigint, failed bigint)
language sql
stable
as $$
  -- (as count_rows, 50_report_counts.sql: what is neither on its way nor failed succeeded)
  select count(*), count(*) filter (where q.delivery_id is null and r.state is distinct from 'failed'),
         count(*) filter (where r.state = 'failed')
  from webhooks.delivery_history d
  left join webhooks.delivery_queue q on q.delivery_id = d.id
  left join webhooks.delivery_results r on r.delivery_id = d.id and r.created_at = d.created_at
  where d.webhook_id = p_webhook_id and d.action = 'webhook.test'::webhooks.action
    and d.created_at >= coalesce(p_since, '-infinity') and d.created_at < coalesce(p_until, 'infinity');
$$;

-- public: the report for [since, until); null ends are open. Newest webhooks first.
create or replace function webhooks.webhook_report(since timestamptz default null, until timestamptz default null)
returns setof webhooks.webhook_report_row
language sql
stable
as $$
  select w.id, w.name, w.url, w.actions, w.fields,
         w.status_id, s.name, w.user_id, u.name, w.created_at,
         w.enabled, w.disabled_at, w.disabled_by, w.disabled_reason,
         w.ignore_sources, w.watch_fields, w.conditions,
         w.max_in_flight, w.rate_limit,
         c.fired - t.fired, c.succeeded - t.succeeded, c.failed - t.failed,
         (c.fired - c.succeeded - c.failed) - (t.fired - t.succeeded - t.failed)
  from webhooks.webhooks w
  left join webhooks.company_statuses() s on s.id = w.status_id
  left join webhooks.company_users() u on u.id = w.user_id
  cross join lateral webhooks_private.count_deliveries(w.id, w.company_id, since, until) c
  -- test sends (47_audit.sql) are in the history but not in Times Fired
  cross join lateral webhooks_private.count_tests(w.id, since, until) t
  order by w.created_at desc, w.id desc;
$$;

-- public: one webhook's history (the "Times Fired" click): its deliveries created in
-- [since, until), optionally only those in one state, newest first. PostGraphile
-- exposes it as the field `history` of a webhook, a connection paged with cursors.
create or replace function webhooks.webhooks_history(
  w     webhooks.webhooks,
  since timestamptz default null,
  until timestamptz default null,
  state text default null
)
returns setof webhooks.deliveries
language sql
stable
as $$
  select d.*
  from webhooks.deliveries d
  where d.webhook_id = w.id
    -- always true; it lets the index (webhook_id, company_id, created_at, id) bound
    -- the scan by time for callers row-level security does not filter (owners, DBAs)
    and d.company_id = w.company_id
    and d.created_at >= coalesce(since, '-infinity')
    and d.created_at < coalesce(until, 'infinity')
    and (webhooks_history.state is null or d.state = webhooks_history.state)
  order by d.created_at desc, d.id desc;
$$;

------------------------------------------------------------------------------------
-- The page says whose webhooks these are. Company names live in the CRM tables, which
-- no API role may read; this reads just the caller's own company's name, as its owner.

-- public: the name of the caller's company (GraphQL: currentCompanyName)
create or replace function webhooks.current_company_name()
returns text
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select c.name from crm.companies c where c.id = webhooks.current_company_id();
$$;
