-- bpd-webhooks engine: history for DBAs.
--
-- public: webhooks.fire_history, one row per firing (message) with its outcome so far.
-- security_invoker: whoever queries it sees only the rows their own grants and
-- row-level security allow on the tables beneath.
-- Replaced, not dropped and made again: the functions below return its rows, and a
-- DBA's own views may read it (a drop would fail on them when sql/ is applied again).
--
-- Each row of history the question keeps looks its outcome up in webhooks.deliveries
-- by its key (id, created_at) and webhook: one probe of its own day's partition of
-- history and of results, and of the queue. The days a question names are then the
-- days it reads of results too, however they are bounded (constants, now(),
-- current_date) and whatever the planner's settings, where the view over
-- webhooks.deliveries joined history to results by created_at, which carries no range
-- to results: each bound left out other days of history alone, and without
-- partitionwise joins (or with a bound computed as the statement starts) every result
-- row kept, of every company, was read (test/sql/fire-history-reads.test.ts). The
-- OFFSET 0 keeps the lookup a subquery of its own, run for each row with its key as a
-- value; pulled up into the join, it was the join over every day again. A question
-- that keeps many rows (a whole day of a company) pays a probe for each, about what
-- the join read of that day's results.
create or replace view webhooks.fire_history with (security_invoker = true) as
select h.id               as delivery_id,
       h.message_id,
       h.webhook_id,
       w.name             as webhook_name,
       w.company_id,
       h.action,
       h.contact_id,
       h.created_at,
       d.state,
       d.attempts,
       d.last_status_code,
       d.last_error,
       d.completed_at
from webhooks.delivery_history h
join webhooks.webhooks w on w.id = h.webhook_id
cross join lateral (
  select d.state, d.attempts, d.last_status_code, d.last_error, d.completed_at
  from webhooks.deliveries d
  where d.id = h.id and d.created_at = h.created_at and d.webhook_id = h.webhook_id
  offset 0
) d;

comment on view webhooks.fire_history is
  'Every webhook firing (one row per message) with its delivery state. For DBAs: query with psql.';
-- (what psql's \d+ shows a DBA: docs/sql.md names no column, so each says itself what
-- it holds; test/sql/dba-views.test.ts)
comment on column webhooks.fire_history.delivery_id is
  'The delivery (webhooks.deliveries.id); with created_at, the key of its attempts in webhooks.delivery_attempts (delivery_id, delivery_created_at).';
comment on column webhooks.fire_history.message_id is
  'The webhook-id header the receiver got (msg_...): the same for every attempt and every replay of the firing; webhooks.find_message() finds it.';
comment on column webhooks.fire_history.webhook_id is 'The webhook that fired (webhooks.webhooks.id).';
comment on column webhooks.fire_history.webhook_name is 'The webhook''s name now, not when it fired.';
comment on column webhooks.fire_history.company_id is 'The webhook''s company (crm.companies.id).';
comment on column webhooks.fire_history.action is
  'The event sent (the payload''s type): a contact action, contact.snapshot (a backfill''s copy of the contact) or webhook.test (a test send, contact_id 0, which Times Fired and the daily counts leave out).';
comment on column webhooks.fire_history.contact_id is
  'The contact''s id (crm.contacts.id) when it fired: firings before a change of a contact''s id name the id it had then; 0 for a test send.';
comment on column webhooks.fire_history.created_at is
  'When it fired (the writer''s change was captured). History is partitioned by its UTC day, and the daily counts count it on that UTC day, whatever the session''s time zone: bound it to read only the days asked.';
comment on column webhooks.fire_history.state is
  'pending (waiting for its next attempt, or its first), in_flight (a relay holds it and is sending it), succeeded (a 2xx answered), failed (its attempts ran out, a 410, its webhook disabled, or too large to send: last_error says). A replay makes a succeeded or failed firing pending again.';
comment on column webhooks.fire_history.attempts is
  'HTTP attempts made so far (each a row of webhooks.delivery_attempts).';
comment on column webhooks.fire_history.last_status_code is
  'The HTTP status of the last attempt; null before any attempt, or when the last got no answer (last_error says why).';
comment on column webhooks.fire_history.last_error is 'Why the last attempt failed, or why it was not sent; null after a success.';
comment on column webhooks.fire_history.completed_at is
  'When it succeeded or failed for good; null while pending or in_flight.';

------------------------------------------------------------------------------------
-- Questions DBAs and support ask of it (docs/sql.md, "Reading fire history")
--
-- History has no index by contact or by message id (every capture would pay for one:
-- docs/sql.md says what each question costs). What keeps these cheap is the days they
-- read: a bound on created_at leaves the other days' partitions of history out, and
-- each firing kept looks its outcome up in its own day (the view, above). The functions
-- below write their times into the statement, so that the days are left out as it is
-- planned (test/sql/fire-history-reads.test.ts).

-- private: the firings of webhooks.fire_history created in [p_since, p_until), of one
-- contact and/or with one message id (null: any), newest first. The times go into the
-- statement as constants; contact and message as arguments of a statement planned for
-- this call alone, so that a null one is no condition at all.
create or replace function webhooks_private.fire_history_between(
  p_since      timestamptz,
  p_until      timestamptz,
  p_contact_id bigint,
  p_message_id text
)
returns setof webhooks.fire_history
language plpgsql
stable
as $$
begin
  perform webhooks_private.requested_times(p_since, p_until);
  return query execute format(
    $q$select f.* from webhooks.fire_history f
       where f.created_at >= %L and f.created_at < %L
         and ($1::bigint is null or f.contact_id = $1::bigint)
         and ($2::text is null or f.message_id = $2::text)
       order by f.created_at desc, f.delivery_id desc$q$,
    coalesce(p_since, '-infinity'), coalesce(p_until, 'infinity'))
  using p_contact_id, p_message_id;
end;
$$;

-- public (DBAs; not in GraphQL): what fired for one contact created in [since, until),
-- newest first: the partitions of those days, each read whole (no index by contact).
-- Open ends (null) read every day kept. A contact whose id changed: its firings before
-- the change name the id it had then. Runs as its caller (row-level security applies).
--   select * from webhooks.contact_fire_history(42, now() - interval '7 days');
create or replace function webhooks.contact_fire_history(
  contact_id bigint,
  since      timestamptz default null,
  until      timestamptz default null
)
returns setof webhooks.fire_history
language plpgsql
stable
as $$
begin
  if contact_fire_history.contact_id is null then
    raise exception using errcode = 'null_value_not_allowed', message = 'contact_id is required',
      column = 'contact_id';
  end if;
  return query select * from webhooks_private.fire_history_between(since, until, contact_fire_history.contact_id, null);
end;
$$;

-- public (DBAs and support; not in GraphQL): the firing whose message id a receiver
-- got (its webhook-id header), with its outcome so far. Given the "timestamp" of the
-- payload the receiver got, it reads the hour before it: one or two days' partitions
-- (a payload's timestamp is its message's created_at, or up to
-- max_coalesce_window() later for an update merged into it while it waited). Without
-- it, history is read one day at a time, newest first, until the message is found:
-- every day kept for a message that is not there (mistyped, or of a day dropped).
-- Its attempts: webhooks.delivery_attempts where delivery_id and delivery_created_at
-- are the row's delivery_id and created_at (one partition's index).
--   select * from webhooks.find_message('msg_…', '2026-12-05T10:00:00.123456Z');
create or replace function webhooks.find_message(
  message_id        text,
  payload_timestamp timestamptz default null
)
returns setof webhooks.fire_history
language plpgsql
stable
as $$
declare
  v_day date;
  v_first date;
  v_at timestamptz;
begin
  if find_message.message_id is null then
    raise exception using errcode = 'null_value_not_allowed', message = 'message_id is required',
      column = 'message_id';
  end if;
  if payload_timestamp is not null then
    perform webhooks_private.requested_time(payload_timestamp, 'payload_timestamp');
    return query select * from webhooks_private.fire_history_between(
      payload_timestamp - webhooks_private.max_coalesce_window(), payload_timestamp + interval '1 microsecond',
      null, find_message.message_id);
    return;
  end if;
  -- (the days of history's partitions, from today back to the oldest kept; each
  -- statement history's alone, planned with its day: one partition)
  select min(p.first_day) into v_first
  from webhooks_private.outbox_partitions() p where p.table_name = 'delivery_history';
  v_day := webhooks_private.utc_day(now());
  while v_at is null and v_day >= v_first loop
    execute format(
      $q$select h.created_at from webhooks.delivery_history h
         where h.message_id = $1 and h.created_at >= %L and h.created_at < %L limit 1$q$,
      webhooks_private.utc_day_start(v_day), webhooks_private.utc_day_start(v_day + 1))
    into v_at
    using find_message.message_id;
    v_day := v_day - 1;
  end loop;
  if v_at is not null then
    return query select * from webhooks_private.fire_history_between(
      v_at, v_at + interval '1 microsecond', null, find_message.message_id);
  end if;
end;
$$;
