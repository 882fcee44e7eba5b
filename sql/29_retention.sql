-- bpd-webhooks engine, part 2c: retention, and the totals that outlive the rows.
--
-- The outbox keeps each day of history (its partitions of delivery_history,
-- delivery_results and delivery_attempts, 22_outbox.sql) for webhooks.retention
-- (an interval, default 90 days; ALTER DATABASE … SET webhooks.retention = '30 days'),
-- then drops it whole: never a bulk DELETE. A day is dropped only when
--   - it ended more than the retention ago,
--   - none of its deliveries is pending or in flight (no queue row of that day), and
--   - every webhook that fired that day has its count in delivery_day_counts
--     (50_report_counts.sql: a day is counted only once all its deliveries ended),
-- so the report's totals and webhooks.daily_counts are the same before and after.
--
-- Dropping waits for no lock that claims and settles take: DETACH PARTITION …
-- CONCURRENTLY, which cannot run inside a transaction, so a client runs it (not a
-- function): tools/maintain.ts, which `npm run maintain` runs once and `npm start`
-- every hour. This file answers what may be dropped (webhooks.expired_days()), looks
-- once more before a day goes (webhooks.keep_day_on_its_way()), finds a day's history a
-- stopped run left detached (webhooks.detached_history_days()) and its results and
-- attempts (webhooks.detached_day_partitions()), and records where the
-- kept history starts (webhooks.forget_day(); webhooks.kept_since() reads it).

-- (webhooks_private.retention(), first_kept_day() and webhooks.kept_since(): 22_outbox.sql,
-- beside the days)

-- private: the deliveries made in [p_from, p_until) that are on their way (their queue
-- rows). The queue has no index by creation time (every capture would write it), but
-- its key is the delivery's id, and the history of those times knows their ids: the
-- least and the greatest, each one index probe of a partition that holds those times
-- (history's key, id first; the other partitions are pruned). The rows on their way
-- are among the queue rows of ids between the two, read by the queue's key, instead
-- of every company's rows: the look for deliveries past the retention (expired_days,
-- held_past_retention, 35_backfill.sql's fail_held_snapshots_past_retention) read the
-- whole queue once a run while a day past the retention was kept (2,002 rows with
-- one such day kept by two of its deliveries and 2,000 queued today, until 2026-12-06;
-- test/sql/retention-cost.test.ts). Ids follow time but for a few (a transaction's
-- time is its start), so that range holds few rows of other times; a tail or span that
-- also holds later times is read from its newest ids down to the last of those times
-- (a tail past the retention: maintenance has not run for as long). A delivery is
-- found by its history: one whose day of history is detached (a drop under way, or
-- stopped) is not (keep_day_on_its_way reads that day's own partition; history_attached
-- says which days are), nor a queue row whose history was dropped by hand (the
-- rescue's to warn of, 30_delivery.sql). SQL, so that callers inline it; the
-- callers' other conditions are applied after (offset 0), so that they never make
-- the plan read some other index of the queue whole.
create or replace function webhooks_private.queued_made(p_from timestamptz, p_until timestamptz)
returns setof webhooks.delivery_queue
language sql
stable
as $$
  select q.*
  from webhooks.delivery_queue q
  where q.delivery_id >= (select min(h.id) from webhooks.delivery_history h
                          where h.created_at >= p_from and h.created_at < p_until)
    and q.delivery_id <= (select max(h.id) from webhooks.delivery_history h
                          where h.created_at >= p_from and h.created_at < p_until)
    and q.created_at >= p_from and q.created_at < p_until
  offset 0;
$$;

-- private: is the history of the days p_first to p_last one partition attached to
-- delivery_history (not detached, nor being detached: a query of the table leaves a
-- partition being detached out)? Then queued_made finds their deliveries on their way.
create or replace function webhooks_private.history_attached(p_first date, p_last date)
returns boolean
language sql
stable
as $$
  select exists (
    select 1
    from pg_catalog.pg_inherits i
    join pg_catalog.pg_class c on c.oid = i.inhrelid
    cross join lateral webhooks_private.partition_days('delivery_history', c.relname) d
    where i.inhparent = 'webhooks.delivery_history'::regclass and not i.inhdetachpending
      and d.first_day = p_first and d.last_day = p_last
      and c.relnamespace = 'webhooks_partitions'::regnamespace);
$$;

-- private: was day p_day forgotten (webhooks.forget_day: kept_since is past it)? The
-- engine forgets a day before it detaches any of it (tools/maintain.ts), so the
-- history of a day not forgotten that is detached was detached by hand.
create or replace function webhooks_private.day_forgotten(p_day date)
returns boolean
language sql
stable
as $$
  select coalesce(webhooks_private.utc_day_start(p_day + 1) <= webhooks.kept_since(), false);
$$;

-- private: is the history of the days p_first to p_last a table of webhooks_partitions
-- attached to nothing, detached by hand (its days not forgotten)? A DBA archiving a
-- day: the retention leaves that day whole, its results and attempts attached, until
-- the DBA attaches its history back or drops it. Until 2026-12-06 it dropped the
-- day's results and attempts, and then the DBA's table itself as a run's leftover
-- (detached_history_days), or attached it back, its failures gone, when the day had
-- no count (test/sql/retention-hand-made.test.ts).
create or replace function webhooks_private.history_detached_by_hand(p_first date, p_last date)
returns boolean
language sql
stable
as $$
  select not webhooks_private.day_forgotten(p_last)
     and exists (
       select 1
       from pg_catalog.pg_class c
       where c.relnamespace = 'webhooks_partitions'::regnamespace and c.relkind = 'r'
         and c.relname = case when p_first = p_last then webhooks_private.partition_name('delivery_history', p_first)
                              else webhooks_private.span_name('delivery_history', p_first, p_last) end
         and not exists (select 1 from pg_catalog.pg_inherits i where i.inhrelid = c.oid));
$$;

-- private: has a webhook messages on day p_day, in p_history (delivery_history, or a
-- partition of it detached: keep_day_on_its_way), without its count of that day?
-- A row of delivery_day_counts exists only while it is exact (50_report_counts.sql),
-- so one probe per webhook and day says it: the day's webhooks found by a loose scan
-- of the history's webhook index (one index probe each), not by reading the day's
-- messages (a count of them all, at 10 million deliveries, took CPU from the claims
-- while a drop ran: BENCHMARKS.md). The times as constants: the plan reads the
-- partition that holds them. Each probe a scalar subquery (the row's key, or null),
-- which stays a probe: as NOT EXISTS it was planned as an anti join that read every
-- day count kept, of every webhook and day (10,000 rows with a thousand webhooks of
-- the day and ten days counted each, until 2026-12-06; test/sql/retention-cost.test.ts).
-- (p_history is engine-made: a table's name, never a caller's text.)
create or replace function webhooks_private.day_uncounted(p_history text, p_day date)
returns boolean
language plpgsql
stable
as $$
declare
  v_uncounted boolean;
begin
  execute format(
    $q$with recursive hooks(w) as (
           select min(h.webhook_id) from %4$s h
           where h.created_at >= %1$L and h.created_at < %2$L
           union all
           select (select min(h.webhook_id) from %4$s h
                   where h.webhook_id > hooks.w and h.created_at >= %1$L and h.created_at < %2$L)
           from hooks
           where hooks.w is not null)
         select exists (select 1 from hooks
                        where hooks.w is not null
                          and (select 1 from webhooks.delivery_day_counts c
                               where c.webhook_id = hooks.w and c.day = %3$L) is null
                          -- (a day of test sends alone has no count: they are in none)
                          and (select 1 from %4$s h
                               where h.webhook_id = hooks.w and h.created_at >= %1$L and h.created_at < %2$L
                                 and h.action <> 'webhook.test'
                               limit 1) is not null
                          -- (a webhook gone has no totals to keep: its rows are
                          -- its purge's, or those of a capture that committed just
                          -- after its delete, after recheck_deleted_webhooks
                          -- forgot it, 22_outbox.sql)
                          and (select 1 from webhooks.webhooks w where w.id = hooks.w) is not null)$q$,
      webhooks_private.utc_day_start(p_day), webhooks_private.utc_day_start(p_day + 1), p_day, p_history)
  into v_uncounted;
  return v_uncounted;
end;
$$;

-- public (maintenance and DBAs; not in GraphQL): the days that may be dropped now,
-- oldest first, with their partitions as parent table and partition name. A span of
-- days (22_outbox.sql) is dropped whole once its last day may be: it comes as one row,
-- its last day in day.
create or replace function webhooks.expired_days()
returns table (day date, parents text[], partitions text[])
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_before constant date := webhooks_private.first_kept_day();
  v_range record;
  v_day date;
  v_uncounted boolean;
begin
  -- (while a day is past the retention: a DEFAULT partition would make its detach fail)
  if exists (select 1 from webhooks_private.outbox_partitions() p where p.last_day < v_before) then
    perform webhooks_private.refuse_default_partition('the retention drops no day');
  end if;
  for v_range in
    select distinct p.first_day, p.last_day
    from webhooks_private.outbox_partitions() p
    where p.last_day < v_before and p.as_named
    order by p.first_day, p.last_day
  loop
    -- its history detached by hand: the DBA's, and the day with it
    continue when webhooks_private.history_detached_by_hand(v_range.first_day, v_range.last_day);
    -- still on its way: its rows of the queue, by their ids (queued_made); a day whose
    -- history a stopped run left detached (or is being detached) is looked for in the
    -- whole queue, as every day was until 2026-12-06
    continue when case
      when webhooks_private.history_attached(v_range.first_day, v_range.last_day)
        then exists (select 1 from webhooks_private.queued_made(webhooks_private.utc_day_start(v_range.first_day),
                                                                webhooks_private.utc_day_start(v_range.last_day + 1)))
      else exists (select 1 from webhooks.delivery_queue q
                   where q.created_at >= webhooks_private.utc_day_start(v_range.first_day)
                     and q.created_at < webhooks_private.utc_day_start(v_range.last_day + 1))
      end;
    -- a webhook with messages on one of those days whose count of that day is not
    -- (or no longer) rolled up (day_uncounted)
    v_uncounted := false;
    -- (days as dates: a series of times steps in the session's time zone, where a day
    -- that starts at 01:00, summer time begun at midnight, left the last day out)
    for v_day in select v_range.first_day + n from generate_series(0, v_range.last_day - v_range.first_day) n loop
      v_uncounted := webhooks_private.day_uncounted('webhooks.delivery_history', v_day);
      exit when v_uncounted;
    end loop;
    continue when v_uncounted;
    day := v_range.last_day;
    select array_agg(p.table_name order by p.table_name), array_agg(p.partition_name order by p.table_name)
    into parents, partitions
    from webhooks_private.outbox_partitions() p
    where p.first_day = v_range.first_day and p.last_day = v_range.last_day and p.as_named;
    return next;
  end loop;
end;
$$;

-- public (maintenance): the last look before a day goes, once its partition of history
-- is detached (DETACH … CONCURRENTLY: every transaction that could read the day has
-- ended, and none can find its deliveries now): is one of them on its way? expired_days
-- found none, but a replay the retention's refusal let through meanwhile (one that
-- looked just before midnight) puts one back in the queue; dropped, the day left a queue row without its message,
-- whose attempt row then had no partition: every later rescue of expired leases,
-- every company's, failed on it. Or is one of them in no count (since 2026-12-06: a
-- transaction open since that day that wrote into it, below)? Then the partition is
-- attached again (a scan of it, under a lock of it alone) and the answer is true: the
-- day stays, its results and attempts (still attached: history is detached first)
-- with it, until expired_days names it again. False: nothing of it is on its way or
-- uncounted, or it is gone.
create or replace function webhooks.keep_day_on_its_way(p_partition text)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_days record;
  v_from timestamptz;
  v_until timestamptz;
  v_first_id bigint;
  v_last_id bigint;
begin
  select * into v_days from webhooks_private.partition_days('delivery_history', p_partition);
  if not found then
    raise exception using errcode = 'invalid_parameter_value',
      message = format('%s is not a partition of days of delivery_history', p_partition);
  end if;
  if pg_catalog.to_regclass(format('webhooks_partitions.%I', p_partition)) is null then
    return false;
  end if;
  v_from := webhooks_private.utc_day_start(v_days.first_day);
  v_until := webhooks_private.utc_day_start(v_days.last_day + 1);
  -- its deliveries' ids from its own partition (detached: the table's no longer shows
  -- it), then the queue by its key between them, not the whole queue (until
  -- 2026-12-06, every company's rows once for each day dropped)
  execute format('select min(h.id), max(h.id) from webhooks_partitions.%I h', p_partition) into v_first_id, v_last_id;
  -- on its way, or without its count: a transaction open since that day (a capture
  -- takes its time from its transaction's start) that wrote into it while expired_days
  -- saw nothing there, and committed as the detach waited for it. Dropped, its
  -- deliveries were in no count: the day's totals lost for good. Kept, the roll-up
  -- counts them (its write noted the day, or the roll-up held the day back while it
  -- was open: roll_up_bounds), and a later run drops the day.
  if not exists (select 1 from webhooks.delivery_queue q
                 where q.delivery_id >= v_first_id and q.delivery_id <= v_last_id
                   and q.created_at >= v_from and q.created_at < v_until)
     and not exists (select 1 from generate_series(0, v_days.last_day - v_days.first_day) n
                     where webhooks_private.day_uncounted(format('webhooks_partitions.%I', p_partition),
                                                          v_days.first_day + n)) then
    return false;
  end if;
  if not exists (select 1 from pg_catalog.pg_inherits i
                 where i.inhrelid = format('webhooks_partitions.%I', p_partition)::regclass) then
    execute format('alter table webhooks.delivery_history attach partition webhooks_partitions.%I for values from (%L) to (%L)',
                   p_partition, v_from, v_until);
  end if;
  return true;
end;
$$;

-- public (maintenance): the partitions of history of days past the retention that are
-- attached to nothing: left by a run stopped between the detach of a day's history
-- and its drop (its results and attempts, still attached, are named by expired_days).
-- The next run looks at each once more (keep_day_on_its_way attaches it back if one of
-- its deliveries is on its way: left detached, that one was a queue row without its
-- message) and drops the others. A day kept is not named. by_hand: its day was not
-- forgotten (forget_day comes before a run detaches anything), so a DBA detached it:
-- attached back as well when one of its deliveries is on its way or in no count, and
-- else left to the DBA, never dropped (history_detached_by_hand).
select webhooks_private.drop_function_unless(
  'webhooks.detached_history_days()', '', 'TABLE(day date, partition_name text, by_hand boolean)');
create or replace function webhooks.detached_history_days()
returns table (day date, partition_name text, by_hand boolean)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select d.last_day, c.relname::text, not webhooks_private.day_forgotten(d.last_day)
  from pg_catalog.pg_class c
  cross join lateral webhooks_private.partition_days('delivery_history', c.relname) d
  where c.relnamespace = 'webhooks_partitions'::regnamespace and c.relkind = 'r'
    and not exists (select 1 from pg_catalog.pg_inherits i where i.inhrelid = c.oid)
    and d.last_day < webhooks_private.first_kept_day()
  order by 1, 2;
$$;

-- private: has table p_table the columns of the outbox's table p_parent, by name and
-- type, in order? (as a partition the engine made has: the columns are its parent's)
create or replace function webhooks_private.shaped_as(p_table oid, p_parent regclass)
returns boolean
language sql
stable
as $$
  select (select array_agg((a.attname, a.atttypid) order by a.attnum) from pg_catalog.pg_attribute a
          where a.attrelid = p_table and a.attnum > 0 and not a.attisdropped)
       = (select array_agg((a.attname, a.atttypid) order by a.attnum) from pg_catalog.pg_attribute a
          where a.attrelid = p_parent and a.attnum > 0 and not a.attisdropped);
$$;

-- public (maintenance): the partitions of results and attempts of days (or spans) that
-- are attached to nothing, and what becomes of each. A run stopped between the detach
-- of a day's results or attempts and their drop (lock_timeout, a lost connection, a
-- view of the partition that fails the drop) leaves them so; until 2026-12-07 no later
-- run looked at them, and each stayed for good, its disk space with it
-- (test/sql/retention-pending-detach.test.ts). The engine's only: in
-- webhooks_partitions, named as a day or span of that table (partition_days) and with
-- its table's columns. settle:
--   'drop': its day was forgotten (forget_day, before the engine detaches any of a
--   day, history first) and the day's history is gone: nothing reads these rows any
--   more, and the day's totals were in delivery_day_counts before it was forgotten
--   (expired_days, and keep_day_on_its_way once its history was detached, asked it);
--   'attach': the day's history is attached (a day kept, whether forgotten or not: a
--   DBA's detach, or a day kept on its way): its failures and attempts are part of it
--   (without its result row a failed delivery reads as succeeded, and a day counted
--   from the rows miscounts), so it goes back with its bounds (bound).
-- Not named: the day's history detached as well (a DBA's archive of the day: left with
-- it; or a stopped run's, which maintenance settles first, detached_history_days), or
-- gone while its day was not forgotten (by hand): the DBA's.
create or replace function webhooks.detached_day_partitions()
returns table (table_name text, partition_name text, day date, settle text, bound text)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select s.table_name, s.partition_name, s.last_day, s.settle,
         format('for values from (%L) to (%L)', webhooks_private.utc_day_start(s.first_day),
                webhooks_private.utc_day_start(s.last_day + 1))
  from (
    select t.table_name, c.relname::text as partition_name, d.first_day, d.last_day,
           case when webhooks_private.history_attached(d.first_day, d.last_day) then 'attach'
                when webhooks_private.day_forgotten(d.last_day)
                     and pg_catalog.to_regclass(format('webhooks_partitions.%I',
                           case when d.first_day = d.last_day then webhooks_private.partition_name('delivery_history', d.first_day)
                                else webhooks_private.span_name('delivery_history', d.first_day, d.last_day) end)) is null
                  then 'drop'
           end as settle
    from webhooks_private.outbox_partitioned() t
    join pg_catalog.pg_class c on c.relnamespace = 'webhooks_partitions'::regnamespace and c.relkind = 'r'
    cross join lateral webhooks_private.partition_days(t.table_name, c.relname) d
    where t.table_name <> 'delivery_history'
      and not exists (select 1 from pg_catalog.pg_inherits i where i.inhrelid = c.oid)
      and webhooks_private.shaped_as(c.oid, pg_catalog.to_regclass('webhooks.' || t.table_name))
  ) s
  where s.settle is not null
  order by s.last_day, s.table_name;
$$;

-- private: does any partition of history hold a day before the first day the retention
-- keeps (a day or span that starts before it, the tail if it starts before it, or a
-- partition of another name)? A delivery's queue row names its day of history
-- (created_at), so with none, no delivery on its way is past the retention: the look
-- for them (held_past_retention below, fail_held_snapshots_past_retention in
-- 35_backfill.sql) reads the catalog alone instead of the whole queue (every company's
-- rows: 10,000 with 10,000 queued, at every maintenance run until 2026-12-06;
-- test/sql/retention-cost.test.ts). A queue row whose day was dropped by hand keeps
-- no day, and is the rescue's to warn of (30_delivery.sql).
create or replace function webhooks_private.history_before_kept()
returns boolean
language sql
stable
as $$
  select exists (
    select 1
    from pg_catalog.pg_inherits i
    join pg_catalog.pg_class c on c.oid = i.inhrelid
    where i.inhparent = 'webhooks.delivery_history'::regclass
      and coalesce((select d.first_day from webhooks_private.partition_days('delivery_history', c.relname) d),
                   (select t.starts from webhooks_private.outbox_tail('delivery_history') t
                    where t.tail_name = c.relname),
                   '-infinity'::date) < webhooks_private.first_kept_day());
$$;

-- public (operators, maintenance): the deliveries still on their way that keep days
-- past the retention, by day and webhook. A day goes only once every delivery of it
-- has ended (expired_days), so one webhook retrying for weeks (max_attempts up to
-- 100, waits up to webhooks.retry_max_delay) keeps that day of every company's history
-- past the retention: this names it, so that the metric
-- bpd_webhooks_history_days_past_retention can be acted on (its webhook disabled, or
-- its deliveries failed, by their admin or a DBA), and maintain says it. The queue
-- is read only when a day of history is past the retention (history_before_kept),
-- and then only the rows of those days (queued_made).
create or replace function webhooks.held_past_retention()
returns table (day date, company_id bigint, webhook_id bigint, on_their_way bigint, next_attempt_at timestamptz)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select (q.created_at at time zone 'utc')::date, q.company_id, q.webhook_id, count(*), min(q.next_attempt_at)
  from webhooks_private.queued_made('-infinity', webhooks_private.utc_day_start(webhooks_private.first_kept_day())) q
  -- (read only when a day of history is past the retention: the catalog says)
  where webhooks_private.history_before_kept()
  group by 1, 2, 3
  order by 1, 2, 3;
$$;

-- public (maintenance): a day's partitions go now; the kept history starts after it.
-- Called before the first of them goes (tools/maintain.ts): a run stopped half way
-- leaves the day either before kept_since and shown whole (a day kept, its rows
-- counted one by one, webhooks.webhooks_history_count in 55_report.sql) or shown not
-- at all, never counted from its day counts while its history shows nothing.
-- False, and nothing done: a capture late in its transaction found one of the days
-- forgotten now kept and holds it until that transaction ends (day_drop_lock, taken
-- by capture_time, 22_outbox.sql): its insert may not have come yet, and would find
-- no partition. The day stays this run (its delivery then keeps it until it ends).
-- Until 2026-12-07 a drop between that capture's look and its insert failed the
-- CRM's write (test/sql/late-capture.test.ts).
select webhooks_private.drop_function_unless('webhooks.forget_day(date)', 'p_day date', 'boolean');
create or replace function webhooks.forget_day(p_day date)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  -- the days forgotten now: from the first not forgotten yet (or the first of history)
  v_from constant date := least(p_day, coalesce(
    webhooks_private.utc_day(webhooks.kept_since()),
    (select min(p.first_day) from webhooks_private.outbox_partitions() p where p.table_name = 'delivery_history'),
    p_day));
  v_day date;
begin
  -- (held until this transaction commits: a late capture that looks after that finds
  -- the day forgotten; one that holds a day makes the lock not granted, never waited for)
  for v_day in select v_from + n from generate_series(0, p_day - v_from) n loop
    if not pg_try_advisory_xact_lock(webhooks_private.day_drop_lock(v_day)) then
      return false;
    end if;
  end loop;
  insert into webhooks_private.outbox_kept_since (kept_since)
  values (webhooks_private.utc_day_start(p_day + 1))
  on conflict (one) do update set kept_since = greatest(excluded.kept_since, webhooks_private.outbox_kept_since.kept_since);
  -- the changes of contacts' ids made before it: no delivery kept was captured before
  -- them (22_outbox.sql, contact_id_now, asks only those made since a delivery's)
  delete from webhooks_private.contact_renumberings r
  where r.renumbered_at < webhooks_private.utc_day_start(p_day + 1);
  return true;
end;
$$;


-- (webhooks.daily_counts, the DBAs' totals per webhook and day kept or dropped, is in
-- 50_report_counts.sql: it reads the days not counted yet as the report does)
