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
--
-- Paced so that live deliveries keep their latency:
-- * a step writes one batch (webhooks.backfill_batch contacts) of a backfill, and only
--   while fewer than webhooks.backfill_outstanding of its snapshots are still
--   unfinished (pending or in flight): the outbox never holds more than that many of
--   them, so live deliveries never queue behind a whole company;
-- * a snapshot is first due webhooks.backfill_defer after it is written
--   (webhooks_private.first_attempt_delay, 25_capture.sql): the claim takes the
--   earliest due first, so live deliveries written meanwhile go before it;
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

-- private: the contacts of a backfill's walk after p_after, in id order, at most
-- p_limit: those of the company, and those assigned to one of its users. Each side
-- reads one index range.
create or replace function webhooks_private.backfill_contacts(p_company_id bigint, p_after bigint, p_limit integer)
returns setof crm.contacts
language sql
stable
as $$
  select c.*
  from crm.contacts c
  where c.id in (
    select ids.id
    from (
      (select o.id from crm.contacts o
       where o.company_id = p_company_id and o.id > p_after
       order by o.id limit p_limit)
      union
      (select a.contact_id from crm.users u
       join crm.contact_assignments a on a.user_id = u.id
       where u.company_id = p_company_id and a.contact_id > p_after
       group by a.contact_id
       order by a.contact_id limit p_limit)
    ) ids
    order by ids.id
    limit p_limit)
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

-- private: the contacts a backfill of the company examines, as of now: those of the
-- company and those assigned to one of its users (backfill_contacts' ids), counted
-- from the indexes alone
create or replace function webhooks_private.backfill_examined(p_company_id bigint)
returns bigint
language sql
stable
as $$
  select count(*)
  from ((select o.id from crm.contacts o where o.company_id = p_company_id)
        union
        (select a.contact_id from crm.users u
         join crm.contact_assignments a on a.user_id = u.id
         where u.company_id = p_company_id)) ids;
$$;

-- private: how many contacts a backfill of this webhook will send, as of now, for its
-- first step to write as its total. A webhook with conditions sends those that pass
-- them, which only evaluating them on every contact can tell: the step that serves
-- every company's backfills then took as long as the company's contacts (58 s for
-- 50,000 contacts and 99 conditions), and every other company's backfill waited. So
-- they are evaluated only for a company of no more contacts than a batch; past that,
-- the total is the contacts to examine (at least what will be sent), and it becomes
-- what was sent when the backfill is done (backfill_batch_of).
create or replace function webhooks_private.backfill_total(p_webhook webhooks.webhooks)
returns bigint
language plpgsql
stable
as $$
declare
  v_batch constant integer := webhooks_private.backfill_batch();
begin
  if p_webhook.conditions is not null
     and (select count(*) from webhooks_private.backfill_contacts(p_webhook.company_id, 0, v_batch + 1)) <= v_batch then
    return (select count(*)
            from webhooks_private.backfill_contacts(p_webhook.company_id, 0, v_batch) c
            where webhooks_private.backfill_wants(p_webhook.conditions, to_jsonb(c)));
  end if;
  return webhooks_private.backfill_examined(p_webhook.company_id);
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
-- every company's).
create or replace function webhooks.latest_backfills()
returns setof webhooks.backfills
language sql
stable
as $$
  select b.*
  from webhooks.webhooks w
  cross join lateral webhooks_private.snapshot_backfill(w.id, 'infinity') b
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

-- private: one batch of one backfill, its row locked by the caller. Returns the
-- snapshots written; null when it can do nothing now (paused, or no room).
create or replace function webhooks_private.backfill_batch_of(p_backfill webhooks.backfills)
returns integer
language plpgsql
volatile
as $$
declare
  v_webhook webhooks.webhooks;
  v_batch constant integer := webhooks_private.backfill_batch();
  v_room integer;
  v_timestamp constant text := to_char(now() at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
  v_contact crm.contacts;
  v_json jsonb;
  v_seen integer := 0;
  v_written integer := 0;
  v_position bigint := p_backfill.position;
  v_omit text[];
  v_locked bigint[];
  v_next integer := 1;
  v_held boolean := false;
begin
  select * into v_webhook from webhooks.webhooks w where w.id = p_backfill.webhook_id;
  if not v_webhook.enabled then
    return null;   -- paused while disabled
  end if;
  v_omit := webhooks_private.payload_omit(v_webhook.fields);   -- 10_config.sql

  -- yield: wait while enough of its snapshots are still on their way
  v_room := webhooks_private.backfill_outstanding() - webhooks.backfills_unfinished(p_backfill);
  if v_room < least(v_batch, webhooks_private.backfill_outstanding()) then
    return null;
  end if;

  if p_backfill.total is null then
    update webhooks.backfills b set total = webhooks_private.backfill_total(v_webhook)
    where b.id = p_backfill.id;
  end if;

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
    v_json := to_jsonb(v_contact);
    continue when not webhooks_private.backfill_wants(v_webhook.conditions, v_json);
    -- the payload contact.created carries (webhooks_private.capture, 25_capture.sql),
    -- with source 'backfill'
    perform webhooks_private.enqueue(v_webhook.id, v_webhook.company_id, 'contact.snapshot', v_contact.id,
      jsonb_build_object(
        'type', 'contact.snapshot',
        'timestamp', v_timestamp,
        'data', jsonb_build_object('contact', v_json - v_omit, 'source', 'backfill')),
      v_webhook.coalesce_window);
    v_written := v_written + 1;
  end loop;

  update webhooks.backfills b
  set position = v_position,
      queued = b.queued + v_written,
      -- the walk is over when a batch comes back short
      state = case when v_seen < v_batch and not v_held then 'done' else 'running' end,
      total = case when v_seen < v_batch and not v_held then b.queued + v_written else b.total end,
      finished_at = case when v_seen < v_batch and not v_held then now() end
  where b.id = p_backfill.id;
  -- held at its first contact: it can do nothing now, and takes no step's place
  if v_held and v_seen = 0 then
    return null;
  end if;
  return v_written;
end;
$$;

-- private (relay, tools): one batch of each running backfill that has room (or of
-- p_only alone), at most p_limit backfills; a backfill another step is working on is
-- skipped. Those that can do nothing now (paused, or waiting for their snapshots to
-- be sent) are passed over and take none of the p_limit places: in id order, a few
-- companies' paused backfills otherwise held every later one back for as long as
-- they stayed paused. Returns the snapshots written (0: nothing to do now).
drop function if exists webhooks_relay.backfill_step(integer);
create or replace function webhooks_relay.backfill_step(p_limit integer default 16, p_only bigint default null)
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_backfill webhooks.backfills;
  v_batch integer;
  v_message text;
  v_state text;
  v_served integer := 0;
  v_written integer := 0;
begin
  for v_backfill in
    select * from webhooks.backfills b
    where b.state = 'running' and (p_only is null or b.id = p_only)
    order by b.id
    for update skip locked
  loop
    begin
      v_batch := webhooks_private.backfill_batch_of(v_backfill);
    exception when others then
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
          error = format('the contacts after id %s could not be written (SQLSTATE %s); try again, or ask your operator',
                         v_backfill.position, v_state)
      where b.id = v_backfill.id;
      continue;
    end;
    continue when v_batch is null;
    v_written := v_written + v_batch;
    v_served := v_served + 1;
    exit when v_served >= greatest(p_limit, 1);
  end loop;
  return v_written;
end;
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
  update webhooks.deliveries d
  set state = 'failed',
      completed_at = now(),
      last_error = 'not sent: its webhook stayed disabled until its day was past the retention (webhooks.retention)'
  from (select q.delivery_id, q.created_at from webhooks.delivery_queue q
        where q.next_attempt_at = webhooks_private.snapshot_held()
          and q.locked_by is null
          and q.created_at < webhooks_private.utc_day_start(webhooks_private.first_kept_day())) h
  where d.id = h.delivery_id and d.created_at = h.created_at and d.state = 'pending';
  get diagnostics v_failed = row_count;
  return v_failed;
end;
$$;
