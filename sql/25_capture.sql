-- bpd-webhooks engine: capture.
--
-- Triggers on the CRM tables write one webhooks.deliveries row per matching webhook,
-- in the same transaction as the change: a rolled-back change leaves nothing, a
-- committed one is never lost. The payload is built here, from the row as it was at
-- that moment, and stored: history shows exactly what was (or will be) sent.
--
-- Whoever writes contacts fires webhooks, though that role has no grant on the
-- webhook tables and row-level security guards them: like every trigger function of
-- the engine, these run as their owner (SECURITY DEFINER) with the search path
-- pinned, so that a writer's own search_path cannot put other functions or operators
-- in their way. 60_access.sql sets that for all of them at once. (Measured: no
-- cost worth naming.)
--
-- Cost matters: every contact write pays for these triggers. Each trigger first asks
-- whether any company concerned has an enabled webhook for the action (index probes,
-- contact_wanted below) and returns at once when none has. Only a match makes it
-- diff rows or build JSON.
--
-- Two rules keep that first question cheap (each measured with bench/capture.ts):
-- * helpers are plpgsql, not SQL functions: plpgsql keeps each statement's plan for
--   the session, where a non-inlined SQL function is planned again on every call;
-- * lookups are plain equalities on the primary key of webhooks_private.subscriptions:
--   the generic plan plpgsql settles on for "company_id = any($array)" is a
--   sequential scan of every subscription (0.2 ms a call with 2,000 subscriptions).
--
-- A transaction that wrote deliveries wakes the relay (wake_relay, 20_wakeup.sql): it
-- notifies on the channel bpd_webhooks only if a relay is asleep, and at most once:
-- Postgres folds identical notifications of one transaction into one.

-- private: where the change came from (SET LOCAL webhooks.source = 'platform' | ...)
create or replace function webhooks_private.current_source()
returns text
language plpgsql
stable
as $$
begin
  return webhooks_private.setting('webhooks.source', 'unknown');   -- 00_schemas.sql
end;
$$;

-- private: does this company have an enabled webhook subscribed to the action?
create or replace function webhooks_private.company_listens(p_action webhooks.action, p_company_id bigint)
returns boolean
language plpgsql
stable
as $$
begin
  return exists (select 1 from webhooks_private.subscriptions s
                 where s.action = p_action and s.company_id = p_company_id);
end;
$$;

-- private: does a company concerned by the contact (its owner, or the company of an
-- assigned user) have an enabled webhook subscribed to the action? The triggers'
-- first question; false ends their work. Cheapest probe first: most contacts have
-- no assignment, and then the join is never started.
create or replace function webhooks_private.contact_wanted(
  p_action webhooks.action,
  p_contact_id bigint,
  p_owner_company_id bigint
)
returns boolean
language plpgsql
stable
as $$
begin
  if exists (select 1 from webhooks_private.subscriptions s
             where s.action = p_action and s.company_id = p_owner_company_id) then
    return true;
  end if;
  if not exists (select 1 from crm.contact_assignments a where a.contact_id = p_contact_id) then
    return false;
  end if;
  return exists (select 1
                 from crm.contact_assignments a
                 join crm.users u on u.id = a.user_id
                 join webhooks_private.subscriptions s on s.action = p_action and s.company_id = u.company_id
                 where a.contact_id = p_contact_id);
end;
$$;

-- private: names of the contact columns whose values differ (updated_at, which an
-- application may bump on every write, does not count as a change)
create or replace function webhooks_private.changed_fields(p_old jsonb, p_new jsonb)
returns text[]
language plpgsql
immutable
as $$
begin
  -- in jsonb's own key order (shorter names first): deterministic, and no sort
  return (select coalesce(array_agg(n.key), '{}')
          from jsonb_each(p_new) n
          where n.key <> 'updated_at' and n.value is distinct from p_old -> n.key);
end;
$$;

-- private: write one delivery per enabled webhook subscribed to p_action (and, for
-- filtered webhooks, to this status or this user) of the companies concerned by the
-- contact, or of p_only_company alone; p_also_company adds one (the company a
-- contact just left). Each payload holds the contact's id and the webhook's chosen
-- fields, nothing else. Returns how many were written, and wakes the relay when
-- that is more than none.
create or replace function webhooks_private.enqueue(
  p_action       webhooks.action,
  p_contact      jsonb,
  p_data         jsonb,
  p_status_id    bigint default null,
  p_user_id      bigint default null,
  p_only_company bigint default null,
  p_also_company bigint default null
)
returns integer
language plpgsql
as $$
declare
  v_contact_id constant bigint := (p_contact ->> 'id')::bigint;
  v_owner_company_id constant bigint := (p_contact ->> 'company_id')::bigint;
  v_timestamp constant text := to_char(now() at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
  v_source constant text := webhooks_private.current_source();
  v_written integer;
begin
  insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload)
  select w.id, w.company_id, p_action, v_contact_id,
         jsonb_build_object(
           'type', p_action,
           'timestamp', v_timestamp,
           'data', jsonb_build_object(
                     'contact', (select jsonb_object_agg(f, p_contact -> f)
                                 from unnest('{id}'::text[] || w.fields) f),
                     'source', v_source
                   ) || p_data)
  from (
    select v_owner_company_id as company_id where p_only_company is null
    union
    select u.company_id
    from crm.contact_assignments a
    join crm.users u on u.id = a.user_id
    where p_only_company is null and a.contact_id = v_contact_id
    union
    select p_only_company where p_only_company is not null
    union
    select p_also_company where p_also_company is not null
  ) concerned
  join webhooks_private.subscriptions s on s.action = p_action and s.company_id = concerned.company_id
  join webhooks.webhooks w on w.id = s.webhook_id
  where w.enabled
    and (w.status_id is null or w.status_id = p_status_id)
    and (w.user_id is null or w.user_id = p_user_id)
  order by w.id;
  get diagnostics v_written = row_count;
  if v_written > 0 then
    perform webhooks_private.wake_relay();   -- 20_wakeup.sql
  end if;
  return v_written;
end;
$$;

------------------------------------------------------------------------------------
-- crm.contacts

create or replace function webhooks_private.tg_contacts__created()
returns trigger
language plpgsql
as $$
begin
  -- a new contact has no assignments yet: only its owner is concerned
  if webhooks_private.company_listens('contact.created', new.company_id) then
    perform webhooks_private.enqueue('contact.created', to_jsonb(new), '{}');
  end if;
  return null;
end;
$$;

-- contact.updated: an external source (anything but 'platform') changed a column.
-- contact.saved: the BPD platform saved the contact, changed or not.
create or replace function webhooks_private.tg_contacts__updated()
returns trigger
language plpgsql
as $$
declare
  v_action webhooks.action;
  v_left_company bigint;
  v_new jsonb;
  v_changed text[];
begin
  v_action := case when webhooks_private.current_source() = 'platform'
                   then 'contact.saved' else 'contact.updated' end;
  if old.company_id <> new.company_id
     and webhooks_private.company_listens(v_action, old.company_id) then
    -- the company the contact leaves was concerned too
    v_left_company := old.company_id;
  end if;
  if v_left_company is null
     and not webhooks_private.contact_wanted(v_action, new.id, new.company_id) then
    return null;
  end if;
  v_new := to_jsonb(new);
  v_changed := webhooks_private.changed_fields(to_jsonb(old), v_new);
  if v_action = 'contact.updated' and cardinality(v_changed) = 0 then
    return null;
  end if;
  perform webhooks_private.enqueue(v_action, v_new, jsonb_build_object('changed_fields', to_jsonb(v_changed)),
                                   p_also_company => v_left_company);
  return null;
end;
$$;

-- BEFORE DELETE, not AFTER: the foreign keys' cascade removes the contact's
-- assignments before any AFTER trigger runs, and with them the knowledge of which
-- companies were concerned. The row is already locked here, so the delete proceeds.
create or replace function webhooks_private.tg_contacts__deleted()
returns trigger
language plpgsql
as $$
begin
  if webhooks_private.contact_wanted('contact.deleted', old.id, old.company_id) then
    perform webhooks_private.enqueue('contact.deleted', to_jsonb(old), '{}');
  end if;
  return old;
end;
$$;

drop trigger if exists _500_webhooks_created on crm.contacts;
create trigger _500_webhooks_created
  after insert on crm.contacts
  for each row execute function webhooks_private.tg_contacts__created();

drop trigger if exists _500_webhooks_updated on crm.contacts;
create trigger _500_webhooks_updated
  after update on crm.contacts
  for each row execute function webhooks_private.tg_contacts__updated();

-- _900_: the last BEFORE trigger, so no later trigger can cancel a delete already announced
drop trigger if exists _900_webhooks_deleted on crm.contacts;
create trigger _900_webhooks_deleted
  before delete on crm.contacts
  for each row execute function webhooks_private.tg_contacts__deleted();

------------------------------------------------------------------------------------
-- crm.contact_statuses

-- private: the status-tag event for one contact_statuses row. Nothing fires when the
-- contact or the status is gone: the row was removed by the cascade of their delete,
-- and contact.deleted (or nothing, for a deleted status tag) tells that story.
create or replace function webhooks_private.status_event(p_action webhooks.action, p_contact_id bigint, p_status_id bigint)
returns void
language plpgsql
as $$
declare
  v_contact crm.contacts;
  v_status crm.statuses;
begin
  select * into v_contact from crm.contacts where id = p_contact_id;
  if not found or not webhooks_private.contact_wanted(p_action, v_contact.id, v_contact.company_id) then
    return;
  end if;
  select * into v_status from crm.statuses where id = p_status_id;
  if not found then
    return;
  end if;
  perform webhooks_private.enqueue(p_action, to_jsonb(v_contact),
    jsonb_build_object('status', jsonb_build_object('id', v_status.id, 'name', v_status.name)),
    p_status_id => v_status.id);
end;
$$;

create or replace function webhooks_private.tg_contact_statuses__added()
returns trigger
language plpgsql
as $$
begin
  perform webhooks_private.status_event('contact.status_added', new.contact_id, new.status_id);
  return null;
end;
$$;

create or replace function webhooks_private.tg_contact_statuses__removed()
returns trigger
language plpgsql
as $$
begin
  perform webhooks_private.status_event('contact.status_removed', old.contact_id, old.status_id);
  return null;
end;
$$;

drop trigger if exists _500_webhooks_status_added on crm.contact_statuses;
create trigger _500_webhooks_status_added
  after insert on crm.contact_statuses
  for each row execute function webhooks_private.tg_contact_statuses__added();

drop trigger if exists _500_webhooks_status_removed on crm.contact_statuses;
create trigger _500_webhooks_status_removed
  after delete on crm.contact_statuses
  for each row execute function webhooks_private.tg_contact_statuses__removed();

------------------------------------------------------------------------------------
-- crm.contact_assignments

-- A statement-level trigger with the inserted rows as a table: "the first user of
-- company C on this contact" is a question about the whole statement (two users of C
-- assigned by one INSERT must yield one first, not two or none).
create or replace function webhooks_private.tg_contact_assignments__assigned()
returns trigger
language plpgsql
as $$
declare
  r record;
begin
  for r in
    select to_jsonb(c) as contact, c.id as contact_id, c.company_id as owner_company_id,
           u.company_id as user_company_id,
           jsonb_build_object('id', u.id, 'name', u.name, 'email', u.email, 'company_id', u.company_id) as user_json,
           -- first of its company: the smallest user id of that company in this
           -- statement, and no assignment of that company from before it
           i.user_id = min(i.user_id) over (partition by i.contact_id, u.company_id)
           and not exists (
             select 1
             from crm.contact_assignments a
             join crm.users au on au.id = a.user_id
             where a.contact_id = i.contact_id
               and au.company_id = u.company_id
               and not exists (select 1 from inserted n where n.contact_id = a.contact_id and n.user_id = a.user_id)
           ) as is_first
    from inserted i
    join crm.users u on u.id = i.user_id
    join crm.contacts c on c.id = i.contact_id
    order by i.contact_id, i.user_id
  loop
    -- goes to the assigned user's company alone
    if r.is_first and webhooks_private.company_listens('contact.first_company_user_assigned', r.user_company_id) then
      perform webhooks_private.enqueue('contact.first_company_user_assigned', r.contact,
        jsonb_build_object('user', r.user_json), p_only_company => r.user_company_id);
    end if;
    if webhooks_private.contact_wanted('contact.user_assigned', r.contact_id, r.owner_company_id) then
      perform webhooks_private.enqueue('contact.user_assigned', r.contact,
        jsonb_build_object('user', r.user_json), p_user_id => (r.user_json ->> 'id')::bigint);
    end if;
  end loop;
  return null;
end;
$$;

drop trigger if exists _500_webhooks_assigned on crm.contact_assignments;
create trigger _500_webhooks_assigned
  after insert on crm.contact_assignments
  referencing new table as inserted
  for each statement execute function webhooks_private.tg_contact_assignments__assigned();
