-- bpd-webhooks engine, part 2b: the outbox's storage (tables in migrations/0016_outbox.sql;
-- docs/outbox.md for the design and its measurements).
--
--   webhooks.delivery_history   one row per message with its payload, partitioned by
--                               created_at (UTC days); written once, by capture
--   webhooks.delivery_queue     one small row per delivery on its way: all that claim,
--                               settle and rescue update
--   webhooks.delivery_results   one small row per delivery that ended, written once
--   webhooks.delivery_attempts  one row per attempt
-- results and attempts are partitioned like history, by the delivery's created_at.
--
-- Public: the view webhooks.deliveries, the outbox as DBAs, the API and the report
-- have always read it (state pending / in_flight / succeeded / failed, attempts,
-- next_attempt_at, the lease), and writable as before; webhooks.create_partitions().

------------------------------------------------------------------------------------
-- The view

create or replace view webhooks.deliveries with (security_invoker = true) as
select h.id,
       h.message_id,
       h.webhook_id,
       h.company_id,
       h.action,
       h.contact_id,
       h.payload,
       case when q.locked_by is not null then 'in_flight'
            when r.state is not null and q.delivery_id is null then r.state
            else 'pending' end as state,
       coalesce(q.attempts, r.attempts, 0) as attempts,
       coalesce(q.next_attempt_at, r.completed_at, h.created_at) as next_attempt_at,
       q.locked_by,
       q.locked_until,
       case when q.delivery_id is null then r.last_attempt_at else q.last_attempt_at end as last_attempt_at,
       case when q.delivery_id is null then r.last_status_code else q.last_status_code end as last_status_code,
       case when q.delivery_id is null then r.last_error else q.last_error end as last_error,
       case when q.delivery_id is null then r.completed_at end as completed_at,
       h.created_at
from webhooks.delivery_history h
left join webhooks.delivery_queue q on q.delivery_id = h.id
left join webhooks.delivery_results r on r.delivery_id = h.id and r.created_at = h.created_at;

-- Writes to the view (DBAs' repairs, replays, tests) go to history, queue and
-- results: a row pending or in flight has a queue row and no result, a finished one
-- a result and no queue row.
create or replace function webhooks_private.tg_deliveries__write()
returns trigger
language plpgsql
as $$
declare
  v_queued boolean;
begin
  if tg_op = 'DELETE' then
    delete from webhooks.delivery_queue where delivery_id = old.id;
    delete from webhooks.delivery_results where delivery_id = old.id and created_at = old.created_at;
    delete from webhooks.delivery_attempts where delivery_id = old.id and delivery_created_at = old.created_at;
    delete from webhooks.delivery_history where id = old.id and created_at = old.created_at;
    return old;
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
    if new.created_at is distinct from old.created_at then
      perform webhooks_private.ensure_day(webhooks_private.utc_day(new.created_at));
    end if;
    update webhooks.delivery_history h
    set message_id = new.message_id, webhook_id = new.webhook_id, company_id = new.company_id,
        action = new.action, contact_id = new.contact_id, payload = new.payload, created_at = new.created_at
    where h.id = old.id and h.created_at = old.created_at;
    if new.created_at is distinct from old.created_at then
      update webhooks.delivery_attempts a set delivery_created_at = new.created_at
      where a.delivery_id = old.id and a.delivery_created_at = old.created_at;
    end if;
    delete from webhooks.delivery_results where delivery_id = old.id and created_at = old.created_at;
    -- a finished delivery back to pending is a replay: it goes in the audit trail
    if old.state in ('succeeded', 'failed') and new.state = 'pending' then
      perform webhooks_private.audit_replay(new.company_id, new.webhook_id, new.id);   -- 47_audit.sql
    end if;
  end if;
  v_queued := new.state in ('pending', 'in_flight');
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
  if v_queued then
    insert into webhooks.delivery_queue as q
      (delivery_id, created_at, webhook_id, company_id, action, contact_id, next_attempt_at, attempts, locked_by,
       locked_until, last_attempt_at, last_status_code, last_error)
    values (new.id, new.created_at, new.webhook_id, new.company_id, new.action, new.contact_id, new.next_attempt_at,
            new.attempts, new.locked_by, new.locked_until, new.last_attempt_at, new.last_status_code, new.last_error)
    on conflict (delivery_id) do update
      set created_at = excluded.created_at, webhook_id = excluded.webhook_id, company_id = excluded.company_id,
          action = excluded.action, contact_id = excluded.contact_id,
          next_attempt_at = excluded.next_attempt_at, attempts = excluded.attempts,
          locked_by = excluded.locked_by, locked_until = excluded.locked_until,
          last_attempt_at = excluded.last_attempt_at, last_status_code = excluded.last_status_code,
          last_error = excluded.last_error;
  else
    delete from webhooks.delivery_queue where delivery_id = new.id;
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

-- A webhook's delete takes its history, queue rows, results and attempts with it (no
-- foreign keys on them: a key-share lock per row written on the hot path costs more
-- than it protects, and a partition's foreign key, cloned when the partition is
-- attached, would lock webhooks.webhooks every day).
create or replace function webhooks_private.tg_webhooks__forget_deliveries()
returns trigger
language plpgsql
as $$
begin
  delete from webhooks.delivery_queue where webhook_id = old.id;
  delete from webhooks.delivery_results where webhook_id = old.id and company_id = old.company_id;
  delete from webhooks.delivery_attempts a
  using webhooks.delivery_history h
  where h.webhook_id = old.id and h.company_id = old.company_id
    and a.delivery_id = h.id and a.delivery_created_at = h.created_at;
  delete from webhooks.delivery_history where webhook_id = old.id and company_id = old.company_id;
  return old;
end;
$$;

drop trigger if exists _900_forget_deliveries on webhooks.webhooks;
create trigger _900_forget_deliveries
  before delete on webhooks.webhooks
  for each row execute function webhooks_private.tg_webhooks__forget_deliveries();

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

------------------------------------------------------------------------------------
-- Partitions: one per UTC day, for history and attempts alike, named
-- webhooks_partitions.<table>_pYYYYMMDD.

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

-- private: the name of one day's partition of one table
create or replace function webhooks_private.partition_name(p_table text, p_day date)
returns text
language sql
immutable
as $$
  select p_table || '_p' || to_char(p_day, 'YYYYMMDD');
$$;

-- private: make one day's partition of one table (in this transaction). Built apart and
-- attached, so that claims and settles go on meanwhile (ATTACH takes SHARE UPDATE
-- EXCLUSIVE on the parent; CREATE TABLE … PARTITION OF would take ACCESS EXCLUSIVE).
create or replace function webhooks_private.create_partition(p_table text, p_key text, p_storage text, p_day date)
returns boolean
language plpgsql
as $$
declare
  v_name constant text := webhooks_private.partition_name(p_table, p_day);
  v_from constant timestamptz := webhooks_private.utc_day_start(p_day);
  v_to constant timestamptz := webhooks_private.utc_day_start(p_day + 1);
begin
  if to_regclass(format('webhooks_partitions.%I', v_name)) is not null then
    return false;
  end if;
  -- one maker at a time: a second waits, then may find the day made (read from
  -- pg_class by a query of its own: its snapshot is taken after the wait, while
  -- to_regclass may answer from a catalog snapshot taken before it)
  perform pg_advisory_xact_lock(webhooks_private.partition_lock());
  if exists (select 1 from pg_class c
             where c.relname = v_name and c.relnamespace = 'webhooks_partitions'::regnamespace) then
    return false;
  end if;
  execute format('create table webhooks_partitions.%I (like webhooks.%I including defaults including constraints including storage) with (%s)',
                 v_name, p_table, p_storage);
  -- a CHECK of the bounds spares ATTACH a scan of the new table
  execute format('alter table webhooks_partitions.%I add constraint bounds check (%I >= %L and %I < %L)',
                 v_name, p_key, v_from, p_key, v_to);
  execute format('alter table webhooks.%I attach partition webhooks_partitions.%I for values from (%L) to (%L)',
                 p_table, v_name, v_from, v_to);
  execute format('alter table webhooks_partitions.%I drop constraint bounds', v_name);
  return true;
end;
$$;

-- public (for migrate, the timers of npm start, the relay and the API, and DBAs): make
-- the partitions of the days from today to p_days_ahead days ahead. There is no
-- DEFAULT partition (Postgres cannot detach a partition CONCURRENTLY while one exists):
-- a capture on a day without its partition would fail, so days are made two weeks
-- ahead and every hour. Never waits long for a lock (lock_timeout): a day it could not
-- make now is made by the next call. Returns how many partitions it made.
drop function if exists webhooks.create_partitions(integer);
create or replace function webhooks.create_partitions(p_days_ahead integer default 14)
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
begin
  if p_days_ahead not between 0 and 366 then
    raise exception using errcode = 'invalid_parameter_value',
      message = format('p_days_ahead must be between 0 and 366, not %s', p_days_ahead);
  end if;
  for v_table in select * from webhooks_private.outbox_partitioned() loop
    for v_day in
      select d::date from generate_series(v_today, v_today + p_days_ahead, interval '1 day') d
    loop
      begin
        if webhooks_private.create_partition(v_table.table_name, v_table.key_column, v_table.storage, v_day) then
          v_made := v_made + 1;
        end if;
      exception when lock_not_available then
        raise warning 'bpd-webhooks: partition % not made now (a lock was busy); the next call makes it',
          webhooks_private.partition_name(v_table.table_name, v_day);
      end;
    end loop;
  end loop;
  return v_made;
end;
$$;
comment on function webhooks.create_partitions(integer) is
  'Makes the outbox''s daily partitions from today to p_days_ahead days ahead (migrate, and the timers of npm start, call it).';

-- private: make a day's partitions of every outbox table now, if missing (for writes
-- to the view of deliveries created on a day long past: DBAs' repairs, tests)
create or replace function webhooks_private.ensure_day(p_day date)
returns void
language plpgsql
as $$
declare
  v_table record;
begin
  -- made already (the partitions of a day are made together): one catalog probe
  if to_regclass(format('webhooks_partitions.%I', webhooks_private.partition_name('delivery_attempts', p_day))) is not null then
    return;
  end if;
  for v_table in select * from webhooks_private.outbox_partitioned() loop
    perform webhooks_private.create_partition(v_table.table_name, v_table.key_column, v_table.storage, p_day);
  end loop;
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

-- private: the relation to read a day's messages from: the day's history partition,
-- or, should it not exist (a day whose partition was not made in time, its rows in
-- the safety net below), the partitioned table itself. Qualified, quoted.
drop function if exists webhooks_private.history_partition(date);
create or replace function webhooks_private.history_relation(p_day date)
returns text
language plpgsql
stable
as $$
declare
  v_partition constant text :=
    format('webhooks_partitions.%I', webhooks_private.partition_name('delivery_history', p_day));
begin
  if to_regclass(v_partition) is not null then
    return v_partition;
  end if;
  return 'webhooks.delivery_history';
end;
$$;

select webhooks.create_partitions();
