-- bpd-webhooks engine: signing secrets, their whole life in one place.
--
-- A webhook gets a secret when it is created (trigger _500_create_secret); the
-- response to the create, and only that, shows it (trigger _600_issue_secret and
-- issued_secret below). Rotating makes a new one and keeps the one it replaces valid
-- for a grace period, each rotated-out secret its own, during which the relay signs
-- with all of them (claim_deliveries in 30_delivery.sql reads them); then it is
-- ignored, and dropped at the next rotation.
--
-- Secrets live in webhooks_private.webhook_secrets and rotated_secrets, tables granted
-- to no API role and to no relay role: only functions running as their owner read or
-- write them.

-- private: how long a rotated-out secret stays valid
create or replace function webhooks_private.secret_grace()
returns interval
language sql
immutable
as $$
  select interval '24 hours';
$$;

-- private: a fresh signing secret, 32 random bytes in the Standard Webhooks form:
-- whsec_ and their base64, the form the secret tables check (migration 0036).
-- gen_random_uuid() draws from the server's strong random source; two of them
-- give 244 random bits without needing the pgcrypto extension.
create or replace function webhooks_private.new_secret()
returns text
language sql
volatile
as $$
  select 'whsec_' || encode(decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'), 'base64');
$$;

-- AFTER INSERT: every new webhook gets a secret.
create or replace function webhooks_private.tg_webhooks__create_secret()
returns trigger
language plpgsql
as $$
begin
  insert into webhooks_private.webhook_secrets (webhook_id, secret)
  values (new.id, webhooks_private.new_secret())
  on conflict (webhook_id) do nothing;
  return null;
end;
$$;

-- Triggers run in name order: 500 makes the secret, 600 hands it out.
drop trigger if exists _500_create_secret on webhooks.webhooks;
create trigger _500_create_secret
  after insert on webhooks.webhooks
  for each row execute function webhooks_private.tg_webhooks__create_secret();

------------------------------------------------------------------------------------
-- Handing out a signing secret once.
--
-- The secret table is granted to no API role. A trigger running as its owner copies a
-- secret it has just made into a transaction-local setting; the API function that
-- caused it reads it from there and returns it. After the transaction the setting is
-- gone: the only moment a secret is ever readable through the API is the response to
-- the create or rotate that made it.

-- private: the setting that carries a webhook's new secret to the end of the transaction
create or replace function webhooks_private.issued_secret_setting(p_webhook_id bigint)
returns text
language sql
immutable
as $$
  select 'webhooks.issued_secret_' || p_webhook_id;
$$;

-- private: the secret issued to webhook p_webhook_id in this transaction, else null
-- (create_webhook and rotate_webhook_secret return it)
drop function if exists webhooks.issued_secret(bigint);
create or replace function webhooks_private.issued_secret(p_webhook_id bigint)
returns text
language sql
volatile
as $$
  select nullif(current_setting(webhooks_private.issued_secret_setting(p_webhook_id), true), '');
$$;

-- private: how many rotated-out secrets may be valid at once. Each signs every
-- delivery of its webhook while it is (one HMAC and about 50 bytes of header more),
-- so their number is bounded; a rotation past it is refused until the oldest expires.
create or replace function webhooks_private.max_rotated_secrets()
returns integer
language sql
immutable
as $$
  select 3;
$$;

-- private: a webhook's rotated-out secrets still valid, the newest first: the relay
-- signs with each beside the current one (claim_deliveries, 30_delivery.sql)
-- (plpgsql: its statement planned once a connection, where a SQL function the planner
-- cannot inline, as this one's subquery keeps it from, is parsed and planned again in
-- every transaction that calls it: each claim)
create or replace function webhooks_private.valid_rotated_secrets(p_webhook_id bigint)
returns text[]
language plpgsql
stable
as $$
begin
  return array(select r.secret from webhooks_private.rotated_secrets r
               where r.webhook_id = p_webhook_id and r.expires_at > now()
               order by r.expires_at desc);
end;
$$;

-- AFTER INSERT: the secret made by _500_create_secret is handed out.
-- AFTER UPDATE OF secret_rotated_at: rotate. The current secret joins the rotated-out
-- ones, valid for secret_grace() more (the relay signs with all of them meanwhile);
-- a new one replaces it. Each rotated-out secret keeps its own grace: with one kept,
-- a second rotation within the grace (the page's advice for a new secret lost before
-- it was stored) ended the first one's at once, and a receiver still on it failed
-- every delivery.
create or replace function webhooks_private.tg_webhooks__issue_secret()
returns trigger
language plpgsql
as $$
declare
  v_secret text;
  v_valid integer;
  v_oldest timestamptz;
begin
  if tg_op = 'INSERT' then
    select secret into v_secret from webhooks_private.webhook_secrets where webhook_id = new.id;
  elsif new.secret_rotated_at is distinct from old.secret_rotated_at then
    delete from webhooks_private.rotated_secrets where webhook_id = new.id and expires_at <= now();
    select count(*), min(expires_at) into v_valid, v_oldest
    from webhooks_private.rotated_secrets where webhook_id = new.id;
    if v_valid >= webhooks_private.max_rotated_secrets() then
      raise exception using
        errcode = 'object_not_in_prerequisite_state',
        message = format('webhook %s has %s rotated-out secrets still valid, the most there may be: rotate again after %s, when the oldest expires',
                         new.id, v_valid, to_char(v_oldest at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
        constraint = 'webhook_secret_rotations',
        column = 'id';
    end if;
    -- (a secret written by hand before its form was checked, migration 0036, is not
    -- kept: it cannot sign, and the check of rotated_secrets, the one statement of
    -- the form, refuses it; rotating is how it is replaced)
    begin
      insert into webhooks_private.rotated_secrets (webhook_id, secret, expires_at)
      select s.webhook_id, s.secret, now() + webhooks_private.secret_grace()
      from webhooks_private.webhook_secrets s
      where s.webhook_id = new.id;
    exception when check_violation then
      null;
    end;
    update webhooks_private.webhook_secrets
    set secret = webhooks_private.new_secret()
    where webhook_id = new.id
    returning secret into v_secret;
    if not found then
      -- a webhook from before secrets existed: it gets its first one
      insert into webhooks_private.webhook_secrets (webhook_id, secret)
      values (new.id, webhooks_private.new_secret())
      returning secret into v_secret;
    end if;
  else
    return null;
  end if;
  perform pg_catalog.set_config(webhooks_private.issued_secret_setting(new.id), v_secret, true);
  return null;
end;
$$;

drop trigger if exists _600_issue_secret on webhooks.webhooks;
create trigger _600_issue_secret
  after insert or update of secret_rotated_at on webhooks.webhooks
  for each row execute function webhooks_private.tg_webhooks__issue_secret();

------------------------------------------------------------------------------------
-- Rotating (the API; runs as the caller: grants and row-level security apply)

-- public: a new signing secret, returned once; the previous one stays valid until
-- previous_secret_expires_at (secret_grace() from now)
select webhooks_private.drop_function_unless(
  'webhooks.rotate_webhook_secret(bigint)',
  'id bigint, OUT webhook webhooks.webhooks, OUT secret text, OUT previous_secret_expires_at timestamp with time zone',
  'record');
create or replace function webhooks.rotate_webhook_secret(
  id bigint,
  out webhook webhooks.webhooks,
  out secret text,
  out previous_secret_expires_at timestamptz
)
language plpgsql
volatile
as $$
declare
  v webhooks.webhooks := webhooks_private.webhook_for_update(rotate_webhook_secret.id);
begin
  update webhooks.webhooks w
  set secret_rotated_at = clock_timestamp()
  where w.id = v.id
  returning * into webhook;
  secret := webhooks_private.issued_secret(v.id);
  previous_secret_expires_at := now() + webhooks_private.secret_grace();
end;
$$;
