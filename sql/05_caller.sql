-- bpd-webhooks engine: who is calling.
--
-- Who is calling comes from the request's JWT claims, which the API server turns into
-- transaction settings: jwt.claims.company_id, jwt.claims.role, jwt.claims.sub.
-- Row-level security (60_access.sql), the admin functions and the report all ask
-- these two functions, and nothing else, about the caller.

-- public: the company of the caller (null outside an API request)
create or replace function webhooks.current_company_id()
returns bigint
language sql
stable
as $$
  select nullif(current_setting('jwt.claims.company_id', true), '')::bigint;
$$;

-- public: who is acting, for disabled_by: the token's subject, else the database role
create or replace function webhooks.current_actor()
returns text
language sql
stable
as $$
  select coalesce(nullif(current_setting('jwt.claims.sub', true), ''), current_user::text);
$$;

-- private: who is acting, for the audit trail (47_audit.sql), whose rows are written
-- by functions running as their owner, where current_user names the owner: the
-- token's subject, else the role the session switched to (SET ROLE, as the API server
-- does per request), else the one it logged in as.
create or replace function webhooks_private.audit_actor()
returns text
language sql
stable
as $$
  select coalesce(nullif(current_setting('jwt.claims.sub', true), ''),
                  nullif(current_setting('role'), 'none'),
                  session_user::text);
$$;
