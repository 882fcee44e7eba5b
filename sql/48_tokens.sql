-- bpd-webhooks engine: tokens revoked before they expire.
--
-- The API's tokens (api/auth.ts) are signed, not stored: one stays good until its exp,
-- however it leaked. A revocation here refuses, from the API's next reading of them
-- (a second or so later, 5 s at most: api/revocations.ts), every token of a company, or of one
-- subject of it, issued up to a time (its iat, in whole seconds: a token issued in the
-- second of the revocation is refused too), or one token by its id (jti). An admin
-- revokes their own company's (webhooks.revoke_tokens, GraphQL revokeTokens); an
-- operator any company's, or one token (`npm run token -- --revoke …`, as the owner).
-- The rows are migration 0109's.

-- private: the most revocations by subject or by id a company holds at once. A
-- revocation of every token of the company replaces those it covers, and one by id
-- goes once its token has expired.
create or replace function webhooks_private.token_revocations_max()
returns integer
language sql
immutable
as $$
  select 100;
$$;

-- private: record a revocation (subject '' and jti '': every token of the company;
-- jti '': every token of the subject; else that one token, issued at issued_before
-- and expiring at expires_at). The owner's: the admin's own is webhooks.revoke_tokens.
create or replace function webhooks_private.revoke_tokens(p_company_id bigint, p_subject text, p_jti text,
                                                          p_issued_before timestamptz, p_expires_at timestamptz,
                                                          p_actor text)
returns webhooks_private.token_revocations
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v webhooks_private.token_revocations;
  v_held integer;
begin
  if p_company_id is null or p_company_id <= 0 then
    raise exception using errcode = 'invalid_parameter_value',
      message = 'a revocation names a company (a positive company id)';
  end if;
  if length(coalesce(p_subject, '')) > 200 then
    raise exception using errcode = 'invalid_parameter_value',
      message = format('a token''s subject has at most 200 characters, not %s', length(p_subject));
  end if;
  if length(coalesce(p_jti, '')) > 64 then
    raise exception using errcode = 'invalid_parameter_value',
      message = format('a token''s id has at most 64 characters, not %s', length(p_jti));
  end if;
  if coalesce(p_jti, '') <> '' and p_expires_at is null then
    raise exception using errcode = 'invalid_parameter_value',
      message = 'a revocation of one token says when it expires';
  end if;
  -- (one revocation at a time: the version's row, which the API reads)
  update webhooks_private.token_revocations_version set version = version + 1;
  -- what this one covers, and the revocations of tokens expired, go
  delete from webhooks_private.token_revocations r
  where r.company_id = p_company_id
    and ((r.jti <> '' and r.expires_at <= now())
         or (coalesce(p_jti, '') = '' and (coalesce(p_subject, '') = '' or r.subject = p_subject)
             and (r.subject, r.jti) <> (coalesce(p_subject, ''), '')
             and r.issued_before <= p_issued_before));
  insert into webhooks_private.token_revocations as r
    (company_id, subject, jti, issued_before, expires_at, revoked_by)
  values (p_company_id, coalesce(p_subject, ''), coalesce(p_jti, ''), p_issued_before, p_expires_at,
          left(coalesce(p_actor, session_user::text), 200))
  on conflict (company_id, subject, jti) do update
    set issued_before = greatest(r.issued_before, excluded.issued_before),
        expires_at = greatest(r.expires_at, excluded.expires_at),
        revoked_at = now(),
        revoked_by = excluded.revoked_by
  returning * into v;
  select count(*) into v_held
  from webhooks_private.token_revocations r
  where r.company_id = p_company_id and (r.subject, r.jti) <> ('', '');
  if v_held > webhooks_private.token_revocations_max() then
    raise exception using errcode = 'program_limit_exceeded',
      message = format('a company holds at most %s revocations by subject or by token at once: '
                       'revoke every token of the company instead, which replaces them',
                       webhooks_private.token_revocations_max()),
      constraint = 'token_revocations_max';
  end if;
  return v;
end;
$$;

-- public: revoke every token of the caller's company issued until now, or every one
-- of one subject (a person, a script); the caller's own token with them if it is one.
-- Returns the time: a token issued at or before it (whole seconds) is refused.
create or replace function webhooks.revoke_tokens(subject text default null)
returns timestamptz
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_company bigint := webhooks.current_company_id();
begin
  if v_company is null then
    raise exception using errcode = 'insufficient_privilege',
      message = 'revoke_tokens revokes the caller''s company''s tokens: call it with a token (jwt.claims.company_id)';
  end if;
  return (webhooks_private.revoke_tokens(v_company, nullif(revoke_tokens.subject, ''), '', now(), null,
                                         webhooks_private.audit_actor())).issued_before;
end;
$$;

-- public (the API's login alone): the revocations in force, read by the API at most
-- once a second. The first row is the version (company_id null); the others follow
-- only when the version is not p_known: a second with no revocation costs one row.
-- A token issued at or before issued_before (seconds since the epoch) is refused.
create or replace function webhooks.token_revocations_in_force(p_known bigint)
returns table (version bigint, company_id bigint, subject text, jti text, issued_before bigint)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select v.version, null::bigint, null::text, null::text, null::bigint
  from webhooks_private.token_revocations_version v
  union all
  select null, r.company_id, r.subject, r.jti, floor(extract(epoch from r.issued_before))::bigint
  from webhooks_private.token_revocations r
  where (select v.version from webhooks_private.token_revocations_version v) is distinct from p_known
    and (r.jti = '' or r.expires_at > now());
$$;
