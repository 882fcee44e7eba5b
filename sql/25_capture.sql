-- bpd-webhooks engine: capture.
--
-- Triggers on the CRM tables write one delivery (webhooks.deliveries) per matching webhook,
-- in the same transaction as the change: a rolled-back change leaves nothing, a
-- committed one is never lost. The payload is built here, from the row as it was at
-- that moment, and stored: history shows exactly what was (or will be) sent.
--
-- Whoever writes contacts fires webhooks, though that role has no grant on the
-- webhook tables and row-level security guards them: like every trigger function of
-- the engine, these run as their owner (SECURITY DEFINER) with the search path
-- pinned, so that a writer's own search_path cannot put other functions or operators
-- in their way. 60_access.sql sets that for all of them at once. (Measured: about
-- 2 µs a row, once per trigger call; the helpers they call carry no SET of their own.)
--
-- Cost matters: every contact write pays for these triggers. Each trigger first asks
-- whether any company concerned has an enabled webhook for the action, in one
-- expression of index probes, and returns at once when none has. Only then does it
-- diff rows, evaluate filters (15_filters.sql) or build JSON. The rules that keep it
-- cheap, each measured with bench/capture.ts (docs/capture.md has the figures):
-- * the first question is inline in the trigger, one expression: no helper call;
-- * lookups probe the primary key of webhooks_private.subscriptions (action,
--   company_id, webhook_id): an equality in the triggers, "company_id = any(...)"
--   in capture(), whose generic plan is an index scan only because capture() turns
--   bitmap scans off (with them: a bitmap scan and a sort; a join: a scan of every
--   subscription); a subscription row carries the webhook's filters, payload_omit
--   and payload_keys, so a match needs no join to webhooks.webhooks;
-- * the list of changed columns is a typed comparison per column, generated from the
--   catalog below, not a diff of two jsonb documents;
-- * the payload's contact is to_jsonb(row) minus the columns the webhook does not
--   send (one C operator), and capture hands each delivery to webhooks_private.enqueue,
--   the one function that writes the outbox;
-- * a function called for what it does is called by assignment (v := f(...)), not
--   PERFORM: PERFORM runs even one call as a query (executor start and end, a
--   snapshot of its own), while plpgsql evaluates an assignment of one call as a
--   simple expression. Three such calls on the match path (capture, wake_relay and
--   the unlock inside it): 6 to 8 µs of a matching update's 104 (single UPDATE
--   statements, min of 3,000, four rounds of each interleaved).
--
-- crm.contacts belongs to the CRM, which may add, drop or rename its columns without
-- applying this file again. Neither may change what a webhook is sent, nor make a
-- contact write fail: both the generated comparison and payload_omit are checked
-- against the row itself on every use (two C operators each), and when the row has
-- columns they did not know, capture takes the slower way that knows no columns:
-- a diff of the two rows as jsonb, and a payload built from the keys the webhook
-- chose (payload_keys). Applying sql/ again (npm run migrate) makes it fast again.
--
-- A transaction that wrote deliveries wakes the relay (wake_relay, 20_wakeup.sql): it
-- notifies on the channel bpd_webhooks only if a relay is asleep, and at most once:
-- Postgres folds identical notifications of one transaction into one.

-- private: where the change came from (SET LOCAL webhooks.source = 'platform' | ...).
-- A writer's text has no bound of its own, and it goes into every payload (and into
-- the summary of one too large to send): more than 100 characters (the longest an
-- ignore_sources name may be) are cut to 99 and a mark (…), so that the writer's
-- statement still succeeds, a receiver sees it was cut, and ignore_sources meets the
-- source as sent. One SQL expression (no FROM), no SET clause: the planner inlines it
-- into the triggers' expressions, so it costs no call on a write.
create or replace function webhooks_private.current_source()
returns text
language sql
stable
as $$
  select case when pg_catalog.length(pg_catalog.current_setting('webhooks.source', true)) > 100
              then pg_catalog.left(pg_catalog.current_setting('webhooks.source', true), 99) operator(pg_catalog.||) '…'
              else coalesce(nullif(pg_catalog.current_setting('webhooks.source', true), ''), 'unknown') end;
$$;

-- private: does a company concerned by the contact (its owner, or the company of an
-- assigned user) have an enabled webhook subscribed to the action? Cheapest probe
-- first: most contacts have no assignment, and then the join is never started.
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
  -- (the owner is concerned while it exists: a company deleted with its contacts, by
  -- the CRM's cascade, has its webhooks deleted with it, and capture found none of
  -- them for each of its contacts: 10,000 calls of capture for a company of 10,000
  -- contacts, test/sql/company-delete.test.ts. One probe of its key, on this path only.)
  return (exists (select 1 from webhooks_private.subscriptions s
                  where s.action = p_action and s.company_id = p_owner_company_id)
          and exists (select 1 from crm.companies c where c.id = p_owner_company_id))
         or (exists (select 1 from crm.contact_assignments a where a.contact_id = p_contact_id)
             and exists (select 1
                         from crm.contact_assignments a
                         join crm.users u on u.id = a.user_id
                         join webhooks_private.subscriptions s on s.action = p_action and s.company_id = u.company_id
                         where a.contact_id = p_contact_id));
end;
$$;

-- private (the update trigger's probe): does the company of an assigned user have an
-- enabled webhook subscribed to the action that the source does not turn away?
-- plpgsql, so that it stays a call the probe makes for each assignment it finds (none
-- for most contacts), with its plan kept: a SQL function would be inlined, and its
-- join started with every probe, assignments or not.
create or replace function webhooks_private.user_company_listens(p_user_id bigint, p_action webhooks.action, p_source text)
returns boolean
language plpgsql
stable
as $$
begin
  return exists (select 1
                 from crm.users u
                 join webhooks_private.subscriptions s on s.action = p_action and s.company_id = u.company_id
                 where u.id = p_user_id
                   and not (p_source = any (s.ignore_sources)));
end;
$$;

-- private: the names of the contact columns whose values differ between two versions
-- of a row, updated_at included (the update trigger takes it out of what counts as a
-- change: an application may bump it on every write), in jsonb's key order (shorter
-- names first). Generated from the catalog each time this file is applied, with
-- contact_columns(): the columns it was generated for, and contact_custom(): the
-- row's custom, typed.
-- Callers use it only for a row whose columns are exactly those (contact_columns_known,
-- below); otherwise contact_changes_json. (Column names from pg_attribute, quoted with
-- %I and %L; nothing a tenant wrote.) A typed comparison per column costs a fraction
-- of a diff of two jsonb documents.
do $generate$
declare
  v_terms text;
  v_columns text[];
  v_custom_type regtype;
begin
  -- (a column whose type has no default btree equality of its own, json, point, xml,
  -- arrays and enums among them, is compared as jsonb, as contact_changes_json does: IS
  -- DISTINCT FROM on json or point has no operator, and applying this file failed)
  select string_agg(case when exists (select 1 from pg_catalog.pg_opclass c
                                      join pg_catalog.pg_am m on m.oid = c.opcmethod
                                      where m.amname = 'btree' and c.opcdefault and c.opcintype = a.atttypid)
                         then format('case when o.%1$I is distinct from n.%1$I then %1$L end', a.attname)
                         else format('case when pg_catalog.to_jsonb(o.%1$I) is distinct from pg_catalog.to_jsonb(n.%1$I) then %1$L end',
                                     a.attname) end,
                    ', ' order by length(a.attname), a.attname collate "C"),
         array_agg(a.attname::text order by a.attnum),
         max(a.atttypid) filter (where a.attname = 'custom')
  into v_terms, v_columns, v_custom_type
  from pg_catalog.pg_attribute a
  where a.attrelid = 'crm.contacts'::regclass and a.attnum > 0 and not a.attisdropped;
  execute format($f$
    create or replace function webhooks_private.contact_changes(o crm.contacts, n crm.contacts)
    returns text[]
    language sql
    immutable
    as $body$ select pg_catalog.array_remove(array[%s]::text[], null) $body$
  $f$, v_terms);
  -- (custom as jsonb, as to_jsonb of the row has it; '{}' with no such column)
  execute format($f$
    create or replace function webhooks_private.contact_custom(o crm.contacts)
    returns jsonb
    language sql
    immutable
    as $body$ select %s $body$
  $f$, case when v_custom_type = 'jsonb'::regtype then 'coalesce(o.custom, ''{}'')'
            when v_custom_type is not null then 'coalesce(pg_catalog.to_jsonb(o.custom), ''{}'')'
            else '''{}''::jsonb' end);
  execute format($f$
    create or replace function webhooks_private.contact_columns()
    returns text[]
    language sql
    immutable
    as $body$ select %L::text[] $body$
  $f$, v_columns);
end;
$generate$;

-- private: does a contact row (as jsonb) have exactly the columns contact_changes and
-- payload_omit were made for? False after the CRM added, dropped or renamed a column
-- and sql/ was not applied since. (Inlined: two C operators on a constant array.)
create or replace function webhooks_private.contact_columns_known(p_contact jsonb)
returns boolean
language sql
immutable
as $$
  select p_contact ?& webhooks_private.contact_columns()
         and p_contact - webhooks_private.contact_columns() = '{}'::jsonb;
$$;

-- private: contact_changes for any columns, from the two rows as jsonb: what an update
-- takes while crm.contacts has columns contact_changes does not know. (plpgsql, as
-- contact_only below: it keeps its plan from call to call; a SQL function that cannot
-- be inlined plans its query again in every statement that calls it.)
create or replace function webhooks_private.contact_changes_json(o jsonb, n jsonb)
returns text[]
language plpgsql
immutable
as $$
begin
  return (select coalesce(array_agg(e.key order by length(e.key), e.key collate "C"), '{}')
          from jsonb_each(n) e
          where e.value is distinct from o -> e.key);
end;
$$;

-- private: the contact's keys among p_keys, and no other: a payload's contact while
-- crm.contacts has columns that payload_omit does not know
create or replace function webhooks_private.contact_only(p_contact jsonb, p_keys text[])
returns jsonb
language plpgsql
immutable
as $$
begin
  return (select coalesce(jsonb_object_agg(e.key, e.value), '{}')
          from jsonb_each(p_contact) e
          where e.key = any (p_keys));
end;
$$;

-- private: how long a new delivery waits before its first attempt. Live changes go
-- at once; a backfill's snapshots wait webhooks.backfill_defer (0 by default: the
-- pacing, 35_backfill.sql, keeps few of them ahead of a live change); an update or
-- save to a webhook with a coalesce_window waits that window, for further changes to
-- merge into it (enqueue below).
drop function if exists webhooks_private.first_attempt_delay(webhooks.action);
create or replace function webhooks_private.first_attempt_delay(p_action webhooks.action, p_coalesce_window interval)
returns interval
language plpgsql
stable
as $$
begin
  if p_action = 'contact.snapshot' then
    return webhooks_private.interval_setting('webhooks.backfill_defer');
  elsif p_action in ('contact.updated', 'contact.saved') and p_coalesce_window is not null then
    return p_coalesce_window;
  end if;
  return interval '0';
end;
$$;

-- private: the union of two changed_fields lists, first seen first
create or replace function webhooks_private.changed_fields_union(p_before jsonb, p_after jsonb)
returns jsonb
language sql
immutable
as $$
  select coalesce(jsonb_agg(u.f order by u.n), '[]'::jsonb)
  from (select f, min(n) as n
        from jsonb_array_elements(coalesce(p_before, '[]') || coalesce(p_after, '[]')) with ordinality t(f, n)
        group by f) u;
$$;

-- private: the largest payload a delivery may carry, in bytes: the setting
-- webhooks.max_payload_bytes (02_settings.sql: 1 MiB unless changed, 64 KiB to 64
-- MiB). A contact's payload is a kilobyte or two; one a thousand times that is a
-- tenant's custom data gone wrong, and every webhook that chose the field would store
-- it and send it again on every retry.
create or replace function webhooks_private.max_payload_bytes()
returns integer
language sql
stable
as $$
  select webhooks_private.integer_setting('webhooks.max_payload_bytes');
$$;

-- private: the most bytes of payloads one contact change may write for one company's
-- webhooks together, counting those over payload_bytes_floor() only: the setting
-- webhooks.max_payload_bytes_per_change (02_settings.sql: 16 MiB unless changed). A
-- company has up to 100 webhooks, and each may choose a contact's custom data of up
-- to max_payload_bytes: without it one change of one large contact wrote 100 payloads
-- of a megabyte, 100 MiB of history and WAL in the writer's transaction. Per company,
-- so that a company concerned through an assigned user cannot spend the owner's; and
-- never less than max_payload_bytes (enqueue), so that any payload within that limit
-- goes when it is the first of its change and company.
create or replace function webhooks_private.max_payload_bytes_per_change()
returns integer
language sql
stable
as $$
  select webhooks_private.integer_setting('webhooks.max_payload_bytes_per_change');
$$;

-- private: the transaction's setting that counts the large payloads written for the
-- change and company of the moment (count_change_payload)
create or replace function webhooks_private.change_payload_setting()
returns text
language sql
immutable
as $$
  select 'webhooks.change_payload_bytes';
$$;

-- private (enqueue): the bytes of large payloads the change of the moment has written
-- for p_company_id, with p_bytes more; counted (in change_payload_setting()) only when
-- within p_limit, so that a payload past it leaves room for a smaller one after it.
-- A change is a contact, an action, the contact's row version as it is now (the
-- version a create or an update made: a row changes once a statement), the user or
-- status of an assignment or status event (p_event) and the top-level statement.
-- statement_timestamp() alone was one for a whole DO block or function call: the
-- second change of a contact made by one was counted on top of the first, and its
-- payloads failed though each change alone was within the limit. (The row version is
-- looked up here, on this path only: a payload over payload_bytes_floor().)
-- capture enqueues a change's deliveries company by company, so one count at a time
-- is all it needs: another change or company starts it again. What a writer may
-- have set the setting to is never an error: anything but such a count starts again.
drop function if exists webhooks_private.count_change_payload(bigint, webhooks.action, bigint, integer, integer);
create or replace function webhooks_private.count_change_payload(
  p_company_id bigint,
  p_action     webhooks.action,
  p_contact_id bigint,
  p_event      text,
  p_bytes      integer,
  p_limit      integer
)
returns bigint
language plpgsql
as $$
declare
  v_change constant text := format('%s %s %s %s %s %s', p_contact_id, p_action, p_company_id, p_event,
                                   (select c.ctid from crm.contacts c where c.id = p_contact_id),
                                   extract(epoch from statement_timestamp()));
  v_counted constant text[] := regexp_match(coalesce(current_setting(webhooks_private.change_payload_setting(), true), ''),
                                            '^(.*) ([0-9]{1,18})$');
  v_total bigint := p_bytes;
begin
  if v_counted[1] = v_change then
    v_total := v_total + v_counted[2]::bigint;
  end if;
  if v_total <= p_limit then
    perform pg_catalog.set_config(webhooks_private.change_payload_setting(), v_change || ' ' || v_total, true);
  end if;
  return v_total;
end;
$$;

-- private: what is kept of a delivery whose payload was over max_payload_bytes (or
-- took its change past max_payload_bytes_per_change: p_setting): the event (type,
-- timestamp, source, the contact's id) and what was left out, so that history tells
-- it without storing the oversized payload once per webhook
drop function if exists webhooks_private.payload_summary(jsonb, bigint, integer, integer);
create or replace function webhooks_private.payload_summary(p_payload jsonb, p_contact_id bigint, p_bytes bigint, p_limit integer,
                                                            p_setting text)
returns jsonb
language sql
immutable
as $$
  select jsonb_build_object(
    'type', p_payload -> 'type',
    'timestamp', p_payload -> 'timestamp',
    'data', jsonb_strip_nulls(jsonb_build_object(
              'contact', jsonb_build_object('id', p_contact_id),
              'source', p_payload #> '{data,source}',
              'omitted', jsonb_build_object('reason', 'payload_too_large', 'bytes', p_bytes, 'limit', p_limit,
                                            'setting', p_setting))));
$$;

-- private (enqueue): merge a change into its contact's delivery still waiting out its
-- coalesce window; false when there is none. Its queue row is locked so that no claim
-- takes it while its payload changes, and given the size of the payload it will
-- carry. One held by another transaction is passed over, and the change becomes a
-- message of its own: a claim leasing it (it is no longer waiting), or a delete of
-- the webhook left open (a DBA's session), which the writer must not wait for
-- (test/sql/coalesce-writers.test.ts). So does a change whose merged message would be
-- over webhooks.max_payload_bytes: what a merge adds (data.merged, changed_fields the
-- union, data.previous_contact_id kept) counts as the rest of the payload does, and
-- the message waiting keeps what it had. Until 2026-12-07 only the change's own
-- payload was measured, and a merged message could pass the limit by a few hundred
-- bytes, past a receiver's own body limit set at it (test/sql/payload-limit.test.ts).
drop function if exists webhooks_private.merge_into_waiting(bigint, webhooks.action, bigint, jsonb, integer);
create or replace function webhooks_private.merge_into_waiting(
  p_webhook_id bigint,
  p_action     webhooks.action,
  p_contact_id bigint,
  p_payload    jsonb
)
returns boolean
language plpgsql
as $$
declare
  v_merge_ctid tid;
  v_merge_id bigint;
  v_merge_created timestamptz;
  v_bytes integer;
  -- (the id a change of the contact's id took it from: capture writes it in the payload)
  v_previous constant bigint := (p_payload #>> '{data,previous_contact_id}')::bigint;
begin
  select w.ctid, w.delivery_id, w.created_at into v_merge_ctid, v_merge_id, v_merge_created
  from webhooks.delivery_queue w
  where w.webhook_id = p_webhook_id and w.contact_id = p_contact_id
    and w.locked_by is null and w.action = p_action and w.attempts = 0
    -- A change of the contact's id merges only into a message its deliveries brought
    -- along from the id it had (move_contact_deliveries: the queue row takes the new
    -- id, its message in history names the old until a merge names the new). Two ids
    -- swapped by one statement have, while it runs, both contacts' messages under one
    -- id: the earliest of them was taken, the other contact's when the statement met
    -- the rows in the other order, or when this contact had none waiting (until
    -- 2026-12-07; test/sql/contact-id-swap.test.ts). One probe of history's key, for
    -- such a change alone.
    and (v_previous is null
         or exists (select 1 from webhooks.delivery_history h
                    where h.id = w.delivery_id and h.created_at = w.created_at and h.contact_id = v_previous))
    -- (held_due: the time it had, if a claim put it off while an
    -- earlier delivery of an ordered webhook was in its way)
    and coalesce(w.held_due, w.next_attempt_at) > now()
    -- the contact's latest message of this action not in flight only: merged into an
    -- earlier one, a later change went out in a message sent before one of older
    -- values, and the receiver applied the older values last. Two of them wait when a
    -- merge was refused for its size: until 2026-12-07 every later change tried the
    -- earliest, was refused too, and went alone, a message a change for the rest of
    -- the window; a smaller one merged there, ahead of the older values
    -- (test/sql/payload-limit.test.ts). One probe of the queue's index of rows not
    -- in flight; a later one held by another transaction keeps this one too (the
    -- change goes alone, in order). A change of id asks it of the messages its move
    -- brought (the other contact's of a swap are not its own), by history's key.
    and not exists (select 1 from webhooks.delivery_queue l
                    where l.webhook_id = p_webhook_id and l.contact_id = p_contact_id
                      and l.locked_by is null and l.delivery_id > w.delivery_id and l.action = p_action
                      and (v_previous is null
                           or exists (select 1 from webhooks.delivery_history h
                                      where h.id = l.delivery_id and h.created_at = l.created_at
                                        and h.contact_id = v_previous)))
    -- an ordered webhook's: the contact's latest message only. Merged
    -- into one before a save (an update) of the contact still waiting
    -- its turn, a later change went before it, and the receiver
    -- applied the older values last.
    -- (a later one waiting or in flight, each by the queue's index
    -- of its kind: asked of both at once, it walked the queue's key
    -- from this delivery on, every company's newer rows, until
    -- 2026-12-06; test/sql/coalesce-writers.test.ts)
    and not ((select o.ordered from webhooks.webhooks o where o.id = p_webhook_id)
             and (exists (select 1 from webhooks.delivery_queue l
                          where l.webhook_id = p_webhook_id and l.contact_id = p_contact_id
                            and l.locked_by is null and l.delivery_id > w.delivery_id)
                  or exists (select 1 from webhooks.delivery_queue l
                             where l.webhook_id = p_webhook_id and l.contact_id = p_contact_id
                               and l.locked_by is not null and l.delivery_id > w.delivery_id)))
  order by w.delivery_id desc
  limit 1
  for update skip locked;
  if not found then
    return false;
  end if;
  -- its message in history, in the partition of its day (22_outbox.sql). A contact
  -- whose id changed (move_contact_deliveries) is named by the id it has now, and the
  -- message keeps the first previous_contact_id it had: the id its receiver knows,
  -- since nothing of this message was sent. Its timestamp is the latest of its
  -- changes' (the text of one format: compared as bytes, so that no payload a DBA
  -- wrote by hand makes the write fail): a change merged by a transaction that began
  -- before the message's first change carries that older start, and the message's
  -- time went back, before the message itself (created_at), where
  -- webhooks.find_message no longer found it by the timestamp its receiver got
  -- (until 2026-12-07; test/sql/coalesce-writers.test.ts). Written only if the merged
  -- payload is within max_payload_bytes, measured as enqueue measures a payload
  -- (pg_column_size of the jsonb built); the setting read only past the floor, under
  -- which every limit allowed holds it.
  execute format($sql$
    with m as (
      select h.id, h.created_at,
             jsonb_set(jsonb_set(jsonb_set(
               case when h.payload #> '{data,previous_contact_id}' is null then $1
                    else jsonb_set($1, '{data,previous_contact_id}', h.payload #> '{data,previous_contact_id}') end,
               '{data,changed_fields}',
               webhooks_private.changed_fields_union(h.payload #> '{data,changed_fields}', $1 #> '{data,changed_fields}')),
               '{data,merged}', to_jsonb(coalesce((h.payload #>> '{data,merged}')::integer, 1) + 1)),
               '{timestamp}', coalesce(case when h.payload ->> 'timestamp' > $1 ->> 'timestamp' collate "C" then h.payload -> 'timestamp'
                                            else $1 -> 'timestamp' end, 'null')) as payload
      from %1$s h
      where h.id = $2 and h.created_at = $3
    )
    update %1$s h
    set payload = m.payload,
        contact_id = $4
    from m
    where h.id = m.id and h.created_at = m.created_at
      and case when pg_catalog.pg_column_size(m.payload) <= webhooks_private.payload_bytes_floor() then true
               else pg_catalog.pg_column_size(m.payload) <= webhooks_private.max_payload_bytes() end
    returning pg_catalog.pg_column_size(m.payload)$sql$,
    webhooks_private.history_relation(webhooks_private.utc_day(v_merge_created)))
  into v_bytes
  using p_payload, v_merge_id, v_merge_created, p_contact_id;
  if v_bytes is null then
    return false;
  end if;
  update webhooks.delivery_queue q
  set payload_bytes = v_bytes
  where q.ctid = v_merge_ctid;
  return true;
end;
$$;

-- private (enqueue): another action of a contact ends the wait of its updates still
-- waiting out their coalesce window: they go now, before it. One held by another
-- transaction is passed over, as in merge_into_waiting.
create or replace function webhooks_private.bring_forward_waiting(p_webhook_id bigint, p_contact_id bigint)
returns void
language sql
as $$
  update webhooks.delivery_queue q
  set next_attempt_at = now(),
      held_due = null
  where q.ctid in (select w.ctid
                   from webhooks.delivery_queue w
                   where w.webhook_id = p_webhook_id and w.contact_id = p_contact_id
                     and w.locked_by is null and w.action in ('contact.updated', 'contact.saved')
                     and w.attempts = 0 and coalesce(w.held_due, w.next_attempt_at) > now()
                   for update skip locked);
$$;

-- private (fail_unsent): the webhook's deliveries of the contact not sent yet (its
-- snapshots alone, p_snapshots_only), locked, passing over those another transaction
-- holds
drop function if exists webhooks_private.unsent_snapshots_locked(bigint, bigint);
drop function if exists webhooks_private.unsent_of_contact_locked(bigint, bigint);
create or replace function webhooks_private.unsent_of_contact_locked(p_webhook_id bigint, p_contact_id bigint, p_snapshots_only boolean)
returns bigint[]
language sql
as $$
  select array(select q.delivery_id from webhooks.delivery_queue q
               where q.webhook_id = p_webhook_id and q.contact_id = p_contact_id
                 and (not p_snapshots_only or q.action = 'contact.snapshot') and q.locked_by is null
               for update skip locked);
$$;

-- private (enqueue, capture): the webhook's deliveries of the contact not sent yet
-- (its snapshots alone, p_snapshots_only) fail, with p_why, or p_why_tried for one
-- tried before (waiting for its retry)
--
-- Enqueue's: a contact deleted while a backfill's snapshot of it waits to be
-- sent (for webhooks.backfill_defer, or its retry): the snapshot fails, not sent. It
-- would go after the delete, which is due at once, and a receiver that creates the
-- contacts it does not have brought the contact back (until 2026-12-07;
-- test/sql/backfill.test.ts). So does one whose contact's id changed, on a webhook
-- that takes the change's message: the snapshot names the old id, and sent after that
-- message (in either order, unless the webhook is ordered) it brought the old id back
-- beside the new, the contact twice and nothing said of it (until 2026-12-07;
-- test/sql/contact-id-change.test.ts); the change's message carries the contact as
-- the snapshot would, its chosen fields, under the new id, and the old as
-- data.previous_contact_id. One probe of the contact's queue rows of the webhook a
-- delete or a change of id is written for; one in flight is left to its relay, as is
-- one another transaction holds (a writer never waits for a claim). Through the view,
-- as a DBA's repair: each leaves the queue with its result, and on an ordered webhook
-- the next of its contact goes (22_outbox.sql).
drop function if exists webhooks_private.fail_snapshots_of_deleted(bigint, bigint);
drop function if exists webhooks_private.fail_contact_snapshots(bigint, bigint, text);
drop function if exists webhooks_private.fail_unsent_of_gone(bigint, bigint, text);
create or replace function webhooks_private.fail_unsent(p_webhook_id bigint, p_contact_id bigint, p_snapshots_only boolean,
                                                        p_why text, p_why_tried text default null)
returns void
language plpgsql
as $$
declare
  v_ids bigint[];
begin
  -- (a writer in REPEATABLE READ or SERIALIZABLE meets a serialization failure when a
  -- claim changed the row since its snapshot: the delivery goes. Only such a writer
  -- pays for the block's subtransaction, as in enqueue's merge, and only when there is
  -- a delivery to fail: a delete of thousands of contacts would overflow each backend's
  -- cache of them. In READ COMMITTED the locking read is the one probe.)
  if current_setting('transaction_isolation') = 'read committed' then
    v_ids := webhooks_private.unsent_of_contact_locked(p_webhook_id, p_contact_id, p_snapshots_only);
  elsif not exists (select 1 from webhooks.delivery_queue q
                    where q.webhook_id = p_webhook_id and q.contact_id = p_contact_id
                      and (not p_snapshots_only or q.action = 'contact.snapshot') and q.locked_by is null) then
    return;
  else
    begin
      v_ids := webhooks_private.unsent_of_contact_locked(p_webhook_id, p_contact_id, p_snapshots_only);
    exception when serialization_failure then
      return;
    end;
  end if;
  if cardinality(v_ids) = 0 then
    return;
  end if;
  update webhooks.deliveries d
  set state = 'failed',
      completed_at = now(),
      last_error = case when d.attempts > 0 then coalesce(p_why_tried, p_why) else p_why end
  where d.id = any (v_ids) and d.state = 'pending';
end;
$$;

-- private: write one delivery to the outbox. The only function that does (capture
-- below and backfill, 35_backfill.sql, both write through it): what a delivery row is
-- (its table, its columns) and when it is first due is the outbox's business, not
-- capture's. Wakes a sleeping relay (20_wakeup.sql).
--
-- Coalescing (a webhook's coalesce_window, docs/backfill.md): an update or save of a
-- contact merges into the delivery of the same action, webhook and contact that is
-- still waiting out its window (pending, never attempted, not due yet): the same
-- message, the latest payload, changed_fields the union, data.merged counted. Any
-- other change of that contact ends the wait of such a delivery (due now), so that
-- nothing waits behind it and no action but updates and saves is ever delayed.
-- A writer of the same contact row waits for the one before it (the row lock), so
-- merges into one delivery happen one after the other. No other transaction makes a
-- writer wait or fail here: a waiting delivery held by one, or (for a writer in
-- REPEATABLE READ or SERIALIZABLE) changed since the writer's snapshot, is passed
-- over (merge_into_waiting, bring_forward_waiting). p_coalesce_window is the
-- webhook's, as its caller already holds it (capture: from the subscription row,
-- which carries it; backfill: from the webhook), so that no delivery pays a lookup.
--
-- A payload over max_payload_bytes is not queued: the delivery is written finished,
-- failed with the reason, its payload replaced by payload_summary (Times Fired counts
-- it, the Reports page shows why it was not sent). It merges into no waiting
-- delivery. So is one that takes its change's large payloads for the company past
-- max_payload_bytes_per_change. The contact write itself goes on: no webhook may make
-- it fail.
drop function if exists webhooks_private.enqueue(webhooks.action, jsonb, jsonb, bigint, bigint, bigint, bigint);
drop function if exists webhooks_private.enqueue(webhooks.action, jsonb, jsonb, bigint, bigint, bigint, bigint, jsonb);
drop function if exists webhooks_private.enqueue(bigint, bigint, webhooks.action, bigint, jsonb);
create or replace function webhooks_private.enqueue(
  p_webhook_id      bigint,
  p_company_id      bigint,
  p_action          webhooks.action,
  p_contact_id      bigint,
  p_payload         jsonb,
  p_coalesce_window interval
)
returns void
language plpgsql
as $$
declare
  v_window constant interval := p_coalesce_window;
  v_payload jsonb := p_payload;
  v_notified boolean;
  -- (the size of the jsonb as built: known without serialising it; kept in the queue
  -- row, where the claim's byte budget reads it, 30_delivery.sql)
  -- A change that may be coalesced is measured as it would go alone, data.merged
  -- included (merge_into_waiting measures the message it would make, merged): until
  -- 2026-12-07 that key was added after the check, past the limit at its edge.
  v_bytes integer := pg_catalog.pg_column_size(p_payload);
  v_limit integer;
  v_change_bytes bigint;
  v_not_sent text;
  v_merged boolean;
  -- its time: its transaction's start, unless made an hour or more after it (late:
  -- one comparison a delivery) into a day the retention drops (capture_time,
  -- 22_outbox.sql)
  v_late constant boolean := webhooks_private.may_be_counted(now());
  v_created_at timestamptz := now();
begin
  if p_action = 'contact.deleted' then
    perform webhooks_private.fail_unsent(p_webhook_id, p_contact_id, true,
      'not sent: its contact was deleted before it was sent');
  elsif p_action in ('contact.updated', 'contact.saved') and p_payload -> 'data' ? 'previous_contact_id' then
    -- (a change of the contact's id: its deliveries are under the new id already,
    -- contact_id_changed; an update that keeps the id pays this look at its payload)
    perform webhooks_private.fail_unsent(p_webhook_id, p_contact_id, true,
      'not sent: its contact''s id changed before it was sent, and the change''s message carries it (data.previous_contact_id)');
  end if;
  if v_late then
    v_created_at := webhooks_private.capture_time(now());
  end if;
  if v_window is not null and p_action in ('contact.updated', 'contact.saved') then
    v_payload := jsonb_set(p_payload, '{data,merged}', '1');
    v_bytes := pg_catalog.pg_column_size(v_payload);
  end if;
  if v_bytes > webhooks_private.payload_bytes_floor() then
    v_limit := webhooks_private.max_payload_bytes();
    if v_bytes > v_limit then
      v_not_sent := format('not sent: its payload was %s bytes, over the limit of %s (webhooks.max_payload_bytes)',
                           v_bytes, v_limit);
      v_payload := webhooks_private.payload_summary(p_payload, p_contact_id, v_bytes, v_limit, 'webhooks.max_payload_bytes');
    else
      -- (never below max_payload_bytes: a payload within it goes when it is its change's first)
      v_limit := greatest(webhooks_private.max_payload_bytes_per_change(), v_limit);
      v_change_bytes := webhooks_private.count_change_payload(p_company_id, p_action, p_contact_id,
        coalesce(p_payload #>> '{data,user,id}', p_payload #>> '{data,status,id}'), v_bytes, v_limit);
      if v_change_bytes > v_limit then
        v_not_sent := format('not sent: its payload of %s bytes took this change''s payloads for the company to %s bytes, over the limit of %s (webhooks.max_payload_bytes_per_change)',
                             v_bytes, v_change_bytes, v_limit);
        v_payload := webhooks_private.payload_summary(p_payload, p_contact_id, v_change_bytes, v_limit,
                                                      'webhooks.max_payload_bytes_per_change');
      end if;
    end if;
    if v_not_sent is not null then
      insert into webhooks.deliveries
        (webhook_id, company_id, action, contact_id, payload, state, attempts, last_error, completed_at, created_at)
      values (p_webhook_id, p_company_id, p_action, p_contact_id, v_payload, 'failed', 0, v_not_sent, now(), v_created_at);
      return;
    end if;
  end if;
  if v_window is not null then
    -- (a writer in READ COMMITTED never meets a serialization failure here; one in
    -- REPEATABLE READ or SERIALIZABLE does when the delivery changed after its
    -- snapshot: a claim leased it meanwhile. Only such a writer pays for the block's
    -- subtransaction: thousands in one transaction, an import's, would overflow each
    -- backend's cache of them and slow every snapshot of the server.)
    if p_action in ('contact.updated', 'contact.saved') then
      if current_setting('transaction_isolation') = 'read committed' then
        v_merged := webhooks_private.merge_into_waiting(p_webhook_id, p_action, p_contact_id, p_payload);
      else
        begin
          v_merged := webhooks_private.merge_into_waiting(p_webhook_id, p_action, p_contact_id, p_payload);
        exception when serialization_failure then
          v_merged := false;
        end;
      end if;
      if v_merged then
        return;
      end if;
    elsif current_setting('transaction_isolation') = 'read committed' then
      perform webhooks_private.bring_forward_waiting(p_webhook_id, p_contact_id);
    else
      begin
        perform webhooks_private.bring_forward_waiting(p_webhook_id, p_contact_id);
      exception when serialization_failure then
        null;
      end;
    end if;
  end if;
  -- the message into history, its small row into the queue (22_outbox.sql)
  with written as (
    insert into webhooks.delivery_history (webhook_id, company_id, action, contact_id, payload, created_at)
    values (p_webhook_id, p_company_id, p_action, p_contact_id, v_payload, v_created_at)
    returning id, created_at
  )
  insert into webhooks.delivery_queue
    (delivery_id, created_at, webhook_id, company_id, action, contact_id, next_attempt_at, payload_bytes)
  select w.id, w.created_at, p_webhook_id, p_company_id, p_action, p_contact_id,
         now() + webhooks_private.first_attempt_delay(p_action, v_window), v_bytes
  from written w;
  -- its time is its transaction's start: written an hour or more after it (a CRM
  -- transaction open that long, which had written nothing before), its hour may be
  -- counted already, which the roll-up cannot tell (roll_up_bounds,
  -- 50_report_counts.sql): noted as a write to an older delivery is (not one written
  -- at the time of its capture instead: capture_time). The note only then.
  if v_late and v_created_at = now() then
    perform webhooks_private.recount_day(p_webhook_id, p_company_id, v_created_at);
  end if;
  v_notified := webhooks_private.wake_relay();   -- 20_wakeup.sql
end;
$$;

-- A webhook's window shortened or turned off: its updates and saves still waiting out
-- the old window wait the new one from their change (created_at, when their first
-- wait began), or not at all. Kept waiting the old one (up to an hour), they went
-- after the contact's later changes, which no longer wait (a delete, an update once
-- the window is off) and, the window off, no longer end their wait
-- (bring_forward_waiting): the receiver got the delete, then the update before it.
create or replace function webhooks_private.tg_webhooks__shorten_waits()
returns trigger
language plpgsql
as $$
declare
  v_notified boolean;
begin
  update webhooks.delivery_queue q
  set next_attempt_at = q.created_at + coalesce(new.coalesce_window, interval '0')
  where q.webhook_id = new.id and q.locked_by is null and q.action in ('contact.updated', 'contact.saved')
    and q.attempts = 0 and q.held_due is null and q.next_attempt_at > now()
    and q.next_attempt_at > q.created_at + coalesce(new.coalesce_window, interval '0');
  if found then
    v_notified := webhooks_private.wake_relay();
  end if;
  return null;
end;
$$;

drop trigger if exists _500_shorten_waits on webhooks.webhooks;
create trigger _500_shorten_waits
  after update of coalesce_window on webhooks.webhooks
  for each row when (new.coalesce_window is null and old.coalesce_window is not null
                     or new.coalesce_window < old.coalesce_window)
  execute function webhooks_private.tg_webhooks__shorten_waits();

-- private: the companies concerned by a contact whose id changes (p_contact_ids: the
-- id it had and the one it takes; its assignments may name either while the update
-- runs, the update trigger below): its owner and the companies of its assigned
-- users. What capture announces the change to, and whose queue rows of the contact
-- move to the new id (contact_id_changed below).
create or replace function webhooks_private.companies_concerned(p_owner bigint, p_contact_ids bigint[])
returns bigint[]
language sql
stable
as $$
  select array(select p_owner
               union
               select u.company_id
               from crm.contact_assignments a
               join crm.users u on u.id = a.user_id
               where a.contact_id = any (p_contact_ids));
$$;

-- private: one delivery for each enabled webhook subscribed to p_action (and, with
-- status_id / user_id, to this status or this user) of the companies concerned by the
-- contact (or of p_only_company alone; p_also_company adds one: the company a contact
-- just left) whose filters (15_filters.sql) let the change through. p_contact is the
-- row the payload shows. For an update, p_changed names the columns it changed
-- (updated_at included) and p_old_custom is custom as it was (as jsonb: '{}' when the
-- contacts table has no custom column); both null otherwise. p_previous_id is the id
-- an update changed (the contact's before it), null when it kept it: the companies of
-- the users assigned under either id are concerned (a CRM's keys that cascade the new
-- id to the assignments do so after this), and watch_fields do not hold such an
-- update back: every later message names the new id, which this one alone tells.
-- Each payload holds the contact's id and the webhook's chosen fields, nothing else:
-- p_contact minus payload_omit when that leaves only payload_keys (always, unless
-- crm.contacts gained a column since payload_omit was made), else built from
-- payload_keys alone. Returns how many webhooks took the change (each got a delivery,
-- or a delivery of theirs took it in: coalescing).
drop function if exists webhooks_private.capture(webhooks.action, text, jsonb, jsonb, jsonb, bigint, bigint, bigint, bigint);
-- (it returned nothing before)
drop function if exists webhooks_private.capture(webhooks.action, text, jsonb, text[], jsonb, jsonb, bigint, bigint, bigint, bigint);
-- (without p_previous_id before 2026-12-06; dropped only if its arguments or result differ from those made below)
select webhooks_private.drop_function_unless(
  'webhooks_private.capture(webhooks.action, text, jsonb, text[], jsonb, jsonb, bigint, bigint, bigint, bigint, bigint)',
  'p_action webhooks.action, p_source text, p_contact jsonb, p_changed text[], p_old_custom jsonb, p_data jsonb, p_status_id bigint DEFAULT NULL::bigint, p_user_id bigint DEFAULT NULL::bigint, p_only_company bigint DEFAULT NULL::bigint, p_also_company bigint DEFAULT NULL::bigint, p_previous_id bigint DEFAULT NULL::bigint',
  'integer');
create or replace function webhooks_private.capture(
  p_action       webhooks.action,
  p_source       text,
  p_contact      jsonb,
  p_changed      text[],
  p_old_custom   jsonb,
  p_data         jsonb,
  p_status_id    bigint default null,
  p_user_id      bigint default null,
  p_only_company bigint default null,
  p_also_company bigint default null,
  p_previous_id  bigint default null
)
returns integer
language plpgsql
-- The statement below is cheap to run and costly to plan. Its custom plans (which
-- know the companies and the filters' arguments) look cheaper than the generic one,
-- so the plan cache would plan it anew on every call (about 120 to 200 µs, measured);
-- these settings cost about 2 µs, and only on the path that may write a delivery.
-- Without bitmap scans the generic plan is one index scan of the primary key; with
-- them it was a bitmap scan, a nested loop over the companies and a sort, whose
-- executor start alone cost more than the insert's (about 20 µs a matching update,
-- measured with perf and single-statement timing). And no JIT, as every function that
-- turns a planner method off (claim_deliveries says why): this runs in the writers'
-- sessions, whose settings are theirs.
set plan_cache_mode = force_generic_plan
set enable_bitmapscan = off
set jit = off
as $$
declare
  v_contact_id constant bigint := (p_contact ->> 'id')::bigint;
  v_timestamp constant text := to_char(now() at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
  v_companies bigint[];
  v_webhooks integer;
  -- the company the contact leaves, no longer concerned by it (a move)
  v_left bigint;
begin
  -- the companies concerned: most contacts have no assignment, and then the owner
  -- alone is (an array built here costs less than a union in the statement below)
  if p_only_company is not null then
    v_companies := array[p_only_company];
  elsif p_previous_id is not null then
    v_companies := webhooks_private.companies_concerned((p_contact ->> 'company_id')::bigint,
                                                        array[v_contact_id, p_previous_id]);
  elsif exists (select 1 from crm.contact_assignments a where a.contact_id = v_contact_id) then
    v_companies := array(select (p_contact ->> 'company_id')::bigint
                         union
                         select u.company_id
                         from crm.contact_assignments a
                         join crm.users u on u.id = a.user_id
                         where a.contact_id = v_contact_id);
  else
    v_companies := array[(p_contact ->> 'company_id')::bigint];
  end if;
  if p_also_company is not null and p_also_company <> all (v_companies) then
    v_companies := v_companies || p_also_company;
    v_left := p_also_company;
  end if;

  -- one statement, flat: an index scan of the primary key of subscriptions (action,
  -- company_id, webhook_id) for the companies concerned, the filters, and a payload
  -- only for the rows they let through
  perform webhooks_private.enqueue(
            s.webhook_id, s.company_id, p_action, v_contact_id,
            jsonb_build_object(
              'type', p_action,
              'timestamp', v_timestamp,
              'data', jsonb_build_object(
                        'contact', case when (p_contact - s.payload_omit) - s.payload_keys = '{}'::jsonb
                                        then p_contact - s.payload_omit
                                        else webhooks_private.contact_only(p_contact, s.payload_keys) end,
                        'source', p_source) || p_data),
            s.coalesce_window),
          -- (a move, on a webhook of the company it left that takes the move's message:
          -- its backfill's snapshot of the contact not sent yet fails, as on a delete.
          -- Sent after the move's message, which goes at once, it told that company of
          -- a contact it no longer has (until 2026-12-07; test/sql/backfill.test.ts).
          -- Any other change never calls it.)
          case when s.company_id = v_left then
            webhooks_private.fail_unsent(s.webhook_id, v_contact_id, true,
              'not sent: its contact left the company before it was sent') end
  from webhooks_private.subscriptions s
  where s.action = p_action and s.company_id = any (v_companies)
    and (s.status_id is null or s.status_id = p_status_id)
    and (s.user_id is null or s.user_id = p_user_id)
    -- (a contact deleted by its company's delete is announced after that delete took
    -- the company's webhooks, and before the cascade took their subscriptions: the
    -- delete trigger is an AFTER trigger, fired once every cascade of the company's
    -- row has run. No other action asks.)
    and (p_action <> 'contact.deleted' or exists (select 1 from webhooks.webhooks w where w.id = s.webhook_id))
    -- the webhook's filters, before any payload is built
    and not (p_source = any (s.ignore_sources))
    and (cardinality(s.watch_fields) = 0 or p_changed is null or s.watch_fields && p_changed
         or p_previous_id is not null)
    -- (the contact as conditions see it and custom's changed keys: made once, and
    -- only when some webhook has conditions)
    and (s.conditions is null
         or webhooks_private.condition_holds(s.conditions, (select webhooks_private.condition_subject(p_contact)), p_changed,
                                             (select webhooks_private.custom_changes(p_old_custom, coalesce(p_contact -> 'custom', '{}')))))
  -- the primary key's own order: the index scan returns the rows in it (for an
  -- "= any" too, since Postgres 17), so the plan has no Sort (ordered by webhook_id
  -- alone it sorted: about 5 µs a matching update, measured with docs/capture.md's
  -- backend CPU loop)
  order by s.company_id, s.webhook_id;
  get diagnostics v_webhooks = row_count;
  -- A contact deleted, or moved out of a company, by a source a webhook ignores (its
  -- ignore_sources), on a webhook that hears such a change (it is subscribed to
  -- contact.deleted, or to the action of the move): a sync that does not hear its own
  -- writes, and deleted the contact, or moved it to another company, itself. Nothing
  -- of the contact is to reach it after that, and no contact.deleted, no message of the
  -- move follows to undo it: every delivery of the contact not sent yet fails (its
  -- snapshot, an update waiting out the coalesce window, one waiting for its turn or
  -- its retry). Sent after the change, each made a receiver that creates what it does
  -- not have bring the contact back (until 2026-12-07; test/sql/backfill.test.ts). One
  -- in flight is left to its relay; one another transaction holds is passed over
  -- (fail_unsent: a writer never waits for a claim). Asked of those webhooks alone: a
  -- delete or move no webhook wants never comes here, and one that some webhook wants
  -- pays one more probe of the subscriptions' key.
  if p_action = 'contact.deleted' or v_left is not null then
    perform webhooks_private.fail_unsent(s.webhook_id, v_contact_id, false,
              format('not sent: its contact %s before it was sent, by a source the webhook ignores (ignore_sources)', g.gone),
              format('not tried again: its contact %s, by a source the webhook ignores (ignore_sources)', g.gone))
    from webhooks_private.subscriptions s,
         (select case when p_action = 'contact.deleted' then 'was deleted' else 'left the company' end as gone) g
    where s.action = p_action
      and s.company_id = any (case when p_action = 'contact.deleted' then v_companies else array[v_left] end)
      and p_source = any (s.ignore_sources)
      and exists (select 1 from webhooks.webhooks w where w.id = s.webhook_id);
  end if;
  return v_webhooks;
end;
$$;

-- private: a CRM row as a payload carries it. to_jsonb writes a timestamptz in the
-- session's TimeZone, an interval in its IntervalStyle and a float8 with its
-- extra_float_digits, and capture runs in the writer's session: a CRM whose driver set
-- TimeZone = 'Asia/Kolkata' sent "2026-03-01T18:04:56.789+05:30" where every other
-- writer sent "2026-03-01T12:34:56.789+00:00", and a float8 or interval column the
-- CRM added changed its text too (0.3 for 0.30000000000000004, "@ 1 day 2 hours …"):
-- other bytes and another signature for the same contact (until 2026-12-07;
-- test/sql/capture-session-settings.test.ts). So the row is turned into JSON with the
-- values a default session has. So is a bytea column's: a driver that asks for
-- bytea_output = 'escape' (some older ones do) sent "Ada\\303\\251" where every other
-- writer sent "\\x416461c3a9" (until 2026-12-07). DateStyle needs nothing: to_jsonb
-- writes dates and times in ISO 8601 whatever it is. Called once a change is wanted,
-- never on the path of a change no webhook wants: each SET clause is set and restored
-- at every call (about 2.5 µs for the first three, in a loop of 200,000 calls), where
-- the triggers with them paid it on every write of the CRM. (A condition reads the
-- writer's to_jsonb: only a float8 column's last digits, and a bytea column's form,
-- can differ, and a condition names its value.)
create or replace function webhooks_private.json_as_sent(p_row anyelement)
returns jsonb
language sql
stable
set timezone = 'UTC'
set intervalstyle = 'postgres'
set extra_float_digits = 1
set bytea_output = 'hex'
as $$
  select pg_catalog.to_jsonb(p_row);
$$;

------------------------------------------------------------------------------------
-- crm.contacts

-- private: the transaction's setting that says a row was noted in
-- webhooks_private.written_before_contact since its deferred announce last looked
-- ('yes'; empty or unset: nothing new to look for)
create or replace function webhooks_private.noted_before_contact_setting()
returns text
language sql
immutable
as $$
  select 'webhooks.noted_before_contact';
$$;

-- private: the transaction's setting that names the contact whose row an UPDATE has
-- just moved to another partition (tg_contacts__deleted sets it, tg_contacts__created
-- reads it and clears it)
create or replace function webhooks_private.moved_contact_setting()
returns text
language sql
immutable
as $$
  select 'webhooks.moved_contact';
$$;

-- private: the transaction's setting that holds, while an UPDATE statement gives
-- contacts other ids, the key (contact_renumberings.id) of its first change of an id:
-- the statement's changes are the rows of contact_renumberings from it on
-- (contact_id_changed sets it, the statement trigger "!webhooks_keys_kept" clears it
-- at the statement's end). Until 2026-12-07 it listed every id the statement had
-- given, 'ID:CID,…', read and written again for each row: a statement renumbering
-- 8,000 contacts took 25 s, no webhook at all (test/sql/contact-id-swap.test.ts).
create or replace function webhooks_private.renumbered_setting()
returns text
language sql
immutable
as $$
  select 'webhooks.renumbered_in_statement';
$$;

-- private: a contact an UPDATE moved to another partition of a partitioned
-- crm.contacts (p_old as it was, p_new as it is now), announced as the update trigger
-- announces a change on its JSON path: contact.updated (contact.saved for the
-- platform) with changed_fields, to the company it left too when the partition key
-- was company_id. Only a partitioned table's moved rows take it.
-- Returns how many webhooks took it (capture).
create or replace function webhooks_private.contact_moved_partition(p_old jsonb, p_new jsonb)
returns integer
language plpgsql
as $$
declare
  v_source constant text := webhooks_private.current_source();
  v_action constant webhooks.action :=
    case when v_source = 'platform' then 'contact.saved' else 'contact.updated' end;
  v_changed constant text[] := webhooks_private.contact_changes_json(p_old, p_new);
  v_fields constant text[] := array_remove(v_changed, 'updated_at');
  v_left constant bigint := (p_old ->> 'company_id')::bigint;
begin
  if v_action = 'contact.updated' and cardinality(v_fields) = 0 then
    return 0;
  end if;
  return webhooks_private.capture(v_action, v_source, p_new, v_changed, coalesce(p_old -> 'custom', '{}'),
    jsonb_build_object('changed_fields', to_jsonb(v_fields)),
    p_also_company => case when v_left <> (p_new ->> 'company_id')::bigint then v_left end);
end;
$$;

create or replace function webhooks_private.tg_contacts__created()
returns trigger
language plpgsql
as $$
declare
  v_source constant text := webhooks_private.current_source();
  v_webhooks integer;
begin
  -- on a partition: the insert half of a row moved here by an UPDATE, which the
  -- delete trigger has announced as the update it is (contact_moved_partition, below).
  -- A table not partitioned pays the comparison of two oids.
  if tg_relid <> 'crm.contacts'::regclass
     and current_setting(webhooks_private.moved_contact_setting(), true) = new.id::text then
    perform pg_catalog.set_config(webhooks_private.moved_contact_setting(), '', true);
    return null;
  end if;
  -- a new contact has no assignments yet: only its owner is concerned. The probe
  -- decides the webhooks' filters too (as the update trigger's does, below), so a
  -- webhook whose filters turn the contact away costs no more than their evaluation.
  if exists (select 1 from webhooks_private.subscriptions s
             where s.action = 'contact.created' and s.company_id = new.company_id
               and s.status_id is null and s.user_id is null
               and not (v_source = any (s.ignore_sources))
               and (s.conditions is null
                    or webhooks_private.condition_holds(s.conditions, (select webhooks_private.condition_subject(to_jsonb(new))),
                                                        null, null))) then
    v_webhooks := webhooks_private.capture('contact.created', v_source,
      webhooks_private.json_as_sent(new), null, null, '{}', p_only_company => new.company_id);
  end if;
  return null;
end;
$$;

-- private: the companies a change of a contact's id concerns: the owner now, the
-- companies of users assigned under either id, and the one it left (p_left) when the
-- same update moves it
create or replace function webhooks_private.renumbered_companies(p_from bigint, p_to bigint, p_owner bigint, p_left bigint)
returns bigint[]
language sql
stable
as $$
  select webhooks_private.companies_concerned(p_owner, array[p_from, p_to]) || p_left;
$$;

-- private: a contact's id changed (p_from to p_to, by an UPDATE: a CRM's merge or
-- renumbering tool). It is the same contact: its deliveries on their way (pending or
-- in flight) follow the new id (move_contact_deliveries, 22_outbox.sql), its rows
-- of first_assignments go, as its delete takes them: kept, nothing removed them, and
-- the next assignment writes the new id's; and the change is noted
-- (contact_renumberings: a replay of a message of the old id goes in the new id's
-- lane, contact_id_now in 22_outbox.sql; a backfill running examines the contact
-- once, backfills_renumbered in 35_backfill.sql). Called by the update trigger,
-- before it announces the change, so that the announcement waits behind those
-- deliveries and merges into them.
-- Returns how many deliveries moved.
-- (p_owner, p_left: the company that owns it now and, when the same update moves it,
-- the one it left, concerned too; without them until 2026-12-06)
-- Two ids swapped by one statement (a deferrable key: A to B and B to A): the second
-- row's move finds under its old id B the first contact's deliveries, moved there by
-- the first row's, and its announcement. Those are the first contact's: the move
-- leaves the rows this transaction wrote since the first row's renumbering (the
-- command id of its note in contact_renumberings, found by the id given among the
-- statement's notes: renumbered_setting(), one probe of the index by to_id, migration
-- 0106) and takes the rest, the second contact's own. Until 2026-12-07 it took them
-- all, and both contacts' deliveries went under one id
-- (test/sql/contact-id-swap.test.ts).
drop function if exists webhooks_private.contact_id_changed(bigint, bigint);
create or replace function webhooks_private.contact_id_changed(p_from bigint, p_to bigint, p_owner bigint, p_left bigint)
returns integer
language plpgsql
as $$
declare
  v_noted constant text := coalesce(current_setting(webhooks_private.renumbered_setting(), true), '');
  v_given_since bigint;
  v_note bigint;
begin
  delete from webhooks_private.first_assignments f where f.contact_id = p_from;
  -- (p_from given to another contact earlier in this statement: since when its rows
  -- are that one's. What a writer may have set the setting to is never an error: a
  -- note's key is digits, anything else is no note. An id is given once a statement:
  -- two rows given it would break the contacts' key at the statement's end.)
  if v_noted ~ '^[0-9]{1,18}$' then
    select r.cmin::text::bigint into v_given_since
    from webhooks_private.contact_renumberings r
    where r.to_id = p_from and r.id >= v_noted::bigint
    order by r.id desc
    limit 1;
  end if;
  insert into webhooks_private.contact_renumberings (from_id, to_id) values (p_from, p_to)
  returning id into v_note;
  if v_noted !~ '^[0-9]{1,18}$' then
    perform pg_catalog.set_config(webhooks_private.renumbered_setting(), v_note::text, true);
  end if;
  return webhooks_private.move_contact_deliveries(
    p_from, p_to, webhooks_private.renumbered_companies(p_from, p_to, p_owner, p_left), v_given_since);
end;
$$;

-- private: a contact's id changed (p_from to p_to), and its deliveries followed it
-- (contact_id_changed): its backfill snapshots still unsent, of webhooks that do not
-- take the change's message (those that do failed theirs, enqueue), name the new id.
-- The snapshot is the contact's one for the backfill: the walk examined it already,
-- and a note keeps the walk from examining it again under the new id ahead of it
-- (backfills_renumbered, 35_backfill.sql), as does a backfill done. Sent under the
-- old id, until 2026-12-07, it named a contact no longer there, and the receiver
-- never heard of the new id (test/sql/contact-id-change.test.ts). One in flight is
-- left to its relay, as is one another transaction holds (a writer never waits for a
-- claim). Called after the change's capture when contact_id_changed moved deliveries
-- (none moved: none to rename); paid by such changes of ids alone: the companies
-- concerned asked again (renumbered_companies) and one probe of the contact's queue
-- rows of each of their webhooks, about 0.2 ms together (2,000 calls with nothing to
-- find, five webhooks, on the shared two-core machine: 172 to 231 µs a call).
create or replace function webhooks_private.rename_unsent_snapshots(p_from bigint, p_to bigint, p_companies bigint[])
returns void
language plpgsql
as $$
declare
  v_ids bigint[];
begin
  v_ids := array(select q.delivery_id from webhooks.delivery_queue q
                 where q.webhook_id = any (array(select w.id from webhooks.webhooks w
                                                 where w.company_id = any (p_companies)))
                   and q.contact_id = p_to and q.action = 'contact.snapshot' and q.locked_by is null
                 for update skip locked);
  if cardinality(v_ids) = 0 then
    return;
  end if;
  -- (those that name the new id already left alone: in two ids swapped by one
  -- statement, the other contact's own, not moved yet, whose rewrite would have made
  -- them rows written since the first renumbering, which the second's move leaves,
  -- test/sql/contact-id-swap.test.ts)
  update webhooks.deliveries d
  set contact_id = p_to,
      payload = jsonb_set(d.payload, '{data,contact,id}', to_jsonb(p_to))
  where d.id = any (v_ids) and d.state = 'pending'
    and d.payload #>> '{data,contact,id}' is distinct from p_to::text;
end;
$$;

-- contact.updated: an external source (anything but 'platform') changed a column.
-- contact.saved: the BPD platform saved the contact, changed or not.
-- An update that changes the contact's id announces the new id, and the id it had as
-- data.previous_contact_id beside changed_fields (which names "id"): the same contact,
-- renumbered, not one deleted and another created. Receivers of this CRM act on a
-- contact.created (a welcome, a letter, a task) and a contact.deleted (an unsubscribe):
-- announced so, a merge tool's renumbering sent those again for contacts that never
-- came or went; and a webhook that hears updates alone heard nothing of it
-- (docs/capture.md, "A contact whose id changes"; test/sql/contact-id-change.test.ts).
create or replace function webhooks_private.tg_contacts__updated()
returns trigger
language plpgsql
as $$
declare
  v_source constant text := webhooks_private.current_source();
  v_action constant webhooks.action :=
    case when v_source = 'platform' then 'contact.saved' else 'contact.updated' end;
  v_contact jsonb;
  v_old jsonb;
  v_old_custom jsonb;
  v_changed text[];
  v_fields text[];
  v_previous_id bigint;
  v_data jsonb;
  v_webhooks integer;
  v_moved integer;
begin
  -- the path nearly every write takes: nobody concerned listens (an assigned user's
  -- company asked for each assignment found, user_company_listens: until 2026-12-07
  -- any assignment took the whole path below, though most contacts of a CRM have
  -- one; test/sql/capture.test.ts. A contact that changes company is looked at in
  -- full: the company it leaves is concerned too; so is one whose id changes, whose
  -- deliveries waiting must follow it whoever listens, and whose assignments may
  -- still name the old id here: a CRM's keys
  -- that cascade the new id to them do so after this trigger, whose name sorts first).
  -- The owner's subscriptions are decided here as far as they can be without
  -- comparing the two rows: the source, then the conditions, with the changed
  -- columns not known yet (a "changed" leaf on a column is unknown: condition_holds
  -- answers null, "perhaps", unless the other leaves decide). So a webhook whose
  -- conditions fail costs the probe plus their evaluation, and the diff, the JSON
  -- and capture() are reached only when some webhook may want the change. Which keys
  -- of custom changed is not known here either: array[null] makes a "changed" leaf on
  -- custom.KEY unknown too (KEY = any (array[null]) is null). Knowing it took the old
  -- row's custom, read by name (a CRM that renamed the column had every contact
  -- update fail) or as JSON (two rows made JSON for every probe with conditions).
  if new.company_id = old.company_id and new.id = old.id
     and not exists (select 1 from webhooks_private.subscriptions s
                     where s.action = v_action and s.company_id = new.company_id
                       and s.status_id is null and s.user_id is null
                       and not (v_source = any (s.ignore_sources))
                       and (s.conditions is null
                            or webhooks_private.condition_holds(s.conditions, (select webhooks_private.condition_subject(to_jsonb(new))),
                                                                null, array[null]::text[])
                               is not false))
     and not exists (select 1 from crm.contact_assignments a
                     where a.contact_id = new.id
                       and webhooks_private.user_company_listens(a.user_id, v_action, v_source)) then
    return null;
  end if;
  if new.id <> old.id then
    v_previous_id := old.id;
    v_moved := webhooks_private.contact_id_changed(old.id, new.id, new.company_id,
      case when old.company_id <> new.company_id then old.company_id end);
  end if;
  v_contact := webhooks_private.json_as_sent(new);
  if webhooks_private.contact_columns_known(v_contact) then
    v_changed := webhooks_private.contact_changes(old, new);
    v_old_custom := webhooks_private.contact_custom(old);
  else
    v_old := webhooks_private.json_as_sent(old);
    v_changed := webhooks_private.contact_changes_json(v_old, v_contact);
    v_old_custom := coalesce(v_old -> 'custom', '{}');
  end if;
  -- (updated_at does not count as a change, nor is it named in changed_fields)
  v_fields := array_remove(v_changed, 'updated_at');
  if v_action = 'contact.updated' and cardinality(v_fields) = 0 then
    return null;
  end if;
  v_data := jsonb_build_object('changed_fields', to_jsonb(v_fields));
  if v_previous_id is not null then
    v_data := v_data || jsonb_build_object('previous_contact_id', v_previous_id);
  end if;
  v_webhooks := webhooks_private.capture(v_action, v_source, v_contact, v_changed, v_old_custom, v_data,
    p_also_company => case when old.company_id <> new.company_id then old.company_id end,
    p_previous_id => v_previous_id);
  -- (nothing moved, nothing to rename: the change of id of a contact with no delivery
  -- on its way pays nothing more)
  if v_previous_id is not null and v_moved > 0 then
    perform webhooks_private.rename_unsent_snapshots(old.id, new.id,
      webhooks_private.renumbered_companies(old.id, new.id, new.company_id,
                                            case when old.company_id <> new.company_id then old.company_id end));
  end if;
  return null;
end;
$$;

-- private (the delete trigger's): a contact deleted, its updates and saves still
-- waiting out a coalesce window on the webhooks of the companies that heard of it
-- (p_company_ids: its owner, the companies of its assigned users) go now (as in
-- bring_forward_waiting: any other change of a contact ends their wait); how many.
-- Rows a claim holds are passed over.
drop function if exists webhooks_private.waits_of_gone_ended(bigint, bigint);
create or replace function webhooks_private.waits_of_gone_ended(p_contact_id bigint, p_company_ids bigint[])
returns integer
language sql
as $$
  with ended as (
    update webhooks.delivery_queue q
    set next_attempt_at = now(),
        held_due = null
    where q.ctid in (select w.ctid
                     from webhooks.delivery_queue w
                     where w.webhook_id = any (array(select distinct s.webhook_id from webhooks_private.subscriptions s
                                                     where s.action in ('contact.updated', 'contact.saved')
                                                       and s.company_id = any (p_company_ids) and s.coalesce_window is not null))
                       and w.contact_id = p_contact_id
                       and w.locked_by is null and w.action in ('contact.updated', 'contact.saved')
                       and w.attempts = 0 and coalesce(w.held_due, w.next_attempt_at) > now()
                     for update skip locked)
    returning 1
  )
  select count(*)::integer from ended;
$$;

-- private (the delete trigger's): waits_of_gone_ended, and the relay woken when it
-- ended any. A writer in REPEATABLE READ or SERIALIZABLE whose snapshot a claim
-- overtook leaves them waiting rather than fail (the block's subtransaction for such
-- a writer alone, as in enqueue: a delete of thousands in one transaction would
-- overflow each backend's cache of them).
drop function if exists webhooks_private.end_waits_of_gone(bigint, bigint);
create or replace function webhooks_private.end_waits_of_gone(p_contact_id bigint, p_company_ids bigint[])
returns void
language plpgsql
as $$
declare
  v_ended integer := 0;
  v_notified boolean;
begin
  if current_setting('transaction_isolation') = 'read committed' then
    v_ended := webhooks_private.waits_of_gone_ended(p_contact_id, p_company_ids);
  else
    begin
      v_ended := webhooks_private.waits_of_gone_ended(p_contact_id, p_company_ids);
    exception when serialization_failure then
      null;
    end;
  end if;
  if v_ended > 0 then
    v_notified := webhooks_private.wake_relay();
  end if;
end;
$$;

-- AFTER DELETE: it fires only for a row the delete removed, so no trigger of the CRM's
-- can cancel a delete once announced (a soft delete returns null from its BEFORE
-- trigger), whatever its name. The foreign keys' cascades that take the contact's
-- assignments, and with them the companies concerned, are AFTER triggers of the
-- contacts too ("RI_ConstraintTrigger_a_…"), queued row by row beside this one and
-- fired in the byte order of their names: named "!…", this one comes first, and
-- still sees the row's assignments. (It was the last BEFORE trigger, "~…", until
-- 2026-12-05: a CRM trigger named after it, "éviter_suppression", cancelled deletes
-- already announced.)
create or replace function webhooks_private.tg_contacts__deleted()
returns trigger
language plpgsql
as $$
declare
  v_webhooks integer;
  v_now jsonb;
begin
  -- on a partition (a CRM that partitioned crm.contacts): an UPDATE that moves a row to
  -- another partition is run by Postgres as a delete here and an insert there, and
  -- fires no AFTER UPDATE trigger. This trigger fires at the statement's end, after
  -- that insert, so the contact is still there under its id: it is the update it is
  -- (announced so), and the insert trigger, which fires next, is told to stay silent.
  -- A table not partitioned pays the comparison of two oids.
  if tg_relid <> 'crm.contacts'::regclass then
    select webhooks_private.json_as_sent(c) into v_now from crm.contacts c where c.id = old.id limit 1;
    if v_now is not null then
      perform pg_catalog.set_config(webhooks_private.moved_contact_setting(), old.id::text, true);
      v_webhooks := webhooks_private.contact_moved_partition(webhooks_private.json_as_sent(old), v_now);
      return null;
    end if;
  end if;
  -- (a contact gone has no firsts to come: its rows of first_assignments go too, one
  -- probe of that table's key)
  delete from webhooks_private.first_assignments f where f.contact_id = old.id;
  -- (its updates waiting out a coalesce window go now, as captured, on the webhooks
  -- of every company that heard of it, its owner and the companies of its assigned
  -- users: nothing of the contact is to come, and a contact given its id later (a
  -- reload with the old ids, a sequence reset) had its first update merged into the
  -- old one's message, on a webhook that hears no delete, whose delete ends no wait
  -- (until 2026-12-07, and on another company's webhook until the same day;
  -- test/sql/coalesce-writers.test.ts). A new contact is a new message. One probe of
  -- the subscriptions' key and one of the contact's assignments a delete (the join
  -- only for a contact assigned); the queue only for a webhook with a window.)
  if exists (select 1 from webhooks_private.subscriptions s
             where s.action in ('contact.updated', 'contact.saved') and s.company_id = old.company_id
               and s.coalesce_window is not null)
     or (exists (select 1 from crm.contact_assignments a where a.contact_id = old.id)
         and exists (select 1
                     from crm.contact_assignments a
                     join crm.users u on u.id = a.user_id
                     join webhooks_private.subscriptions s
                       on s.action in ('contact.updated', 'contact.saved') and s.company_id = u.company_id
                      and s.coalesce_window is not null
                     where a.contact_id = old.id)) then
    perform webhooks_private.end_waits_of_gone(old.id, webhooks_private.companies_concerned(old.company_id, array[old.id]));
  end if;
  if webhooks_private.contact_wanted('contact.deleted', old.id, old.company_id) then
    v_webhooks := webhooks_private.capture('contact.deleted',
      webhooks_private.current_source(),
      webhooks_private.json_as_sent(old), null, null, '{}');
  end if;
  return null;
end;
$$;

-- Named "!…", as the delete trigger below, to fire before every AFTER trigger of the
-- CRM's: Postgres fires a row's AFTER triggers in the byte order of their names, and
-- a CRM trigger that writes the contact again fires the engine's triggers for that
-- write within its own run. Named "_500_…" until 2026-12-06, they came after a CRM
-- trigger whose name starts with a capital or a digit ("Upper_city"): its update was
-- announced before the change that caused it (before the contact's contact.created,
-- even), and the last message showed the row as it was before it
-- (test/sql/crm-triggers.test.ts).

select webhooks_private.drop_trigger_if_present('crm.contacts', '_500_webhooks_created');
create or replace trigger "!webhooks_created"
  after insert on crm.contacts
  for each row execute function webhooks_private.tg_contacts__created();

select webhooks_private.drop_trigger_if_present('crm.contacts', '_500_webhooks_updated');
create or replace trigger "!webhooks_updated"
  after update on crm.contacts
  for each row execute function webhooks_private.tg_contacts__updated();

-- The first AFTER DELETE trigger (above): "!" sorts before every letter, digit and
-- "_", and so before the cascades' "RI_ConstraintTrigger_a_…". (A BEFORE trigger
-- before: _900_, then "~", each of which a CRM trigger's name could sort after.)
select webhooks_private.drop_trigger_if_present('crm.contacts', '_900_webhooks_deleted');
select webhooks_private.drop_trigger_if_present('crm.contacts', '~webhooks_deleted');
create or replace trigger "!webhooks_deleted"
  after delete on crm.contacts
  for each row execute function webhooks_private.tg_contacts__deleted();

-- The keys kept integers: the engine reads a contact's id and company_id as bigint,
-- and a CRM that made either text or uuid had every contact write fail after the
-- change. A trigger whose column list names them makes Postgres refuse to change
-- their type ("cannot alter type of a column used in a trigger definition", naming
-- it), and 00_schemas.sql stops a migrate of a CRM whose keys are no integers. A
-- statement trigger, fired only by an UPDATE that sets one of them (a renumbering, a
-- move to another company), which only forgets the statement's ids given
-- (renumbered_setting): the three triggers above named them in
-- a WHEN that always held, which every contact write paid, about 7 µs of a no-match
-- update's 36 (bench:capture, 2026-12-07; test/sql/crm-keys.test.ts).
create or replace function webhooks_private.tg_contacts__keys_kept()
returns trigger
language plpgsql
as $$
begin
  -- (and the statement's ids given, contact_id_changed, forgotten at its end)
  perform pg_catalog.set_config(webhooks_private.renumbered_setting(), '', true);
  return null;
end;
$$;

create or replace trigger "!webhooks_keys_kept"
  after update of id, company_id on crm.contacts
  for each statement execute function webhooks_private.tg_contacts__keys_kept();

-- TRUNCATE of the contacts: announced to no one (Postgres runs no row trigger for it,
-- docs/capture.md), but what the engine keeps of the contacts it removed goes with
-- them, and their updates waiting out a coalesce window wait no more:
-- * their rows of first_assignments, as a delete takes a contact's (kept, they named
--   contacts no longer there; they decide no first: "first?" asks the assignments);
-- * an update or save of one still waiting out its window is sent now, as captured:
--   nothing of its contact is to come, and a contact written again with its id (a
--   TRUNCATE … RESTART IDENTITY, a reload with the old ids) had its first update
--   merged into it, the old contact's change replaced by the new one's under the old
--   message (until 2026-12-07; test/sql/truncate.test.ts). A new contact is a new
--   message. Rows a claim holds are passed over (a DBA's TRUNCATE never waits for a
--   relay), and a serialization failure of a writer in REPEATABLE READ or
--   SERIALIZABLE leaves them waiting rather than fail the TRUNCATE.
-- A TRUNCATE is a DBA's rare act: one anti-join of first_assignments against the
-- contacts' key and one scan of the queue's rows waiting, once a statement; no
-- contact write pays anything. On a partitioned crm.contacts the trigger is on each
-- partition too (below), since Postgres fires only the truncated table's own. A
-- TRUNCATE of the table (or of a partition partitioned itself) fires the triggers of
-- every partition below it as well, after its own: each did the same work again,
-- finding what the first left (until 2026-12-07; test/sql/partitioned-contacts-truncate.test.ts).
-- So the first to run names the partitions below it whose trigger is to fire in the
-- statement, and each of those passes, once. The note is kept in a setting of the
-- transaction with the statement's start (a note of an earlier statement is no
-- one's), and a partition whose trigger ran earlier in the statement (named before
-- the table) is not named: at worst a partition tidies again, never one skipped.
-- A table not partitioned pays one look at the catalog per TRUNCATE.
create or replace function webhooks_private.tg_contacts__truncated()
returns trigger
language plpgsql
as $$
declare
  v_notified boolean;
  -- (as a number: the same text whatever the session's DateStyle or TimeZone)
  v_statement constant text := pg_catalog.date_part('epoch', pg_catalog.statement_timestamp())::text;
  v_note constant text := coalesce(pg_catalog.current_setting('webhooks.contacts_truncated_in_statement', true), '');
  v_passing text[] := '{}';
  v_ran text[] := '{}';
begin
  -- (the note: the statement's start, the partitions to pass, the tables that tidied)
  if pg_catalog.split_part(v_note, '|', 1) = v_statement then
    v_passing := pg_catalog.string_to_array(pg_catalog.split_part(v_note, '|', 2), ',');
    v_ran := pg_catalog.string_to_array(pg_catalog.split_part(v_note, '|', 3), ',');
  end if;
  if tg_relid::text = any (v_passing) then
    perform pg_catalog.set_config('webhooks.contacts_truncated_in_statement',
      pg_catalog.concat_ws('|', v_statement, pg_catalog.array_to_string(pg_catalog.array_remove(v_passing, tg_relid::text), ','),
                           pg_catalog.array_to_string(v_ran, ',')), true);
    return null;
  end if;
  v_passing := v_passing || array(
    select t.relid::oid::text
    from pg_catalog.pg_partition_tree(tg_relid) t
    join pg_catalog.pg_trigger g on g.tgrelid = t.relid and g.tgname = tg_name
    where t.level > 0
      and not (t.relid::oid::text = any (v_ran))
      and g.tgenabled = any (case when pg_catalog.current_setting('session_replication_role') = 'replica'
                                  then array['R', 'A']::"char"[] else array['O', 'A']::"char"[] end));
  perform pg_catalog.set_config('webhooks.contacts_truncated_in_statement',
    pg_catalog.concat_ws('|', v_statement, pg_catalog.array_to_string(v_passing, ','),
                         pg_catalog.array_to_string(v_ran || tg_relid::text, ',')), true);
  delete from webhooks_private.first_assignments f
  where not exists (select 1 from crm.contacts c where c.id = f.contact_id);
  begin
    update webhooks.delivery_queue q
    set next_attempt_at = now(),
        held_due = null
    where q.ctid in (select w.ctid
                     from webhooks.delivery_queue w
                     where w.locked_by is null and w.action in ('contact.updated', 'contact.saved')
                       and w.attempts = 0 and coalesce(w.held_due, w.next_attempt_at) > now()
                       and not exists (select 1 from crm.contacts c where c.id = w.contact_id)
                     for update skip locked);
    if found then
      v_notified := webhooks_private.wake_relay();
    end if;
  exception when serialization_failure then
    null;
  end;
  return null;
end;
$$;

create or replace trigger "!webhooks_truncated"
  after truncate on crm.contacts
  for each statement execute function webhooks_private.tg_contacts__truncated();

-- (and on each partition of a partitioned crm.contacts as it is now: a TRUNCATE of a
-- partition fires its own triggers alone, and left the notes and the waits of its
-- contacts, test/sql/partitioned-contacts.test.ts. A partition made or attached
-- after this apply gets it from the event trigger below, or else from the next apply:
-- npm run migrate, as a CRM release runs it.)
do $partitions$
declare
  v_partition regclass;
begin
  for v_partition in
    select t.relid from pg_catalog.pg_partition_tree('crm.contacts'::regclass) t where t.level > 0
  loop
    execute format('create or replace trigger "!webhooks_truncated" after truncate on %s
                    for each statement execute function webhooks_private.tg_contacts__truncated()', v_partition);
  end loop;
end;
$partitions$;

-- private (60_access.sql's and the event triggers', below): EXECUTE on the engine's
-- row-trigger functions of each crm table, for that table's owner, and none for a
-- role granted it that owns none of those tables any more. Postgres copies a
-- table's row triggers to a partition made or attached, as the role that makes it (the
-- owner, or a member), and checks that role's EXECUTE on each function as a CREATE
-- TRIGGER does: a CRM whose tables belong to a role that is no superuser could not
-- make a partition of crm.contacts ("permission denied for function ", no name given;
-- until 2026-12-08, test/sql/crm-owner-ddl.test.ts). Harmless: a trigger
-- function runs as a trigger alone, and the owner of a crm table writes any of its
-- rows already.
create or replace function webhooks_private.grant_row_trigger_functions_to_crm_owners()
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_grant record;
begin
  for v_grant in
    select distinct g.tgfoid::regprocedure as routine, c.relowner::regrole as owner
    from pg_catalog.pg_trigger g
    join pg_catalog.pg_class c on c.oid = g.tgrelid
    join pg_catalog.pg_proc p on p.oid = g.tgfoid
    where c.relnamespace = 'crm'::regnamespace
      and p.pronamespace = 'webhooks_private'::regnamespace
      and g.tgtype & 1 = 1  -- a row trigger (TRIGGER_TYPE_ROW): what a partition is given
      and not pg_catalog.has_function_privilege(c.relowner, g.tgfoid, 'EXECUTE')
  loop
    execute format('grant execute on function %s to %s', v_grant.routine, v_grant.owner);
  end loop;
  -- (a CRM owner's role that left, its tables given to another: REASSIGN OWNED, for
  -- which Postgres runs no event trigger. The grant, the engine owner's, is one the
  -- DBA removing the role may not revoke, and its DROP ROLE was refused: "privileges
  -- for function webhooks_private.tg_contacts__created()"; until 2026-12-08.)
  for v_grant in
    select distinct p.oid::regprocedure as routine, a.grantee::regrole as owner
    from pg_catalog.pg_proc p
    cross join lateral pg_catalog.aclexplode(p.proacl) a
    where p.oid in (select g.tgfoid from pg_catalog.pg_trigger g
                    join pg_catalog.pg_class c on c.oid = g.tgrelid
                    where c.relnamespace = 'crm'::regnamespace and g.tgtype & 1 = 1)
      and p.pronamespace = 'webhooks_private'::regnamespace
      and a.privilege_type = 'EXECUTE' and a.grantor = p.proowner and a.grantee not in (0, p.proowner)
      and not exists (select 1 from pg_catalog.pg_trigger g
                      join pg_catalog.pg_class c on c.oid = g.tgrelid
                      where g.tgfoid = p.oid and c.relnamespace = 'crm'::regnamespace and c.relowner = a.grantee)
  loop
    execute format('revoke execute on function %s from %s', v_grant.routine, v_grant.owner);
  end loop;
end;
$$;

-- private (an event trigger's, below): after a DBA's CREATE TABLE or ALTER TABLE of
-- crm.contacts or of a table of its partition tree (a partition made, one attached,
-- at any depth), puts "!webhooks_truncated" on each of its partitions that has none.
-- Postgres copies the row triggers to a new partition, not a statement trigger of
-- TRUNCATE: a partition made after the migrate had none, and a TRUNCATE of it alone
-- left its contacts' rows of firsts and their updates waiting out a window, which a
-- new contact given one of their ids then merged into (until 2026-12-07;
-- test/sql/partitioned-contacts-truncate.test.ts). Only while crm.contacts has the
-- trigger itself (the engine applied to it: a table made to take its name gets the
-- engine's triggers from the next migrate). Paid by DDL alone, a few catalog probes
-- per CREATE or ALTER TABLE anywhere in the database; a partition that has the trigger
-- is not touched (no lock taken on it). As the engine's owner (a superuser: only one
-- makes an event trigger): the DBA who made the partition may not use the engine's
-- trigger function.
create or replace function webhooks_private.tg_contacts__partition_made()
returns event_trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_contacts constant regclass := pg_catalog.to_regclass('crm.contacts');
  v_partition regclass;
begin
  if v_contacts is null
     or not exists (select 1 from pg_catalog.pg_trigger g
                    where g.tgrelid = v_contacts and g.tgname = '!webhooks_truncated')
     or not exists (select 1 from pg_catalog.pg_event_trigger_ddl_commands() c
                    where c.classid = 'pg_catalog.pg_class'::regclass
                      and c.objid in (select t.relid from pg_catalog.pg_partition_tree(v_contacts) t)) then
    return;
  end if;
  for v_partition in
    select t.relid
    from pg_catalog.pg_partition_tree(v_contacts) t
    join pg_catalog.pg_class r on r.oid = t.relid
    where t.level > 0 and r.relkind in ('r', 'p')
      and not exists (select 1 from pg_catalog.pg_trigger g
                      where g.tgrelid = t.relid and g.tgname = '!webhooks_truncated')
  loop
    execute format('create trigger "!webhooks_truncated" after truncate on %s
                    for each statement execute function webhooks_private.tg_contacts__truncated()', v_partition);
  end loop;
end;
$$;

-- (a superuser's migrate alone makes it: without it, a partition made after that
-- migrate gets the trigger at the next)
select webhooks_private.make_event_trigger('bpd_webhooks_contacts_partitions',
  array['CREATE TABLE', 'ALTER TABLE'], 'webhooks_private.tg_contacts__partition_made');

-- private (two event triggers', below): grant_row_trigger_functions_to_crm_owners
-- before each CREATE TABLE and ALTER TABLE anywhere in the database, and around each
-- DROP OWNED. The tables of a CRM owner's role that leaves are given to another by
-- REASSIGN OWNED, for which Postgres runs no event trigger: the heir, granted nothing,
-- could not make a partition of crm.contacts ("permission denied for function "), and
-- the departed role kept grants its DBA could not revoke, which refused its DROP ROLE
-- (until 2026-12-08, test/sql/crm-owner-ddl.test.ts). Before the CREATE TABLE that
-- makes the partition, the heir is granted; at a DROP OWNED, the departed role is
-- revoked. Paid by DDL alone: a few catalog probes a CREATE or ALTER TABLE. As the
-- engine's owner, who made the grants.
create or replace function webhooks_private.tg_crm_owners__granted()
returns event_trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform webhooks_private.grant_row_trigger_functions_to_crm_owners();
end;
$$;

-- (a superuser's migrate alone makes them: without them, run the migrate again after
-- a REASSIGN OWNED, before the heir's next partition and the departed role's DROP ROLE)
select webhooks_private.make_event_trigger('bpd_webhooks_crm_owners_before',
  array['CREATE TABLE', 'ALTER TABLE', 'DROP OWNED'], 'webhooks_private.tg_crm_owners__granted', 'ddl_command_start');
select webhooks_private.make_event_trigger('bpd_webhooks_crm_owners_after',
  array['DROP OWNED'], 'webhooks_private.tg_crm_owners__granted');

------------------------------------------------------------------------------------
-- crm.contact_statuses

-- crm.users and crm.statuses belong to the CRM as crm.contacts does: of their columns
-- the engine reads id and company_id by name, and the name and email a payload shows
-- from the row as JSON, so that a CRM that renames or drops one fails no write (a
-- payload then shows null for it). Read by name, a renamed users.email failed every
-- assignment, whether a webhook listened or not.

-- private: the status-tag event for one contact_statuses row. Nothing fires when the
-- contact or the status is gone: the row was removed by the cascade of their delete,
-- and contact.deleted (or nothing, for a deleted status tag) tells that story.
-- Returns how many webhooks took it (capture).
select webhooks_private.drop_function_unless(
  'webhooks_private.status_event(webhooks.action, bigint, bigint)',
  'p_action webhooks.action, p_contact_id bigint, p_status_id bigint',
  'integer');
create or replace function webhooks_private.status_event(p_action webhooks.action, p_contact_id bigint, p_status_id bigint)
returns integer
language plpgsql
as $$
declare
  v_contact crm.contacts;
  v_status crm.statuses;
begin
  select * into v_contact from crm.contacts where id = p_contact_id;
  if not found then
    -- (a tag added before its contact, which only a deferrable foreign key allows: it
    -- is announced at the commit, written_before_contact below. A tag removed with
    -- no contact went with it: contact.deleted tells that.)
    if p_action = 'contact.status_added' then
      perform webhooks_private.refuse_crm_rows_hidden(array['crm.contacts']);
      insert into webhooks_private.written_before_contact (contact_id, status_id) values (p_contact_id, p_status_id);
      perform pg_catalog.set_config(webhooks_private.noted_before_contact_setting(), 'yes', true);
    end if;
    return 0;
  end if;
  if not webhooks_private.contact_wanted(p_action, v_contact.id, v_contact.company_id) then
    return 0;
  end if;
  select * into v_status from crm.statuses where id = p_status_id;
  if not found then
    -- A tag added names a status its foreign key found: one not found here may be
    -- hidden by the CRM's row-level security, turned on after the last migrate and no
    -- event trigger to refuse it (60_access.sql), and the event was dropped without a
    -- word (until 2026-12-07). Refused then, naming the table; asked of the catalog
    -- on such a miss alone (a tag removed with its status deleted is no question).
    if p_action = 'contact.status_added' then
      perform webhooks_private.refuse_crm_rows_hidden(array['crm.statuses']);
    end if;
    return 0;
  end if;
  return webhooks_private.capture(p_action, webhooks_private.current_source(), webhooks_private.json_as_sent(v_contact), null, null,
    jsonb_build_object('status', jsonb_build_object('id', v_status.id, 'name', to_jsonb(v_status) -> 'name')),
    p_status_id => v_status.id);
end;
$$;

create or replace function webhooks_private.tg_contact_statuses__added()
returns trigger
language plpgsql
as $$
declare
  v_webhooks integer;
begin
  v_webhooks := webhooks_private.status_event('contact.status_added', new.contact_id, new.status_id);
  return null;
end;
$$;

create or replace function webhooks_private.tg_contact_statuses__removed()
returns trigger
language plpgsql
as $$
declare
  v_webhooks integer;
begin
  v_webhooks := webhooks_private.status_event('contact.status_removed', old.contact_id, old.status_id);
  return null;
end;
$$;

-- A tag changed in place (an UPDATE that gives the row another status or another
-- contact) is the old tag taken away and the new one given: removed, then added, as
-- a delete and an insert would say it. "update of": an update that sets neither
-- column (added_at) calls nothing. A tag that only follows its contact's new id (a
-- CRM's key ON UPDATE CASCADE: its contact under the old id is gone) is the same tag
-- on the same contact, and says nothing: the contact's update told the new id. Until
-- 2026-12-06 it fired contact.status_added for the new id (and nothing for the old,
-- found gone; test/sql/contact-id-change.test.ts).
create or replace function webhooks_private.tg_contact_statuses__changed()
returns trigger
language plpgsql
as $$
declare
  v_webhooks integer;
begin
  if old.contact_id is not distinct from new.contact_id and old.status_id is not distinct from new.status_id then
    return null;
  end if;
  if old.status_id = new.status_id and not exists (select 1 from crm.contacts c where c.id = old.contact_id) then
    return null;
  end if;
  v_webhooks := webhooks_private.status_event('contact.status_removed', old.contact_id, old.status_id);
  v_webhooks := webhooks_private.status_event('contact.status_added', new.contact_id, new.status_id);
  return null;
end;
$$;

-- Named "!…", as the contacts' triggers, to fire before every row trigger of the CRM's
-- on the tags: a CRM trigger that updates the contact when a tag comes or goes has its
-- contact.updated announced after the tag. Named "_500_…" until 2026-12-06, they came
-- after a CRM trigger whose name starts with a capital or a digit, and the tag after
-- the update it caused (test/sql/crm-triggers.test.ts). (The assignments' triggers
-- are statement triggers, which Postgres fires after every row trigger, whatever the
-- names: a CRM row trigger on the assignments that updates the contact has its update
-- announced first.)
select webhooks_private.drop_trigger_if_present('crm.contact_statuses', '_500_webhooks_status_added');
create or replace trigger "!webhooks_status_added"
  after insert on crm.contact_statuses
  for each row execute function webhooks_private.tg_contact_statuses__added();

select webhooks_private.drop_trigger_if_present('crm.contact_statuses', '_500_webhooks_status_removed');
create or replace trigger "!webhooks_status_removed"
  after delete on crm.contact_statuses
  for each row execute function webhooks_private.tg_contact_statuses__removed();

select webhooks_private.drop_trigger_if_present('crm.contact_statuses', '_500_webhooks_status_changed');
create or replace trigger "!webhooks_status_changed"
  after update of contact_id, status_id on crm.contact_statuses
  for each row execute function webhooks_private.tg_contact_statuses__changed();

------------------------------------------------------------------------------------
-- crm.contact_assignments

-- private: the transaction's setting that lists the pairs an assignment trigger of
-- the statement of the moment announced, for its other assignment trigger: 'STAMP
-- {contact ids} {user ids}', STAMP the statement's rows' xmin:cmin (assignments_made
-- sets and reads it, and empties it once a later statement, whose stamp differs,
-- finds it)
create or replace function webhooks_private.assigned_setting()
returns text
language sql
immutable
as $$
  select 'webhooks.assigned_in_statement';
$$;

-- private (assignments_made): the stamp of the statement that wrote an assignment row
-- as it is now, 'xmin:cmin'
create or replace function webhooks_private.assignment_stamp(p_contact_id bigint, p_user_id bigint)
returns text
language sql
stable
as $$
  select a.xmin::text || ':' || a.cmin::text
  from crm.contact_assignments a
  where a.contact_id = p_contact_id and a.user_id = p_user_id;
$$;

-- private: the events of the (contact, user) pairs a statement assigned (an insert's
-- rows, or an update's pairs that were not there before it), given as two arrays in
-- step, each pair once: contact.user_assigned for each, and
-- contact.first_company_user_assigned for a user who is the first of their company
-- on the contact. "First" is a question about the whole statement: two users of a
-- company assigned by one statement yield one first, not two or none. Returns how
-- many webhooks took them.
-- Its statements are planned once a session (plan_cache_mode): planned for each
-- statement, as the plan cache chose (a plan for arrays of any size looked dearer
-- than one for the few pairs at hand), they cost about 1 ms an assignment, most of it
-- planning. Without hash and merge joins that plan looks the pairs' users and
-- contacts up by their keys: with them it read every user, and a CRM's users table
-- is large (a full scan per assignment) or small (the plan was chosen for it). No
-- JIT, as capture() says. (Measured, one assignment of one contact in a loop: 210
-- µs where no company concerned listens, 1,000 where one does; 85 and 420 with these.)
create or replace function webhooks_private.assignments_made(p_contact_ids bigint[], p_user_ids bigint[])
returns integer
language plpgsql
set plan_cache_mode = force_generic_plan
set enable_hashjoin = off
set enable_mergejoin = off
set jit = off
as $$
declare
  v_source constant text := webhooks_private.current_source();
  r record;
  v_webhooks integer := 0;
  v_listening bigint[];
  v_wanted bigint[];
  v_missing integer;
  v_found integer := 0;
  v_stamp text;
  v_note text;
  v_noted_contact_ids bigint[] := '{}';
  v_noted_user_ids bigint[] := '{}';
  v_beside boolean := false;
begin
  -- the companies of the statement's users that listen for firsts, asked once, here:
  -- a first is sent only to them, and only under their rows' locks, written below.
  -- At READ COMMITTED each query of this function sees the commits made before it
  -- began, so a webhook for firsts created after the rows were written (while this
  -- statement waited for a colleague's row, say) listened by the time the loop below
  -- asked again, and its company's first went without its row, sent twice when a
  -- colleague that saw the webhook wrote the row and sent its own (until 2026-12-06;
  -- test/sql/first-assignment.test.ts). Such a company's firsts are its colleagues'
  -- to send. (An assignment of a company without one pays this one query and no
  -- more: the rows' insert is skipped, and the loop's question is a test of this
  -- array where it was a query of the subscriptions. Measured, these steps of one
  -- assignment: 33 µs, where the insert run for no row and that query cost 53.)
  v_listening := array(select distinct u.company_id
                        from crm.users u
                        where u.id = any (p_user_ids)
                          and exists (select 1 from webhooks_private.subscriptions s
                                      where s.action = 'contact.first_company_user_assigned'
                                        and s.company_id = u.company_id));
  -- "first of its company" is decided one transaction at a time for each contact and
  -- company that listens for it: this statement writes that pair's row of
  -- first_assignments first, and the row lock is held to the commit. A transaction
  -- that may send the same first waits for it here, and the question below (a
  -- statement of its own, with a snapshot taken after the wait, at READ COMMITTED)
  -- sees the assignment committed meanwhile. Without it two transactions at once each
  -- saw no colleague and both sent a "first". At REPEATABLE READ or SERIALIZABLE the
  -- snapshot is the transaction's, older than the wait: writing a row that a
  -- colleague's transaction wrote after it fails such a writer with a serialization
  -- failure, 40001, which it retries, and its retry sees the colleague. Written in one
  -- order (contact, company), so two statements never wait for each other's; two
  -- transactions assigning in opposite orders across statements may deadlock, and
  -- Postgres ends one of them. (A row lock lives in the row. Until 2026-12-06 this was
  -- an advisory lock a pair, each a room in the server's lock table, shared by every
  -- session: a transaction assigning some ten thousand contacts failed with "out of
  -- shared memory", and so did every other session needing a lock meanwhile;
  -- test/sql/first-assignment.test.ts.)
  if cardinality(v_listening) > 0 then
    insert into webhooks_private.first_assignments as f (contact_id, company_id)
    select k.contact_id, k.company_id
    from (select distinct i.contact_id, u.company_id
          from unnest(p_contact_ids, p_user_ids) as i(contact_id, user_id)
          join crm.users u on u.id = i.user_id
          where u.company_id = any (v_listening)) k
    order by k.contact_id, k.company_id
    on conflict (contact_id, company_id) do update set sent_at = excluded.sent_at;
    -- One statement may assign by two triggers: MERGE's insert and update arms, or a
    -- writable CTE's update beside its insert, each fire the trigger of their kind with
    -- their own rows, one after the other. The first to fire takes the other's new
    -- users for colleagues assigned before it, and sends no first for them; it notes
    -- its pairs, and the second takes them for the statement's own, not colleagues:
    -- one first, where there was none (until 2026-12-07; test/sql/write-forms.test.ts).
    -- The statement is known by its rows' xmin and cmin, which every part of one
    -- statement shares and no other statement has; a colleague written by it that no
    -- trigger noted is one assigned before whose row the update only touched (an
    -- upsert's "do update set assigned_at"). Its stamp is looked up only when a
    -- note is there to read, or to write (below): a colleague of the statement's own
    -- met where no first was sent, found by comparing the colleague's row with the
    -- pair's own.
    v_note := current_setting(webhooks_private.assigned_setting(), true);
    if v_note <> '' then
      v_stamp := webhooks_private.assignment_stamp(p_contact_ids[1], p_user_ids[1]);
      -- (what a writer may have set it to is never an error: read only when well formed;
      -- no backslash in the pattern, which a session with standard_conforming_strings
      -- off reads otherwise: 15_filters.sql)
      if split_part(v_note, ' ', 1) = v_stamp and v_note ~ '^[0-9]+:[0-9]+( [{]([0-9]{1,18}(,[0-9]{1,18})*)?[}]){2}$' then
        v_noted_contact_ids := split_part(v_note, ' ', 2)::bigint[];
        v_noted_user_ids := split_part(v_note, ' ', 3)::bigint[];
        if cardinality(v_noted_contact_ids) <> cardinality(v_noted_user_ids) then
          v_noted_contact_ids := '{}';
          v_noted_user_ids := '{}';
        end if;
      else
        -- (an earlier statement's: emptied, so that the statements after it do not
        -- copy a long note, an import's, to read its stamp)
        perform pg_catalog.set_config(webhooks_private.assigned_setting(), '', true);
      end if;
    end if;
  end if;
  -- the contacts whose concerned companies listen for contact.user_assigned, and how
  -- many pairs name a contact not there yet (deferrable keys: below). When no one
  -- listens and every contact is there, the statement is done, without the loop's
  -- query (until 2026-12-06 every assignment ran it; docs/capture.md).
  select coalesce(array_agg(distinct c.id) filter (
           where webhooks_private.contact_wanted('contact.user_assigned', c.id, c.company_id)), '{}'),
         count(*) filter (where c.id is null)
  into v_wanted, v_missing
  from unnest(p_contact_ids) as i(contact_id)
  left join crm.contacts c on c.id = i.contact_id;
  if cardinality(v_listening) = 0 and cardinality(v_wanted) = 0 and v_missing = 0 then
    return 0;
  end if;
  for r in
    with made as materialized (
      select i.contact_id, i.user_id from unnest(p_contact_ids, p_user_ids) as i(contact_id, user_id)
    ), noted as materialized (
      select i.contact_id, i.user_id from unnest(v_noted_contact_ids, v_noted_user_ids) as i(contact_id, user_id)
    )
    select m.*,
           -- (not first for a colleague this statement wrote: another trigger's, to note)
           not m.is_first and m.user_company_id = any (v_listening)
           and exists (select 1
                       from crm.contact_assignments o
                       join crm.contact_assignments a on a.contact_id = o.contact_id and a.xmin = o.xmin and a.cmin = o.cmin
                       join crm.users au on au.id = a.user_id
                       where o.contact_id = m.contact_id and o.user_id = m.user_id
                         and au.company_id = m.user_company_id
                         and (a.contact_id, a.user_id) not in (select n.contact_id, n.user_id from made n)
                         and (a.contact_id, a.user_id) not in (select n.contact_id, n.user_id from noted n)) as beside
    from (
    select webhooks_private.json_as_sent(c) as contact, c.id as contact_id, i.user_id,
           u.company_id as user_company_id,
           jsonb_build_object('id', u.id, 'name', to_jsonb(u) -> 'name', 'email', to_jsonb(u) -> 'email',
                              'company_id', u.company_id) as user_json,
           -- first of its company: the smallest user id of that company in this
           -- statement (of the second trigger's pairs, where the statement assigns by
           -- two: above), and no assignment of that company from before it. (The
           -- contact's assignments by the key, each looked up in the statement's pairs
           -- hashed once: "not in" stays a hashed filter. As "not exists" it was planned
           -- as a join, either a scan of all the statement's pairs for each of them,
           -- 45,000 rows read for 300 and 30 s for 20,000 (a generic plan, which takes
           -- the arrays for 10 rows), or of every assignment of the table, whatever the
           -- statement's size; test/sql/first-assignment.test.ts.)
           i.user_id = min(i.user_id) over (partition by i.contact_id, u.company_id)
           and not exists (
             select 1
             from crm.contact_assignments a
             join crm.users au on au.id = a.user_id
             where a.contact_id = i.contact_id
               and au.company_id = u.company_id
               and (a.contact_id, a.user_id) not in (select n.contact_id, n.user_id from made n)
               and (a.contact_id, a.user_id) not in (select n.contact_id, n.user_id from noted n)
           ) as is_first
    from made i
    join crm.users u on u.id = i.user_id
    join crm.contacts c on c.id = i.contact_id
    ) m
    order by m.contact_id, m.user_id
  loop
    v_found := v_found + 1;
    v_beside := v_beside or r.beside;
    -- goes to the assigned user's company alone, if it listened when the rows were written
    if r.is_first and r.user_company_id = any (v_listening) then
      v_webhooks := v_webhooks + webhooks_private.capture('contact.first_company_user_assigned', v_source, r.contact,
        null, null, jsonb_build_object('user', r.user_json), p_only_company => r.user_company_id);
    end if;
    if r.contact_id = any (v_wanted) then
      v_webhooks := v_webhooks + webhooks_private.capture('contact.user_assigned', v_source, r.contact, null, null,
        jsonb_build_object('user', r.user_json), p_user_id => (r.user_json ->> 'id')::bigint);
    end if;
  end loop;
  -- Fewer pairs found than made, the contacts not there yet aside: a user not found,
  -- which only a deferrable foreign key allows, or hidden by the CRM's row-level
  -- security turned on after the last migrate and no event trigger to refuse it
  -- (60_access.sql), whose assignment was dropped without a word (until 2026-12-07).
  -- Refused then, naming the table: asked of the catalog on such a miss alone (a
  -- count of the loop's rows is all the others pay).
  if v_found < cardinality(p_contact_ids) - v_missing then
    perform webhooks_private.refuse_crm_rows_hidden(array['crm.users']);
  end if;
  if v_beside then
    v_stamp := coalesce(v_stamp, webhooks_private.assignment_stamp(p_contact_ids[1], p_user_ids[1]));
    perform pg_catalog.set_config(webhooks_private.assigned_setting(),
      v_stamp || ' ' || (v_noted_contact_ids || p_contact_ids)::text || ' ' || (v_noted_user_ids || p_user_ids)::text, true);
  end if;
  -- (a pair whose contact is not there yet, which only a deferrable foreign key
  -- allows: announced at the commit, written_before_contact below)
  if v_missing > 0 then
    perform webhooks_private.refuse_crm_rows_hidden(array['crm.contacts']);
    insert into webhooks_private.written_before_contact (contact_id, user_id)
    select i.contact_id, i.user_id
    from unnest(p_contact_ids, p_user_ids) as i(contact_id, user_id)
    where not exists (select 1 from crm.contacts c where c.id = i.contact_id);
    perform pg_catalog.set_config(webhooks_private.noted_before_contact_setting(), 'yes', true);
  end if;
  return v_webhooks;
end;
$$;

-- An assignment or a status tag written before the contact it names: a CRM whose
-- foreign keys to crm.contacts are DEFERRABLE INITIALLY DEFERRED (as some ORMs make
-- them) may, within one transaction. Its trigger finds no contact, and notes it in
-- webhooks_private.written_before_contact (only then: a contact found costs nothing
-- more); this deferred trigger of that table runs at the commit, once the contact is
-- there, after its contact.created: the first run takes every row the transaction
-- noted (later runs, with nothing noted since, return at once) and announces those
-- still written, the assignments
-- together, as one statement's (one first of a company), then the tags. Until
-- 2026-12-06 such an assignment or tag fired nothing (test/sql/deferred-keys.test.ts).
-- A row whose contact is still missing stays, and so does the transaction's failure
-- on its foreign key at the commit. (A writer that makes the constraints IMMEDIATE
-- before its contact exists runs this early: its rows stay, unannounced.)
create or replace function webhooks_private.tg_written_before_contact__announce()
returns trigger
language plpgsql
as $$
declare
  v_contact_ids bigint[];
  v_user_ids bigint[];
  v_tag_contact_ids bigint[];
  v_status_ids bigint[];
  v_webhooks integer;
begin
  -- (the first run took every row noted; the rows it took are deleted, not gone, till
  -- the commit, and a scan would read them all again: a later run with nothing noted
  -- since returns here, so that each row noted costs the same however many there are)
  if current_setting(webhooks_private.noted_before_contact_setting(), true) is distinct from 'yes' then
    return null;
  end if;
  perform pg_catalog.set_config(webhooks_private.noted_before_contact_setting(), '', true);
  with gone as (
    delete from webhooks_private.written_before_contact w
    where exists (select 1 from crm.contacts c where c.id = w.contact_id)
    returning w.contact_id, w.user_id, w.status_id
  )
  select array_agg(g.contact_id order by g.contact_id, g.user_id) filter (where g.user_id is not null),
         array_agg(g.user_id order by g.contact_id, g.user_id) filter (where g.user_id is not null),
         array_agg(g.contact_id order by g.contact_id, g.status_id) filter (where g.status_id is not null),
         array_agg(g.status_id order by g.contact_id, g.status_id) filter (where g.status_id is not null)
  into v_contact_ids, v_user_ids, v_tag_contact_ids, v_status_ids
  from (select distinct gone.contact_id, gone.user_id, gone.status_id
        from gone
        -- (still written: not removed again since)
        where (gone.user_id is null
               or exists (select 1 from crm.contact_assignments a where a.contact_id = gone.contact_id and a.user_id = gone.user_id))
          and (gone.status_id is null
               or exists (select 1 from crm.contact_statuses t where t.contact_id = gone.contact_id and t.status_id = gone.status_id))) g;
  if v_contact_ids is not null then
    v_webhooks := webhooks_private.assignments_made(v_contact_ids, v_user_ids);
  end if;
  for k in 1 .. coalesce(cardinality(v_status_ids), 0) loop
    v_webhooks := webhooks_private.status_event('contact.status_added', v_tag_contact_ids[k], v_status_ids[k]);
  end loop;
  return null;
end;
$$;

drop trigger if exists _500_announce on webhooks_private.written_before_contact;
create constraint trigger _500_announce
  after insert on webhooks_private.written_before_contact
  deferrable initially deferred
  for each row execute function webhooks_private.tg_written_before_contact__announce();


-- A statement-level trigger with the inserted rows as a table (assignments_made says why)
create or replace function webhooks_private.tg_contact_assignments__assigned()
returns trigger
language plpgsql
as $$
declare
  v_contact_ids bigint[];
  v_user_ids bigint[];
  v_webhooks integer;
begin
  select array_agg(i.contact_id order by i.contact_id, i.user_id), array_agg(i.user_id order by i.contact_id, i.user_id)
  into v_contact_ids, v_user_ids
  from inserted i;
  if v_contact_ids is not null then
    v_webhooks := webhooks_private.assignments_made(v_contact_ids, v_user_ids);
  end if;
  return null;
end;
$$;

create or replace trigger _500_webhooks_assigned
  after insert on crm.contact_assignments
  referencing new table as inserted
  for each statement execute function webhooks_private.tg_contact_assignments__assigned();

-- An assignment changed in place (an UPDATE that gives the row another user or
-- another contact) assigns that user to that contact: the same events as an insert
-- of the pairs the statement made that were not there before it (an update of
-- assigned_at alone, or one that gives the rows back the pairs they had, makes none;
-- nor does one whose user was on a contact gone since, which is a CRM's key ON UPDATE
-- CASCADE carrying the assignments to their contact's new id: the same users on the
-- same contact, whose update told the new id. Until 2026-12-06 it fired
-- contact.user_assigned, and a first, for each; test/sql/contact-id-change.test.ts).
-- assignments_made, over those pairs. (No column list: Postgres allows
-- none on a trigger with transition tables; such updates are rare, and one that
-- makes no pair costs the one query that finds none.)
create or replace function webhooks_private.tg_contact_assignments__reassigned()
returns trigger
language plpgsql
as $$
declare
  v_contact_ids bigint[];
  v_user_ids bigint[];
  v_webhooks integer;
begin
  select array_agg(n.contact_id order by n.contact_id, n.user_id), array_agg(n.user_id order by n.contact_id, n.user_id)
  into v_contact_ids, v_user_ids
  from (select distinct n.contact_id, n.user_id
        from after_update n
        where not exists (select 1 from before_update o where o.contact_id = n.contact_id and o.user_id = n.user_id)
          and not exists (select 1 from before_update o
                          where o.user_id = n.user_id
                            and not exists (select 1 from crm.contacts c where c.id = o.contact_id))) n;
  if v_contact_ids is not null then
    v_webhooks := webhooks_private.assignments_made(v_contact_ids, v_user_ids);
  end if;
  return null;
end;
$$;

create or replace trigger _500_webhooks_reassigned
  after update on crm.contact_assignments
  referencing old table as before_update new table as after_update
  for each statement execute function webhooks_private.tg_contact_assignments__reassigned();

------------------------------------------------------------------------------------
-- Functions this file no longer has (re-applied over an older engine)
drop function if exists webhooks_private.changed_fields(jsonb, jsonb);
drop function if exists webhooks_private.company_listens(webhooks.action, bigint);

-- Subscriptions carry what capture needs of each webhook (10_config.sql keeps them in
-- step). Derive them again here, once per apply: payload_omit follows the columns of
-- crm.contacts, which may have changed since; an unchanged row is not written.
insert into webhooks_private.subscriptions as s
  (action, company_id, webhook_id, status_id, user_id, payload_omit, payload_keys,
   ignore_sources, watch_fields, conditions, coalesce_window)
select a, w.company_id, w.id, w.status_id, w.user_id, webhooks_private.payload_omit(w.fields),
       webhooks_private.payload_keys(w.fields), w.ignore_sources, w.watch_fields, w.conditions,
       w.coalesce_window
from webhooks.webhooks w
cross join unnest(w.actions) a
where w.enabled
on conflict (action, company_id, webhook_id) do update
  set status_id = excluded.status_id, user_id = excluded.user_id, payload_omit = excluded.payload_omit,
      payload_keys = excluded.payload_keys, ignore_sources = excluded.ignore_sources,
      watch_fields = excluded.watch_fields, conditions = excluded.conditions,
      coalesce_window = excluded.coalesce_window
  where (s.status_id, s.user_id, s.payload_omit, s.payload_keys, s.ignore_sources, s.watch_fields, s.conditions,
         s.coalesce_window)
        is distinct from
        (excluded.status_id, excluded.user_id, excluded.payload_omit, excluded.payload_keys,
         excluded.ignore_sources, excluded.watch_fields, excluded.conditions, excluded.coalesce_window);
