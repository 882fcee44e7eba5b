-- bpd-webhooks engine: backfill, the contacts a company already has.
--
-- A webhook connected today hears only what changes from now on. A backfill sends it
-- every contact that concerns its company (owned, or assigned to one of its users)
-- and passes its conditions (15_filters.sql), as one delivery of action
-- contact.snapshot each: the payload contact.created would carry (the contact's id
-- and the chosen fields), with source 'backfill', whatever actions the webhook
-- subscribes to. Each is an ordinary delivery (retries, history, replay).
--
-- Public API:
--   webhooks.backfill(webhook_id)          starts one; returns its id (admins)
--   webhooks.cancel_backfill(id)           stops it (admins)
--   webhooks.backfills                      progress: state, total, queued (viewers)
-- Private, for whoever drives the work (the relay on a timer, `npm run backfill`):
--   webhooks_relay.backfill_step()          one batch of each running backfill
--   webhooks_relay.backfill_step_waiting()  the same, and the webhooks waiting for room
--
-- Paced so that live deliveries keep their latency:
-- * a step writes at most one batch (webhooks.backfill_batch contacts) of a backfill,
--   and no more snapshots than leave backfill_outstanding_of() of them unfinished
--   (pending or in flight): webhooks.backfill_outstanding, and no more than four
--   times the webhook's max_in_flight, or its rate_limit if fewer. The claim takes a webhook's earliest due first,
--   so a live change waits behind those alone, never behind a whole company;
-- * a snapshot is first due webhooks.backfill_defer after it is written (0 by
--   default: at once; webhooks_private.first_attempt_delay, 25_capture.sql);
-- * a receiver that fails holds its backfill back: failed snapshots waiting for their
--   retry still count as unfinished.
-- Resumable: the walk goes through the company's contacts in id order, and the last
-- id it examined (position) is written in the transaction that writes the batch's
-- deliveries. A step that dies writes nothing; the next one starts where the last
-- committed one stopped. Steps of one backfill never overlap (its row is locked,
-- SKIP LOCKED), so any number of relays and tools may drive them. A step reads the
-- contacts committed as it runs: one inserted by a transaction still open then (its
-- id was handed out at the insert) is passed over, and gets no snapshot; its own
-- contact.created is what the webhook gets of it (docs/backfill.md).
--
-- Settings (02_settings.sql has their defaults and bounds): webhooks.backfill_batch,
-- webhooks.backfill_outstanding, and webhooks.backfill_defer (read by 25_capture.sql).
--
-- A snapshot has nothing changed, so a condition "changed" is false for it. A disabled
-- webhook's backfill pauses (no batch is written) until it is enabled or cancelled,
-- and the claim holds the snapshots written already (30_delivery.sql, snapshot_held()).

-- private: the settings above
create or replace function webhooks_private.backfill_batch()
returns integer
language sql
stable
as $$
  select webhooks_private.integer_setting('webhooks.backfill_batch');
$$;

create or replace function webhooks_private.backfill_outstanding()
returns integer
language sql
stable
as $$
  select webhooks_private.integer_setting('webhooks.backfill_outstanding');
$$;

-- private: how many claims' worth of a webhook's snapshots its backfill keeps
-- unfinished at most (backfill_outstanding_of)
create or replace function webhooks_private.backfill_claims_ahead()
returns integer
language sql
immutable
as $$
  select 4;
$$;

-- private: a claim's worth of a webhook's snapshots: the requests it takes at once
-- (max_in_flight, 28_lanes.sql), or what its rate_limit sends in a second, if fewer
create or replace function webhooks_private.backfill_claim_of(p_webhook webhooks.webhooks)
returns integer
language sql
stable
as $$
  select least(webhooks_private.max_in_flight(p_webhook.max_in_flight), coalesce(p_webhook.rate_limit, 2147483647));
$$;

-- private: the most snapshots a backfill of this webhook keeps unfinished (pending or
-- in flight): webhooks.backfill_outstanding, and no more than backfill_claims_ahead()
-- times the requests the webhook takes at once (max_in_flight, 28_lanes.sql). The
-- claim takes a webhook's earliest due first, and a snapshot is due before a live
-- change made after it: a live change waits behind at most these. With
-- backfill_outstanding alone, 1,000 of them were due ahead of it, about 3 s at a
-- receiver of 100 ms and 32 requests at once (test/relay/backfill.test.ts); now 128.
-- A rate_limit below max_in_flight sends fewer: a claim's worth is then a second's
-- (backfill_claim_of). Until 2026-12-07 128 snapshots were kept ahead of a live change
-- all the same, 32 s of them at 4 a second (test/relay/ordered-combinations.test.ts).
create or replace function webhooks_private.backfill_outstanding_of(p_webhook webhooks.webhooks)
returns integer
language sql
stable
as $$
  select least(webhooks_private.backfill_outstanding(),
               webhooks_private.backfill_claims_ahead() * webhooks_private.backfill_claim_of(p_webhook));
$$;

-- private: how long one backfill's batch may take before it stops short, and the
-- count of its total may spend on its webhook's conditions. The step serves every
-- company's backfills one after the other, in one transaction, and a contact may
-- cost a company's conditions a tenth of a second or more (filters.md, "What one
-- write may cost"), its snapshot as much when it is large (a custom text of 800 kB:
-- 90 ms): a batch of 500 such contacts held the step, and every other company's
-- backfill, for minutes, and an ordered webhook's locks on its contacts as long
-- (until 2026-12-07; test/sql/backfill.test.ts). As the relay's backfiller interval by
-- default (webhooks.backfill_batch_time). A setting: a test that counts what one step
-- writes sets it past what the machine's load can take (a batch of two contacts ran
-- past 250 ms on a loaded machine), as a DBA may give batches more time.
create or replace function webhooks_private.backfill_batch_time()
returns interval
language sql
stable
as $$
  select webhooks_private.interval_setting('webhooks.backfill_batch_time');
$$;

-- private: the most contacts an ordered webhook's batch locks (FOR SHARE, below), and
-- so writes, a step. A CRM writer of one of them waits for the step's commit: the
-- batch, at most four times the webhook's max_in_flight (128), held them through its
-- snapshots' writes and every other backfill the step served after it, and a writer
-- just ahead of the walk waited up to 0.8 s (until 2026-12-07; 128 to 212 contacts
-- locked a step, test/sql/backfill-locks.test.ts). A claim's worth at the default
-- max_in_flight: the step writes as many as the relay sends at once.
create or replace function webhooks_private.backfill_locked_batch()
returns integer
language sql
immutable
as $$
  select 32;
$$;

-- private: the ids of the contacts a backfill of the company examines after p_after,
-- in id order, at most p_limit: those of the company, and those assigned to one of its
-- users. Each side reads one index range. (A SQL function its callers' plans take in.)
create or replace function webhooks_private.backfill_contact_ids(p_company_id bigint, p_after bigint, p_limit integer)
returns table (id bigint)
language sql
stable
as $$
  select ids.id
  from ((select o.id from crm.contacts o
         where o.company_id = p_company_id and o.id > p_after
         order by o.id limit p_limit)
        union
        (select a.contact_id from crm.users u
         join crm.contact_assignments a on a.user_id = u.id
         where u.company_id = p_company_id and a.contact_id > p_after
         group by a.contact_id
         order by a.contact_id limit p_limit)) ids
  order by ids.id
  limit p_limit;
$$;

-- private: the contacts of a backfill's walk after p_after, in id order, at most
-- p_limit (backfill_contact_ids)
create or replace function webhooks_private.backfill_contacts(p_company_id bigint, p_after bigint, p_limit integer)
returns setof crm.contacts
language sql
stable
as $$
  select c.*
  from crm.contacts c
  where c.id in (select ids.id from webhooks_private.backfill_contact_ids(p_company_id, p_after, p_limit) ids)
  order by c.id;
$$;

-- private: does the webhook want this contact's snapshot? (its conditions, if any)
create or replace function webhooks_private.backfill_wants(p_conditions jsonb, p_contact jsonb)
returns boolean
language plpgsql
stable
as $$
begin
  return p_conditions is null or webhooks_private.condition_holds(p_conditions, webhooks_private.condition_subject(p_contact), null, null);
end;
$$;

-- private: one contact's snapshot for a backfill's webhook, if its conditions take it:
-- the payload contact.created carries (webhooks_private.capture, 25_capture.sql), with
-- source 'backfill', p_timestamp the batch's. Returns whether it was written.
create or replace function webhooks_private.backfill_snapshot(p_webhook webhooks.webhooks, p_contact crm.contacts,
                                                              p_omit text[], p_timestamp text)
returns boolean
language plpgsql
volatile
as $$
declare
  v_json constant jsonb := webhooks_private.json_as_sent(p_contact);
begin
  if not webhooks_private.backfill_wants(p_webhook.conditions, v_json) then
    return false;
  end if;
  perform webhooks_private.enqueue(p_webhook.id, p_webhook.company_id, 'contact.snapshot', p_contact.id,
    jsonb_build_object(
      'type', 'contact.snapshot',
      'timestamp', p_timestamp,
      'data', jsonb_build_object('contact', v_json - p_omit, 'source', 'backfill')),
    p_webhook.coalesce_window);
  return true;
end;
$$;

-- private: those of the contacts p_ids that a backfill of the company examines (as
-- backfill_contacts: owned, or assigned to one of its users), in id order
create or replace function webhooks_private.backfill_contacts_among(p_company_id bigint, p_ids bigint[])
returns setof crm.contacts
language sql
stable
as $$
  select c.*
  from crm.contacts c
  where c.id = any (p_ids)
    and (c.company_id = p_company_id
         or exists (select 1 from crm.contact_assignments a join crm.users u on u.id = a.user_id
                    where a.contact_id = c.id and u.company_id = p_company_id))
  order by c.id;
$$;

-- (the whole count of them, backfill_examined, was asked only by a test since a step
-- counts a part at a time: backfill_examined_after)
drop function if exists webhooks_private.backfill_examined(bigint);

-- private: the most contacts a step counts of one backfill's total (one home)
create or replace function webhooks_private.backfill_counted_a_step()
returns integer
language sql
immutable
as $$
  select 10000;
$$;

-- private: of the contacts a backfill of the company examines (backfill_contact_ids'),
-- those with ids after p_after, p_limit at most: how many, and the last id. One index
-- range of each side, as the walk's (backfill_contact_ids).
create or replace function webhooks_private.backfill_examined_after(p_company_id bigint, p_after bigint, p_limit integer,
                                                                    out examined bigint, out last_id bigint)
language sql
stable
as $$
  select count(*), max(ids.id)
  from webhooks_private.backfill_contact_ids(p_company_id, p_after, p_limit) ids;
$$;

-- public (GraphQL: backfillContactsCountedUpTo): the most contacts
-- backfill_contacts_count counts
create or replace function webhooks.backfill_contacts_counted_up_to()
returns integer
language sql
immutable
as $$
  select 10000;
$$;

-- public (GraphQL: backfillContactsCount): the contacts a backfill of the caller's
-- company examines, as of now (backfill_contact_ids'), counted up to
-- backfill_contacts_counted_up_to(): past it, one more than that, whatever the company
-- has. What the Reports page's Backfill says it will send before it starts: it reads at
-- most that many and one of each index range (the company's contacts; those assigned
-- to its users, as rows: past the most, a contact assigned to two of them may make the
-- answer "more" where the contacts are a few less). Counting them all read every
-- contact of a company of millions for a question. Runs as its owner (no API role
-- reads the CRM's tables), for the caller's company alone. enable_sort off: a company
-- the planner took for small was read whole and its ids sorted for their first 10,001
-- (as the searches of 55_report.sql).
create or replace function webhooks.backfill_contacts_count()
returns bigint
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
set enable_sort = off
set jit = off
as $$
  select webhooks_private.refuse_crm_rows_hidden(array['crm.contacts', 'crm.users', 'crm.contact_assignments']);
  with owned as (
    select o.id from crm.contacts o
    where o.company_id = webhooks.current_company_id()
    order by o.id
    limit webhooks.backfill_contacts_counted_up_to() + 1
  ), assigned as (
    select a.contact_id as id from crm.users u
    join crm.contact_assignments a on a.user_id = u.id
    where u.company_id = webhooks.current_company_id()
    limit webhooks.backfill_contacts_counted_up_to() + 1
  )
  select case when (select count(*) from assigned) > webhooks.backfill_contacts_counted_up_to()
              then webhooks.backfill_contacts_counted_up_to() + 1
              else least(webhooks.backfill_contacts_counted_up_to() + 1,
                         (select count(*) from (select id from owned union select id from assigned) ids))
         end;
$$;

-- private: how many contacts a backfill of this webhook will send, as of now, for its
-- first step to write as its total, when a batch's work tells it; null else. A webhook
-- with conditions sends those that pass them, which only evaluating them on every
-- contact can tell: the step that serves every company's backfills then took as long
-- as the company's contacts (58 s for 50,000 contacts and 99 conditions), and every
-- other company's backfill waited. So they are evaluated only for a company of no more
-- contacts than a batch, and within backfill_batch_time(); past that, the total is the
-- contacts to examine (at least what will be sent), counted a part a step
-- (backfill_count), and it becomes what was sent when the backfill is done
-- (backfill_batch_of).
create or replace function webhooks_private.backfill_total(p_webhook webhooks.webhooks)
returns bigint
language plpgsql
stable
as $$
declare
  v_batch constant integer := webhooks_private.backfill_batch();
  v_batch_time constant interval := webhooks_private.backfill_batch_time();
  v_started constant timestamptz := clock_timestamp();
  v_contact crm.contacts;
  v_wanted bigint := 0;
begin
  if p_webhook.conditions is not null
     and (select count(*) from webhooks_private.backfill_contacts(p_webhook.company_id, 0, v_batch + 1)) <= v_batch then
    for v_contact in select * from webhooks_private.backfill_contacts(p_webhook.company_id, 0, v_batch) loop
      -- (conditions too costly to count within the time: the contacts to examine, as
      -- for a larger company)
      if clock_timestamp() - v_started > v_batch_time then
        return null;
      end if;
      if webhooks_private.backfill_wants(p_webhook.conditions, to_jsonb(v_contact)) then
        v_wanted := v_wanted + 1;
      end if;
    end loop;
    return v_wanted;
  end if;
  return null;
end;
$$;

-- private: a step's part of the count of a running backfill's total, its row locked by
-- the caller: backfill_total's answer at its first step, if it has one; else the next
-- backfill_counted_a_step() contacts to examine, after those counted before
-- (backfill_counts, migration 0095), and the total once they are all counted (null
-- until then: the Reports page says "counting"). The first step counted the company's
-- contacts whole, in the step that serves every company's backfills: 150 ms for
-- 500,000 (its indexes alone; the shared two-core machine), 3.8 s for a company's 16
-- backfills started at once, paid again by each start of a start and cancel in a loop
-- (until 2026-12-07; test/sql/backfill.test.ts). Now at most 10,000 index entries of
-- each side a backfill a step. Contacts inserted behind the count after it passed
-- are not in the total; it becomes what was sent once done.
create or replace function webhooks_private.backfill_count(p_backfill webhooks.backfills, p_webhook webhooks.webhooks)
returns void
language plpgsql
volatile
as $$
declare
  v_part constant integer := webhooks_private.backfill_counted_a_step();
  v_counted bigint;
  v_after bigint;
  v_examined bigint;
  v_last bigint;
  v_total bigint;
begin
  select c.counted, c.counted_to into v_counted, v_after
  from webhooks_private.backfill_counts c where c.backfill_id = p_backfill.id;
  if not found then
    v_counted := 0;
    v_after := 0;
    v_total := webhooks_private.backfill_total(p_webhook);
  end if;
  if v_total is null then
    select e.examined, e.last_id into v_examined, v_last
    from webhooks_private.backfill_examined_after(p_webhook.company_id, v_after, v_part) e;
    if v_examined >= v_part then
      insert into webhooks_private.backfill_counts (backfill_id, counted_to, counted)
      values (p_backfill.id, v_last, v_counted + v_examined)
      on conflict (backfill_id) do update set counted_to = excluded.counted_to, counted = excluded.counted;
      return;
    end if;
    v_total := v_counted + v_examined;
  end if;
  update webhooks.backfills b set total = v_total where b.id = p_backfill.id;
  delete from webhooks_private.backfill_counts c where c.backfill_id = p_backfill.id;
end;
$$;

-- public: a backfill's snapshots written but not finished yet (pending or in flight:
-- still in the queue, 22_outbox.sql); its sent = queued - unfinished. GraphQL: the
-- field unfinished of Backfill. Runs as the caller. Few rows: the pacing keeps them
-- under webhooks.backfill_outstanding.
create or replace function webhooks.backfills_unfinished(p_backfill webhooks.backfills)
returns bigint
language sql
stable
as $$
  -- pending and in flight apart: each is a range of one of the queue's partial indexes
  select (select count(*)
          from webhooks.delivery_queue q
          where q.webhook_id = p_backfill.webhook_id and q.locked_by is null
            and q.action = 'contact.snapshot' and q.created_at >= p_backfill.created_at)
       + (select count(*)
          from webhooks.delivery_queue q
          where q.webhook_id = p_backfill.webhook_id and q.locked_by is not null
            and q.action = 'contact.snapshot' and q.created_at >= p_backfill.created_at);
$$;

-- public: a backfill's snapshots that failed (their attempts used up, the backfill
-- cancelled, held past the retention) and were not replayed since: those sent, but
-- not received. GraphQL: the field failed of Backfill, which the Reports page shows
-- once it is over ("Backfilled N contacts …; F failed"): until 2026-12-07 it said
-- "Backfilled N" of a backfill whose snapshots had failed, as if all had been received
-- (test/relay/ordered-combinations.test.ts). Its snapshots are those written between
-- its start and its end (one backfill runs at a time per webhook); read by the
-- results' index of the webhook and time, those failed by their message's action.
-- Runs as the caller.
create or replace function webhooks.backfills_failed(p_backfill webhooks.backfills)
returns bigint
language sql
stable
as $$
  select count(*)
  from webhooks.delivery_results r
  join webhooks.delivery_history h on h.id = r.delivery_id and h.created_at = r.created_at
  where r.webhook_id = p_backfill.webhook_id and r.company_id = p_backfill.company_id
    and r.created_at >= p_backfill.created_at
    and r.created_at <= coalesce(p_backfill.finished_at, 'infinity')
    and r.state = 'failed'
    and h.action = 'contact.snapshot'
    and not exists (select 1 from webhooks.delivery_queue q where q.delivery_id = r.delivery_id);
$$;

-- public: the latest backfill of each webhook of the caller's company (the latest
-- started; of two started in one transaction, the later: snapshot_backfill,
-- 30_delivery.sql, asked of the present), in webhook id order. A
-- webhook never backfilled has no row. GraphQL: latestBackfills, which the Reports
-- page asks every second while a backfill runs: one row per webhook, so at most
-- webhooks.max_webhooks_per_company, each read as the first two entries of the
-- webhook's range of backfills_webhook_idx (webhook_id, created_at desc): the latest,
-- and the next, which shows that none was started at the same instant. However many
-- the company has run (test/api/latest-backfills.test.ts). Before, the page read every
-- backfill of the company, every page of them, each second. Runs as the caller:
-- row-level security keeps it to the company's webhooks (as their owner, a DBA gets
-- every company's). webhook_ids: of these webhooks alone (null: of all): the page's
-- progress bars ask for those of the backfills still going, as it reads each of the
-- company's other webhooks' latest backfill once, with the report (until 2026-12-06
-- every second, every page of them).
-- (it had no argument until 2026-12-06: a function's arguments cannot be changed in
-- place, and the two side by side would make one call ambiguous)
drop function if exists webhooks.latest_backfills();
create or replace function webhooks.latest_backfills(webhook_ids bigint[] default null)
returns setof webhooks.backfills
language sql
stable
as $$
  select b.*
  from webhooks.webhooks w
  cross join lateral webhooks_private.snapshot_backfill(w.id, 'infinity') b
  where latest_backfills.webhook_ids is null or w.id = any (latest_backfills.webhook_ids)
  order by w.id;
$$;

------------------------------------------------------------------------------------
-- Starting and cancelling (the admin API: run as the caller, so grants and row-level
-- security decide which webhooks and backfills they reach)

-- Their arguments are named as GraphQL shows them (startBackfill(input: {webhookId}),
-- cancelBackfill(input: {id})), as replay_failed's and replay_delivery's are; until
-- 2026-12-05 they were p_webhook_id and p_backfill_id, and GraphQL said pWebhookId
-- and pBackfillId. A function's argument names cannot be changed in place.
do $rename$
begin
  if (select proargnames[1] from pg_proc where oid = to_regprocedure('webhooks.backfill(bigint)')) = 'p_webhook_id' then
    drop function webhooks.backfill(bigint);
  end if;
  if (select proargnames[1] from pg_proc where oid = to_regprocedure('webhooks.cancel_backfill(bigint)')) = 'p_backfill_id' then
    drop function webhooks.cancel_backfill(bigint);
  end if;
end;
$rename$;

-- public: start a backfill of a webhook of the caller's company; returns its id
create or replace function webhooks.backfill(webhook_id bigint)
returns bigint
language plpgsql
volatile
as $$
declare
  v_webhook webhooks.webhooks := webhooks_private.webhook_for_update(backfill.webhook_id, 'webhook_id');
  v_id bigint;
begin
  perform webhooks_private.require_enabled(v_webhook, 'a backfill');   -- 30_delivery.sql
  -- the webhook's row is locked (webhook_for_update): two starts at once queue here
  select b.id into v_id from webhooks.backfills b where b.webhook_id = v_webhook.id and b.state = 'running';
  if found then
    raise exception using
      errcode = 'object_not_in_prerequisite_state',
      message = format('backfill %s of webhook %s is still running; cancel it or wait for it to finish', v_id, v_webhook.id),
      constraint = 'backfill_running',
      column = 'webhook_id';
  end if;
  insert into webhooks.backfills (webhook_id, company_id, created_by)
  values (v_webhook.id, v_webhook.company_id, webhooks.current_actor())
  returning id into v_id;
  return v_id;
end;
$$;

-- public: cancel a running backfill: no further batch, and its snapshots not sent yet
-- fail with the reason (those being sent finish as they go)
create or replace function webhooks.cancel_backfill(id bigint)
returns webhooks.backfills
language plpgsql
volatile
as $$
declare
  v webhooks.backfills;
begin
  -- waits for a step under way to commit its batch: those snapshots are cancelled too
  select * into v from webhooks.backfills b where b.id = cancel_backfill.id for update;
  if not found then
    perform webhooks_private.raise_not_found('backfill', cancel_backfill.id);
  end if;
  if v.state <> 'running' then
    raise exception using
      errcode = 'object_not_in_prerequisite_state',
      message = format('backfill %s is %s, not running', v.id, v.state),
      constraint = 'backfill_not_running',
      column = 'id';
  end if;
  perform webhooks_private.fail_unsent_snapshots(v);   -- 30_delivery.sql
  update webhooks.backfills b
  set state = 'cancelled', finished_at = now()
  where b.id = v.id
  returning * into v;
  return v;
end;
$$;

------------------------------------------------------------------------------------
-- The work

-- private: what tells a contact from one inserted later with the same id, for the
-- notes of ids changed across a walk (backfill_renumbered): its created_at, as the
-- row shows it (null where the CRM's contacts have no such column: then the id alone),
-- in UTC whoever asks (json_as_sent): a change of id noted by a writer in another time
-- zone than the relay's backfill step is the same mark
create or replace function webhooks_private.contact_created_mark(p_contact crm.contacts)
returns text
language sql
stable
as $$
  select webhooks_private.json_as_sent(p_contact) ->> 'created_at';
$$;

-- private: one batch of one backfill, its row locked by the caller. written_now: the
-- snapshots written, null when it can do nothing now (paused, no room, or its next
-- contact held by a writer). waits_for_room: it is still running and what it waits for
-- comes back as its snapshots settle (a batch written, or no room), so that a settle
-- of its webhook may let the next step write: not once done (a settle stepped it once
-- more, for nothing), not paused, and not held by a writer, whom no settle ends (every
-- settle of the webhook's live deliveries stepped it again, for nothing, until
-- 2026-12-07; test/relay/backfiller.test.ts). The relay's timer steps those.
select webhooks_private.drop_function_unless(
  'webhooks_private.backfill_batch_of(webhooks.backfills)',
  'p_backfill webhooks.backfills, OUT written_now integer, OUT waits_for_room boolean', 'record');
create or replace function webhooks_private.backfill_batch_of(p_backfill webhooks.backfills,
                                                              out written_now integer, out waits_for_room boolean)
language plpgsql
volatile
as $$
declare
  v_webhook webhooks.webhooks;
  v_batch integer := webhooks_private.backfill_batch();
  v_outstanding integer;
  v_room integer;
  v_timestamp constant text := to_char(now() at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
  v_contact crm.contacts;
  v_seen integer := 0;
  v_written integer := 0;
  v_position bigint := p_backfill.position;
  v_omit text[];
  v_locked bigint[];
  v_next integer := 1;
  v_held boolean := false;
  v_passed bigint[];
  v_passed_marks text[];
  v_behind bigint[];
  v_noted_behind bigint[];
  v_behind_marks text[];
  v_behind_left boolean := false;
  v_started constant timestamptz := clock_timestamp();
  v_batch_time constant interval := webhooks_private.backfill_batch_time();
  v_cut boolean := false;
begin
  waits_for_room := false;
  select * into v_webhook from webhooks.webhooks w where w.id = p_backfill.webhook_id;
  if not v_webhook.enabled then
    return;   -- paused while disabled
  end if;
  v_omit := webhooks_private.payload_omit(v_webhook.fields);   -- 10_config.sql

  -- yield: wait while enough of its snapshots are still on their way
  -- (backfill_outstanding_of), until a claim's worth of them has gone; then write as
  -- many as that leaves room for, a batch at most
  v_outstanding := webhooks_private.backfill_outstanding_of(v_webhook);
  v_room := v_outstanding - webhooks.backfills_unfinished(p_backfill);
  if v_room < least(v_batch, webhooks_private.backfill_claim_of(v_webhook), v_outstanding) then
    waits_for_room := true;
    return;
  end if;
  v_batch := least(v_batch, v_room);
  -- (an ordered webhook's batch locks its contacts until the step commits: a few of
  -- them, backfill_locked_batch; the step ends after it, backfill_step_waiting)
  if v_webhook.ordered then
    v_batch := least(v_batch, webhooks_private.backfill_locked_batch());
  end if;

  if p_backfill.total is null then
    perform webhooks_private.backfill_count(p_backfill, v_webhook);
  end if;

  -- Contacts whose id changed across the position while the walk ran
  -- (backfill_renumbered, noted by the change: backfills_renumbered, below): those
  -- examined under an id behind the position and now ahead of it are passed over when
  -- the walk reaches them; those not examined yet and now behind it are examined
  -- first, a batch of them a step in place of the walk's (the pacing above holds), an
  -- ordered webhook's once no writer holds them (as the walk's, below). Two index
  -- ranges of the backfill's notes, nearly always empty. A note is of the contact
  -- whose created_at it keeps (contact_created_mark): a contact deleted since and
  -- another inserted with its id is not the one noted, and the walk takes it as any.
  select coalesce(array_agg(n.contact_id order by n.contact_id), '{}'),
         coalesce(array_agg(n.contact_created_at order by n.contact_id), '{}')
  into v_noted_behind, v_behind_marks
  from (select r.contact_id, r.contact_created_at from webhooks_private.backfill_renumbered r
        where r.backfill_id = p_backfill.id and not r.examined
        order by r.backfill_id, r.contact_id
        limit v_batch) n;
  v_behind := v_noted_behind;
  if cardinality(v_behind) > 0 then
    if v_webhook.ordered then
      begin
        v_locked := array(select c.id from crm.contacts c where c.id = any (v_behind) order by c.id
                          for share of c skip locked);
      exception when serialization_failure then
        v_locked := '{}';
      end;
      -- (a contact gone is examined: there is nothing to lock or send)
      v_behind := array(select i from unnest(v_behind) i
                        where i = any (v_locked) or not exists (select 1 from crm.contacts c where c.id = i));
      v_locked := null;
    end if;
    for v_contact in select * from webhooks_private.backfill_contacts_among(v_webhook.company_id, v_behind) loop
      -- (inserted since with the id of the contact noted, behind the walk: not examined)
      continue when webhooks_private.contact_created_mark(v_contact)
                    is distinct from v_behind_marks[array_position(v_noted_behind, v_contact.id)];
      if webhooks_private.backfill_snapshot(v_webhook, v_contact, v_omit, v_timestamp) then
        v_written := v_written + 1;
      end if;
      -- (bounded as the walk's batch, below: the notes after this contact are the
      -- next step's; both in id order. Until 2026-12-07 a batch of them took what its
      -- conditions cost, 0.1 s a contact or more.)
      if clock_timestamp() - v_started > v_batch_time then
        v_behind := array(select i from unnest(v_behind) i where i <= v_contact.id);
        exit;
      end if;
    end loop;
    delete from webhooks_private.backfill_renumbered r
    where r.backfill_id = p_backfill.id and r.contact_id = any (v_behind);
    if cardinality(v_behind) > 0 then
      update webhooks.backfills b set queued = b.queued + v_written, served_at = now() where b.id = p_backfill.id;
      written_now := v_written;
      waits_for_room := true;
      return;
    end if;
    -- (every one held by a writer: the walk goes on, and the backfill is not done)
    v_behind_left := true;
  end if;
  select coalesce(array_agg(r.contact_id), '{}'), coalesce(array_agg(r.contact_created_at), '{}')
  into v_passed, v_passed_marks
  from webhooks_private.backfill_renumbered r
  where r.backfill_id = p_backfill.id and r.examined;

  -- An ordered webhook's batch: its contacts locked first (FOR SHARE, never waiting),
  -- then read. A contact a writer holds (its change's delivery has its id already,
  -- before this snapshot's) ends the batch before it: its snapshot is written by a
  -- later step, once the change is committed, and shows it. Read without the lock, the
  -- snapshot showed the contact as it was before that change and was sent after it,
  -- and a writer could change it between the read and the snapshot's write too: the
  -- receiver applied the older values last.
  -- (A step in REPEATABLE READ or SERIALIZABLE, a DBA's, cannot lock a contact
  -- changed after its snapshot: it writes nothing now, and a later step goes on.)
  if v_webhook.ordered then
    begin
      v_locked := array(select c.id from crm.contacts c
                        where c.id in (select b.id
                                       from webhooks_private.backfill_contacts(v_webhook.company_id, p_backfill.position, v_batch) b)
                        order by c.id
                        for share of c skip locked);
    exception when serialization_failure then
      v_locked := '{}';
    end;
  end if;
  for v_contact in
    select * from webhooks_private.backfill_contacts(v_webhook.company_id, p_backfill.position, v_batch)
  loop
    -- (examined under an id it had behind the position: passed; a contact inserted
    -- with that id since the one noted was deleted is not that one)
    if v_contact.id = any (v_passed)
       and webhooks_private.contact_created_mark(v_contact)
           is not distinct from v_passed_marks[array_position(v_passed, v_contact.id)] then
      v_seen := v_seen + 1;
      v_position := v_contact.id;
      continue;
    end if;
    if v_webhook.ordered then
      -- (both in id order: a contact no longer concerned is passed over)
      while v_locked[v_next] < v_contact.id loop
        v_next := v_next + 1;
      end loop;
      if v_locked[v_next] is distinct from v_contact.id then
        v_held := true;
        exit;
      end if;
    end if;
    v_seen := v_seen + 1;
    v_position := v_contact.id;
    if webhooks_private.backfill_snapshot(v_webhook, v_contact, v_omit, v_timestamp) then
      v_written := v_written + 1;
    end if;
    -- (a batch that costs more than backfill_batch_time, by its conditions or by its
    -- contacts' size, ends here, and the next step goes on from this contact. Until
    -- 2026-12-07 only conditions were timed: 200 contacts of 800 kB each held the
    -- step, every company's backfills, for 18 s, and an ordered webhook's locks on
    -- them, another company's contact shared with it among them, as long:
    -- test/sql/backfill.test.ts)
    if clock_timestamp() - v_started > v_batch_time then
      v_cut := v_seen < v_batch;
      exit;
    end if;
  end loop;
  if cardinality(v_passed) > 0 then
    delete from webhooks_private.backfill_renumbered r
    where r.backfill_id = p_backfill.id and r.examined and r.contact_id <= v_position;
  end if;
  -- (a contact behind the position still to examine, or a batch cut short, keeps the
  -- backfill running)
  v_held := v_held or v_behind_left or v_cut;

  update webhooks.backfills b
  set position = v_position,
      queued = b.queued + v_written,
      served_at = now(),   -- (the step's order: backfill_step_waiting)
      -- the walk is over when a batch comes back short
      state = case when v_seen < v_batch and not v_held then 'done' else 'running' end,
      total = case when v_seen < v_batch and not v_held then b.queued + v_written else b.total end,
      finished_at = case when v_seen < v_batch and not v_held then now() end
  where b.id = p_backfill.id;
  -- held at its first contact: it can do nothing now, and takes no step's place
  if v_held and v_seen = 0 and v_written = 0 then
    return;
  end if;
  written_now := v_written;
  waits_for_room := v_held or v_seen >= v_batch;   -- still running
end;
$$;

-- private: a contact's id changed from p_from to p_to (a note of contact_renumberings,
-- written by the change: contact_id_changed, 25_capture.sql) while backfills of a
-- company it concerns run. The walk goes by id, and had examined the contact already
-- if its id was behind the position (or it was noted as examined since): one examined
-- and now ahead of the position is noted to be passed over; one not examined and now
-- behind it, to be examined by the next step (backfill_batch_of). Until 2026-12-06
-- the first got a second snapshot and the second none. Each backfill's row is locked
-- (FOR KEY SHARE) before its position is read: a step under way (FOR UPDATE) is
-- waited for, and the position read is the one it committed, its contacts read
-- before the change (they show the old id); a step that comes later passes the
-- backfill over until this transaction ends. The companies concerned as the walk's
-- are: the owner now, the companies of users assigned under either id. No running
-- backfill of those companies (nearly always): one probe of the running backfills.
create or replace function webhooks_private.backfills_renumbered(p_from bigint, p_to bigint)
returns void
language plpgsql
volatile
as $$
declare
  v_backfill record;
  v_examined boolean;
  -- (the contact's created_at: a note is of this contact, not of one inserted later
  -- with its id, backfill_batch_of)
  v_mark constant text := (select webhooks_private.contact_created_mark(c) from crm.contacts c where c.id = p_to);
begin
  for v_backfill in
    select b.id, b.position
    from webhooks.backfills b
    where b.state = 'running'
      and b.company_id in (select c.company_id from crm.contacts c where c.id = p_to
                           union
                           select u.company_id from crm.contact_assignments a join crm.users u on u.id = a.user_id
                           where a.contact_id in (p_from, p_to))
    order by b.id
    for key share of b
  loop
    select r.examined into v_examined from webhooks_private.backfill_renumbered r
    where r.backfill_id = v_backfill.id and r.contact_id = p_from
      and r.contact_created_at is not distinct from v_mark;
    v_examined := coalesce(v_examined, p_from <= v_backfill.position);
    delete from webhooks_private.backfill_renumbered r
    where r.backfill_id = v_backfill.id and r.contact_id in (p_from, p_to);
    if v_examined and p_to > v_backfill.position then
      insert into webhooks_private.backfill_renumbered (backfill_id, contact_id, examined, contact_created_at)
      values (v_backfill.id, p_to, true, v_mark);
    elsif not v_examined and p_to <= v_backfill.position then
      insert into webhooks_private.backfill_renumbered (backfill_id, contact_id, examined, contact_created_at)
      values (v_backfill.id, p_to, false, v_mark);
    end if;
  end loop;
end;
$$;

-- The note of a change of id, written: backfills_renumbered, above. A writer in READ
-- COMMITTED reads the position the last step committed. One in REPEATABLE READ or
-- SERIALIZABLE whose snapshot a step overtook (the step wrote the backfill's row after
-- the snapshot was taken) cannot: its lock of the row fails with a serialization
-- failure (40001), and so does its change, which it retries as any such failure, in a
-- snapshot that shows where the walk is; as a first assignment's does (25_capture.sql).
-- Until 2026-12-06 the failure was caught and the backfills left as they were: the
-- contact got its snapshot twice, or never.
create or replace function webhooks_private.tg_contact_renumberings__backfills()
returns trigger
language plpgsql
as $$
begin
  perform webhooks_private.backfills_renumbered(new.from_id, new.to_id);
  return null;
end;
$$;

drop trigger if exists _500_backfills on webhooks_private.contact_renumberings;
create trigger _500_backfills
  after insert on webhooks_private.contact_renumberings
  for each row execute function webhooks_private.tg_contact_renumberings__backfills();

-- A backfill that no longer runs (done, cancelled, failed) needs no notes of ids
-- changed across its walk, nor its count's part (backfill_counts).
create or replace function webhooks_private.tg_backfills__forget_renumbered()
returns trigger
language plpgsql
as $$
begin
  delete from webhooks_private.backfill_renumbered r where r.backfill_id = new.id;
  delete from webhooks_private.backfill_counts c where c.backfill_id = new.id;
  return null;
end;
$$;

drop trigger if exists _500_forget_renumbered on webhooks.backfills;
create trigger _500_forget_renumbered
  after update of state on webhooks.backfills
  for each row when (old.state = 'running' and new.state <> 'running')
  execute function webhooks_private.tg_backfills__forget_renumbered();

-- private (relay, tools): one batch of each running backfill that has room (or of
-- p_only alone), at most p_limit backfills and until backfill_batch_time() has
-- passed; a backfill another step is working on is skipped. Those that can do
-- nothing now (paused, or waiting for their snapshots to be sent) are passed over
-- and take none of the p_limit places: in id order, a few
-- companies' paused backfills otherwise held every later one back for as long as
-- they stayed paused. Returns the snapshots written (0: nothing to do now), and the
-- webhooks whose backfill waits for room (still running, and a batch written now, or
-- none for want of room: backfill_batch_of's waits_for_room): the relay steps
-- again as soon as it has settled deliveries of one of them, not on its timer alone
-- (relay/backfiller.ts). Until 2026-12-07 a receiver that answered at once got four
-- times its max_in_flight of snapshots a timer's tick, whatever it could take. more:
-- the step served p_limit backfills, or ended on its time, and running ones are left
-- unvisited, which the relay steps next at once.
select webhooks_private.drop_function_unless(
  'webhooks_relay.backfill_step_waiting(integer, bigint)',
  'p_limit integer DEFAULT 16, p_only bigint DEFAULT NULL::bigint, OUT written integer, OUT waiting bigint[], OUT more boolean',
  'record');
create or replace function webhooks_relay.backfill_step_waiting(p_limit integer default 16, p_only bigint default null,
                                                                 out written integer, out waiting bigint[],
                                                                 out more boolean)
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_backfill webhooks.backfills;
  v_batch integer;
  v_waits boolean;
  v_message text;
  v_state text;
  v_served integer := 0;
  v_visited bigint[] := '{}';
  v_step_started constant timestamptz := clock_timestamp();
  v_batch_time constant interval := webhooks_private.backfill_batch_time();
  v_hidden text;
begin
  written := 0;
  waiting := '{}';
  more := false;
  -- (each backfill's webhook first, FOR KEY SHARE, then its row; one whose webhook is
  -- being deleted is passed by, and goes with it: a step and a delete deadlocked until
  -- 2026-12-07. Why: docs/outbox.md, the delete's lock order.)
  -- (the least recently served first, those never served before all, then by id
  -- (served_at, migration 0105): in id order a company whose receivers took each
  -- batch at once had its p_limit oldest backfills served at every step, and a
  -- backfill started after them waited until they were done, for as long as they had
  -- contacts to walk; until 2026-12-07, test/sql/backfill-step.test.ts. By the
  -- snapshots written, a backfill whose batches write none, its conditions turning
  -- every contact away, stayed first. A sort of the running backfills, a few a company.)
  -- (one never served as if served when it was started: before those served since,
  -- behind those served before. Never-served ones all went first, whenever started:
  -- a company that cancelled and started a backfill before every step, which its
  -- hourly changes allow hundreds of times, was served at every step of one place,
  -- another company's backfill behind it; until 2026-12-07, backfill-step.test.ts.)
  for v_backfill in
    select b.* from webhooks.webhooks w
    join webhooks.backfills b on b.webhook_id = w.id
    where b.state = 'running' and (p_only is null or b.id = p_only)
    order by coalesce(b.served_at, b.created_at), b.id
    for key share of w skip locked
    for update of b skip locked
  loop
    v_visited := v_visited || v_backfill.id;
    begin
      select o.written_now, o.waits_for_room into v_batch, v_waits
      from webhooks_private.backfill_batch_of(v_backfill) o;
      -- The CRM's row-level security turned on since the last migrate (which refuses
      -- it), hiding rows from the engine's owner, as which the walk reads: the walk
      -- read the rows left to it, and the backfill said it was done, the others never
      -- sent (until 2026-12-07; test/sql/crm-row-security.test.ts). Its batch is
      -- undone and it fails, naming the table. Asked after the batch: the walk's reads
      -- hold the tables it read until the step commits, and a change of their
      -- row-level security or policies waits for it. A look at six rows of the
      -- catalog a backfill served: about 55 µs for an owner that is no superuser
      -- (2,000 looks, the shared two-core machine), under 1 ms a step of 16.
      v_hidden := (select string_agg(t, ', ')
                   from webhooks_private.crm_tables_hiding_rows_from(current_user::regrole) t);
      if v_hidden is not null then
        raise exception using errcode = 'insufficient_privilege',
          message = format('row-level security on %s applies to %s, the engine''s owner, and may hide rows from the walk; give it a policy that reads every row (using (true)), or BYPASSRLS, then backfill again',
                           v_hidden, current_user);
      end if;
    exception when lock_not_available or deadlock_detected or serialization_failure then
      -- a lock another transaction holds longer than the database's lock_timeout (a
      -- DBA's lock on the contacts, say), or a conflict Postgres settled by ending this
      -- side (two transactions waiting for each other; a snapshot a concurrent write
      -- made stale): its batch is undone and the next step writes it. Until 2026-12-07
      -- each failed the backfill for good, SQLSTATE 55P03, 40P01 or 40001
      -- (test/relay/dba-timeouts.test.ts, test/sql/backfill-step.test.ts).
      continue;
    when others then
      -- its batch is undone; the backfill stops, and the step goes on to the others
      -- (one transaction serves every company's backfills: an error here failed them
      -- all, step after step). The company reads the SQLSTATE; the operator's log has
      -- the message, which may name what tenants do not see.
      get stacked diagnostics v_message = message_text, v_state = returned_sqlstate;
      raise warning 'backfill % of webhook % failed after contact id %: % (SQLSTATE %)',
        v_backfill.id, v_backfill.webhook_id, v_backfill.position, v_message, v_state;
      update webhooks.backfills b
      set state = 'failed',
          finished_at = now(),
          error = case when v_hidden is not null
                       then format('the CRM''s row-level security on %s hides rows from the engine; ask your operator (SQLSTATE %s), then backfill again',
                                   v_hidden, v_state)
                       else format('the contacts after id %s could not be written (SQLSTATE %s); try again, or ask your operator',
                                   v_backfill.position, v_state) end
      where b.id = v_backfill.id;
      v_hidden := null;
      continue;
    end;
    if v_waits then
      waiting := waiting || v_backfill.webhook_id;
    end if;
    continue when v_batch is null;
    written := written + v_batch;
    v_served := v_served + 1;
    -- (an ordered webhook's batch holds its contacts locked until the step commits: it
    -- is the step's last, and the backfills after it are the next step's, at once.
    -- Until 2026-12-07 its locks were held through every other batch the step wrote
    -- after it: test/sql/backfill-locks.test.ts.)
    if (select w.ordered from webhooks.webhooks w where w.id = v_backfill.webhook_id) then
      more := exists (select 1 from webhooks.backfills b
                      where b.state = 'running' and b.id <> all (v_visited) and p_only is null);
      exit;
    end if;
    -- (a step is one transaction: an ordered webhook's batch holds its contacts, a
    -- contact of another company shared with it among them, until the step commits.
    -- Each batch ends at backfill_batch_time, and so does the step, the backfills left
    -- the next one's, at once; those served go after them, served last. Until
    -- 2026-12-07 eight such batches of contacts of 800 kB made a step of 5.5 s, its
    -- first batch's locks held through all of it: test/sql/backfill-step.test.ts.)
    if v_served >= greatest(p_limit, 1)
       or clock_timestamp() - v_step_started > v_batch_time then
      -- (backfills left unvisited: the relay steps again at once, not on its timer,
      -- whose receivers may be idle; until 2026-12-07 they waited for it)
      more := exists (select 1 from webhooks.backfills b
                      where b.state = 'running' and b.id <> all (v_visited) and p_only is null);
      exit;
    end if;
  end loop;
end;
$$;

-- private (a DBA, tests): backfill_step_waiting's snapshots written alone
drop function if exists webhooks_relay.backfill_step(integer);
create or replace function webhooks_relay.backfill_step(p_limit integer default 16, p_only bigint default null)
returns integer
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
  select s.written from webhooks_relay.backfill_step_waiting(p_limit, p_only) s;
$$;

-- public (maintenance, tools/maintain.ts, before the roll-up; as the owner): the
-- snapshots held for a disabled webhook (30_delivery.sql, snapshot_held()) whose day
-- is past the retention fail, not sent, and their day can go. Held, they are pending,
-- and a day with a delivery on its way is kept (29_retention.sql): a webhook left
-- disabled kept its snapshots' days, every company's history of them, for as long as
-- it stayed so (until 2026-12-06; test/sql/retention.test.ts). Through the view, as a
-- DBA's repair: each leaves the queue with its result, counted in its day. Returns how
-- many.
create or replace function webhooks.fail_held_snapshots_past_retention()
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_failed integer;
begin
  -- (no day of history past the retention: no queue row to read, 29_retention.sql)
  if not webhooks_private.history_before_kept() then
    return 0;
  end if;
  update webhooks.deliveries d
  set state = 'failed',
      completed_at = now(),
      last_error = 'not sent: its webhook stayed disabled until its day was past the retention (webhooks.retention)'
  -- (the queue rows of those days alone, by their ids: queued_made, 29_retention.sql)
  from (select q.delivery_id, q.created_at
        from webhooks_private.queued_made('-infinity', webhooks_private.utc_day_start(webhooks_private.first_kept_day())) q
        where q.next_attempt_at = webhooks_private.snapshot_held()
          and q.locked_by is null) h
  where d.id = h.delivery_id and d.created_at = h.created_at and d.state = 'pending';
  get diagnostics v_failed = row_count;
  return v_failed;
end;
$$;
