-- bpd-webhooks engine, part 2b: the outbox's storage (tables in migrations/0016_outbox.sql;
-- docs/outbox.md for the design and its measurements).
--
--   webhooks.delivery_history   one row per message with its payload, partitioned by
--                               created_at (UTC days); written once, by capture
--   webhooks.delivery_queue     one small row per delivery on its way: all that claim,
--                               settle and rescue update
--   webhooks.delivery_results   one small row per delivery that failed, written once
--                               (a success writes none: its last attempt says it all)
--   webhooks.delivery_attempts  one row per attempt
-- results and attempts are partitioned like history, by the delivery's created_at.
--
-- Public: the view webhooks.deliveries, the outbox as DBAs, the API and the report
-- have always read it (state pending / in_flight / succeeded / failed, attempts,
-- next_attempt_at, the lease), and writable as before; webhooks.create_partitions().

-- private (settle in 30_delivery.sql, lanes in 28_lanes.sql): whether a status answered to a delivery's POST says the
-- receiver took it: a 2xx, or a 302 or 303, which point to the answer elsewhere (a
-- Google Apps Script web app runs its doPost, then answers 302 to where its output is
-- fetched). The Location is never followed. Until 2026-12-07 a 302 or 303 was a
-- failure, retried up to the webhook's attempts: a spreadsheet fed by a script got the
-- same contact's row ten times (test/relay/delivery.test.ts). 301, 307 and 308 say
-- the endpoint is elsewhere and the POST was not taken: failures. relay/deliver.ts
-- (succeeded) decides the same. Inlined where it is used: SQL, immutable, no SET.
create or replace function webhooks_private.delivered_status(p_status_code integer)
returns boolean
language sql
immutable
as $$
  select coalesce(p_status_code between 200 and 299 or p_status_code in (302, 303), false);
$$;

------------------------------------------------------------------------------------
-- The view

drop function if exists webhooks_private.last_attempt(bigint, timestamptz);

-- private: the webhooks deleted whose deliveries are still kept, which the views
-- webhooks.deliveries and webhooks.daily_counts and the companies' reads of attempts
-- leave out (an empty array nearly always; called once per query, as an InitPlan).
-- Owner's rights: the caller may not read webhooks_private's tables. In an API
-- request, the caller's company's alone: the API's roles may call it, and another
-- company's ids are none of theirs (test/api/isolation-catalog.test.ts); outside one
-- (the relay, maintenance), every company's.
create or replace function webhooks_private.deleted_webhooks()
returns bigint[]
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select coalesce(array_agg(p.webhook_id), '{}') from webhooks_private.webhooks_to_purge p
  where webhooks.current_company_id() is null or p.company_id = webhooks.current_company_id();
$$;

-- private: is this pending delivery of an ordered webhook held back (28_lanes.sql: by
-- another of its contact in flight, or pending with a smaller id)? The claim asks it,
-- and webhooks.deliveries.held_back below. Two short ranges of the queue (it holds
-- exactly the deliveries pending or in flight):
-- an older pending one of the contact (delivery_queue_contact_idx), one of the contact
-- in flight (delivery_queue_leases_idx, migration 0018).
create or replace function webhooks_private.held_back(p_webhook_id bigint, p_contact_id bigint, p_delivery_id bigint)
returns boolean
language plpgsql
stable
as $$
begin
  -- Each asked in the order of the index that answers it (and not with "exists",
  -- which drops the order): the claim prices sorts out, so the order names the index.
  -- With the statistics of a queue analysed before a burst, the planner took either
  -- index for as cheap as the other, and walked the webhook's whole range of due rows
  -- for each delivery asked about: 4,904 entries and 0.44 ms, 113 ms a claim of an
  -- ordered webhook with 5,000 deliveries waiting (test/fleet/claim-cost.test.ts).
  -- A test send (contact 0, the sample contact: webhooks.send_test_webhook, 47_audit.sql)
  -- is no contact's change: never held back. Until 2026-12-05 test sends were ordered
  -- as a contact's deliveries, and an admin who fixed a receiver that had failed a
  -- first test saw the next one wait for that one's retry, minutes or hours away
  -- (test/sql/ordered-put-off.test.ts).
  if p_contact_id = 0 then
    return false;
  end if;
  return coalesce((select true from webhooks.delivery_queue e
                   where e.webhook_id = p_webhook_id and e.contact_id = p_contact_id
                     and e.locked_by is null and e.delivery_id < p_delivery_id
                   order by e.webhook_id, e.contact_id, e.delivery_id
                   limit 1), false)
      or coalesce((select true from webhooks.delivery_queue e
                   where e.webhook_id = p_webhook_id and e.contact_id = p_contact_id
                     and e.locked_by is not null
                   order by e.webhook_id, e.contact_id, e.locked_until
                   limit 1), false);
end;
$$;

-- private: an ordered webhook's delivery of each (webhook, contact) pair ended or left
-- the queue: the next delivery of that contact, if a claim put it off while that one
-- was in its way (28_lanes.sql), is due at the time it had (held_due). The settle
-- asks it for the deliveries it ends (30_delivery.sql), let_next_of_contact_go for one
-- that leaves the queue otherwise. The next one being changed (a writer merging into
-- it) is passed over, due when the claim said. Not FOR UPDATE: that would pass over
-- the one a claim has just found in the way of its later ones, FOR KEY SHARE. (Locked
-- by that claim, a delivery that ends waits for it to commit, so the next is found
-- put off.) Returns how many were let go.
create or replace function webhooks_private.let_next_go(p_webhook_ids bigint[], p_contact_ids bigint[])
returns integer
language plpgsql
volatile
as $$
declare
  v_let_go integer;
begin
  update webhooks.delivery_queue q
  set next_attempt_at = least(q.next_attempt_at, q.held_due),
      held_due = null
  from unnest(p_webhook_ids, p_contact_ids) as e(webhook_id, contact_id)
  cross join lateral (select n.ctid from webhooks.delivery_queue n
                      where n.webhook_id = e.webhook_id and n.contact_id = e.contact_id and n.locked_by is null
                      order by n.delivery_id
                      limit 1
                      for no key update of n skip locked) n
  where q.ctid = n.ctid and q.held_due is not null;
  get diagnostics v_let_go = row_count;
  return v_let_go;
end;
$$;

-- private: a delivery of p_contact_id left the queue of webhook p_webhook_id otherwise
-- than by a settle (a cancelled backfill's snapshot failed unsent, a DBA's repair
-- through webhooks.deliveries): the next of its contact goes (let_next_go), and a
-- relay asleep is woken. Until 2026-12-05 these waited for the time the claim had
-- put them off to: the retry of a snapshot that was never to come, up to 12 hours
-- late in the schedule (test/sql/ordered-put-off.test.ts).
create or replace function webhooks_private.let_next_of_contact_go(p_webhook_id bigint, p_contact_id bigint)
returns void
language plpgsql
volatile
as $$
declare
  v_woken boolean;
begin
  if webhooks_private.let_next_go(array[p_webhook_id], array[p_contact_id]) > 0 then
    v_woken := webhooks_private.wake_relay();   -- 20_wakeup.sql
  end if;
end;
$$;

-- A delivery is on its way while it has a queue row; it failed if it has a result
-- row; otherwise it succeeded, and its last attempt tells how (the settle writes no
-- row for a success: a quarter of a settle's buffers, docs/outbox.md). A success
-- written through the view (a DBA's repair, a test) keeps a result row of its own.
-- Queue and result rows are joined by their webhook as well as by the delivery (the
-- same always, as capture writes them together): a query of one webhook (its
-- history page) then reads that webhook's rows of each through its index, where by
-- the delivery alone its plan hashed every result row the company had, in every day
-- kept (test/sql/history-reads.test.ts).
create or replace view webhooks.deliveries with (security_invoker = true) as
select h.id,
       h.message_id,
       h.webhook_id,
       h.company_id,
       h.action,
       h.contact_id,
       h.payload,
       case when q.locked_by is not null then 'in_flight'
            when q.delivery_id is not null then 'pending'
            else coalesce(r.state, 'succeeded') end as state,
       coalesce(q.attempts, r.attempts, s.attempt, 0) as attempts,
       coalesce(q.next_attempt_at, r.completed_at, s.completed_at, h.created_at) as next_attempt_at,
       q.locked_by,
       q.locked_until,
       case when q.delivery_id is not null then q.last_attempt_at
            when r.delivery_id is not null then r.last_attempt_at
            else s.attempted_at end as last_attempt_at,
       case when q.delivery_id is not null then q.last_status_code
            when r.delivery_id is not null then r.last_status_code
            else s.status_code end as last_status_code,
       case when q.delivery_id is not null then q.last_error
            when r.delivery_id is not null then r.last_error end as last_error,
       case when q.delivery_id is null then coalesce(r.completed_at, s.completed_at, h.created_at) end as completed_at,
       h.created_at,
       -- pending behind an earlier delivery of its contact to an ordered webhook: put off
       -- by a claim (held_due), or not yet seen by one (the claim's own question,
       -- webhooks_private.held_back in 28_lanes.sql, asked of a pending row of an
       -- ordered webhook only)
       case when q.delivery_id is null or q.locked_by is not null then false
            when q.held_due is not null then true
            when (select w.ordered from webhooks.webhooks w where w.id = q.webhook_id)
              then webhooks_private.held_back(q.webhook_id, q.contact_id, q.delivery_id)
            else false end as held_back
from webhooks.delivery_history h
left join webhooks.delivery_queue q on q.delivery_id = h.id and q.webhook_id = h.webhook_id
left join webhooks.delivery_results r on r.delivery_id = h.id and r.created_at = h.created_at and r.webhook_id = h.webhook_id
-- a success settled by a relay: its last attempt (one probe of one partition's index,
-- made only for a row with neither a queue row nor a result). The aggregate makes it
-- one row whatever happens, which lets the planner drop the join from a query that
-- reads none of its columns (a count of deliveries reads history alone).
left join lateral (
  select max(l.attempt) as attempt, max(l.attempted_at) as attempted_at, max(l.status_code) as status_code,
         max(l.attempted_at + l.duration_ms * interval '1 millisecond') as completed_at
  from (select a.attempt, a.attempted_at, a.status_code, a.duration_ms
        from webhooks.delivery_attempts a
        where q.delivery_id is null and r.delivery_id is null
          and a.delivery_id = h.id and a.delivery_created_at = h.created_at
        order by a.attempt desc, a.id desc
        limit 1) l
) s on true
-- a deleted webhook's deliveries, until maintenance has removed them (below)
where h.webhook_id <> all ((select webhooks_private.deleted_webhooks())::bigint[]);

-- private: the id a contact has now that had p_contact_id at p_since: each change of
-- its id made since (webhooks_private.contact_renumberings, noted by the change:
-- contact_id_changed in 25_capture.sql) followed in turn, one index probe each (none
-- for a contact whose id never changed). By time: an id given to another contact
-- later is that contact's from then on. Test sends (contact 0) are no contact's.
create or replace function webhooks_private.contact_id_now(p_contact_id bigint, p_since timestamptz)
returns bigint
language plpgsql
stable
as $$
declare
  v_id bigint := p_contact_id;
  v_at timestamptz := p_since;
  v_seq bigint := 0;
  v_next record;
begin
  if p_contact_id is null or p_contact_id = 0 then
    return p_contact_id;
  end if;
  -- (each step strictly later than the last, by time then by the change's id: ends)
  loop
    select r.to_id, r.renumbered_at, r.id into v_next
    from webhooks_private.contact_renumberings r
    where r.from_id = v_id and (r.renumbered_at, r.id) > (v_at, v_seq)
    order by r.from_id, r.renumbered_at, r.id
    limit 1;
    exit when not found;
    v_id := v_next.to_id;
    v_at := v_next.renumbered_at;
    v_seq := v_next.id;
  end loop;
  return v_id;
end;
$$;

-- private: was this delivery's payload left out for its size (payload_summary,
-- 25_capture.sql)? Such a delivery is never sent: the view's writes ask it too
create or replace function webhooks_private.payload_omitted(p_payload jsonb)
returns boolean
language sql
immutable
as $$
  select p_payload #>> '{data,omitted,reason}' is not distinct from 'payload_too_large';
$$;

-- private: refuses to send such a delivery again (replay_delivery, 30_delivery.sql; a
-- DBA's write through the view, below): the summary would go as the message, signed
create or replace function webhooks_private.refuse_omitted_payload(p_id bigint, p_payload jsonb, p_column text)
returns void
language plpgsql
as $$
begin
  raise exception using
    errcode = 'object_not_in_prerequisite_state',
    message = format('delivery %s was never sent: its payload was over %s, and only a summary of it was kept',
                     p_id, coalesce(p_payload #>> '{data,omitted,setting}', 'webhooks.max_payload_bytes')),
    constraint = 'delivery_payload_too_large',
    column = p_column;
end;
$$;

-- Writes to the view (DBAs' repairs, replays, tests) go to history, queue and
-- results: a row pending or in flight has a queue row and no result, a finished one
-- a result and no queue row (a success too: what it says is then its own).
create or replace function webhooks_private.tg_deliveries__write()
returns trigger
language plpgsql
as $$
declare
  v_queued boolean;
  v_woken boolean;
  v_leased_by text;
  -- (the contact its queue row has: the new id of a contact whose id changed,
  -- move_contact_deliveries below, where history names the old, which let nothing go)
  v_queued_contact bigint;
  -- (the contact of the lane a delivery that goes on its way here goes in)
  v_lane bigint;
begin
  if tg_op = 'DELETE' then
    delete from webhooks.delivery_queue where delivery_id = old.id returning contact_id into v_queued_contact;
    if found then
      perform webhooks_private.let_next_of_contact_go(old.webhook_id, v_queued_contact);
    end if;
    delete from webhooks.delivery_results where delivery_id = old.id and created_at = old.created_at;
    delete from webhooks.delivery_attempts where delivery_id = old.id and delivery_created_at = old.created_at;
    delete from webhooks.delivery_history where id = old.id and created_at = old.created_at;
    return old;
  end if;
  -- (a delivery at no time has no day: its partition's name was an unnamed 22004,
  -- "null values cannot be formatted as an SQL identifier", until 2026-12-07)
  if tg_op = 'INSERT' or new.created_at is distinct from old.created_at then
    if not isfinite(new.created_at) then
      raise exception using
        errcode = 'datetime_field_overflow',
        message = format('delivery %s: created_at must be a time, not %s', new.id, new.created_at),
        constraint = 'delivery_created_at_infinite',
        column = 'created_at';
    end if;
  end if;
  if tg_op = 'INSERT' then
    new.id := coalesce(new.id, nextval(pg_get_serial_sequence('webhooks.delivery_history', 'id')));
    -- (as the column's default in 0016_outbox)
    new.message_id := coalesce(new.message_id, 'msg_' || encode(uuid_send(gen_random_uuid()), 'hex'));
    new.state := coalesce(new.state, 'pending');
    new.attempts := coalesce(new.attempts, 0);
    new.created_at := coalesce(new.created_at, now());
    new.next_attempt_at := coalesce(new.next_attempt_at, now());
    perform webhooks_private.ensure_day(webhooks_private.utc_day(new.created_at));
    insert into webhooks.delivery_history
      (id, message_id, webhook_id, company_id, action, contact_id, payload, created_at)
    overriding system value
    values (new.id, new.message_id, new.webhook_id, new.company_id, new.action, new.contact_id, new.payload,
            new.created_at);
  else
    if new.id is distinct from old.id then
      raise exception using errcode = 'feature_not_supported', message = 'a delivery''s id cannot change';
    end if;
    -- A delivery this statement read as pending (a backfill's cancel, a replay, a
    -- DBA's repair) that a relay's claim has leased since, or whose relay has settled
    -- it since (each committed after the statement began), is the relay's: left as
    -- it is, the row skipped. Finished anyway, it left the queue while the relay sent
    -- it (recorded as not sent, its settle lost); written pending, its lease was
    -- wiped and another relay sent it too. Either way an ordered webhook's next
    -- delivery of its contact went beside it. Its queue row is read locked (a claim
    -- leasing it now is waited for, and the row read as that claim left it).
    if old.state = 'pending' then
      select q.locked_by into v_leased_by from webhooks.delivery_queue q
      where q.delivery_id = old.id and q.webhook_id = old.webhook_id
      for update;
      if not found or v_leased_by is not null then
        return null;
      end if;
    end if;
    if new.created_at is distinct from old.created_at then
      begin
        perform webhooks_private.ensure_day(webhooks_private.utc_day(new.created_at));
      exception when object_in_use then
        -- an UPDATE of the view reads delivery_attempts (a success's last attempt), and
        -- Postgres attaches no partition to a table a running statement reads
        raise exception using
          errcode = 'object_in_use',
          message = format('delivery %s cannot move to %s: that day has no partitions yet, and they cannot be made by a statement that reads the outbox',
                           old.id, webhooks_private.utc_day(new.created_at)),
          hint = format('make the day first: select webhooks_private.ensure_day(%L)', webhooks_private.utc_day(new.created_at));
      end;
    end if;
    -- (history only when the message changed: a replay changes none of it, and an
    -- update would write the payload's row and its indexes again for nothing)
    if (new.message_id, new.webhook_id, new.company_id, new.action, new.contact_id, new.payload, new.created_at)
       is distinct from (old.message_id, old.webhook_id, old.company_id, old.action, old.contact_id, old.payload, old.created_at) then
      update webhooks.delivery_history h
      set message_id = new.message_id, webhook_id = new.webhook_id, company_id = new.company_id,
          action = new.action, contact_id = new.contact_id, payload = new.payload, created_at = new.created_at
      where h.id = old.id and h.created_at = old.created_at;
    end if;
    if new.created_at is distinct from old.created_at then
      update webhooks.delivery_attempts a set delivery_created_at = new.created_at
      where a.delivery_id = old.id and a.delivery_created_at = old.created_at;
    end if;
    delete from webhooks.delivery_results where delivery_id = old.id and created_at = old.created_at;
    -- (a finished delivery back to pending is a replay: the audit trail's trigger on
    -- this view records it, _900_audit in 47_audit.sql)
  end if;
  -- A delivery is of a webhook of its company. History has no foreign key to the
  -- webhooks (a webhook's delete leaves its deliveries to be purged in batches, above),
  -- so a write that names the pair (an insert, a move) is checked here: a delivery of
  -- no webhook waited in the queue for ever (no lane claims it) and held its day from
  -- the retention, and one of another company's webhook was sent by that webhook,
  -- counted in its company's totals and shown to its company's readers (until
  -- 2026-12-07). A read of the webhook's key, no lock, and only for a statement of
  -- its own (trigger depth 1): capture writes its payloads too large through this view
  -- from the CRM's triggers, with the pair its subscriptions gave, and a webhook whose
  -- delete committed since must not fail the contact's write (the delete's recheck
  -- finds such a delivery, recheck_deleted_webhooks below).
  if pg_catalog.pg_trigger_depth() = 1
     and (tg_op = 'INSERT' or (new.webhook_id, new.company_id) is distinct from (old.webhook_id, old.company_id))
     and not exists (select from webhooks.webhooks w where w.id = new.webhook_id and w.company_id = new.company_id) then
    raise exception using
      errcode = 'foreign_key_violation',
      message = format('delivery %s: webhook %s is not a webhook of company %s', new.id, new.webhook_id, new.company_id),
      constraint = 'delivery_webhook_of_company',
      column = 'webhook_id';
  end if;
  -- (a state that is none of the four, a DBA's 'Failed' or 'done', was refused as a
  -- completed_at at fault, or as a null completed_at of delivery_results, until
  -- 2026-12-07)
  if new.state is null or new.state not in ('pending', 'in_flight', 'succeeded', 'failed') then
    raise exception using
      errcode = 'check_violation',
      message = format('a delivery''s state is one of pending, in_flight, succeeded, failed, got %s',
                       coalesce(to_jsonb(left(new.state, 40))::text, 'null')),
      constraint = 'deliveries_state_unknown',
      column = 'state';
  end if;
  v_queued := new.state in ('pending', 'in_flight');
  -- Only a summary of a payload over the limit was kept (webhooks_private.enqueue):
  -- queued, the summary went to the receiver as the message, signed. A DBA's replay
  -- by hand is refused as replay_delivery refuses it (until 2026-12-07 it was sent).
  if v_queued and (tg_op = 'INSERT' or old.state not in ('pending', 'in_flight'))
     and webhooks_private.payload_omitted(new.payload) then
    perform webhooks_private.refuse_omitted_payload(new.id, new.payload, 'state');
  end if;
  if (new.state = 'in_flight') <> (new.locked_by is not null and new.locked_until is not null)
     or (new.state <> 'in_flight' and (new.locked_by is not null or new.locked_until is not null)) then
    raise exception using
      errcode = 'check_violation',
      message = 'a delivery is leased (locked_by and locked_until) exactly while it is in flight',
      constraint = 'deliveries_lease_iff_in_flight';
  end if;
  if (new.state in ('succeeded', 'failed')) <> (new.completed_at is not null) then
    raise exception using
      errcode = 'check_violation',
      message = 'a delivery has completed_at exactly when it has finished (succeeded or failed)',
      constraint = 'deliveries_completed_iff_final';
  end if;
  -- a finished delivery of a day past the retention stays finished: maintenance may be
  -- dropping its day already (expired_days saw no queue row there, 29_retention.sql),
  -- and the delivery would go with it, its day's count too
  if v_queued and tg_op = 'UPDATE' and old.state in ('succeeded', 'failed')
     and webhooks_private.utc_day(new.created_at) < webhooks_private.first_kept_day() then
    raise exception using
      errcode = 'object_not_in_prerequisite_state',
      message = format('delivery %s is older than the retention (webhooks.retention), and its day is dropped soon: it cannot be sent again',
                       old.id),
      constraint = 'delivery_past_retention',
      column = 'id';
  end if;
  if v_queued then
    -- (payload_bytes: the claim's byte budget, 30_delivery.sql; a payload written
    -- here, by a replay or a DBA, is measured by its text. A queue row keeps its
    -- contact_id unless the write changes the delivery's: one whose contact's id
    -- changed has the new id there, and history the old (move_contact_deliveries);
    -- set back to the old by a repair of its due time, it went beside the new id's.
    -- One that goes on its way here (a replay, an insert) or changes its contact is in
    -- the lane of the id its contact has now, contact_id_now above: a replay of a
    -- message captured before the contact's id changed went beside the new id's
    -- deliveries, or behind those of another contact given the old id, until
    -- 2026-12-06.)
    if tg_op = 'INSERT' or old.state not in ('pending', 'in_flight') or new.contact_id is distinct from old.contact_id then
      v_lane := webhooks_private.contact_id_now(new.contact_id, new.created_at);
    end if;
    insert into webhooks.delivery_queue as q
      (delivery_id, created_at, webhook_id, company_id, action, contact_id, next_attempt_at, attempts, locked_by,
       locked_until, last_attempt_at, last_status_code, last_error, payload_bytes)
    values (new.id, new.created_at, new.webhook_id, new.company_id, new.action,
            coalesce(v_lane, new.contact_id), new.next_attempt_at,
            new.attempts, new.locked_by, new.locked_until, new.last_attempt_at, new.last_status_code, new.last_error,
            octet_length(new.payload::text))
    on conflict (delivery_id) do update
      set created_at = excluded.created_at, webhook_id = excluded.webhook_id, company_id = excluded.company_id,
          action = excluded.action,
          contact_id = case when new.contact_id is distinct from old.contact_id then excluded.contact_id
                            else q.contact_id end,
          next_attempt_at = excluded.next_attempt_at, attempts = excluded.attempts,
          locked_by = excluded.locked_by, locked_until = excluded.locked_until,
          last_attempt_at = excluded.last_attempt_at, last_status_code = excluded.last_status_code,
          last_error = excluded.last_error, payload_bytes = excluded.payload_bytes;
    -- pending (a replay, a test send, a DBA's repair): a relay asleep would otherwise
    -- find it only at its next poll that walks (20_wakeup.sql; re-entrant, so once a
    -- row is cheap). Due later too: a sleeping relay's polls skip their walk while no
    -- lane may send and no delivery was written since their round began, and a row
    -- whose id was taken before that round and committed after it is seen by neither
    -- (docs/relay.md, quiet polls); woken, or held off by capturing, the relay walks.
    if new.state = 'pending' then
      v_woken := webhooks_private.wake_relay();
    end if;
  else
    delete from webhooks.delivery_queue where delivery_id = new.id returning contact_id into v_queued_contact;
    -- (finished here while it was on its way: nothing it held back waits for it now)
    if found then
      perform webhooks_private.let_next_of_contact_go(old.webhook_id, v_queued_contact);
    end if;
    insert into webhooks.delivery_results
      (delivery_id, created_at, webhook_id, company_id, state, attempts, last_attempt_at, last_status_code,
       last_error, completed_at)
    values (new.id, new.created_at, new.webhook_id, new.company_id, new.state, new.attempts,
            new.last_attempt_at, new.last_status_code, new.last_error, new.completed_at);
  end if;
  return new;
end;
$$;

drop trigger if exists _500_write on webhooks.deliveries;
create trigger _500_write
  instead of insert or update or delete on webhooks.deliveries
  for each row execute function webhooks_private.tg_deliveries__write();

-- private: each webhook with deliveries waiting (queue rows not in flight) and the
-- earliest next attempt among them, by a loose index scan of
-- delivery_queue_webhook_due_idx (webhook_id, next_attempt_at): one index probe per
-- such webhook, whatever its backlog; those after p_after up to p_through only, in
-- webhook order (a caller's limit stops the walk). What the backlog figure walks
-- (58_operations.sql); the claim discovered by it until 2026-12-06 (28_lanes.sql now
-- walks them company by company). SQL, so that callers inline it.
-- (without its range until 2026-12-06)
drop function if exists webhooks_private.waiting_webhooks();
create or replace function webhooks_private.waiting_webhooks(
  p_after bigint default 0,
  p_through bigint default 9223372036854775807
)
returns table (webhook_id bigint, first_due timestamptz)
language sql
stable
as $$
  with recursive hooks(w, first_due) as (
    (select d.webhook_id, d.next_attempt_at from webhooks.delivery_queue d
     where d.locked_by is null and d.webhook_id > p_after and d.webhook_id <= p_through
     order by d.webhook_id, d.next_attempt_at
     limit 1)
    union all
    select n.webhook_id, n.next_attempt_at
    from hooks
    cross join lateral (select d.webhook_id, d.next_attempt_at from webhooks.delivery_queue d
                        where d.locked_by is null and d.webhook_id > hooks.w and d.webhook_id <= p_through
                        order by d.webhook_id, d.next_attempt_at
                        limit 1) n
  )
  select hooks.w, hooks.first_due from hooks;
$$;

-- (each company with deliveries waiting, its first webhook with any, by a loose scan
-- of delivery_queue_company_due_idx: the claim's pass over the companies until
-- 2026-12-06; its walk by company, 28_lanes.sql, replaced it)
drop function if exists webhooks_private.waiting_companies(bigint, bigint);

-- private: each webhook with deliveries in flight, by a loose index scan of the lease
-- index (delivery_queue_leases_idx: webhook_id first), one index probe per such
-- webhook, whatever it holds in flight. What webhooks.backlog_by_webhook lists beside
-- the webhooks with deliveries waiting (58_operations.sql). SQL, so that callers
-- inline it.
create or replace function webhooks_private.webhooks_in_flight()
returns table (webhook_id bigint)
language sql
stable
as $$
  with recursive hooks(w) as (
    (select d.webhook_id from webhooks.delivery_queue d
     where d.locked_by is not null
     order by d.webhook_id
     limit 1)
    union all
    select n.webhook_id
    from hooks
    cross join lateral (select d.webhook_id from webhooks.delivery_queue d
                        where d.locked_by is not null and d.webhook_id > hooks.w
                        order by d.webhook_id
                        limit 1) n
  )
  select hooks.w from hooks;
$$;

-- private: a contact's id changed (an UPDATE of crm.contacts.id: a CRM's merge or
-- renumbering tool; 25_capture.sql). Its deliveries on their way, of every webhook of
-- the companies concerned, pending or in flight, take the new id as their contact in the queue (their messages
-- in history keep the id they name): ordered webhooks and coalescing know a contact
-- by its queue rows' contact_id, so the new id's deliveries wait behind them and merge
-- into them as one contact's. Left under the old id, the new id's went beside them,
-- before them on a retry. One in flight too (until 2026-12-06 it stayed under the old
-- id): while its request is under way the new id's wait for it, a retry goes back to
-- the new id's lane ahead of them, and its end lets the next of the new id go. Its
-- lease is not touched ("still mine, still in flight" holds for its relay); a settle
-- that the move overtakes settles it again (settle_results, 30_delivery.sql). A row a
-- claim is leasing is waited for (milliseconds), then moved as leased. Only the
-- webhooks of p_companies are read: the companies concerned by the contact (under
-- either id, and the company it left if the same update moves it: 25_capture.sql
-- passes them), by the webhooks' index by company, then each one's rows of the
-- contact in the contact and lease indexes, in one statement (two would let a
-- delivery that was leased or settled in between escape both): rare, and costing the
-- writer of the change alone. (Until 2026-12-06 it walked every webhook with work, of
-- every company, to find them: 4,007 queue index entries with 4,000 other webhooks
-- busy, test/sql/contact-id-change.test.ts.) A delivery to a company no longer
-- concerned (one the contact left before, or of a user unassigned since) keeps the
-- old id: that company hears nothing more of the contact unless it becomes concerned
-- again. Returns how many moved.
-- (p_written_since: a command id of this transaction, when p_from was given to another
-- contact earlier in the same statement; the rows this transaction wrote after it are
-- that contact's, and stay: contact_id_changed, 25_capture.sql)
drop function if exists webhooks_private.move_contact_deliveries(bigint, bigint);
drop function if exists webhooks_private.move_contact_deliveries(bigint, bigint, bigint[]);
create or replace function webhooks_private.move_contact_deliveries(p_from bigint, p_to bigint, p_companies bigint[],
                                                                    p_written_since bigint)
returns integer
language plpgsql
volatile
as $$
declare
  v_moved integer;
begin
  -- (the webhooks' rows first, FOR KEY SHARE in the order of their ids, as the
  -- roll-up takes them: a webhook's delete holds its row before its deliveries, so
  -- the move waits for the delete there, holding none of them. Taken row by row, it
  -- held a pending row of the webhook while it waited for one in flight that the
  -- delete held, which waited for that pending row: test/sql/webhook-delete-locks.test.ts)
  update webhooks.delivery_queue q
  set contact_id = p_to
  where q.webhook_id = any (array(select w.id from webhooks.webhooks w
                                  where w.company_id = any (p_companies)
                                  order by w.id
                                  for key share))
    and q.contact_id = p_from
    -- (each arm one partial index: the contact index, pending; the lease index, in flight)
    and (q.locked_by is null or q.locked_by is not null)
    and not (p_written_since is not null
             and q.xmin::text = pg_catalog.pg_current_xact_id()::xid::text
             and q.cmin::text::bigint > p_written_since);
  get diagnostics v_moved = row_count;
  return v_moved;
end;
$$;

-- private (a webhook's delete, below, and a company's, of all its webhooks at once):
-- the webhooks' deliveries in flight locked, all of them, and never one held while
-- another is waited for. The relay's settle writes
-- a batch's rows in its own order (successes, then failures, then retries: never the
-- lease index's, which the delete's statements below follow), and the rescuer and a
-- release theirs; a delete that held one row of a settle's batch while it waited for
-- another the settle held deadlocked with it, and Postgres ended one after
-- deadlock_timeout (test/sql/webhook-delete-locks.test.ts). So the rows are taken
-- at once or not at all (those free locked in a block, given back if any is held),
-- and a row another transaction holds is waited for alone, then given back, and all
-- are tried again. What the delete holds meanwhile is the webhook's row, which none
-- of those writers waits for. The pending rows need no such care: a claim skips a
-- row it cannot lock, and the others reach a webhook's pending rows only after its
-- row (webhook_for_update). Lock order of a delete: docs/outbox.md. (One webhook's
-- until 2026-12-07: a company's delete took each webhook's as the cascade reached it,
-- holding those of the webhooks deleted before, and a settle of two of them deadlocked
-- with it: test/sql/company-delete-locks.test.ts.)
drop function if exists webhooks_private.lock_webhook_in_flight(bigint);
create or replace function webhooks_private.lock_webhooks_in_flight(p_webhook_ids bigint[])
returns void
language plpgsql
volatile
as $$
declare
  v_held bigint;
begin
  loop
    begin
      select q.delivery_id into v_held
      from webhooks.delivery_queue q
      where q.webhook_id = any (p_webhook_ids) and q.locked_by is not null
        and q.delivery_id <> all (array(select f.delivery_id from webhooks.delivery_queue f
                                        where f.webhook_id = any (p_webhook_ids) and f.locked_by is not null
                                        for update of f skip locked))
      limit 1;
      if v_held is null then
        return;   -- every one locked, and kept
      end if;
      raise exception 'given back';   -- those locked given back (the block's end undoes them)
    exception when raise_exception then
      null;
    end;
    -- the held one waited for alone, then given back too
    begin
      -- (a lock_timeout of the caller's ends the delete here, as it would have ended its
      -- delete of the row)
      perform 1 from webhooks.delivery_queue q where q.delivery_id = v_held for update;
      raise exception 'given back';
    exception when raise_exception then
      null;
    end;
  end loop;
end;
$$;

-- A webhook's delete takes its queue rows with it at once (no relay sends them), and
-- its kept history, results and attempts too when they are few (at most
-- inline_purge_max_rows() deliveries, nearly every webhook deleted). A webhook with
-- more is noted in webhooks_to_purge: the rest of its rows are left to maintenance
-- (webhooks.purge_deleted_webhooks(), below), and until they are gone no view and no
-- company reads them (webhooks_private.deleted_webhooks()). Deleting them all in the
-- same statement cost about 0.5 s per 100,000 kept deliveries, so a busy webhook's
-- delete ran past the API's statement timeout. The few deleted at once keep the list
-- short, which every read of the view compares each row against: a company that
-- creates and deletes webhooks in a loop adds nothing to it. (No foreign keys on
-- these tables: a key-share lock per row written on the hot path costs more than it
-- protects, and a partition's foreign key, cloned when the partition is attached,
-- would lock webhooks.webhooks every day.) Its day counts go by their foreign key, and
-- its hour counts (no key: migration 0082) and days waiting to be counted here.
create or replace function webhooks_private.tg_webhooks__forget_deliveries()
returns trigger
language plpgsql
as $$
declare
  v_room integer := webhooks_private.inline_purge_max_rows();
  v_removed integer;
begin
  perform webhooks_private.lock_webhooks_in_flight(array[old.id]);
  -- (waiting and in flight apart: each by the queue's index of its kind, which
  -- "webhook_id = old.id" alone can use neither of; read so, the delete read every
  -- company's queue rows until 2026-12-06, test/sql/forget-webhook.test.ts)
  delete from webhooks.delivery_queue where webhook_id = old.id and locked_by is null;
  delete from webhooks.delivery_queue where webhook_id = old.id and locked_by is not null;
  delete from webhooks_private.delivery_days_to_count where webhook_id = old.id;
  -- (no key of its own to the webhook: migration 0082)
  delete from webhooks.delivery_hour_counts where webhook_id = old.id;
  -- (a change written while this delete is open may still write for it: maintenance
  -- looks again, recheck_deleted_webhooks below)
  insert into webhooks_private.webhooks_deleted_recently (webhook_id, company_id)
  values (old.id, old.company_id)
  on conflict (webhook_id) do nothing;
  loop
    v_removed := webhooks_private.purge_webhook_day(old.id, old.company_id, v_room);
    exit when v_removed = 0;
    v_room := v_room - v_removed;
    if v_room <= 0 then
      insert into webhooks_private.webhooks_to_purge (webhook_id, company_id)
      values (old.id, old.company_id)
      on conflict (webhook_id) do nothing;
      exit;
    end if;
  end loop;
  return old;
end;
$$;

-- private: the most deliveries a webhook's delete removes itself (a few ms); the rest
-- are maintenance's
create or replace function webhooks_private.inline_purge_max_rows()
returns integer
language sql
immutable
as $$
  select 1000;
$$;

-- private: one batch of a deleted webhook's kept deliveries removed: at most p_max_rows
-- of its oldest day, with their results and attempts. Returns how many; 0 when it has
-- none left. The day's bounds go into the statements as constants, so that each plan
-- reads one partition of each table, as count_rows does (50_report_counts.sql); the
-- batch's ids are read first, then each table's rows by their key, one index probe a
-- row (a join to the batch was planned as a hash join over the day's whole partition,
-- every company's rows, once per batch). The count triggers pass the rows by: their
-- counts went with the webhook.
create or replace function webhooks_private.purge_webhook_day(p_webhook_id bigint, p_company_id bigint, p_max_rows integer)
returns integer
language plpgsql
volatile
as $$
declare
  v_first timestamptz;
  v_from timestamptz;
  v_until timestamptz;
  v_ids bigint[];
  v_removed integer;
begin
  select h.created_at into v_first
  from webhooks.delivery_history h
  where h.webhook_id = p_webhook_id and h.company_id = p_company_id
  order by h.created_at
  limit 1;
  if v_first is null then
    return 0;
  end if;
  v_from := webhooks_private.utc_day_start(webhooks_private.utc_day(v_first));
  v_until := v_from + interval '1 day';
  execute format(
    $q$select array_agg(h.id) from (
         select h.id from webhooks.delivery_history h
         where h.webhook_id = $1 and h.company_id = $2 and h.created_at >= %1$L and h.created_at < %2$L
         limit $3) h$q$, v_from, v_until)
  into v_ids
  using p_webhook_id, p_company_id, p_max_rows;
  perform pg_catalog.set_config(webhooks_private.forgotten_webhook_setting(), p_webhook_id::text, true);
  execute format(
    $q$delete from webhooks.delivery_attempts a
       where a.delivery_id = any ($1) and a.delivery_created_at >= %1$L and a.delivery_created_at < %2$L$q$,
    v_from, v_until)
  using v_ids;
  execute format(
    $q$delete from webhooks.delivery_results r
       where r.delivery_id = any ($1) and r.created_at >= %1$L and r.created_at < %2$L$q$,
    v_from, v_until)
  using v_ids;
  execute format(
    $q$delete from webhooks.delivery_history h
       where h.id = any ($1) and h.created_at >= %1$L and h.created_at < %2$L$q$,
    v_from, v_until)
  using v_ids;
  get diagnostics v_removed = row_count;
  perform pg_catalog.set_config(webhooks_private.forgotten_webhook_setting(), '', true);
  return v_removed;
end;
$$;

-- public (maintenance and DBAs; not in GraphQL): one batch of the deleted webhooks'
-- kept deliveries removed, the webhook deleted first first (purge_webhook_day: at
-- most p_max_rows of its oldest day). Returns how many deliveries it removed; 0 when
-- that webhook had none left (it is then no longer noted); null when no webhook
-- waits. Run it until it returns null, each call its own transaction
-- (tools/maintain.ts does).
create or replace function webhooks.purge_deleted_webhooks(p_max_rows integer default 10000)
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v record;
  v_removed integer;
begin
  if p_max_rows is null or p_max_rows < 1 then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('purge_deleted_webhooks: p_max_rows must be from 1 to 2147483647, got %s', coalesce(p_max_rows::text, 'null')),
      constraint = 'purge_max_rows_range',
      column = 'p_max_rows';
  end if;
  select p.webhook_id, p.company_id into v
  from webhooks_private.webhooks_to_purge p
  order by p.deleted_at, p.webhook_id
  limit 1
  for update skip locked;
  if not found then
    return null;
  end if;
  -- (queue rows a change wrote while the webhook's delete was open: no relay sends
  -- them. Waiting and in flight apart, each by its index, as the delete's trigger
  -- above: one statement for both read every company's queue rows each batch)
  delete from webhooks.delivery_queue q where q.webhook_id = v.webhook_id and q.locked_by is null;
  delete from webhooks.delivery_queue q where q.webhook_id = v.webhook_id and q.locked_by is not null;
  -- (and the hour counts such a change marked, written an hour after its transaction
  -- began: recount_day)
  delete from webhooks.delivery_hour_counts c where c.webhook_id = v.webhook_id;
  v_removed := webhooks_private.purge_webhook_day(v.webhook_id, v.company_id, p_max_rows);
  if v_removed = 0 then
    delete from webhooks_private.webhooks_to_purge where webhook_id = v.webhook_id;
  end if;
  return v_removed;
end;
$$;

-- private: whether every transaction running now (p_oldest_age: the age() of the
-- oldest, null for none) began after p_xid, read against p_next, a transaction id of
-- now (this snapshot's xmax). age() reads a 32-bit id, which wraps: an id 2^31 or
-- more behind now reads as one of the future, and 2^32 behind as one of now. A row
-- of webhooks_deleted_recently left unchecked that long (maintenance stopped for 25
-- days at 1,000 transactions a second) was then kept for as long again. No running
-- transaction is that old (the server gives out no id once the oldest unfrozen one
-- is 2^31 - 3,000,000 behind), so an id that far behind, told by the 64-bit ids,
-- came before them all; nearer, its 32-bit age is its age.
create or replace function webhooks_private.xid_before_running(p_xid xid8, p_oldest_age integer, p_next xid8)
returns boolean
language sql
stable
as $$
  select p_next::text::numeric - p_xid::text::numeric >= 2147483648
         or coalesce(p_oldest_age, 0) <= age(p_xid::xid);
$$;

-- public (maintenance and DBAs; not in GraphQL): look again for rows of the webhooks
-- deleted lately. A change whose capture read the subscriptions before a webhook's
-- delete committed writes its delivery after the delete took the webhook's rows, and
-- nothing else would ever remove it: no lane, so no relay sends it; in history it
-- keeps its day from being dropped. A webhook found with such rows is noted for the
-- purge (webhooks_to_purge: out of every view at once, removed by
-- purge_deleted_webhooks, queue rows included). A webhook is forgotten here once
-- every transaction that was running when maintenance first saw its delete has
-- ended, and no snapshot older than that is held: a writer in REPEATABLE READ reads
-- the subscriptions as of its first query, and may write for the webhook long after
-- it, though it had no transaction id when the delete committed (its snapshot's
-- xmin is each backend's backend_xmin). pg_stat_activity shows every role each
-- session's backend_xid and backend_xmin (not its transaction's start): an owner
-- that is no superuser sees the CRM's transactions of its own role
-- (test/sql/deleted-webhook-writer-roles.test.ts). Not the roll-up's
-- oldest_writer_xid() (50_report_counts.sql): it sees the transactions that wrote,
-- and a snapshot that has written nothing yet may still write for the webhook.
-- Returns how many webhooks were found with such rows.
create or replace function webhooks.recheck_deleted_webhooks()
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v record;
  v_found integer := 0;
  v_oldest integer;
begin
  -- the oldest transaction (its id) or snapshot (its xmin) of this database's other
  -- sessions and prepared transactions, as the age of the oldest, read now (the
  -- activity's snapshot taken anew), before the rows are looked for below. Of this
  -- database's alone: one of another database writes nothing here, and its open
  -- transaction (in the cluster-wide xmin of every snapshot, this session's own too)
  -- kept every webhook of this one noted for as long as it ran.
  -- (xid has no order of its own: the older of two has the greater age)
  perform pg_catalog.pg_stat_clear_snapshot();
  v_oldest := (
    select max(a.age)
    from (select greatest(age(s.backend_xid), age(s.backend_xmin)) as age
          from pg_catalog.pg_stat_activity s
          where s.datname = pg_catalog.current_database() and s.pid <> pg_catalog.pg_backend_pid()
          union all
          select age(p.transaction)
          from pg_catalog.pg_prepared_xacts p
          where p.database = pg_catalog.current_database()) a);
  for v in
    select r.webhook_id, r.company_id, r.settled_after
    from webhooks_private.webhooks_deleted_recently r
    order by r.deleted_at, r.webhook_id
    for update skip locked
  loop
    -- (waiting or in flight: each by its index, as the delete above)
    if exists (select 1 from webhooks.delivery_queue q where q.webhook_id = v.webhook_id and q.locked_by is null)
       or exists (select 1 from webhooks.delivery_queue q where q.webhook_id = v.webhook_id and q.locked_by is not null)
       or exists (select 1 from webhooks.delivery_history h
                  where h.webhook_id = v.webhook_id and h.company_id = v.company_id) then
      insert into webhooks_private.webhooks_to_purge (webhook_id, company_id)
      values (v.webhook_id, v.company_id)
      on conflict (webhook_id) do nothing;
      -- (one its delete noted already, for the rows too many to remove at once, is
      -- not counted)
      if found then
        v_found := v_found + 1;
      end if;
    end if;
    if v.settled_after is null then
      -- (this transaction's own id, above every id given before it: not a snapshot's
      -- xmax, the last one completed + 1, which a transaction given its id later and
      -- still running may be at or past, and then was taken for ended. The update
      -- gives this transaction an id anyway)
      update webhooks_private.webhooks_deleted_recently
      set settled_after = pg_current_xact_id()
      where webhook_id = v.webhook_id;
    elsif webhooks_private.xid_before_running(v.settled_after, v_oldest,
                                                 pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())) then
      -- (looked at above with a snapshot taken after those transactions ended)
      delete from webhooks_private.webhooks_deleted_recently where webhook_id = v.webhook_id;
    end if;
  end loop;
  return v_found;
end;
$$;

-- private: the setting that names the deleted webhook whose rows the purge is
-- deleting, while it deletes them ('' after)
create or replace function webhooks_private.forgotten_webhook_setting()
returns text
language sql
immutable
as $$
  select 'webhooks.forgotten_webhook';
$$;

drop trigger if exists _900_forget_deliveries on webhooks.webhooks;
create trigger _900_forget_deliveries
  before delete on webhooks.webhooks
  for each row execute function webhooks_private.tg_webhooks__forget_deliveries();

-- A company's delete (the CRM's): its key cascades the delete to the company's
-- webhooks (ON DELETE CASCADE), in the order that statement's plan reads them (oldest
-- first, by webhooks_company_newest_idx), each taken as its delete reaches it. The
-- roll-up takes its batch's webhooks in the order of their ids (50_report_counts.sql),
-- and a webhook made in a transaction that began before another's has the earlier
-- time and may have the higher id: the delete held one, the roll-up the other, each
-- waited for the other's, and Postgres ended one of them
-- (test/sql/company-delete-locks.test.ts). So the company's webhooks are taken here,
-- in the order of their ids, before anything of theirs, and then all their deliveries
-- in flight at once (lock_webhooks_in_flight, above): taken webhook by webhook, the
-- delete held those of one while it waited for another's that a settle held, which
-- then waited for the first's (same test file). It costs each company deleted one
-- probe of the webhooks' index by company and two ranges of the lease index; a
-- contact's write pays nothing (the trigger is crm.companies').
create or replace function webhooks_private.tg_companies__lock_webhooks()
returns trigger
language plpgsql
as $$
begin
  perform webhooks_private.lock_webhooks_in_flight(array(
    select w.id from webhooks.webhooks w where w.company_id = old.id order by w.id for update of w));
  return old;
end;
$$;

create or replace trigger "!webhooks_lock_webhooks"
  before delete on crm.companies
  for each row execute function webhooks_private.tg_companies__lock_webhooks();

-- private: the time of day, as the engine reads it where a transaction's start (now())
-- will not do: how late a write is (may_be_counted, recount_day), which days the
-- retention keeps (first_kept_day). The one place it is read, so that a test's own
-- database can set it ahead (test/helpers/steered-clock.ts) to show what a
-- transaction open for hours or days does, which no test can wait for. SQL of one
-- call, inlined into its callers: it costs what clock_timestamp() costs.
create or replace function webhooks_private.clock()
returns timestamptz
language sql
volatile
as $$
  select pg_catalog.clock_timestamp();
$$;

-- private: the UTC day of a time, and the time a UTC day starts
create or replace function webhooks_private.utc_day(p_at timestamptz)
returns date
language sql
immutable
as $$
  select (p_at at time zone 'utc')::date;
$$;

create or replace function webhooks_private.utc_day_start(p_day date)
returns timestamptz
language sql
immutable
as $$
  select p_day::timestamp at time zone 'utc';
$$;

-- The report's counts (50_report_counts.sql) and what a write to a delivery does to
-- them: here, before the capture (25_capture.sql), which calls them for a delivery
-- written an hour or more after its transaction began.

-- private: the start of the UTC period of p_width (an hour, a day) a time falls in
create or replace function webhooks_private.utc_bin(p_width interval, p_at timestamptz)
returns timestamptz
language sql
immutable
as $$
  select pg_catalog.date_bin(p_width, p_at, timestamptz '2000-01-01 00:00:00+00');
$$;

-- private: the UTC hour a time falls in (its start)
create or replace function webhooks_private.utc_hour(p_at timestamptz)
returns timestamptz
language sql
immutable
as $$
  select webhooks_private.utc_bin('1 hour', p_at);
$$;

-- private: a delivery of this webhook (of company p_company_id) created at p_at
-- changed: its hour's count is stale, and if it is older than a day its day's count is
-- no longer known (dropped now, counted again by the next roll-up)
-- (p_note: and the webhook noted for the next roll-up, webhooks_to_roll_up: every
-- writer but the relay's settle of a failure, whose delivery was on its way, so its
-- webhook is noted already if its hour had finished at its last visit)
drop function if exists webhooks_private.recount_day(bigint, timestamptz);
drop function if exists webhooks_private.recount_day(bigint, bigint, timestamptz);
create or replace function webhooks_private.recount_day(p_webhook_id bigint, p_company_id bigint, p_at timestamptz,
                                                        p_note boolean default true)
returns void
language plpgsql
as $$
declare
  v_day constant date := webhooks_private.utc_day(p_at);
begin
  if p_note then
    insert into webhooks_private.webhooks_to_roll_up (webhook_id) values (p_webhook_id) on conflict do nothing;
  end if;
  -- hour rows are made for the days not counted yet (roll_up_webhook_hours): a stale
  -- row is written for a delivery of those days (so that a roll-up counting its hour
  -- meanwhile meets it), an older one's row only marked if there still is one (a
  -- roll-up makes none there, and a bulk write of old deliveries leaves no rows)
  if p_at >= webhooks_private.utc_day_start(webhooks_private.utc_day(webhooks_private.clock() - interval '3 days')) then
    insert into webhooks.delivery_hour_counts as c (webhook_id, company_id, hour, fired, succeeded, failed, stale)
    values (p_webhook_id, p_company_id, webhooks_private.utc_hour(p_at), 0, 0, 0, true)
    on conflict (webhook_id, hour) do update set stale = true, version = c.version + 1;
  else
    update webhooks.delivery_hour_counts c set stale = true, version = c.version + 1
    where c.webhook_id = p_webhook_id and c.hour = webhooks_private.utc_hour(p_at);
  end if;
  -- days are counted two days after they end: a younger delivery's day has no row (as
  -- may_be_counted, younger than the time of the write)
  if p_at >= webhooks_private.clock() - interval '1 day' then
    return;
  end if;
  -- shared: writers do not wait for each other, only for a roll-up of this webhook
  perform pg_advisory_xact_lock_shared(webhooks_private.day_counts_lock(p_webhook_id));
  delete from webhooks.delivery_day_counts where webhook_id = p_webhook_id and day = v_day;
  insert into webhooks_private.delivery_days_to_count (webhook_id, company_id, day)
  values (p_webhook_id, p_company_id, v_day)
  on conflict do nothing;
end;
$$;

-- private: may a delivery created at p_at belong to a counted hour or day? Hours are
-- counted two hours after they end, days two days: only one older than an hour can.
-- Older than the time of the write (webhooks_private.clock()), not than its transaction's
-- start (now(), until 2026-12-06): a transaction that wrote nothing for hours holds
-- no hour back (roll_up_bounds), so its first write must say so itself. (A read of
-- the clock: about 0.2 µs a call, measured against now().)
create or replace function webhooks_private.may_be_counted(p_at timestamptz)
returns boolean
language sql
volatile
as $$
  select p_at < webhooks_private.clock() - interval '1 hour';
$$;

-- private: p_at, a time a caller asks a report, a history or a replay about (its
-- argument p_argument: since, until), when it is within what may be asked: from
-- 1970-01-01 to 9999-12-31 (UTC), or open (null, -infinity, infinity); else a named
-- refusal (22008, requested_time_range, the COLUMN naming the argument). Deliveries
-- are made at now(); the counting steps a day or an hour past the times it is given,
-- which at Postgres's own ends (4714-11-24 BC, 294276) failed with a bare "timestamp
-- out of range". Immutable: given a constant, the planner asks it as it plans.
create or replace function webhooks_private.requested_time(p_at timestamptz, p_argument text)
returns timestamptz
language plpgsql
immutable
as $$
begin
  if isfinite(p_at)
     and not (p_at >= timestamptz '1970-01-01 00:00:00+00' and p_at < timestamptz '10000-01-01 00:00:00+00') then
    raise exception using
      errcode = 'datetime_field_overflow',
      message = format('%s must be from 1970-01-01 to 9999-12-31 (UTC), or open (null), got %s', p_argument, p_at),
      constraint = 'requested_time_range',
      column = p_argument;
  end if;
  return p_at;
end;
$$;

-- private: true when both since and until may be asked (requested_time), else its
-- refusal: for a query's condition, which Postgres tests once, before any row
-- (webhook_report, 55_report.sql), and for a function's start
create or replace function webhooks_private.requested_times(p_since timestamptz, p_until timestamptz)
returns boolean
language plpgsql
immutable
as $$
begin
  perform webhooks_private.requested_time(p_since, 'since');
  perform webhooks_private.requested_time(p_until, 'until');
  return true;
end;
$$;

-- private: the retention in force (29_retention.sql drops the days past it): the
-- database's (ALTER DATABASE … SET), never a role's or a session's own. Every reader
-- must agree on it: a writer whose own retention was longer found its day kept where
-- maintenance had dropped it, and in REPEATABLE READ (its snapshot older than the
-- drop's kept_since) wrote there and failed its contact write ("no partition of
-- relation delivery_history found for row"; until 2026-12-07,
-- test/sql/late-capture.test.ts). Checked as every setting is (setting_check). Where
-- the database sets none, the one it set last (retention_last_set, noted by
-- note_retention below): a copy of the database that left its settings behind (a dump
-- restored without --create, create database … template) kept its history for the
-- default 90 days, and its first maintenance dropped what the original kept
-- (test/sql/copied-database.test.ts). So a DBA who means the default after setting
-- another sets it ('90 days'), not resets it; webhooks.settings says which holds.
create or replace function webhooks_private.retention()
returns interval
language sql
stable
as $$
  select coalesce((webhooks_private.setting_check('webhooks.retention',
                                                  webhooks_private.database_setting('webhooks.retention'))).value,
                  (select l.retention::text from webhooks_private.retention_last_set l),
                  (webhooks_private.setting_rule('webhooks.retention'))[2])::interval;
$$;

-- private (create_partitions, which migrate and every schedule of maintenance run
-- first): the retention the database sets, noted as a row of the data
-- (retention_last_set, migration 0090), which a dump or a copy carries where the
-- database's settings may be left behind. A value the engine does not use notes what
-- holds in its place (setting_check); none set notes nothing.
create or replace function webhooks_private.note_retention()
returns void
language sql
volatile
as $$
  insert into webhooks_private.retention_last_set as l (retention, noted_at)
  select c.value::interval, now()
  from webhooks_private.setting_check('webhooks.retention', webhooks_private.database_setting('webhooks.retention')) c
  where c.value is not null
  on conflict (one) do update set retention = excluded.retention, noted_at = excluded.noted_at
    where l.retention is distinct from excluded.retention;
$$;

-- private: the first day the retention keeps; the days before it may be dropped at any
-- moment (expired_days), so no finished delivery of theirs goes back on its way: a
-- replay taken while maintenance drops its day would lose it with the day (22_outbox.sql).
-- As its owner: replay_failed (47_audit.sql) asks it as the admin, who may not read
-- the settings' helpers. The retention is taken from the UTC time (a timestamp, not a
-- timestamptz): a timestamptz less days or months steps in the session's time zone,
-- and in one whose clock moved since then the days kept started a day apart from a
-- session's in UTC, so that maintenance could drop a day the API still replays.
-- From the time of day (clock()), not the transaction's start: a transaction open
-- since before midnight judged the days a day behind maintenance (a replay let
-- through into a day being dropped, until 2026-12-06), and a capture late in a long
-- transaction asks it (capture_time).
create or replace function webhooks_private.first_kept_day()
returns date
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select ((webhooks_private.clock() at time zone 'utc') - webhooks_private.retention())::date;
$$;

-- public (the API and the page): where the kept history starts: deliveries created
-- before it were dropped by the retention (their totals remain in the report and in
-- webhooks.daily_counts; webhooks.forget_day, 29_retention.sql, moves it). Null while
-- nothing was ever dropped. No delivery is written into a day before it (ensure_day).
create or replace function webhooks.kept_since()
returns timestamptz
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select kept_since from webhooks_private.outbox_kept_since;
$$;

-- private: is the day of p_at past the retention (maintenance may be dropping it), or
-- forgotten (kept_since: dropped, or being dropped)?
create or replace function webhooks_private.day_dropped(p_at timestamptz)
returns boolean
language sql
volatile
as $$
  select webhooks_private.utc_day(p_at) < webhooks_private.first_kept_day()
         or coalesce(p_at < webhooks.kept_since(), false);
$$;

-- private: the time of a capture's delivery made an hour or more after its
-- transaction began (may_be_counted; enqueue, 25_capture.sql). Its transaction's
-- start (p_started), as every capture's, unless that day is past the retention: then
-- maintenance may be dropping it, or has dropped it (before kept_since()),
-- and history has no partition there any more: a CRM transaction that had only read
-- since then failed its first contact write for want of it ("no partition of relation
-- delivery_history found for row"; until 2026-12-06). Then the time of the capture
-- (clock()), a day kept: the delivery is sent, and counted in the day it is written
-- into, the dropped day's totals (its day counts) as they were. Asked of late
-- captures alone: no day is past the retention before it ended a day ago (a day, the
-- least retention, 02_settings.sql).
--
-- A day found kept is held so until the transaction ends (its day_drop_lock, shared):
-- the retention's forget_day (29_retention.sql) takes that lock before the day goes,
-- and keeps the day this run while a capture holds it. Without it a drop that came
-- between this look and the insert (the day past the retention meanwhile: midnight)
-- dropped the day the insert then went to, and the CRM's write failed for want of a
-- partition (until 2026-12-07; test/sql/late-capture.test.ts). A day the drop holds
-- (the lock not granted at once) is taken as dropped: the capture never waits. The
-- look is made again once the lock is held: a drop that decided in between has
-- forgotten the day (kept_since) by the time it lets go of the lock, and the clock
-- has passed the day's end by the retention.
create or replace function webhooks_private.capture_time(p_started timestamptz)
returns timestamptz
language plpgsql
volatile
as $$
begin
  if webhooks_private.day_dropped(p_started) then
    return webhooks_private.clock();
  end if;
  if not pg_catalog.pg_try_advisory_xact_lock_shared(webhooks_private.day_drop_lock(webhooks_private.utc_day(p_started))) then
    return webhooks_private.clock();
  end if;
  if webhooks_private.day_dropped(p_started) then
    return webhooks_private.clock();
  end if;
  return p_started;
end;
$$;

------------------------------------------------------------------------------------
-- Partitions
--
-- Each of history, results and attempts has, in schema webhooks_partitions:
--   <table>_pYYYYMMDD            one UTC day, made ahead (webhooks.create_partitions)
--   <table>_pYYYYMMDD_YYYYMMDD   a span of days, first and last: the tail's rows when
--                                maintenance had not run for two weeks (below)
--   <table>_from_YYYYMMDD        the tail: every time from the end of the last day
--                                made, so that a capture never fails for want of a
--                                partition, whether or not maintenance runs
-- The tail is a range partition up to MAXVALUE, not a DEFAULT partition: Postgres
-- refuses DETACH … CONCURRENTLY while a DEFAULT partition exists, and retention must
-- not block. Days are made two weeks ahead, so the tail is empty: tools/maintain.ts
-- moves it ahead each day (DETACH … CONCURRENTLY, the days made, a new tail). Should
-- it hold rows (maintenance stopped for two weeks), they stay where they are and the
-- tail becomes a span of days (bounded by a CHECK validated without blocking writes,
-- then re-attached with those bounds in one short transaction), and days are made
-- after it: no row moves, no long lock.

-- private: the partitioned tables of the outbox, their partition keys, and the
-- storage parameters of their partitions (all insert-only: pages filled)
create or replace function webhooks_private.outbox_partitioned()
returns table (table_name text, key_column text, storage text)
language sql
immutable
as $$
  values ('delivery_history', 'created_at', 'fillfactor = 100'),
         ('delivery_results', 'created_at', 'fillfactor = 100'),
         ('delivery_attempts', 'delivery_created_at', 'fillfactor = 100');
$$;

-- private: how a large payload is compressed (one over about 2 kB, stored in
-- delivery_history): 'lz4' where the server was built with it, as most packaged
-- servers are, else null (the server's default, pglz; the embedded server has no
-- lz4). One change of a large contact writes up to webhooks.max_payload_bytes_per_change
-- of payloads in the writer's transaction, and compressing them was most of its time:
-- 16 MiB of payloads took 0.76 s with pglz, 0.28 s with lz4 (docs/outbox.md).
create or replace function webhooks_private.payload_compression()
returns text
language sql
stable
as $$
  select 'lz4'
  from pg_catalog.pg_settings s
  where s.name = 'default_toast_compression' and 'lz4' = any (s.enumvals);
$$;

-- delivery_history and each of its partitions compress payloads so (a catalog change,
-- no row rewritten: a payload written before keeps its compression). A new partition
-- takes the parent's (attach_new_partition: "including compression").
do $$
declare
  v_method constant text := webhooks_private.payload_compression();
  v_table regclass;
begin
  if v_method is null then
    return;
  end if;
  for v_table in
    select 'webhooks.delivery_history'::regclass
    union all
    select i.inhrelid::regclass from pg_catalog.pg_inherits i where i.inhparent = 'webhooks.delivery_history'::regclass
  loop
    if not exists (select 1 from pg_catalog.pg_attribute a
                   where a.attrelid = v_table and a.attname = 'payload' and a.attcompression = left(v_method, 1)) then
      execute format('alter table %s alter column payload set compression %s', v_table, v_method);
    end if;
  end loop;
end;
$$;

-- private: how many days ahead partitions are made (one home for the two weeks)
create or replace function webhooks_private.days_ahead()
returns integer
language sql
immutable
as $$
  select 14;
$$;

-- private: the name of one day's partition of one table
-- (stable, as to_char is: so that Postgres inlines it rather than planning it again
-- on every call, as it did while this said immutable)
create or replace function webhooks_private.partition_name(p_table text, p_day date)
returns text
language sql
stable
as $$
  select p_table || '_p' || to_char(p_day, 'YYYYMMDD');
$$;

-- private: the name of a span of days' partition of one table (first and last day)
create or replace function webhooks_private.span_name(p_table text, p_first date, p_last date)
returns text
language sql
immutable
as $$
  select p_table || '_p' || to_char(p_first, 'YYYYMMDD') || '_' || to_char(p_last, 'YYYYMMDD');
$$;

-- private: the name of one table's tail that starts on a day
create or replace function webhooks_private.tail_name(p_table text, p_from date)
returns text
language sql
immutable
as $$
  select p_table || '_from_' || to_char(p_from, 'YYYYMMDD');
$$;

-- private: the first and last day a partition of days or of a span of one table
-- holds, read from its name (partition_name, span_name: the catalog's, not tenant
-- text); no row: the name is no such partition's (a tail's, another table's)
create or replace function webhooks_private.partition_days(p_table text, p_partition text)
returns table (first_day date, last_day date)
language sql
stable
as $$
  select to_date(m[1], 'YYYYMMDD'), to_date(coalesce(m[2], m[1]), 'YYYYMMDD')
  from pg_catalog.regexp_match(p_partition, '^' || p_table || '_p([0-9]{8})(?:_([0-9]{8}))?$') m
  where m is not null;
$$;

-- private: is a partition of the outbox bounded as its name says, from its first
-- day's start to the end of its last (UTC), as the engine makes them? (p_partition:
-- its pg_class row. Both sides printed alike, in the reader's time zone.)
create or replace function webhooks_private.bounds_as_named(p_partition pg_catalog.pg_class, p_first date, p_last date)
returns boolean
language sql
stable
as $$
  select pg_catalog.pg_get_expr(p_partition.relpartbound, p_partition.oid)
         = format('FOR VALUES FROM (%L) TO (%L)', webhooks_private.utc_day_start(p_first),
                  webhooks_private.utc_day_start(p_last + 1));
$$;

-- private: the outbox's partitions of days and spans (not the tails), with the first
-- and last day each holds, and whether it is bounded as its name says (as_named).
-- Those of webhooks_partitions only, where the engine makes them: a partition a DBA
-- made by hand elsewhere is the DBA's, whatever its name, and so is one named as a
-- day but bounded otherwise, which the retention does not drop (expired_days reads
-- as_named; deparsing the bounds, about 20 µs a partition, is paid by the callers
-- that read it). Until 2026-12-06 the retention "dropped" one in another schema named
-- as a day on every run, failing nothing and leaving it there, and dropped one named
-- as a day but bounded wider whole, days within the retention with it
-- (test/sql/retention-hand-made.test.ts).
select webhooks_private.drop_function_unless(
  'webhooks_private.outbox_partitions()', '',
  'TABLE(table_name text, partition_name text, first_day date, last_day date, as_named boolean)');
create or replace function webhooks_private.outbox_partitions()
returns table (table_name text, partition_name text, first_day date, last_day date, as_named boolean)
language sql
stable
as $$
  select t.table_name, c.relname::text, d.first_day, d.last_day,
         webhooks_private.bounds_as_named(c, d.first_day, d.last_day)
  from webhooks_private.outbox_partitioned() t
  join pg_catalog.pg_inherits i on i.inhparent = pg_catalog.to_regclass('webhooks.' || t.table_name)
  join pg_catalog.pg_class c on c.oid = i.inhrelid
  cross join lateral webhooks_private.partition_days(t.table_name, c.relname) d
  where c.relnamespace = 'webhooks_partitions'::regnamespace;
$$;

-- private: a table's tail, as attached (detach_pending: a detach … concurrently began
-- and was not finished), and the day it starts on; no row: none is attached
create or replace function webhooks_private.outbox_tail(p_table text)
returns table (tail_name text, starts date, detach_pending boolean)
language sql
stable
as $$
  select c.relname::text, to_date(right(c.relname, 8), 'YYYYMMDD'), i.inhdetachpending
  from pg_catalog.pg_inherits i
  join pg_catalog.pg_class c on c.oid = i.inhrelid
  where i.inhparent = pg_catalog.to_regclass('webhooks.' || p_table)
    and c.relname ~ ('^' || p_table || '_from_[0-9]{8}$');
$$;

-- private: the partitions of one outbox table that the engine did not make (a DBA's:
-- neither a day nor a span bounded as its name says in webhooks_partitions, nor a
-- tail, nor a DEFAULT partition, refused apart: refuse_default_partition), qualified,
-- with the times they hold, [starts, ends) (-infinity, infinity: MINVALUE, MAXVALUE).
-- The days ahead they overlap cannot be made (partitions_in_the_way).
create or replace function webhooks_private.partitions_by_hand(p_table text)
returns table (partition_name text, starts timestamptz, ends timestamptz)
language sql
stable
-- (the bounds are read from their text: times written in UTC)
set timezone = 'UTC'
as $$
  select c.oid::regclass::text,
         coalesce(substring(b.bound from $r$FROM \('([^']+)'\)$r$)::timestamptz, '-infinity'),
         coalesce(substring(b.bound from $r$TO \('([^']+)'\)$r$)::timestamptz, 'infinity')
  from pg_catalog.pg_inherits i
  join pg_catalog.pg_class c on c.oid = i.inhrelid
  cross join lateral (select pg_catalog.pg_get_expr(c.relpartbound, c.oid) as bound) b
  where i.inhparent = pg_catalog.to_regclass('webhooks.' || p_table)
    and b.bound <> 'DEFAULT'
    and not exists (select 1 from webhooks_private.outbox_partitions() p
                    where p.table_name = p_table and p.partition_name = c.relname::text and p.as_named)
    and not exists (select 1 from webhooks_private.outbox_tail(p_table) t where t.tail_name = c.relname::text)
    and not (c.relnamespace = 'webhooks_partitions'::regnamespace and c.relname ~ ('^' || p_table || '_from_[0-9]{8}$'));
$$;

-- private: the DBA's partitions (partitions_by_hand) that hold some of the times from
-- the start of p_from on: the days ahead and the tail the engine must make there
create or replace function webhooks_private.partitions_in_the_way(p_from date)
returns table (table_name text, partition_name text, starts timestamptz, ends timestamptz)
language sql
stable
as $$
  select t.table_name, h.partition_name, h.starts, h.ends
  from webhooks_private.outbox_partitioned() t
  cross join lateral webhooks_private.partitions_by_hand(t.table_name) h
  where h.ends > webhooks_private.utc_day_start(p_from)
  order by 1, 3, 2;
$$;

-- private (maintenance: tools/maintain.ts, after everything else it does): refused by
-- name while a DBA's partition holds times of the days ahead of an outbox table.
-- webhooks.create_partitions makes every other day and the tail after it, and only
-- warns (an error would undo them); until 2026-12-07 it failed whole on Postgres's
-- bare "would overlap partition", no day made, no tail, and once the days made ran
-- out every capture failed for want of a partition (test/sql/retention-hand-made.test.ts).
create or replace function webhooks_private.refuse_partitions_in_the_way()
returns void
language plpgsql
stable
as $$
declare
  v_in_the_way text;
begin
  select string_agg(format('%s (from %s to %s, of webhooks.%s)', w.partition_name, w.starts, w.ends, w.table_name), ', ')
  into v_in_the_way
  from webhooks_private.partitions_in_the_way(webhooks_private.utc_day(now())) w;
  if v_in_the_way is not null then
    raise exception using
      errcode = 'object_not_in_prerequisite_state',
      constraint = 'outbox_partition_in_the_way',
      message = format('the days ahead of the outbox cannot all be made: partitions the engine did not make hold some of them: %s',
                       v_in_the_way),
      hint = 'detach each, put its rows back through the table (webhooks.create_partitions then makes those days), and drop it; the engine makes the days ahead and the tail itself';
  end if;
end;
$$;

-- private: is a day of one table already taken by a partition (its own, a span's, or
-- the tail's)? Then no partition of its own can be made for it now.
create or replace function webhooks_private.day_taken(p_table text, p_day date)
returns boolean
language sql
stable
as $$
  select exists (select 1 from webhooks_private.outbox_partitions() p
                 where p.table_name = p_table and p_day between p.first_day and p.last_day)
      or exists (select 1 from webhooks_private.outbox_tail(p_table) t where p_day >= t.starts);
$$;

-- private: make a partition of one table for the times [p_from, p_to) (p_to null: up
-- to MAXVALUE), in this transaction. Built apart and attached, so that claims and
-- settles go on meanwhile (ATTACH takes SHARE UPDATE EXCLUSIVE on the parent;
-- CREATE TABLE … PARTITION OF would take ACCESS EXCLUSIVE). False: it exists.
create or replace function webhooks_private.attach_new_partition(
  p_table text, p_key text, p_storage text, p_name text, p_from timestamptz, p_to timestamptz
)
returns boolean
language plpgsql
as $$
begin
  if to_regclass(format('webhooks_partitions.%I', p_name)) is not null then
    return false;
  end if;
  -- one maker at a time: a second waits, then may find it made (read from pg_class
  -- by a query of its own: its snapshot is taken after the wait, while to_regclass
  -- may answer from a catalog snapshot taken before it)
  perform pg_advisory_xact_lock(webhooks_private.partition_lock());
  if exists (select 1 from pg_class c
             where c.relname = p_name and c.relnamespace = 'webhooks_partitions'::regnamespace) then
    return false;
  end if;
  execute format('create table webhooks_partitions.%I (like webhooks.%I including defaults including constraints including storage including compression) with (%s)',
                 p_name, p_table, p_storage);
  if p_to is null then
    execute format('alter table webhooks.%I attach partition webhooks_partitions.%I for values from (%L) to (maxvalue)',
                   p_table, p_name, p_from);
  else
    -- a CHECK of the bounds spares ATTACH a scan of the new table
    execute format('alter table webhooks_partitions.%I add constraint bounds check (%I >= %L and %I < %L)',
                   p_name, p_key, p_from, p_key, p_to);
    execute format('alter table webhooks.%I attach partition webhooks_partitions.%I for values from (%L) to (%L)',
                   p_table, p_name, p_from, p_to);
    execute format('alter table webhooks_partitions.%I drop constraint bounds', p_name);
  end if;
  return true;
end;
$$;

-- private: make one day's partition of one table, unless the day is taken. One of
-- its name attached to nothing was detached by hand (the engine detaches no day but
-- one past the retention, at least a day old): a day of today or ahead is attached
-- back (a scan of it: a day ahead holds next to nothing), since captures go there.
-- Left detached, it was never made again, and every capture of that day failed for
-- want of a partition (until 2026-12-06; test/sql/retention-hand-made.test.ts). A
-- past day's is left to the DBA who detached it.
create or replace function webhooks_private.create_partition(p_table text, p_key text, p_storage text, p_day date)
returns boolean
language plpgsql
as $$
declare
  v_made constant regclass :=
    pg_catalog.to_regclass(format('webhooks_partitions.%I', webhooks_private.partition_name(p_table, p_day)));
  v_guard text;
begin
  -- A DBA's DETACH … CONCURRENTLY of a day to come, cancelled in its second step (while
  -- it waited for an older reader), left the partition "detach pending": out of every
  -- new query, so each capture of its day failed, and the event trigger below never
  -- ran (it runs at the command's end). Finished here (FINALIZE) and attached back
  -- just after; the trigger let through for the finish alone, which leaves the day
  -- without its partition only until the attach below, in the same transaction.
  if v_made is not null and p_day >= webhooks_private.utc_day(now())
     and exists (select 1 from pg_catalog.pg_inherits i where i.inhrelid = v_made and i.inhdetachpending) then
    v_guard := current_setting('webhooks.days_in_use_unguarded', true);
    perform set_config('webhooks.days_in_use_unguarded', 'on', true);
    execute format('alter table webhooks.%I detach partition %s finalize', p_table, v_made);
    perform set_config('webhooks.days_in_use_unguarded', coalesce(v_guard, ''), true);
  end if;
  if v_made is not null and p_day >= webhooks_private.utc_day(now())
     and not exists (select 1 from pg_catalog.pg_inherits i where i.inhrelid = v_made)
     and not webhooks_private.day_taken(p_table, p_day) then
    execute format('alter table webhooks.%I attach partition %s for values from (%L) to (%L)',
                   p_table, v_made, webhooks_private.utc_day_start(p_day), webhooks_private.utc_day_start(p_day + 1));
    return true;
  end if;
  if v_made is not null or webhooks_private.day_taken(p_table, p_day) then
    return false;
  end if;
  return webhooks_private.attach_new_partition(p_table, p_key, p_storage,
    webhooks_private.partition_name(p_table, p_day),
    webhooks_private.utc_day_start(p_day), webhooks_private.utc_day_start(p_day + 1));
end;
$$;

-- private (an event trigger's, below): after a DBA's ALTER TABLE or DROP TABLE, is
-- each outbox table's partition of today and of tomorrow still where captures go?
-- Refused by name if not, the command undone: a partition of those days detached
-- (or being detached) made every capture fail ("no partition of relation … found
-- for row") until the next run of maintenance attached it back, and a CRM write must
-- never fail because of the engine (until 2026-12-07; test/sql/retention-hand-made.test.ts).
-- A day dropped is refused unless a span, the tail or another partition holds it.
-- The engine's own DDL never leaves those days without a partition (the tail that
-- becomes a span is detached and attached again in one transaction: an ALTER TABLE
-- is asked about the day's own partitions alone). A DBA who means it (to show what
-- maintenance stopped for two weeks does, say) sets webhooks.days_in_use_unguarded
-- to on in the transaction. Paid by DDL alone: a few catalog probes per ALTER or DROP
-- of a table anywhere in the database; never by a capture.
create or replace function webhooks_private.tg_outbox__days_in_use()
returns event_trigger
language plpgsql
-- (as its owner: it hears every ALTER and DROP TABLE in the database, and the CRM's
-- role that issued one may not use the engine's schemas: until 2026-12-08 every such
-- command of a role without them failed, "permission denied for schema
-- webhooks_private", test/sql/crm-owner-ddl.test.ts; with a search path of its own,
-- so that no schema of the issuer's decides what format() or generate_series() is)
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_table record;
  v_day date;
  v_name text;
  v_partition regclass;
begin
  if pg_catalog.current_setting('webhooks.days_in_use_unguarded', true) = 'on' then
    return;
  end if;
  -- (an ALTER TABLE of an outbox table itself: a partition made apart and not yet
  -- attached, webhooks_private.attach_new_partition's, is no day detached)
  if tg_tag = 'ALTER TABLE'
     and not exists (select 1 from pg_catalog.pg_event_trigger_ddl_commands() c
                     where c.objid in (select pg_catalog.to_regclass('webhooks.' || t.table_name)
                                       from webhooks_private.outbox_partitioned() t)) then
    return;
  end if;
  for v_table in select * from webhooks_private.outbox_partitioned() t
                 where pg_catalog.to_regclass('webhooks.' || t.table_name) is not null loop
    -- (today by the engine's clock, as the retention's: never a day it may drop)
    for v_day in select webhooks_private.utc_day(webhooks_private.clock()) + n from generate_series(0, 1) n loop
      v_name := webhooks_private.partition_name(v_table.table_name, v_day);
      v_partition := pg_catalog.to_regclass(format('webhooks_partitions.%I', v_name));
      -- DETACH … CONCURRENTLY committed its first step before this runs: refused, it
      -- would stay half done, the partition left out of every new query as one being
      -- detached. So it is attached back instead (a scan of it, its day's captures
      -- waiting for it), and said. (Told apart by its text: nothing else says so. Its
      -- word bounds as [[:<:]] and [[:>:]], not \m and \M: a DBA's session with
      -- standard_conforming_strings off read those as m and M; 15_filters.sql.)
      if tg_tag = 'ALTER TABLE' and v_partition is not null
         and not exists (select 1 from pg_catalog.pg_inherits i where i.inhrelid = v_partition)
         and pg_catalog.current_query() ~* '[[:<:]]concurrently[[:>:]]' then
        execute format('alter table webhooks.%I attach partition %s for values from (%L) to (%L)',
                       v_table.table_name, v_partition, webhooks_private.utc_day_start(v_day),
                       webhooks_private.utc_day_start(v_day + 1));
        raise warning using
          errcode = 'object_not_in_prerequisite_state',
          message = format('webhooks_partitions.%s is where captures of %s go: attached back', v_name, v_day),
          hint = 'days past the retention go by themselves (webhooks.retention)';
        continue;
      end if;
      if tg_tag = 'ALTER TABLE' and v_partition is not null
           and not exists (select 1 from pg_catalog.pg_inherits i where i.inhrelid = v_partition and not i.inhdetachpending)
         or tg_tag = 'DROP TABLE' and v_partition is null
           and not webhooks_private.day_taken(v_table.table_name, v_day)
           and not exists (select 1 from webhooks_private.partitions_by_hand(v_table.table_name) h
                           where h.starts <= webhooks_private.utc_day_start(v_day)
                             and h.ends >= webhooks_private.utc_day_start(v_day + 1)) then
        raise exception using
          errcode = 'object_not_in_prerequisite_state',
          constraint = 'outbox_day_in_use',
          message = format('webhooks_partitions.%s is where captures of %s go: it stays attached', v_name, v_day),
          hint = 'days past the retention go by themselves (webhooks.retention); a day of today or ahead can be detached only with webhooks.days_in_use_unguarded = on in the transaction, its captures failing until maintenance attaches it back';
      end if;
    end loop;
  end loop;
end;
$$;

-- (a superuser's migrate alone makes it: without it, a detach of those days is
-- attached back by the next run of maintenance, webhooks_private.create_partition)
select webhooks_private.make_event_trigger('bpd_webhooks_outbox_days_in_use',
  array['ALTER TABLE', 'DROP TABLE'], 'webhooks_private.tg_outbox__days_in_use');

-- private: attach a table's tail, from the end of its last day or span (today when it
-- has none from today on), unless one is attached. False: nothing made.
create or replace function webhooks_private.attach_tail(p_table text)
returns boolean
language plpgsql
as $$
declare
  v_table record;
  v_from date;
  v_until timestamptz;
begin
  select * into strict v_table from webhooks_private.outbox_partitioned() t where t.table_name = p_table;
  -- (one being detached is finished first, by tools/maintain.ts: the two would overlap)
  if exists (select 1 from webhooks_private.outbox_tail(p_table)) then
    return false;
  end if;
  select greatest(max(p.last_day) + 1, webhooks_private.utc_day(now())) into v_from
  from webhooks_private.outbox_partitions() p
  where p.table_name = p_table;
  v_from := coalesce(v_from, webhooks_private.utc_day(now()));
  -- after a DBA's partitions that hold times from there on (none after MAXVALUE)
  select max(h.ends) into v_until
  from webhooks_private.partitions_by_hand(p_table) h
  where h.ends > webhooks_private.utc_day_start(v_from);
  if v_until = 'infinity' then
    return false;
  end if;
  if v_until is not null then
    v_from := greatest(v_from, webhooks_private.utc_day(v_until - interval '1 microsecond') + 1);
  end if;
  return webhooks_private.attach_new_partition(p_table, v_table.key_column, v_table.storage,
    webhooks_private.tail_name(p_table, v_from), webhooks_private.utc_day_start(v_from), null);
end;
$$;

-- private (create_partitions, below): kept_since after the start of today (by now(),
-- the time captures write at) says the retention dropped today or days to come: its
-- clock ran ahead (a host's clock set wrong, then set right), and maintenance judged
-- the days by it. Those days' partitions (made ahead, empty) were dropped, so once the
-- clock came back every capture failed ("no partition of relation delivery_history
-- found for row") until the real time reached kept_since: a year ahead, a year of
-- failed CRM writes (until 2026-12-07; test/sql/clock-back.test.ts). The kept history
-- is made to start again at today's start, or after the last of those days that has
-- counts (rolled up from deliveries captured while the clock was ahead: before
-- kept_since they are that day's totals, and rows written into it again would be
-- counted in their place); the days ahead are then made as every day is. Said as a
-- warning. Returns the days taken back.
create or replace function webhooks_private.take_back_days_ahead_of_clock()
returns integer
language plpgsql
volatile
as $$
declare
  v_today constant date := webhooks_private.utc_day(now());
  v_kept constant timestamptz := webhooks.kept_since();
  v_back timestamptz;
begin
  if v_kept is null or v_kept <= webhooks_private.utc_day_start(v_today) then
    return 0;
  end if;
  select webhooks_private.utc_day_start(greatest(v_today, max(c.day) + 1)) into v_back
  from (select d.day from webhooks.delivery_day_counts d
        where d.day >= v_today and d.day < webhooks_private.utc_day(v_kept)
        union all
        select webhooks_private.utc_day(h.hour) from webhooks.delivery_hour_counts h
        where h.hour >= webhooks_private.utc_day_start(v_today) and h.hour < v_kept) c;
  if v_back >= v_kept then
    return 0;
  end if;
  update webhooks_private.outbox_kept_since set kept_since = v_back;
  raise warning 'bpd-webhooks: the kept history started at % (webhooks.kept_since()), after the start of today: the retention dropped days to come while the database''s clock ran ahead; it starts at % again, and those days are made again',
    v_kept, v_back;
  return webhooks_private.utc_day(v_kept) - webhooks_private.utc_day(v_back);
end;
$$;

-- public (for migrate, the timers of npm start, and DBAs): make the partitions of the
-- days from today to p_days_ahead days ahead, and each table's tail after them. A day
-- the tail already covers is not made here: tools/maintain.ts moves the tail first
-- (webhooks.outbox_tails says when). Never waits long for a lock (lock_timeout): a
-- day it could not make now is made by the next call. Returns how many partitions it
-- made (tails included).
select webhooks_private.drop_function_unless(
  'webhooks.create_partitions(integer)',
  'p_days_ahead integer DEFAULT webhooks_private.days_ahead()',
  'integer');
create or replace function webhooks.create_partitions(p_days_ahead integer default webhooks_private.days_ahead())
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
-- a partition waits for no lock long: claims and settles would queue behind the wait
set lock_timeout = '2s'
as $$
declare
  v_today constant date := webhooks_private.utc_day(now());
  v_made integer := 0;
  v_table record;
  v_day date;
  -- (the times a DBA's partitions hold from today on: no day is made over them)
  v_held tstzrange[];
  v_last_day date;
begin
  if p_days_ahead is null or p_days_ahead not between 0 and 366 then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('create_partitions: p_days_ahead must be from 0 to 366, got %s', coalesce(p_days_ahead::text, 'null')),
      constraint = 'create_partitions_days_ahead_range',
      column = 'p_days_ahead';
  end if;
  perform webhooks_private.note_retention();
  perform webhooks_private.take_back_days_ahead_of_clock();
  for v_table in select * from webhooks_private.outbox_partitioned() loop
    select coalesce(array_agg(tstzrange(w.starts, w.ends)), '{}') into v_held
    from webhooks_private.partitions_in_the_way(v_today) w
    where w.table_name = v_table.table_name;
    -- The days up to a DBA's partitions far ahead are made too, not the days ahead
    -- alone: the tail goes after the last of them (or there is none, after one up to
    -- MAXVALUE), so the days between had no partition, and once maintenance stopped
    -- their captures failed (test/sql/retention-hand-made.test.ts). At most a year
    -- ahead (create_partitions' own bound on p_days_ahead); days past it are made
    -- as they come within the days ahead.
    select max(case when upper(r) = 'infinity' then webhooks_private.utc_day(lower(r)) - 1
                    else webhooks_private.utc_day(upper(r) - interval '1 microsecond') end)
    into v_last_day
    from unnest(v_held) r
    where lower(r) > '-infinity';
    for v_day in
      -- (days as dates, not times: 29_retention.sql, expired_days, says why)
      select v_today + n
      from generate_series(0, least(366, greatest(p_days_ahead, coalesce(v_last_day - v_today, 0)))) n
    loop
      continue when exists (select 1 from unnest(v_held) r
                            where r && tstzrange(webhooks_private.utc_day_start(v_day),
                                                 webhooks_private.utc_day_start(v_day + 1)));
      begin
        if webhooks_private.create_partition(v_table.table_name, v_table.key_column, v_table.storage, v_day) then
          v_made := v_made + 1;
        end if;
      exception when lock_not_available then
        raise warning 'bpd-webhooks: partition % not made now (a lock was busy); the next call makes it',
          webhooks_private.partition_name(v_table.table_name, v_day);
      end;
    end loop;
    begin
      if webhooks_private.attach_tail(v_table.table_name) then
        v_made := v_made + 1;
      end if;
    exception when lock_not_available then
      raise warning 'bpd-webhooks: the tail of % not made now (a lock was busy); the next call makes it',
        v_table.table_name;
    end;
  end loop;
  -- a DBA's partition in the way: said (maintenance refuses by name after its run),
  -- every other day and the tail made all the same
  begin
    perform webhooks_private.refuse_partitions_in_the_way();
  exception when object_not_in_prerequisite_state then
    raise warning '%', sqlerrm;
  end;
  return v_made;
end;
$$;
comment on function webhooks.create_partitions(integer) is
  'Makes the outbox''s daily partitions from today to p_days_ahead days ahead, and the tail after them (migrate, and the timers of npm start, call it).';

-- private: make a day's partitions of every outbox table now, if the day is not taken
-- (for writes to the view of deliveries created on a day long past: DBAs' repairs,
-- tests; a day the tail or a span covers goes there)
create or replace function webhooks_private.ensure_day(p_day date)
returns void
language plpgsql
as $$
declare
  v_table record;
begin
  -- a day the retention dropped is not made again: its totals are kept in
  -- delivery_day_counts (29_retention.sql), and a delivery written there made the
  -- day's count be taken again from the new rows alone (until 2026-12-06: a day of 3
  -- deliveries dropped, 1 written into it, and Times Fired said 1). Asked before
  -- looking for its partitions (one read of a one-row table): a day is forgotten
  -- before its partitions go, history's first, and a run stopped in between left them
  -- there for the next; a write found them and went into the day forgotten, or, its
  -- history gone, failed with no partition for it (until 2026-12-07)
  if p_day < webhooks_private.utc_day(webhooks.kept_since()) then
    raise exception using
      errcode = 'object_not_in_prerequisite_state',
      message = format('no delivery can be written into %s: that day''s history was dropped by the retention (webhooks.kept_since() is %s), its totals kept',
                       p_day, webhooks.kept_since()),
      constraint = 'delivery_past_retention',
      column = 'created_at';
  end if;
  -- made already (the partitions of a day are made together): one catalog probe
  if to_regclass(format('webhooks_partitions.%I', webhooks_private.partition_name('delivery_attempts', p_day))) is not null then
    return;
  end if;
  -- else one maker at a time, for the whole day: a second waits until the first has
  -- committed all three tables' partitions, then finds them made (a query of its own,
  -- with a snapshot taken after the wait)
  perform pg_advisory_xact_lock(webhooks_private.partition_lock());
  if exists (select 1 from pg_class c
             where c.relname = webhooks_private.partition_name('delivery_attempts', p_day)
               and c.relnamespace = 'webhooks_partitions'::regnamespace) then
    return;
  end if;
  for v_table in select * from webhooks_private.outbox_partitioned() loop
    perform webhooks_private.create_partition(v_table.table_name, v_table.key_column, v_table.storage, p_day);
  end loop;
end;
$$;

------------------------------------------------------------------------------------
-- Moving the tail (tools/maintain.ts; docs/outbox.md)

-- private: a step that detaches partitions concurrently (the tail moved ahead, a day
-- past the retention dropped: tools/maintain.ts) refused by name (p_step says which)
-- while an outbox table has a DEFAULT partition, which only a DBA makes (the tail is
-- a range up to MAXVALUE so that there is none): beside one Postgres refuses every
-- DETACH … CONCURRENTLY, and every run of maintenance failed at that step with its
-- bare "cannot detach partitions concurrently when a default partition exists"
-- (until 2026-12-06; test/sql/retention-hand-made.test.ts).
create or replace function webhooks_private.refuse_default_partition(p_step text)
returns void
language plpgsql
stable
as $$
declare
  v_default record;
begin
  select pt.partrelid::regclass::text as parent, pt.partdefid::regclass::text as partition
  into v_default
  from pg_catalog.pg_partitioned_table pt
  where pt.partrelid in (select pg_catalog.to_regclass('webhooks.' || t.table_name)
                         from webhooks_private.outbox_partitioned() t)
    and pt.partdefid <> 0
  order by 1
  limit 1;
  if found then
    raise exception using
      errcode = 'object_not_in_prerequisite_state',
      constraint = 'outbox_default_partition',
      message = format('%s while %s has a DEFAULT partition (%s): Postgres detaches no partition concurrently beside one',
                       p_step, v_default.parent, v_default.partition),
      hint = 'detach it and put its rows back through the table (the days'' partitions and the tail take every time); the engine needs none';
  end if;
end;
$$;

-- public (maintenance): what each table's tail needs now:
--   keep    it starts after the days ahead are all made
--   detach  it is empty and starts two days or more ahead: detach it concurrently,
--           make the days (webhooks.create_partitions), then
--           webhooks.readmit_detached_tails()
--   span    it holds rows, or starts within a day: it becomes the span of days up to
--           span_until (excluded), where it is: webhooks.bound_tail, then
--           webhooks.validate_tail, then webhooks.tail_to_span, then
--           webhooks.create_partitions
-- One answer for all three tables (their days are made and dropped together).
create or replace function webhooks.outbox_tails()
returns table (table_name text, tail_name text, starts date, detach_pending boolean, action text, span_until date)
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_today constant date := webhooks_private.utc_day(now());
  v_latest date;
  v_action text := 'keep';
  v_table record;
  v_tail record;
  v_rows boolean;
begin
  -- the latest day with rows in a tail, and whether any tail must move
  for v_table in select * from webhooks_private.outbox_partitioned() loop
    for v_tail in select * from webhooks_private.outbox_tail(v_table.table_name) t where not t.detach_pending loop
      execute format('select max(%I) is not null, webhooks_private.utc_day(max(%I)) from webhooks_partitions.%I',
                     v_table.key_column, v_table.key_column, v_tail.tail_name)
        into v_rows, v_latest;
      if v_rows or v_tail.starts <= v_today + 1 then
        v_action := 'span';
        span_until := greatest(coalesce(span_until, v_today + 2), v_today + 2, v_latest + 1);
      elsif v_tail.starts <= v_today + webhooks_private.days_ahead() and v_action = 'keep' then
        v_action := 'detach';
      end if;
    end loop;
  end loop;
  for v_table in select * from webhooks_private.outbox_partitioned() loop
    for v_tail in select * from webhooks_private.outbox_tail(v_table.table_name) loop
      table_name := v_table.table_name;
      tail_name := v_tail.tail_name;
      starts := v_tail.starts;
      detach_pending := v_tail.detach_pending;
      action := case when v_tail.detach_pending then 'detach' else v_action end;
      if action = 'detach' then
        perform webhooks_private.refuse_default_partition('the tail moves no further ahead');
      end if;
      return next;
    end loop;
  end loop;
end;
$$;

-- private: the CHECK that bounds a tail to become a span
create or replace function webhooks_private.span_check()
returns text
language sql
immutable
as $$
  select 'outbox_span_bounds';
$$;

-- public (maintenance, step 1 of 3 of a tail becoming a span): forbid the tail times
-- from p_until on (a CHECK, NOT VALID: no scan; a moment's ACCESS EXCLUSIVE lock on
-- the tail alone). Its own transaction: the next step scans without that lock.
create or replace function webhooks.bound_tail(p_table text, p_until date)
returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set lock_timeout = '1s'
as $$
declare
  v_table record;
  v_tail record;
begin
  select * into strict v_table from webhooks_private.outbox_partitioned() t where t.table_name = p_table;
  select * into strict v_tail from webhooks_private.outbox_tail(p_table) t where not t.detach_pending;
  if p_until <= webhooks_private.utc_day(now()) + 1 then
    raise exception using errcode = 'invalid_parameter_value',
      message = format('a span must end two days ahead or later, not on %s: a capture today must still fit', p_until);
  end if;
  execute format('alter table webhooks_partitions.%I drop constraint if exists %I', v_tail.tail_name, webhooks_private.span_check());
  execute format('alter table webhooks_partitions.%I add constraint %I check (%I >= %L and %I < %L) not valid',
                 v_tail.tail_name, webhooks_private.span_check(),
                 v_table.key_column, webhooks_private.utc_day_start(v_tail.starts),
                 v_table.key_column, webhooks_private.utc_day_start(p_until));
end;
$$;

-- public (maintenance, step 2 of 3): check the tail's rows against the bound: a scan
-- that takes SHARE UPDATE EXCLUSIVE, so captures and settles go on meanwhile
create or replace function webhooks.validate_tail(p_table text)
returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set lock_timeout = '1s'
as $$
declare
  v_tail record;
begin
  select * into strict v_tail from webhooks_private.outbox_tail(p_table) t where not t.detach_pending;
  execute format('alter table webhooks_partitions.%I validate constraint %I', v_tail.tail_name, webhooks_private.span_check());
end;
$$;

-- public (maintenance, step 3 of 3): the bounded tail becomes the span of its days,
-- where its rows are: detached and attached again with the bounds its CHECK proves
-- (no scan), in one transaction. That transaction holds ACCESS EXCLUSIVE on the
-- parent for a moment (no DETACH … CONCURRENTLY here: the tail's times must never be
-- without a partition); it waits for it at most lock_timeout, and is tried again.
-- Then webhooks.create_partitions makes the days after the span and the new tail.
create or replace function webhooks.tail_to_span(p_table text)
returns text
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set lock_timeout = '1s'
-- the CHECK's text is read below: its times written in UTC
set timezone = 'UTC'
as $$
declare
  v_table record;
  v_tail record;
  v_until date;
  v_span text;
begin
  select * into strict v_table from webhooks_private.outbox_partitioned() t where t.table_name = p_table;
  select * into strict v_tail from webhooks_private.outbox_tail(p_table) t where not t.detach_pending;
  -- the bound, from the validated CHECK (webhooks.bound_tail made it, 'YYYY-MM-DD 00:00:00+00')
  select to_date(substring(pg_get_constraintdef(c.oid) from '< ''([0-9]{4}-[0-9]{2}-[0-9]{2})'), 'YYYY-MM-DD')
  into v_until
  from pg_constraint c
  where c.conrelid = format('webhooks_partitions.%I', v_tail.tail_name)::regclass
    and c.conname = webhooks_private.span_check() and c.convalidated;
  if v_until is null then
    raise exception using errcode = 'object_not_in_prerequisite_state',
      message = format('the tail %s has no validated bound: webhooks.bound_tail and webhooks.validate_tail come first', v_tail.tail_name);
  end if;
  v_span := webhooks_private.span_name(p_table, v_tail.starts, v_until - 1);
  execute format('alter table webhooks.%I detach partition webhooks_partitions.%I', p_table, v_tail.tail_name);
  execute format('alter table webhooks_partitions.%I rename to %I', v_tail.tail_name, v_span);
  execute format('alter table webhooks.%I attach partition webhooks_partitions.%I for values from (%L) to (%L)',
                 p_table, v_span, webhooks_private.utc_day_start(v_tail.starts), webhooks_private.utc_day_start(v_until));
  execute format('alter table webhooks_partitions.%I drop constraint %I', v_span, webhooks_private.span_check());
  -- (the times after the span, two days ahead or more, get their days and a new tail
  -- from webhooks.create_partitions, next)
  return v_span;
end;
$$;

-- public (maintenance, after a tail was detached and the days were made): rows a
-- detached tail still holds (written for a day ahead while it was being detached)
-- go back through the partitioned table to their day; then the old tail is dropped.
-- Returns the rows moved.
create or replace function webhooks.readmit_detached_tails()
returns bigint
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_table record;
  v_old record;
  v_rows bigint;
  v_moved bigint := 0;
begin
  for v_table in select * from webhooks_private.outbox_partitioned() loop
    for v_old in
      select c.relname::text as name
      from pg_class c
      where c.relnamespace = 'webhooks_partitions'::regnamespace and c.relkind = 'r'
        and c.relname ~ ('^' || v_table.table_name || '_from_[0-9]{8}$')
        and not exists (select 1 from pg_inherits i where i.inhrelid = c.oid)
    loop
      execute format('insert into webhooks.%I overriding system value select * from webhooks_partitions.%I',
                     v_table.table_name, v_old.name);
      get diagnostics v_rows = row_count;
      v_moved := v_moved + v_rows;
      execute format('drop table webhooks_partitions.%I', v_old.name);
    end loop;
  end loop;
  return v_moved;
end;
$$;

------------------------------------------------------------------------------------
-- Reaching one partition
--
-- A statement that joins a partitioned table on a created_at it learns while running
-- (a generic plan, or a join) opens and locks every partition on each call, a cost
-- that grows with the days kept (measured: a claim went from 2.7 to 9.4 ms CPU
-- between 10 and 104 partitions). The hot path reads history once per claim, from
-- each day's partition by name (webhooks_private.history_relation); inserts into
-- the partitioned tables are routed row by row and open only the partition they reach.

-- private: the relation to read a day's messages from: the day's history partition
-- (one catalog probe: nearly always), else the span or tail that holds the day, else
-- the partitioned table itself. Qualified, quoted.
drop function if exists webhooks_private.history_partition(date);
create or replace function webhooks_private.history_relation(p_day date)
returns text
language plpgsql
stable
as $$
declare
  v_partition constant text :=
    format('webhooks_partitions.%I', webhooks_private.partition_name('delivery_history', p_day));
  v_other text;
begin
  if to_regclass(v_partition) is not null then
    return v_partition;
  end if;
  select p.partition_name into v_other
  from webhooks_private.outbox_partitions() p
  where p.table_name = 'delivery_history' and p_day between p.first_day and p.last_day;
  if v_other is null then
    select t.tail_name into v_other
    from webhooks_private.outbox_tail('delivery_history') t
    where p_day >= t.starts and not t.detach_pending;
  end if;
  if v_other is not null then
    return format('webhooks_partitions.%I', v_other);
  end if;
  return 'webhooks.delivery_history';
end;
$$;

select webhooks.create_partitions();
