-- bpd-webhooks engine, part 7: what the Reports page shows besides the API's report.
--
-- The page says whose webhooks these are. Company names live in the CRM tables, which
-- no API role may read; this function reads just the caller's own company's name, as
-- its owner (SECURITY DEFINER).
--
-- Public API: webhooks.current_company_name (GraphQL: currentCompanyName).

create or replace function webhooks.current_company_name()
returns text
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select c.name from crm.companies c where c.id = webhooks.current_company_id();
$$;

comment on function webhooks.current_company_name() is 'The name of the caller''s company.';

