-- Up Migration
-- The outbox split in two, and its history partitioned by day (docs/outbox.md).
--
--   webhooks.delivery_queue     one small row per delivery still on its way (pending
--                               or in flight): the only rows claim and settle update.
--   webhooks.delivery_history   one row per message with its payload, written once
--                               when the event happens; partitioned by created_at,
--                               one partition per UTC day.
--   webhooks.delivery_results   one small row per delivery that ended (succeeded or
--                               failed), written once when it ends; partitioned alike.
--   webhooks.delivery_attempts  one row per attempt, insert-only; partitioned by the
--                               delivery's created_at, so a day of history is one
--                               partition of each and retention drops them together.
-- webhooks.deliveries becomes a view over history and queue with the columns it had
-- (sql/30_delivery.sql); writes to it still work (INSTEAD OF triggers).
--
-- Partitions live in schema webhooks_partitions, one per UTC day, named
-- <table>_pYYYYMMDD. The engine makes them ahead of time (webhooks.create_partitions(),
-- sql/22_outbox.sql, which also owns that naming; it is repeated here once, frozen, for
-- the days of the rows this migration copies). No DEFAULT partition: Postgres cannot
-- detach a partition CONCURRENTLY while one exists, and retention must not block;
-- sql/22_outbox.sql adds a tail after the days made instead (a range to MAXVALUE).

create schema if not exists webhooks_partitions;

-- Where the kept history starts: written by the retention step when it drops a day
-- (sql/29_retention.sql); no row while nothing was ever dropped.
create table webhooks_private.outbox_kept_since (
  one        boolean primary key default true check (one),
  kept_since timestamptz not null
);

-- the old tables make way; their data is copied below, then they are dropped
drop view if exists webhooks.fire_history;
alter table webhooks.deliveries rename to deliveries_0005;
alter table webhooks.delivery_attempts rename to delivery_attempts_0005;
alter index webhooks.delivery_attempts_pkey rename to delivery_attempts_0005_pkey;
alter index webhooks.delivery_attempts_delivery_idx rename to delivery_attempts_0005_delivery_idx;
alter index webhooks.delivery_attempts_company_idx rename to delivery_attempts_0005_company_idx;
drop trigger if exists _900_recount_day_on_insert on webhooks.deliveries_0005;
drop trigger if exists _900_recount_day_on_update on webhooks.deliveries_0005;
drop trigger if exists _900_recount_day_on_delete on webhooks.deliveries_0005;
drop trigger if exists _900_forget_counts_on_truncate on webhooks.deliveries_0005;

create table webhooks.delivery_history (
  id               bigint generated always as identity,
  -- the Standard Webhooks message id (header webhook-id): stable across retries
  message_id       text not null default 'msg_' || encode(uuid_send(gen_random_uuid()), 'hex'),
  -- no foreign key (as in the tables below): its check takes a key-share lock on the
  -- webhook per delivery captured, and attaching each day's partition would take a
  -- lock on webhooks.webhooks that waits for (and deadlocks with) configuration
  -- changes; a webhook's delete removes its history (sql/22_outbox.sql)
  webhook_id       bigint not null,
  company_id       bigint not null,
  action           webhooks.action not null,
  contact_id       bigint not null,
  payload          jsonb not null,
  created_at       timestamptz not null default now(),
  primary key (id, created_at)
) partition by range (created_at);
-- history and reports: one webhook's firings by time, under row-level security that
-- filters on company_id (a key column, so the filter is an index condition)
create index delivery_history_webhook_idx
  on webhooks.delivery_history (webhook_id, company_id, created_at, id);
-- the report takes test sends off Times Fired (0008_audit_log): they are few
-- the admin API's company-wide lists page one company's rows in id order (as
-- deliveries_company_idx did, 0014_company_indexes)
create index delivery_history_company_idx on webhooks.delivery_history (company_id, id);
create index delivery_history_tests_idx on webhooks.delivery_history (webhook_id, created_at)
  where action = 'webhook.test';

-- How each delivery ended: written once, when it succeeds or fails (a replay takes it
-- back). A small row apart from the payload, so that writing the end copies no payload.
create table webhooks.delivery_results (
  delivery_id      bigint not null,
  -- the delivery's created_at: the partition key, shared with its delivery
  created_at       timestamptz not null,
  webhook_id       bigint not null,
  company_id       bigint not null,
  state            text not null,
  attempts         integer not null,
  last_attempt_at  timestamptz,
  last_status_code integer,
  last_error       text,
  completed_at     timestamptz not null default now(),
  primary key (delivery_id, created_at),
  constraint delivery_results_state_final check (state in ('succeeded', 'failed')),
  constraint delivery_results_attempts_nonnegative check (attempts >= 0),
  -- a success has been tried at least once (a refused destination counts as an attempt)
  constraint delivery_results_succeeded_was_attempted check (state <> 'succeeded' or attempts >= 1)
) partition by range (created_at);
-- the report counts a webhook's outcomes by time from this index alone
create index delivery_results_webhook_idx
  on webhooks.delivery_results (webhook_id, company_id, created_at) include (state);

-- The queue: small rows (no payload), updated in place by claim, settle and rescue,
-- deleted when the delivery ends. Room on each page for the new versions.
create table webhooks.delivery_queue (
  delivery_id      bigint primary key,
  -- the delivery's created_at: which partition of history and attempts it is in
  created_at       timestamptz not null,
  webhook_id       bigint not null,
  company_id       bigint not null,
  -- what coalescing and ordered webhooks ask of the deliveries on their way
  -- (sql/25_capture.sql, sql/28_lanes.sql), answered from the queue alone
  action           webhooks.action not null,
  contact_id       bigint not null,
  next_attempt_at  timestamptz not null default now(),
  attempts         integer not null default 0,
  -- the lease: which relay holds the delivery in flight, and until when
  locked_by        text,
  locked_until     timestamptz,
  last_attempt_at  timestamptz,
  last_status_code integer,
  last_error       text,
  constraint delivery_queue_attempts_nonnegative check (attempts >= 0),
  -- in flight ⇔ leased: a row is held by exactly one relay, with an end to its lease
  constraint delivery_queue_lease_whole check ((locked_by is null) = (locked_until is null))
) with (fillfactor = 50);
-- the claim: due rows not in flight, oldest first; and one webhook's, for a refill
create index delivery_queue_due_idx on webhooks.delivery_queue (next_attempt_at)
  where locked_by is null;
create index delivery_queue_webhook_due_idx on webhooks.delivery_queue (webhook_id, next_attempt_at)
  where locked_by is null;
-- rows in flight, per webhook: what the fleet has in flight to one webhook is one
-- short index range, and the rescue's "whose lease ran out?" reads in-flight rows only
create index delivery_queue_leases_idx on webhooks.delivery_queue (webhook_id, locked_until)
  where locked_by is not null;
-- a webhook's deliveries of one contact on their way: what an update merges into
-- (coalescing), and what holds an ordered delivery back; a short range per question
-- (as deliveries_unfinished_contact_idx was, 0014_coalesce_ordered)
create index delivery_queue_contact_idx on webhooks.delivery_queue (webhook_id, contact_id, delivery_id);

-- One row per HTTP attempt (or refused send, or lease that ran out). No foreign key:
-- a key-share lock on the delivery per attempt costs more than it protects (attempts
-- are written by the engine's functions only); a webhook's delete removes its
-- attempts (sql/30_delivery.sql).
create table webhooks.delivery_attempts (
  id                  bigint generated always as identity,
  delivery_id         bigint not null,
  -- the delivery's created_at: the partition key, shared with its delivery
  delivery_created_at timestamptz not null,
  webhook_id          bigint not null,
  company_id          bigint not null,
  attempt             integer not null check (attempt >= 1),
  attempted_at        timestamptz not null,
  duration_ms         integer not null check (duration_ms >= 0),
  status_code         integer,
  error               text,
  response_body       text,
  relay_id            text,
  primary key (id, delivery_created_at),
  -- an attempt either got an HTTP status or failed with an error (or both, e.g. a 500)
  constraint delivery_attempts_has_outcome check (status_code is not null or error is not null)
) partition by range (delivery_created_at);
create index delivery_attempts_delivery_idx on webhooks.delivery_attempts (delivery_id, attempt);
create index delivery_attempts_company_idx on webhooks.delivery_attempts (company_id, id);

-- a partition for each day the old rows were created on, and today's
do $$
declare
  v_day date;
  v_table text;
begin
  for v_day in
    select distinct (created_at at time zone 'utc')::date from webhooks.deliveries_0005
    union
    select (now() at time zone 'utc')::date
  loop
    foreach v_table in array array['delivery_history', 'delivery_results', 'delivery_attempts'] loop
      execute format('create table webhooks_partitions.%I partition of webhooks.%I for values from (%L) to (%L)',
                     v_table || '_p' || to_char(v_day, 'YYYYMMDD'), v_table,
                     v_day::timestamp at time zone 'utc', (v_day + 1)::timestamp at time zone 'utc');
    end loop;
  end loop;
end;
$$;

-- the data of today's installs, ids, message ids, states and counts as they were
-- (each step says how far it got: `npm run migrate` shows the "progress: " notices)
do $$
begin
  raise notice 'progress: 0016_outbox: moving % deliveries and % attempts into the partitioned outbox',
    (select count(*) from webhooks.deliveries_0005), (select count(*) from webhooks.delivery_attempts_0005);
end;
$$;

insert into webhooks.delivery_history
  (id, message_id, webhook_id, company_id, action, contact_id, payload, created_at)
overriding system value
select id, message_id, webhook_id, company_id, action, contact_id, payload, created_at
from webhooks.deliveries_0005;
do $$ begin raise notice 'progress: 0016_outbox: 1 of 4: history copied'; end; $$;

insert into webhooks.delivery_results
  (delivery_id, created_at, webhook_id, company_id, state, attempts, last_attempt_at,
   last_status_code, last_error, completed_at)
select id, created_at, webhook_id, company_id, state, attempts, last_attempt_at,
       last_status_code, last_error, completed_at
from webhooks.deliveries_0005
where state in ('succeeded', 'failed');
do $$ begin raise notice 'progress: 0016_outbox: 2 of 4: results copied'; end; $$;

insert into webhooks.delivery_queue
  (delivery_id, created_at, webhook_id, company_id, action, contact_id, next_attempt_at, attempts, locked_by,
   locked_until, last_attempt_at, last_status_code, last_error)
select id, created_at, webhook_id, company_id, action, contact_id, next_attempt_at, attempts, locked_by,
       locked_until, last_attempt_at, last_status_code, last_error
from webhooks.deliveries_0005
where state in ('pending', 'in_flight');
do $$ begin raise notice 'progress: 0016_outbox: 3 of 4: queue copied'; end; $$;

insert into webhooks.delivery_attempts
  (id, delivery_id, delivery_created_at, webhook_id, company_id, attempt, attempted_at,
   duration_ms, status_code, error, response_body, relay_id)
overriding system value
select a.id, a.delivery_id, d.created_at, a.webhook_id, a.company_id, a.attempt, a.attempted_at,
       a.duration_ms, a.status_code, a.error, a.response_body, a.relay_id
from webhooks.delivery_attempts_0005 a
join webhooks.deliveries_0005 d on d.id = a.delivery_id;
do $$ begin raise notice 'progress: 0016_outbox: 4 of 4: attempts copied'; end; $$;

-- the identities go on from where the old ones were
select setval(pg_get_serial_sequence('webhooks.delivery_history', 'id'),
              greatest((select max(id) from webhooks.deliveries_0005), 1),
              (select max(id) is not null from webhooks.deliveries_0005));
select setval(pg_get_serial_sequence('webhooks.delivery_attempts', 'id'),
              greatest((select max(id) from webhooks.delivery_attempts_0005), 1),
              (select max(id) is not null from webhooks.delivery_attempts_0005));

-- cascade: functions and views of sql/ that name the old row type are made again by
-- sql/ right after this migration
drop table webhooks.delivery_attempts_0005 cascade;
drop table webhooks.deliveries_0005 cascade;
