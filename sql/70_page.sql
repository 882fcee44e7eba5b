-- bpd-webhooks engine, part 7: names the Reports page shows.
--
-- The page words a trigger the way an admin thinks of it: "Status added: Thank You
-- Note", "User assigned: Jane Doe", and says whose webhooks these are. Those names
-- live in the CRM tables, which no API role may read. These functions read just the
-- name, as their owner (SECURITY DEFINER), and only within the caller's company: a
-- row of another company, even one made up and passed in from psql, gives null.
--
-- Public API: webhooks.webhooks_status_name, webhooks.webhooks_user_name (GraphQL:
-- the fields statusName and userName of a webhook), webhooks.current_company_name
-- (GraphQL: currentCompanyName).

create or replace function webhooks.webhooks_status_name(w webhooks.webhooks)
returns text
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select s.name
  from crm.statuses s
  where s.id = w.status_id
    and s.company_id = w.company_id
    and s.company_id = webhooks.current_company_id();
$$;

create or replace function webhooks.webhooks_user_name(w webhooks.webhooks)
returns text
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select u.name
  from crm.users u
  where u.id = w.user_id
    and u.company_id = w.company_id
    and u.company_id = webhooks.current_company_id();
$$;

create or replace function webhooks.current_company_name()
returns text
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select c.name from crm.companies c where c.id = webhooks.current_company_id();
$$;

comment on function webhooks.webhooks_status_name(webhooks.webhooks) is
  'The name of the status tag this webhook is filtered on (status_id), e.g. "Thank You Note".';
comment on function webhooks.webhooks_user_name(webhooks.webhooks) is
  'The name of the user this webhook is filtered on (user_id), e.g. "Jane Doe".';
comment on function webhooks.current_company_name() is 'The name of the caller''s company.';
