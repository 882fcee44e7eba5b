-- bpd-webhooks engine: daily counts that keep the report fast, and counting.
--
-- The report (webhooks.webhook_report, 55_report.sql) counts each webhook's
-- deliveries created in a date range. Counting rows costs about half a microsecond a
-- row: fine for thousands, too slow for a company with hundreds of thousands in the
-- range. So days long past are counted once, into webhooks.delivery_day_counts, and
-- the report adds those up and counts only the rest (the edges of the range, recent
-- days, days not counted yet) from the outbox.
--
-- The rule that keeps it exact: a row of delivery_day_counts exists only while it is
-- true. Only days that ended more than two days ago are counted, and only when every
-- delivery of the day has finished (succeeded or failed). Any later write to a
-- delivery older than a day (a replay, a retry, a delete, a DBA's UPDATE) drops its
-- day's row at once, in the same transaction, and notes the day for counting again.
-- Writes to recent deliveries, the relay's everyday work, pass by at the cost of one
-- test of their time. A per-webhook advisory lock orders a roll-up and such a write:
-- whichever commits second sees the other.
--
-- A day without deliveries (test sends aside) gets no row. Once a roll-up has gone
-- through every webhook, each had every day before its first day not countable then
-- (webhooks_private.all_counted_before()) counted or noted to count again: a day
-- before it without a row had no deliveries, unless it is noted, and the report counts
-- only those from the rows. Later roll-ups visit only the webhooks with deliveries
-- in the hours or days they can count now, or noted. (Until 2026-12-04 every such day had a row of zeros, for every
-- webhook, quiet or not, for ever, and every webhook was visited once a day to write
-- it.)
--
-- Who notes such a write: triggers on delivery_results (row triggers for inserts and
-- updates, a statement trigger for deletes) and on delivery_history (updates,
-- deletes), and, for a message written
-- into the past or moved to another day (another partition), a trigger on the view
-- webhooks.deliveries, after the one that writes it (22_outbox.sql). History has no
-- INSERT trigger because every capture inserts
-- there: its triggers with a WHEN each cost a matching contact write about 8 µs of
-- 98 (single UPDATE statements, rounds interleaved; docs/capture.md), whether they
-- fired or not, as Postgres copies a table's triggers, WHEN clauses as text, for every
-- statement that writes it, and parses the WHEN of those that may fire. So these
-- triggers have no WHEN (their function tests the time), and a message written into
-- the past straight into delivery_history, not through the view, is not seen: DBAs
-- write deliveries through webhooks.deliveries.
--
-- The days not counted yet (about two days of a webhook's rows) are counted by the
-- hour meanwhile, into webhooks.delivery_hour_counts: every hour of those days that
-- ended more than two hours ago and whose deliveries have all finished, an hour
-- without deliveries included (from the webhook's first delivery on, up to its last
-- visit: a roll-up visits a webhook for the hours finished since the last run only if
-- it has deliveries in them, and one with nothing else to do has only those hours
-- counted, with its batch's: roll_up_new_hours), so that the report reads one row an
-- hour where it counted every delivery. Once a day is
-- counted, its hours go. A write to a delivery older than an hour marks its hour's
-- row stale and moves the row's version on (or writes a stale row); the roll-up
-- replaces a row only if its version is still the one it read before counting. The
-- writer and the roll-up meet on that row (an upsert waits for the other's
-- uncommitted one), not on a lock held for the roll-up's whole run: a relay settling
-- a delivery that failed for good after an hour of retries never waits for a roll-up.
-- The hour's margin is an hour (the day's is a day): a write to a delivery less than
-- an hour older than the write goes unseen by that hour's row (may_be_counted), and a
-- capture's delivery takes its transaction's start for its time (marked as such a
-- write when written an hour or more after it): no period a transaction that has
-- written may write into unseen is counted while it is open (roll_up_bounds).

-- Rolling up: CALL webhooks.roll_up_report_counts(), which the API server runs every
-- few minutes (as webhook_authenticator, the one role allowed to: 60_access.sql), or a
-- DBA as owner: an entry point, so in the public schema, and hidden from GraphQL in
-- 70_graphql.sql; it commits every few webhooks, and until a new day can be counted
-- visits only the webhooks with something new to count. Counting a range:
-- webhooks_private.count_deliveries(), which the report calls. The lock's key:
-- webhooks_private.day_counts_lock (00_schemas.sql).

-- (utc_hour, recount_day and may_be_counted, which a capture written late calls too,
-- are in 22_outbox.sql)

-- (a write to a recent delivery, nearly every write, costs this call and one test;
-- the rows of a webhook being deleted are passed by: its counts go with it,
-- 22_outbox.sql)
create or replace function webhooks_private.tg_deliveries__recount_day()
returns trigger
language plpgsql
as $$
begin
  if tg_op = 'DELETE'
     and old.webhook_id::text = pg_catalog.current_setting(webhooks_private.forgotten_webhook_setting(), true) then
    return null;
  end if;
  if tg_op in ('UPDATE', 'DELETE') and webhooks_private.may_be_counted(old.created_at) then
    perform webhooks_private.recount_day(old.webhook_id, old.company_id, old.created_at);
  end if;
  if tg_op in ('UPDATE', 'INSERT') and webhooks_private.may_be_counted(new.created_at) then
    perform webhooks_private.recount_day(new.webhook_id, new.company_id, new.created_at,
                                         p_note => not (tg_table_name = 'delivery_results' and tg_op = 'INSERT'));
  end if;
  return null;
end;
$$;

create or replace function webhooks_private.tg_deliveries__forget_counts()
returns trigger
language plpgsql
as $$
begin
  truncate webhooks.delivery_day_counts, webhooks.delivery_hour_counts, webhooks_private.delivery_days_to_count,
           webhooks_private.report_counts_rolled_up, webhooks_private.webhooks_to_roll_up;
  return null;
end;
$$;

-- A delivery's day changes when its message is written or removed (history) and when
-- its failure is written or taken back by a replay (results). A day is counted only
-- once nothing of it is on its way, so a delivery ending later changes no count.
-- Messages written into the past: by the trigger on the view below (see the top).
do $$
declare
  v_table text;
begin
  foreach v_table in array array['delivery_history', 'delivery_results'] loop
    -- (three triggers with a WHEN each until 2026-12-01)
    execute format('drop trigger if exists _900_recount_day_on_insert on webhooks.%I', v_table);
    execute format('drop trigger if exists _900_recount_day_on_update on webhooks.%I', v_table);
    execute format('drop trigger if exists _900_recount_day_on_delete on webhooks.%I', v_table);
    execute format('drop trigger if exists _900_recount_day on webhooks.%I', v_table);
    -- (history: only updates of what a count depends on; a coalesced update's new
    -- payload, 25_capture.sql, calls no trigger. Results: their deletes by the
    -- statement, below)
    execute format($t$create trigger _900_recount_day
      after %s on webhooks.%I
      for each row execute function webhooks_private.tg_deliveries__recount_day()$t$,
      case when v_table = 'delivery_history' then 'update of webhook_id, company_id, action, created_at or delete'
           else 'insert or update' end,
      v_table);
    execute format('drop trigger if exists _900_forget_counts_on_truncate on webhooks.%I', v_table);
    execute format($t$create trigger _900_forget_counts_on_truncate
      after truncate on webhooks.%I
      for each statement execute function webhooks_private.tg_deliveries__forget_counts()$t$, v_table);
  end loop;
end;
$$;

-- Results deleted (a replay takes a failure back; a DBA deletes a delivery): counted
-- by the statement, each hour of each webhook once, from the deleted rows (a
-- transition table), with the oldest of them (the one a day's row depends on: a row
-- per delivery marked the same hour stale again, and replayFailed's 1,000 were 1,000
-- trigger calls and as many writes of their hour's row, test/sql/replay-cost.test.ts).
-- On the table a statement names: the engine deletes through the parent (a DBA who
-- deletes from one day's partition by hand is not seen, as with a message written
-- into the past straight into history).
create or replace function webhooks_private.tg_delivery_results__recount_deleted()
returns trigger
language plpgsql
as $$
declare
  v record;
begin
  for v in
    select g.webhook_id, g.company_id, min(g.created_at) as created_at
    from deleted_results g
    -- (the rows of a webhook being deleted are passed by: its counts go with it)
    where g.webhook_id::text is distinct from pg_catalog.current_setting(webhooks_private.forgotten_webhook_setting(), true)
      and webhooks_private.may_be_counted(g.created_at)
    group by g.webhook_id, g.company_id, webhooks_private.utc_hour(g.created_at)
    order by g.webhook_id, min(g.created_at)
  loop
    perform webhooks_private.recount_day(v.webhook_id, v.company_id, v.created_at);
  end loop;
  return null;
end;
$$;

drop trigger if exists _900_recount_deleted on webhooks.delivery_results;
create trigger _900_recount_deleted
  after delete on webhooks.delivery_results
  referencing old table as deleted_results
  for each statement execute function webhooks_private.tg_delivery_results__recount_deleted();

-- a message written into the past through the view, or moved there (history itself
-- has no INSERT trigger; and a delivery moved to another day moves to another
-- partition, which Postgres does as a DELETE and an INSERT: history's UPDATE trigger
-- does not fire, its DELETE trigger notes the time it leaves, nothing the time it
-- joins; within a day, history's UPDATE trigger sees both); and a success put back
-- on its way (a replay), which removes no result row when its relay wrote none and
-- leaves history as it was, so no table's trigger sees it. After _500_write, which
-- filled in new.created_at, in the same row.
create or replace function webhooks_private.tg_deliveries__count_written()
returns trigger
language plpgsql
as $$
begin
  if (tg_op = 'INSERT' or webhooks_private.utc_day(new.created_at) <> webhooks_private.utc_day(old.created_at)
      or (old.state = 'succeeded' and new.state in ('pending', 'in_flight')))
     and webhooks_private.may_be_counted(new.created_at) then
    perform webhooks_private.recount_day(new.webhook_id, new.company_id, new.created_at);
  end if;
  return new;
end;
$$;

drop trigger if exists _900_recount_day on webhooks.deliveries;
create trigger _900_recount_day
  instead of insert or update on webhooks.deliveries
  for each row execute function webhooks_private.tg_deliveries__count_written();

-- private: a webhook's deliveries created in [p_since, p_until), counted from the
-- rows, in one statement (one snapshot): the messages (history), those that failed
-- (results) and those still on their way (queue, one short range of each of its two
-- partial indexes: the rows waiting, and the rows in flight). The rest succeeded: a
-- success writes no row of its own (22_outbox.sql). Test sends are not counted: they
-- show in the history but were fired by no event (the report's Times Fired, and
-- webhooks.daily_counts, leave them out). Every message less the tests, each an
-- index-only count (the tests have a partial index of their own, 0020): reading each
-- message's action would cost a heap visit a message.
-- The times go into the statement as constants, so that its plan reads only the
-- partitions that hold them. As parameters (a plan made before their values are
-- known), every call opened every partition of history and results: 20 ms a call
-- with 90 days kept, and a first roll-up of 1,000 webhooks ran for minutes. (The
-- report counts the same four for many stretches at once, in count_deliveries_of
-- below: what one counts, the other must.)
create or replace function webhooks_private.count_rows(
  p_webhook_id bigint,
  p_company_id bigint,
  p_since timestamptz,
  p_until timestamptz,
  out messages bigint,
  out failures bigint,
  out on_its_way bigint
)
language plpgsql
stable
as $$
declare
  v_tests bigint;
  v_failed_tests bigint := 0;
begin
  execute format(
    $q$select (select count(*) from webhooks.delivery_history d
               where d.webhook_id = $1 and d.company_id = $2 and d.created_at >= %1$L and d.created_at < %2$L),
              (select count(*) from webhooks.delivery_history d
               where d.webhook_id = $1 and d.company_id = $2 and d.action = 'webhook.test'
                 and d.created_at >= %1$L and d.created_at < %2$L),
              (select count(*) from webhooks.delivery_results e
               where e.webhook_id = $1 and e.company_id = $2
                 and e.created_at >= %1$L and e.created_at < %2$L and e.state = 'failed'),
              (select count(*) from webhooks.delivery_queue q
               where q.webhook_id = $1 and q.locked_by is null and q.action <> 'webhook.test'
                 and q.company_id = $2 and q.created_at >= %1$L and q.created_at < %2$L)
              + (select count(*) from webhooks.delivery_queue q
                 where q.webhook_id = $1 and q.locked_by is not null and q.action <> 'webhook.test'
                   and q.company_id = $2 and q.created_at >= %1$L and q.created_at < %2$L)$q$,
    p_since, p_until)
  into messages, v_tests, failures, on_its_way
  using p_webhook_id, p_company_id;
  -- which tests failed: asked only of a stretch with tests (most have none, and the
  -- join's plan costs more than the counting)
  if v_tests > 0 then
    execute format(
      $q$select count(*) from webhooks.delivery_history d
         join webhooks.delivery_results e on e.delivery_id = d.id and e.created_at = d.created_at
         where d.webhook_id = $1 and d.company_id = $2 and d.action = 'webhook.test' and e.state = 'failed'
           and d.created_at >= %1$L and d.created_at < %2$L
           -- (said again of e: so that the plan reads the stretch's results only)
           and e.created_at >= %1$L and e.created_at < %2$L$q$,
      p_since, p_until)
    into v_failed_tests
    using p_webhook_id, p_company_id;
  end if;
  messages := messages - v_tests;
  failures := failures - v_failed_tests;
end;
$$;

-- private: as count_rows (test sends left out), for each UTC period of p_width (a day
-- or an hour) in [p_from, p_until), both on its boundaries: every period, counts of 0
-- included, in one statement: a roll-up counts all its days (or hours) of a webhook
-- at once
drop function if exists webhooks_private.count_days(bigint, bigint, date, date);
create or replace function webhooks_private.count_periods(
  p_webhook_id bigint,
  p_company_id bigint,
  p_from timestamptz,
  p_until timestamptz,
  p_width interval
)
returns table (period_start timestamptz, messages bigint, failures bigint, on_its_way bigint)
language plpgsql
stable
-- a day is 24 hours in UTC: generate_series steps in the session's time zone
set timezone = 'UTC'
as $$
declare
  v record;
begin
  for v in execute format(
    $q$select d.at as period_start, coalesce(h.n, 0) - coalesce(t.n, 0) as messages, coalesce(e.n, 0) as failures,
              coalesce(q.n, 0) as on_its_way, coalesce(t.n, 0) as tests
       from generate_series(%1$L::timestamptz, %2$L::timestamptz - %3$L::interval, %3$L::interval) d(at)
       left join (select webhooks_private.utc_bin(%3$L, h.created_at) as at, count(*) as n
                  from webhooks.delivery_history h
                  where h.webhook_id = $1 and h.company_id = $2 and h.created_at >= %1$L and h.created_at < %2$L
                  group by 1) h on h.at = d.at
       left join (select webhooks_private.utc_bin(%3$L, e.created_at) as at, count(*) as n
                  from webhooks.delivery_results e
                  where e.webhook_id = $1 and e.company_id = $2
                    and e.created_at >= %1$L and e.created_at < %2$L and e.state = 'failed'
                  group by 1) e on e.at = d.at
       left join (select webhooks_private.utc_bin(%3$L, h.created_at) as at, count(*) as n
                  from webhooks.delivery_history h
                  where h.webhook_id = $1 and h.company_id = $2 and h.action = 'webhook.test'
                    and h.created_at >= %1$L and h.created_at < %2$L
                  group by 1) t on t.at = d.at
       left join (select webhooks_private.utc_bin(%3$L, q.created_at) as at, count(*) as n
                  from (select q.created_at from webhooks.delivery_queue q
                        where q.webhook_id = $1 and q.locked_by is null and q.action <> 'webhook.test'
                          and q.company_id = $2 and q.created_at >= %1$L and q.created_at < %2$L
                        union all
                        select q.created_at from webhooks.delivery_queue q
                        where q.webhook_id = $1 and q.locked_by is not null and q.action <> 'webhook.test'
                          and q.company_id = $2 and q.created_at >= %1$L and q.created_at < %2$L) q
                  group by 1) q on q.at = d.at$q$,
    p_from, p_until, p_width)
  using p_webhook_id, p_company_id
  loop
    period_start := v.period_start;
    messages := v.messages;
    on_its_way := v.on_its_way;
    failures := v.failures;
    -- a period with tests: its failures without the tests that failed, from count_rows
    -- (which asks which tests failed only then: most periods have none)
    if v.tests > 0 then
      select c.failures into failures
      from webhooks_private.count_rows(p_webhook_id, p_company_id, v.period_start, v.period_start + p_width) c;
    end if;
    return next;
  end loop;
end;
$$;

-- private: count the finished hours of one webhook's days not counted yet, from the
-- first hour without a true row (and not before its first delivery of those days) to
-- the last before p_until (the run's first hour not countable: roll_up_bounds). No
-- lock: a row is replaced only if its version is still the one read before counting
-- (a writer that changed a delivery of the hour meanwhile moved it on, and the hour
-- stays stale until the next roll-up). Returns whether a
-- finished hour is left for a delivery on its way (the next roll-up visits the
-- webhook again: webhooks_to_roll_up).
-- (returned nothing until 2026-12-06; counted up to the hours of now() - 2 hours,
-- not p_until, until 2026-12-06)
drop function if exists webhooks_private.roll_up_webhook_hours(bigint, bigint, date);
create or replace function webhooks_private.roll_up_webhook_hours(p_webhook_id bigint, p_company_id bigint, p_first_day date,
                                                                  p_until timestamptz)
returns boolean
language plpgsql
-- each statement reads one webhook's rows, by the key of its table. Planned while the
-- statistics said the hour counts were empty (analyzed before anything fired, as a
-- VACUUM ANALYZE of a new database leaves them), every statement read the whole
-- table, and its plan was kept for the session: a first roll-up, which fills the
-- table, read it once a statement a webhook (1,581,876 rows for the 2,700 of 300
-- webhooks; 236 s for 10,000 in a scratch test; test/sql/roll-up-cost.test.ts)
set enable_seqscan = off
set jit = off
as $$
declare
  v_until constant timestamptz := p_until;
  v_from timestamptz;
  v_first timestamptz;
  v_hours timestamptz[];
  v_versions bigint[];
  v_on_their_way timestamptz[];
begin
  -- the hours of counted days are the day's now
  delete from webhooks.delivery_hour_counts
  where webhook_id = p_webhook_id and hour < webhooks_private.utc_day_start(p_first_day);
  -- its first delivery of those days: a webhook with none there gets no rows, and the
  -- report counts its few rows. (A statement of its own, its plan kept for the
  -- roll-up's session and its partitions chosen as it starts: with the time a
  -- constant, each call planned the partitions from that day on, 2.8 ms a webhook
  -- against 0.06 (a scratch test of 4,900 webhooks, 2026-12-03), most of a roll-up
  -- that found nothing new.)
  select webhooks_private.utc_hour(min(h.created_at)) into v_first
  from webhooks.delivery_history h
  where h.webhook_id = p_webhook_id and h.company_id = p_company_id
    and h.created_at >= webhooks_private.utc_day_start(p_first_day);
  if v_first is null or v_first >= v_until then
    return false;   -- no delivery in those days, or none before the last hour to count
  end if;
  -- the finished hours with a delivery on its way (waiting and in flight apart, each
  -- by the queue's index of its kind: asked of both at once, which neither index
  -- serves, every company's queue rows were read for each webhook visited, until
  -- 2026-12-06; test/sql/roll-up-cost.test.ts)
  v_on_their_way := array(
    select webhooks_private.utc_hour(q.created_at) from webhooks.delivery_queue q
    where q.webhook_id = p_webhook_id and q.locked_by is null and q.created_at >= v_first and q.created_at < v_until
      and q.action <> 'webhook.test'
    union
    select webhooks_private.utc_hour(q.created_at) from webhooks.delivery_queue q
    where q.webhook_id = p_webhook_id and q.locked_by is not null and q.created_at >= v_first and q.created_at < v_until
      and q.action <> 'webhook.test');
  -- from there, the first hour without a true row and with nothing on its way. (The
  -- hours before the first delivery have no rows: looked for from the day's start,
  -- the first of them was found every time, and every hour after it counted again;
  -- an hour with a delivery on its way cannot be counted yet. Each alone made most
  -- webhooks of bench:api count all their hours again at every roll-up: 1.2 ms a
  -- webhook, 2026-12-03. The true hours and those on their way are each read once,
  -- into a hash: a probe of the key per hour cost 0.19 ms a webhook.)
  select min(h.at) into v_from
  from generate_series(v_first, v_until - interval '1 hour', interval '1 hour') h(at)
  where h.at not in (select c.hour from webhooks.delivery_hour_counts c
                     where c.webhook_id = p_webhook_id and c.hour >= v_first and not c.stale)
    and h.at <> all (v_on_their_way);
  if v_from is null then
    return cardinality(v_on_their_way) > 0;   -- nothing new
  end if;
  -- the versions before counting (a statement, so a snapshot, of its own)
  select coalesce(array_agg(c.hour), '{}'), coalesce(array_agg(c.version), '{}') into v_hours, v_versions
  from webhooks.delivery_hour_counts c
  where c.webhook_id = p_webhook_id and c.hour >= v_from and c.hour < v_until;
  insert into webhooks.delivery_hour_counts as c (webhook_id, company_id, hour, fired, succeeded, failed, stale, version)
  select p_webhook_id, p_company_id, k.period_start, k.messages, k.messages - k.failures, k.failures, false,
         coalesce(v.version, 0)   -- the version read (0: no row then)
  from webhooks_private.count_periods(p_webhook_id, p_company_id, v_from, v_until, interval '1 hour') k
  left join unnest(v_hours, v_versions) as v(hour, version) on v.hour = k.period_start
  where k.on_its_way = 0
  on conflict (webhook_id, hour) do update
    set fired = excluded.fired, succeeded = excluded.succeeded, failed = excluded.failed, stale = false
    where c.version = excluded.version
      -- (an hour still on its way after v_from is counted again with it, and the
      -- hours after it: those already true are not written again)
      and (c.fired, c.succeeded, c.failed, c.stale) is distinct from (excluded.fired, excluded.succeeded, excluded.failed, false);
  return cardinality(v_on_their_way) > 0;
end;
$$;

-- private: the first day not countable yet at p_now: days are counted once they ended
-- more than two days ago (a writer's WHEN allows a day's margin)
drop function if exists webhooks_private.countable_before();
create or replace function webhooks_private.countable_before(p_now timestamptz default now())
returns date
language sql
stable
as $$
  select webhooks_private.utc_day(p_now - interval '2 days');
$$;

-- private: the 64-bit id (xid8) of a running transaction's 32-bit one, which wraps
-- around every 2^32 transactions: the one nearest p_near, a snapshot's xmax, which is
-- within 2^31 of every running transaction's (before it, or after: one given its id
-- after the snapshot's last completed). Across an epoch's end too
-- (test/sql/xid-wraparound.test.ts).
create or replace function webhooks_private.xid8_near(p_xid xid, p_near xid8)
returns xid8
language sql
immutable
as $$
  select (p_near::text::numeric
          + ((p_xid::text::numeric - p_near::text::numeric % 4294967296 + 6442450944) % 4294967296 - 2147483648))::text::xid8;
$$;

-- private: the oldest transaction id of the transactions that write in this database
-- now, other than this one (null: none): those running that hold a lock of one of its
-- relations (every writer does, from its first write to its end) and those prepared.
-- From pg_locks, pg_prepared_xacts and a snapshot, which show every role's
-- transactions to any role (pg_stat_activity shows another role's transaction start
-- only to superusers and members of pg_read_all_stats: the engine's owner, in a
-- deployment, sees none of the CRM's; test/sql/roll-up-writer-roles.test.ts).
-- A transaction that only reads (a pg_dump, a session idle in transaction after
-- reads) has no transaction id and is not one of them, nor is a transaction of another
-- database. Autovacuum's workers, which write no deliveries, are left out (else one
-- holds the roll-up back for the instant it analyzes): told, as the owner is shown
-- them, as server processes of no role (usesysid null, which pg_stat_activity shows
-- every role; their backend_type only to a superuser or a member of
-- pg_read_all_stats; test/sql/autovacuum-workers.test.ts). Of the processes of no
-- role only autovacuum's workers hold locks in a database of a primary server
-- (parallel workers, logical replication's and other background workers run as a
-- role); tools/migrate.ts tells them so too (AUTOVACUUM_WORKER), where this file may
-- not exist yet.
-- Reads the lock table once: about 0.3 ms with 100 locks held, once a batch.
create or replace function webhooks_private.oldest_writer_xid()
returns xid8
-- (PL/pgSQL: its plan kept for the session, where a SQL function's was made each call,
-- most of its cost)
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  return (
  with locks as materialized (
    -- (the lock table read once)
    select l.locktype, l.transactionid, l.virtualtransaction, l.database, l.pid
    from pg_catalog.pg_locks l
    where l.granted and (l.locktype = 'relation' or (l.locktype = 'transactionid' and l.mode = 'ExclusiveLock'))
  ),
  writers as (
    -- (a transaction holds its own id's lock, exclusive, from the moment it has one)
    select x.transactionid as xid
    from locks x
    where x.locktype = 'transactionid' and x.pid is distinct from pg_catalog.pg_backend_pid()
      and x.virtualtransaction in (select r.virtualtransaction from locks r
                                   where r.locktype = 'relation'
                                     and r.database = (select d.oid from pg_catalog.pg_database d
                                                       where d.datname = pg_catalog.current_database()))
      and x.pid not in (select s.pid from pg_catalog.pg_stat_activity s
                        where s.usesysid is null and s.pid is not null)
    union all
    select p.transaction from pg_catalog.pg_prepared_xacts p where p.database = pg_catalog.current_database()
  )
  -- (pg_locks names a transaction by its 32-bit id: made 64-bit by xid8_near. Not the
  -- snapshot's list of running ids itself: it leaves out those at or past its xmax,
  -- the last one completed + 1)
  select min(webhooks_private.xid8_near(w.xid, k.near))
  from writers w
  cross join (select pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot()) as near) k);
end;
$$;

-- private: note this transaction's id with p_now, the roll-up's clock (its start,
-- before the id was given): every transaction with a lower id had one, so had
-- written, before p_now. (Not the snapshot's xmax, the last id completed + 1: a
-- transaction given its id before p_now and still running may be past it.) Each run
-- notes it once, in its first batch; the rows older than the newest one every writer
-- now running is past are of no use any more (the oldest writer's id only grows).
create or replace function webhooks_private.note_xid_watermark(p_now timestamptz)
returns void
language plpgsql
volatile
as $$
declare
  v_next constant xid8 := pg_catalog.pg_current_xact_id();
  v_oldest constant xid8 := coalesce(webhooks_private.oldest_writer_xid(), v_next);
begin
  insert into webhooks_private.xid_watermarks (next_xid, at)
  values (v_next, p_now)
  on conflict do nothing;
  delete from webhooks_private.xid_watermarks w
  where w.next_xid < (select max(k.next_xid) from webhooks_private.xid_watermarks k where k.next_xid <= v_oldest);
end;
$$;

-- private: a time by which every transaction that writes in this database now had
-- begun writing after it, as far as the roll-up can tell: p_now when none writes
-- (those that only read have written nothing yet), else the time of the newest
-- watermark (note_xid_watermark) that the oldest writer's transaction id is past,
-- '-infinity' when none is (a writer older than every watermark, prepared ones
-- included).
create or replace function webhooks_private.writers_began_after(p_now timestamptz)
returns timestamptz
language plpgsql
volatile
as $$
declare
  v_oldest constant xid8 := webhooks_private.oldest_writer_xid();
begin
  if v_oldest is null then
    return p_now;
  end if;
  return coalesce((select w.at from webhooks_private.xid_watermarks w where w.next_xid <= v_oldest
                   order by w.next_xid desc limit 1),
                  '-infinity');
end;
$$;

-- private: the first hour and the first day a roll-up at p_now does not count. Hours
-- are counted two hours after they end, days two days; and none a transaction still
-- open may write unseen. Its captures take their time from its start (now()), and a
-- write marks an older delivery's hour stale only when that delivery is an hour older
-- than the time of the write (may_be_counted), its day a day older (recount_day);
-- a capture an hour or more after its transaction's start is such a write
-- (enqueue, 25_capture.sql). So a transaction that wrote nothing by the time w
-- (writers_began_after) may write unseen only into the hours from the one of
-- w - 1 hour on, the days from the one of w - 1 day on; one that had written before
-- w has a transaction id below that watermark, and holds w back until it ends. Counted
-- sooner, the hour of a CRM transaction open for more than two hours was counted
-- without the deliveries it wrote, and kept so (test/sql/roll-up-open-transaction.test.ts,
-- test/sql/roll-up-writer-roles.test.ts). A transaction that only reads holds nothing
-- back, however long it is open. The bounds are read before any counting, so a
-- transaction that ends meanwhile has committed what the counts read.
-- (From the start of the oldest open transaction in pg_stat_activity until 2026-12-06:
-- blind to other roles' transactions but for superusers and pg_read_all_stats, and a
-- pg_dump of three hours held every hour back.)
drop function if exists webhooks_private.open_since();
create or replace function webhooks_private.roll_up_bounds(p_now timestamptz, out hours_before timestamptz,
                                                           out days_before date)
language plpgsql
volatile
as $$
declare
  v_began_after constant timestamptz := webhooks_private.writers_began_after(p_now);
begin
  if v_began_after = '-infinity' then
    hours_before := '-infinity';
    days_before := '-infinity';
    return;
  end if;
  hours_before := webhooks_private.utc_hour(least(p_now - interval '2 hours', v_began_after - interval '1 hour'));
  days_before := least(webhooks_private.countable_before(p_now), webhooks_private.utc_day(v_began_after - interval '1 day'));
end;
$$;

-- private: the first day not counted for every webhook: the last roll-up that went
-- through all of them (report_counts_rolled_up) counted each one's days before it, or
-- noted them to count again; and a day counted without deliveries has no row. So a
-- day before it without a row of a webhook had none of its deliveries, unless noted.
-- Null while no roll-up has gone through every webhook. As the owner: the report
-- asks it for its callers.
create or replace function webhooks_private.all_counted_before()
returns date
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select r.counted_before from webhooks_private.report_counts_rolled_up r;
$$;

-- public (DBAs): one row per webhook per UTC day with deliveries, kept or already
-- dropped: days counted by the roll-up from delivery_day_counts, the rest counted from
-- the rows. Test sends are left out, as in the report's Times Fired. Runs as its
-- caller (row-level security applies).
-- The rows counted are those of the days the roll-up may not have counted, as the
-- report finds them (webhook_report_counts, below): the days since the last roll-up
-- through every webhook (all_counted_before, above), and before them the days noted
-- to count again (delivery_days_to_count), each one webhook's range of one partition.
-- Each bound is a subquery, computed once and handed to the partitions' pruning, on
-- history and on results alike (a bound on one is not carried to the other by their
-- join). Until 2026-12-06 every row kept was read and tested against the day counts
-- (a company's year of totals read all of its history and every failure of every
-- company kept: test/sql/fire-history-reads.test.ts), where nearly every day
-- before the last two is counted.
create or replace view webhooks.daily_counts with (security_invoker = true) as
select c.webhook_id, c.company_id, c.day, c.fired, c.succeeded, c.failed, 0::bigint as pending
from webhooks.delivery_day_counts c
-- (the roll-up writes no row for a day without deliveries; one written by hand would
-- have nothing to say here)
where c.fired > 0
union all
select h.webhook_id, h.company_id, h.day,
       count(*) as fired,
       -- (as count_rows, above: what is neither on its way nor failed succeeded)
       count(*) filter (where not h.queued and h.result is distinct from 'failed') as succeeded,
       count(*) filter (where h.result = 'failed') as failed,
       count(*) filter (where h.queued) as pending
from (
  -- the days since every webhook was last counted (all of them before any roll-up)
  select h.webhook_id, h.company_id, webhooks_private.utc_day(h.created_at) as day, h.action,
         q.delivery_id is not null as queued, r.state as result
  from webhooks.delivery_history h
  -- (by webhook too, as in webhooks.deliveries, 22_outbox.sql: one webhook's days read
  -- its own queue and result rows, not its company's)
  left join webhooks.delivery_queue q on q.delivery_id = h.id and q.webhook_id = h.webhook_id
  left join webhooks.delivery_results r
    on r.delivery_id = h.id and r.created_at = h.created_at and r.webhook_id = h.webhook_id
   and r.created_at >= (select coalesce(webhooks_private.utc_day_start(webhooks_private.all_counted_before()), '-infinity'))
  where h.created_at >= (select coalesce(webhooks_private.utc_day_start(webhooks_private.all_counted_before()), '-infinity'))
  union all
  -- the days before them noted to count again
  select h.webhook_id, h.company_id, n.day, h.action, q.delivery_id is not null, r.state
  from webhooks_private.delivery_days_to_count n
  join webhooks.delivery_history h
    on h.webhook_id = n.webhook_id and h.company_id = n.company_id
   and h.created_at >= webhooks_private.utc_day_start(n.day) and h.created_at < webhooks_private.utc_day_start(n.day + 1)
  left join webhooks.delivery_queue q on q.delivery_id = h.id and q.webhook_id = h.webhook_id
  left join webhooks.delivery_results r
    on r.delivery_id = h.id and r.created_at = h.created_at and r.webhook_id = h.webhook_id
   and r.created_at >= webhooks_private.utc_day_start(n.day) and r.created_at < webhooks_private.utc_day_start(n.day + 1)
  where n.day < (select webhooks_private.all_counted_before())
) h
where h.action <> 'webhook.test'
  -- (a deleted webhook's counts went with it; its rows go soon, 22_outbox.sql)
  and h.webhook_id <> all ((select webhooks_private.deleted_webhooks())::bigint[])
  and not exists (select 1 from webhooks.delivery_day_counts c
                  where c.webhook_id = h.webhook_id and c.day = h.day)
group by h.webhook_id, h.company_id, h.day
-- (and of a webhook that is: a change whose capture read the subscriptions before a
-- webhook's delete committed writes its delivery after it, noted for the purge only
-- when maintenance looks again, recheck_deleted_webhooks, 22_outbox.sql; until then
-- its day showed here for a webhook gone, until 2026-12-07. One probe of the key a
-- webhook and day.)
having exists (select 1 from webhooks.webhooks w where w.id = h.webhook_id);

-- (what psql's \d+ shows a DBA, each column saying what it counts; the view's own
-- comment is in 70_graphql.sql; test/sql/dba-views.test.ts)
comment on column webhooks.daily_counts.webhook_id is 'The webhook (webhooks.webhooks.id); a deleted webhook''s days go with it.';
comment on column webhooks.daily_counts.company_id is 'The webhook''s company (crm.companies.id).';
comment on column webhooks.daily_counts.day is
  'The UTC day of the firings'' created_at, whatever the session''s time zone (yesterday in UTC: day = (now() at time zone ''utc'')::date - 1). One row per webhook and day with firings, kept or dropped by the retention.';
comment on column webhooks.daily_counts.fired is
  'Messages fired that day, as Times Fired counts them: test sends (webhook.test) left out; a backfill''s contact.snapshot counted; a burst of updates merged into one message by a coalesce_window counted once, and a replay adds none.';
comment on column webhooks.daily_counts.succeeded is 'Of fired, those that succeeded (so far, on a day not yet rolled up).';
comment on column webhooks.daily_counts.failed is 'Of fired, those that failed for good (so far: a replay may make one pending again).';
comment on column webhooks.daily_counts.pending is
  'Of fired, those still on their way (waiting or in flight); 0 on a day rolled up, which is counted only once nothing of it is on its way.';

-- private: the first day of a webhook not counted yet: after its last day counted,
-- or where every webhook is counted to (all_counted_before, passed in: read once a
-- run), whichever is later; null when neither is known (its days start at its first
-- delivery). What a visit counts from, and what says a webhook has no day to count
-- (this is at or past the run's first day not countable).
create or replace function webhooks_private.first_day_uncounted(p_webhook_id bigint, p_all_counted_before date)
returns date
language sql
stable
as $$
  select greatest((select max(c.day) + 1 from webhooks.delivery_day_counts c where c.webhook_id = p_webhook_id),
                  p_all_counted_before);
$$;

-- private: count the days of one webhook that can be counted now: days noted for
-- counting again, and days after the last one counted; a day not finished yet is
-- noted for next time. Then the finished hours of the days not counted yet
-- (roll_up_webhook_hours). Days before p_days_before and hours before p_hours_before
-- may be counted (roll_up_bounds). Returns how many days it counted.
-- (counted up to countable_before() until 2026-12-06)
drop function if exists webhooks_private.roll_up_webhook_days(bigint);
create or replace function webhooks_private.roll_up_webhook_days(p_webhook_id bigint, p_days_before date,
                                                                 p_hours_before timestamptz)
returns integer
language plpgsql
-- (by the keys of its tables, as roll_up_webhook_hours, whatever the statistics say)
set enable_seqscan = off
set jit = off
as $$
declare
  v_before constant date := p_days_before;
  v_company_id bigint;
  v_from date;
  -- every webhook's days before it are counted, or noted to count again, or had no
  -- deliveries (null: no roll-up has gone through every webhook yet)
  v_all_counted_before constant date := webhooks_private.all_counted_before();
  v_days date[];
  v_count record;
  v_counted integer := 0;
begin
  select company_id into v_company_id from webhooks.webhooks where id = p_webhook_id;
  if not found then
    delete from webhooks_private.delivery_days_to_count where webhook_id = p_webhook_id;
    delete from webhooks_private.webhooks_to_roll_up where webhook_id = p_webhook_id;
    return 0;
  end if;
  -- noted for the next run while a finished hour waits for a delivery on its way or
  -- an hour's row is stale (a writer's since the count, or of an hour not finished)
  if webhooks_private.roll_up_webhook_hours(p_webhook_id, v_company_id, v_before, p_hours_before) then
    insert into webhooks_private.webhooks_to_roll_up (webhook_id) values (p_webhook_id) on conflict do nothing;
  else
    delete from webhooks_private.webhooks_to_roll_up n
    where n.webhook_id = p_webhook_id
      and not exists (select 1 from webhooks.delivery_hour_counts c where c.webhook_id = p_webhook_id and c.stale);
  end if;
  -- most runs find no day to count for most webhooks: say so without taking the lock
  -- (which would make a writer of an old delivery wait until this run commits)
  if not exists (select 1 from webhooks_private.delivery_days_to_count where webhook_id = p_webhook_id and day < v_before)
     and webhooks_private.first_day_uncounted(p_webhook_id, v_all_counted_before) >= v_before then
    return 0;
  end if;
  perform pg_advisory_xact_lock(webhooks_private.day_counts_lock(p_webhook_id));
  -- new days start after the last day counted, or where every webhook is counted to,
  -- else at the first delivery. (Not after the last day noted, as until 2026-12-04: a
  -- writer notes days not countable yet too, a retry's settle a day after its
  -- delivery, and the days between were then never counted: left to count from the
  -- rows for ever, and kept by the retention for ever. The days noted come in below.)
  v_from := webhooks_private.first_day_uncounted(p_webhook_id, v_all_counted_before);
  if v_from is null then
    select webhooks_private.utc_day(min(created_at)) into v_from
    from webhooks.delivery_history where webhook_id = p_webhook_id and company_id = v_company_id;
  end if;

  select array_agg(d order by d) into v_days
  from (select n.day as d from webhooks_private.delivery_days_to_count n
        where n.webhook_id = p_webhook_id and n.day < v_before
        union
        -- (days as dates, not times: 29_retention.sql, expired_days, says why)
        select v_from + n from generate_series(0, v_before - 1 - v_from) n where v_from is not null) days;
  if v_days is null then
    return 0;
  end if;

  -- every day to count, counted in one statement (one per day cost a plan each)
  for v_count in
    select webhooks_private.utc_day(k.period_start) as day, k.messages, k.failures, k.on_its_way
    from webhooks_private.count_periods(p_webhook_id, v_company_id, webhooks_private.utc_day_start(v_days[1]),
                                        webhooks_private.utc_day_start(v_days[cardinality(v_days)] + 1), interval '1 day') k
    where webhooks_private.utc_day(k.period_start) = any (v_days)
    order by k.period_start
  loop
    if v_count.on_its_way = 0 then
      -- (a day without deliveries gets no row: see the top)
      if v_count.messages > 0 then
        insert into webhooks.delivery_day_counts (webhook_id, company_id, day, fired, succeeded, failed)
        values (p_webhook_id, v_company_id, v_count.day, v_count.messages, v_count.messages - v_count.failures,
                v_count.failures)
        on conflict (webhook_id, day) do update
          set fired = excluded.fired, succeeded = excluded.succeeded, failed = excluded.failed;
      end if;
      delete from webhooks_private.delivery_days_to_count where webhook_id = p_webhook_id and day = v_count.day;
      v_counted := v_counted + 1;
    else
      insert into webhooks_private.delivery_days_to_count (webhook_id, company_id, day)
      values (p_webhook_id, v_company_id, v_count.day)
      on conflict do nothing;
    end if;
  end loop;
  return v_counted;
end;
$$;

-- private: the first p_max webhooks after p_after with deliveries created in [p_since,
-- p_until), in the order of their ids: a walk of the history index from one webhook
-- to the next over the days of those hours (one probe a webhook of those days), each
-- asked for a delivery in the hours by a probe of its own (with its company, a key
-- column of the index before the time, read from the entry the walk stands on: a
-- webhook's company never changes, 10_config.sql). Two entries a webhook that fired
-- those days (and the rows they point to, the day's visibility map being behind):
-- 10,000 such webhooks, 140 ms and 90,242 buffers with a third probe, of
-- webhooks.webhooks for the company (a scratch test, 2026-12-06). A deleted webhook
-- whose rows are still there may be named: its visit drops what it left.
-- (No index led by the time: every capture would write it, and it reads a delivery
-- an entry, where the walk reads a webhook: docs/outbox.md)
create or replace function webhooks_private.webhooks_with_deliveries(
  p_after bigint, p_since timestamptz, p_until timestamptz, p_max integer)
returns table (webhook_id bigint)
language sql
stable
as $$
  with recursive walked(webhook_id, company_id) as (
    (select h.webhook_id, h.company_id from webhooks.delivery_history h
     where h.webhook_id > p_after and p_since < p_until
       and h.created_at >= webhooks_private.utc_day_start(webhooks_private.utc_day(p_since))
       and h.created_at < p_until
     order by h.webhook_id, h.company_id
     limit 1)
    union all
    select n.webhook_id, n.company_id
    from walked a
    cross join lateral (
      select h.webhook_id, h.company_id from webhooks.delivery_history h
      where h.webhook_id > a.webhook_id
        and h.created_at >= webhooks_private.utc_day_start(webhooks_private.utc_day(p_since))
        and h.created_at < p_until
      order by h.webhook_id, h.company_id
      limit 1) n)
  -- (a probe each of the webhook's index, in its order: no plan then reads every
  -- delivery of the hours, or of the company)
  select a.webhook_id
  from walked a
  cross join lateral (select 1 from webhooks.delivery_history h
                      where h.webhook_id = a.webhook_id and h.company_id = a.company_id
                        and h.created_at >= p_since and h.created_at < p_until
                      order by h.webhook_id, h.company_id, h.created_at
                      limit 1) d
  limit p_max;
$$;

-- private: count the day before p_before of those of p_webhook_ids for which it is the
-- only day to count (every day before it counted, or without deliveries, and no older
-- day noted to count again), in one statement: from their hour rows of it, counted by
-- the runs of the days before (count_deliveries_of, as the report: only the hours
-- without a true row are counted from the rows). Takes their locks, writes their
-- day's rows, and drops that day's hours. Returns the webhooks whose day was counted;
-- one with a delivery of it still on its way is left to its visit, which notes the
-- day for the next run. Each visit counted its day by a statement planned for it
-- (count_periods, its times constants): at midnight, 5 of a visit's 9.5 ms, and
-- 2 more for its own statements (200 webhooks with 12 deliveries that day, a loaded
-- machine, 2026-12-06; test/sql/roll-up-cost.test.ts). A note of that day itself (a
-- retry that failed for good a day after its delivery) is no reason to leave it to
-- the visit: its writer marked the hour stale, which is counted from the rows here as
-- there (until 2026-12-06 such a webhook was visited, its day counted from the rows:
-- 30 history rows and entries read a webhook where 4 do; test/sql/roll-up-cost.test.ts).
create or replace function webhooks_private.roll_up_days_from_hours(p_webhook_ids bigint[], p_before date)
returns bigint[]
language plpgsql
-- (by the keys of its tables, as roll_up_webhook_hours, whatever the statistics say)
set enable_seqscan = off
set jit = off
as $$
declare
  v_day constant date := p_before - 1;
  v_all_counted_before constant date := webhooks_private.all_counted_before();
  v_ids bigint[];
  v_company_ids bigint[];
  v_counted bigint[];
begin
  -- which: as roll_up_webhook_days finds a webhook's days to count (a deleted
  -- webhook's visit drops what it left)
  select array_agg(w.id order by w.id), array_agg(w.company_id order by w.id)
  into v_ids, v_company_ids
  from webhooks.webhooks w
  where w.id = any (p_webhook_ids)
    and webhooks_private.first_day_uncounted(w.id, v_all_counted_before) = v_day
    and not exists (select 1 from webhooks_private.delivery_days_to_count n
                    where n.webhook_id = w.id and n.day < v_day);
  if v_ids is null then
    return '{}';
  end if;
  -- their locks, in the order of their ids (as the visits take them). A day noted by a
  -- writer before them is counted here (its note of that day goes), one of an older
  -- day by the next run
  perform pg_advisory_xact_lock(webhooks_private.day_counts_lock(i)) from unnest(v_ids) i;
  with counted as (
    select c.webhook_id, k.company_id, c.fired, c.succeeded, c.failed
    from webhooks_private.count_deliveries_of(v_ids, v_company_ids, webhooks_private.utc_day_start(v_day),
                                              webhooks_private.utc_day_start(p_before)) c
    join unnest(v_ids, v_company_ids) as k(webhook_id, company_id) on k.webhook_id = c.webhook_id
    -- (what neither succeeded nor failed is on its way: that day cannot be counted yet)
    where c.fired = c.succeeded + c.failed
  ),
  written as (
    -- (a day without deliveries gets no row: see the top)
    insert into webhooks.delivery_day_counts (webhook_id, company_id, day, fired, succeeded, failed)
    select c.webhook_id, c.company_id, v_day, c.fired, c.succeeded, c.failed
    from counted c
    where c.fired > 0
    on conflict (webhook_id, day) do update
      set fired = excluded.fired, succeeded = excluded.succeeded, failed = excluded.failed
  ),
  unnoted as (
    delete from webhooks_private.delivery_days_to_count n
    using counted c
    where n.webhook_id = c.webhook_id and n.day = v_day
  )
  select array_agg(c.webhook_id order by c.webhook_id) into v_counted from counted c;
  -- the hours of counted days are the day's now
  delete from webhooks.delivery_hour_counts
  where webhook_id = any (v_counted) and hour < webhooks_private.utc_day_start(p_before);
  return coalesce(v_counted, '{}');
end;
$$;

-- private: count the hours in [p_since, p_until) of those of p_webhook_ids that have
-- no day to count (every day before p_days_before counted, or without deliveries,
-- none noted), in one statement: a run's webhooks with deliveries in the hours finished
-- since the last run and nothing else to do (not noted for the next run, no day to
-- count), which each had a visit of their own, its hours counted by statements planned
-- for it (roll_up_webhook_hours, count_periods), every hour and at UTC midnight alike
-- (test/sql/roll-up-cost.test.ts). As roll_up_webhook_hours counts (count_periods):
-- every hour but those with a delivery on its way, test sends left out, a row
-- replaced only if its version is still the one read before counting; a webhook left with an hour on its
-- way or a stale row is noted for the next run (webhooks_to_roll_up). Returns the
-- webhooks whose hours it counted.
create or replace function webhooks_private.roll_up_new_hours(p_webhook_ids bigint[], p_since timestamptz,
                                                              p_until timestamptz, p_days_before date)
returns bigint[]
language plpgsql
-- (by the keys of its tables, as roll_up_webhook_hours, whatever the statistics say)
set enable_seqscan = off
set jit = off
as $$
declare
  v_all_counted_before constant date := webhooks_private.all_counted_before();
  v_ids bigint[];
  v_company_ids bigint[];
  v_version_ids bigint[];
  v_hours timestamptz[];
  v_versions bigint[];
begin
  if p_since >= p_until then
    return '{}';
  end if;
  -- which: as roll_up_webhook_days finds that a webhook has no day to count
  select array_agg(w.id order by w.id), array_agg(w.company_id order by w.id)
  into v_ids, v_company_ids
  from webhooks.webhooks w
  where w.id = any (p_webhook_ids)
    and webhooks_private.first_day_uncounted(w.id, v_all_counted_before) >= p_days_before
    and not exists (select 1 from webhooks_private.delivery_days_to_count n
                    where n.webhook_id = w.id and n.day < p_days_before);
  if v_ids is null then
    return '{}';
  end if;
  -- the versions before counting (a statement, so a snapshot, of its own)
  select coalesce(array_agg(c.webhook_id), '{}'), coalesce(array_agg(c.hour), '{}'), coalesce(array_agg(c.version), '{}')
  into v_version_ids, v_hours, v_versions
  from webhooks.delivery_hour_counts c
  where c.webhook_id = any (v_ids) and c.hour >= p_since and c.hour < p_until;
  -- each webhook's hours as count_periods counts them (one statement of its own a
  -- webhook, its rows read by their keys): the rules of what counts live there alone
  with counted as (
    select k.webhook_id, k.company_id, p.period_start as hour, p.messages as fired, p.failures as failed,
           p.on_its_way
    from unnest(v_ids, v_company_ids) as k(webhook_id, company_id)
    cross join lateral webhooks_private.count_periods(k.webhook_id, k.company_id, p_since, p_until, interval '1 hour') p
  ),
  written as (
    insert into webhooks.delivery_hour_counts as c (webhook_id, company_id, hour, fired, succeeded, failed, stale, version)
    select n.webhook_id, n.company_id, n.hour, n.fired, n.fired - n.failed, n.failed, false,
           coalesce(v.version, 0)   -- the version read (0: no row then)
    from counted n
    left join unnest(v_version_ids, v_hours, v_versions) as v(webhook_id, hour, version)
      on v.webhook_id = n.webhook_id and v.hour = n.hour
    where n.on_its_way = 0
    on conflict (webhook_id, hour) do update
      set fired = excluded.fired, succeeded = excluded.succeeded, failed = excluded.failed, stale = false
      where c.version = excluded.version
        and (c.fired, c.succeeded, c.failed, c.stale) is distinct from (excluded.fired, excluded.succeeded, excluded.failed, false)
  )
  -- a webhook with an hour on its way: the next run counts it
  insert into webhooks_private.webhooks_to_roll_up (webhook_id)
  select distinct n.webhook_id from counted n where n.on_its_way > 0
  on conflict do nothing;
  -- (a row a writer made stale meanwhile: its version moved on)
  insert into webhooks_private.webhooks_to_roll_up (webhook_id)
  select distinct c.webhook_id from webhooks.delivery_hour_counts c
  where c.webhook_id = any (v_ids) and c.hour >= p_since and c.hour < p_until and c.stale
  on conflict do nothing;
  return v_ids;
end;
$$;

-- public (for the API server and DBAs; not in GraphQL): roll up the countable days of
-- the webhooks after p_after_webhook_id (null: from the first), at most
-- p_max_webhooks of them, in the order of their ids. Returns the last webhook rolled
-- up (null once none is left), how many days were counted, how many webhooks were
-- visited, and the run's first day not countable yet (counting_before: the caller
-- passes it to the next batch of the same run). Runs as its owner. One transaction a
-- call: roll_up_report_counts, below, calls it batch by batch.
-- Which webhooks: once a run has gone through all of them (report_counts_rolled_up),
-- each had every day before its counting_before counted or noted to count again.
-- After that, a webhook can have something new only if it has deliveries since that
-- day (days to count, hours to count, days on their way) or days noted (a write to an
-- old delivery): a roll-up visits those alone, found by a walk of the history index
-- from one webhook to the next over the partitions since that day; the rest have
-- nothing to count (a day without deliveries gets no row). Only the first roll-up of
-- an install visits every webhook. A visit of any other webhook finds nothing, at
-- about 0.4 ms: a roll-up of 20,000 webhooks, 2,000 of them with deliveries in the
-- last days, took 10.4 s visiting all and 1.1 s visiting those (a scratch test,
-- 2026-12-03). (Until 2026-12-04 the first roll-up of each day visited every webhook,
-- to write a row of zeros for each quiet one.) And a run after one that ended visits
-- only the webhooks with deliveries in the hours finished since that one started,
-- those noted in webhooks_to_roll_up, those with days noted, and, once a new day can
-- be counted, those with deliveries in it (docs/outbox.md, since 2026-12-06). That day
-- is counted for the whole batch at once (roll_up_days_from_hours), and a webhook
-- found only for it is not visited on its own (counted in visited all the same).
-- p_now: the clock the batch counts by (null: now()), which tests set so that their
-- counts do not depend on an hour ending while they run. A clock ahead of now() counts
-- periods not finished yet: a writer's later change to them goes unseen.
-- Nothing a transaction of this database that is open (or prepared) and wrote before
-- the last runs may write into is counted while it is (roll_up_bounds).
drop function if exists webhooks.roll_up_report_counts_after(bigint, integer);
-- (without p_now until 2026-12-06)
drop function if exists webhooks.roll_up_report_counts_after(bigint, integer, date);
create or replace function webhooks.roll_up_report_counts_after(
  p_after_webhook_id bigint,
  p_max_webhooks integer,
  p_counting_before date default null,
  p_now timestamptz default null,
  out last_webhook_id bigint,
  out days integer,
  out visited integer,
  out counting_before date
)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_now constant timestamptz := coalesce(p_now, now());
  -- the first day and the first hour this batch does not count (roll_up_bounds, read
  -- below before anything is counted), and the first hour the last run that ended did
  -- not
  v_before date;
  v_hours_before timestamptz;
  v_after constant bigint := coalesce(p_after_webhook_id, 0);
  v_all_counted_before constant date := webhooks_private.all_counted_before();
  v_hours_counted_before constant timestamptz :=
    (select r.hours_counted_before from webhooks_private.report_counts_rolled_up r);
  v_since timestamptz;
  v_active bigint[];
  v_for_days_only bigint[] := '{}';
  -- (those found for new hours, not noted: roll_up_new_hours may count them)
  v_for_new_hours bigint[] := '{}';
  v_hours_counted bigint[] := '{}';
  v_days_counted bigint[] := '{}';
  v_through bigint;
  v_webhook_ids bigint[];
  v_webhook_id bigint;
begin
  -- a webhook's days are counted once its lock is held (roll_up_webhook_days), by
  -- statements that must see what the writers it waited for wrote: read committed.
  -- Under repeatable read the snapshot was this transaction's first, taken before the
  -- wait: a delivery replayed meanwhile was counted failed, its day's note to count
  -- again taken away, and the count stayed wrong (test/sql/roll-up-isolation.test.ts)
  if current_setting('transaction_isolation') <> 'read committed' then
    raise exception using
      errcode = 'invalid_transaction_state',
      message = format('the roll-up runs at read committed, not %s: CALL webhooks.roll_up_report_counts(), which sees to it, '
                       'or SET TRANSACTION ISOLATION LEVEL READ COMMITTED first', current_setting('transaction_isolation'));
  end if;
  days := 0;
  visited := 0;
  if p_counting_before > webhooks_private.countable_before(v_now) then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('p_counting_before must be %s or earlier (the first day not countable yet), not %s',
                       webhooks_private.countable_before(v_now), p_counting_before);
  end if;
  if p_after_webhook_id is null then
    -- (the run's watermark, for this run's later batches and the runs after it)
    perform webhooks_private.note_xid_watermark(v_now);
  end if;
  select b.days_before, b.hours_before into v_before, v_hours_before from webhooks_private.roll_up_bounds(v_now) b;
  if not isfinite(v_hours_before) then
    -- a transaction that wrote before every watermark is open, or prepared: nothing
    -- counted until it ends (a later run)
    counting_before := p_counting_before;
    return;
  end if;
  -- (the run's first day not countable: the earliest of its batches')
  counting_before := least(coalesce(p_counting_before, v_before), v_before);
  if p_after_webhook_id is null then
    -- webhooks that are gone but still have days noted
    delete from webhooks_private.delivery_days_to_count n
    where not exists (select 1 from webhooks.webhooks w where w.id = n.webhook_id);
  end if;
  if p_after_webhook_id is null
     and (select greatest(r.hours_rolling_before, r.hours_counted_before)
          from webhooks_private.report_counts_rolled_up r) > v_hours_before then
    -- a run went further than this one may: it ran while the database's clock was
    -- ahead, which has come back. The hours it counted from this run's first hour not
    -- countable on had not all ended (or not two hours before), and a writer's
    -- deliveries written into them since are in no row: the report left them out
    -- until their day was counted, up to three days (until 2026-12-07;
    -- test/sql/clock-back.test.ts). Their rows are stale, as a writer leaves them
    -- (counted from the rows meanwhile), their webhooks noted for the next runs,
    -- which count them again once they can, and the hours counted go back to here.
    -- Only then: a run whose clock went on pays one comparison.
    with marked as (
      update webhooks.delivery_hour_counts c
      set stale = true, version = c.version + 1
      where c.hour >= v_hours_before and not c.stale
      returning c.webhook_id)
    insert into webhooks_private.webhooks_to_roll_up (webhook_id)
    select distinct m.webhook_id from marked m
    on conflict do nothing;
    update webhooks_private.report_counts_rolled_up
    set hours_counted_before = least(hours_counted_before, v_hours_before);
  end if;
  if p_after_webhook_id is null then
    -- the run's first hour not counted: the next run of the day looks from there
    update webhooks_private.report_counts_rolled_up set hours_rolling_before = v_hours_before;
  end if;
  if v_all_counted_before is not null and v_hours_counted_before is not null then
    -- the last run ended: the next webhooks with deliveries in the hours finished since
    -- it started, those noted (webhooks_to_roll_up: an hour left for a delivery on its
    -- way, a write to an older delivery), and, once a new day can be counted, those
    -- with deliveries in the days countable now (none within a day). The hours of a
    -- webhook without deliveries since get no rows of zeros meanwhile (the report
    -- counts what has none from the rows; the webhook's next visit counts them all at
    -- once). The rest had nothing new: each run visited every webhook with deliveries
    -- in the days not counted yet, mostly to find nothing, until 2026-12-06, as the
    -- day's first run did until later that day (2.3–3.5 s at 10,000 webhooks, every
    -- UTC midnight; test/sql/roll-up-cost.test.ts)
    -- (v_for_days_only: those found only for the days, not for new hours nor noted.
    -- Each list is its first p_max_webhooks, so a webhook of the batch missing from one
    -- is in none of it)
    select coalesce(array_agg(a.webhook_id order by a.webhook_id), '{}'),
           coalesce(array_agg(a.webhook_id order by a.webhook_id) filter (where a.for_days_only), '{}'),
           coalesce(array_agg(a.webhook_id order by a.webhook_id) filter (where a.for_new_hours), '{}')
    into v_active, v_for_days_only, v_for_new_hours
    from (select u.webhook_id, bool_and(u.for_days) as for_days_only, bool_and(not u.noted) and bool_or(u.for_hours) as for_new_hours
          from (select w.webhook_id, false as for_days, true as for_hours, false as noted
                from webhooks_private.webhooks_with_deliveries(v_after, v_hours_counted_before, v_hours_before,
                                                               p_max_webhooks) w
                union all
                select w.webhook_id, true, false, false
                from webhooks_private.webhooks_with_deliveries(v_after, webhooks_private.utc_day_start(v_all_counted_before),
                                                               webhooks_private.utc_day_start(counting_before), p_max_webhooks) w
                union all
                (select o.webhook_id, false, false, true from webhooks_private.webhooks_to_roll_up o
                 where o.webhook_id > v_after
                 order by o.webhook_id
                 limit p_max_webhooks)) u
          group by u.webhook_id
          order by u.webhook_id
          limit p_max_webhooks) a;
  elsif v_all_counted_before is not null then
    v_since := webhooks_private.utc_day_start(least(v_all_counted_before, v_before));
    -- (no run has ended since the hours were first noted: each may have something new)
    -- the next webhooks with deliveries since
    v_active := array(
      with recursive active(webhook_id) as (
        select (select min(h.webhook_id) from webhooks.delivery_history h
                where h.webhook_id > v_after and h.created_at >= v_since)
        union all
        select (select min(h.webhook_id) from webhooks.delivery_history h
                where h.webhook_id > a.webhook_id and h.created_at >= v_since)
        from active a
        where a.webhook_id is not null)
      select a.webhook_id from active a where a.webhook_id is not null
      limit p_max_webhooks);
  end if;
  if v_all_counted_before is not null then
    -- and those with days noted that may be counted now, no further than the last of
    -- them when they fill the batch: no webhook after it is in this batch. Read to the
    -- end, the notes of days not countable yet (a retry settled the day after its
    -- delivery notes its day) were read again by every batch, every webhook's: 2,026
    -- rows a batch of 25 with 2,000 webhooks noted, every roll-up (until 2026-12-06;
    -- test/sql/roll-up-cost.test.ts), where each is read once a roll-up now
    v_through := case when cardinality(v_active) >= p_max_webhooks
                      then (select max(a) from unnest(v_active) a) end;
    v_webhook_ids := array(
      select c.webhook_id
      from (select a as webhook_id from unnest(v_active) a
            union
            (select n.webhook_id from webhooks_private.delivery_days_to_count n
             where n.webhook_id > v_after and n.webhook_id <= coalesce(v_through, 9223372036854775807)
               and n.day < v_before
             group by n.webhook_id
             order by n.webhook_id
             limit p_max_webhooks)) c
      order by c.webhook_id
      limit p_max_webhooks);
  else
    v_webhook_ids := array(
      select w.id from webhooks.webhooks w
      where w.id > v_after
      order by w.id
      limit p_max_webhooks);
  end if;
  -- the batch's webhooks' rows first, in the order of their ids, as a webhook's
  -- delete takes its row first (docs/outbox.md, "A webhook's delete"): the key-share
  -- lock each day count written takes of its webhook is then held already. Taken at
  -- that write, after the webhook's hour rows had been written, a delete that took the
  -- row meanwhile waited for those hour rows, the roll-up for the row, and Postgres
  -- ended one of them (test/sql/webhook-delete-locks.test.ts). A webhook deleted while
  -- this waited is gone: its visit finds it so.
  perform 1 from webhooks.webhooks w where w.id = any (v_webhook_ids) order by w.id for key share of w;
  -- a new day countable: the batch's day counted at once where it is each webhook's
  -- only day to count (roll_up_days_from_hours); a webhook found only for the days has
  -- nothing else to do then
  if v_all_counted_before < counting_before then
    v_days_counted := webhooks_private.roll_up_days_from_hours(v_webhook_ids, counting_before);
    days := days + cardinality(v_days_counted);
  end if;
  -- the new hours of those with nothing else to do, at once (a webhook found for the day
  -- too, its day counted above)
  if cardinality(v_for_new_hours) > 0 then
    v_hours_counted := webhooks_private.roll_up_new_hours(
      array(select i from unnest(v_for_new_hours) i
            where i = any (v_webhook_ids) and i <> all (v_for_days_only)),
      v_hours_counted_before, v_hours_before, v_before);
  end if;
  foreach v_webhook_id in array v_webhook_ids loop
    if not (v_webhook_id = any (v_days_counted) and v_webhook_id = any (v_for_days_only))
       and v_webhook_id <> all (v_hours_counted) then
      days := days + webhooks_private.roll_up_webhook_days(v_webhook_id, v_before, v_hours_before);
    end if;
    visited := visited + 1;
    last_webhook_id := v_webhook_id;
  end loop;
  if last_webhook_id is null then
    -- the run went through every webhook
    insert into webhooks_private.report_counts_rolled_up as r (counted_before)
    values (counting_before)
    on conflict (one) do update
      set counted_before = greatest(r.counted_before, excluded.counted_before),
          hours_counted_before = r.hours_rolling_before;
  end if;
end;
$$;

-- public (for the API server, DBAs and pg_cron; not in GraphQL): roll up every
-- webhook's countable days, p_webhooks_per_batch webhooks a transaction; returns how
-- many days were counted and how many webhooks were visited. CALL it outside a
-- transaction block.
-- Committed batch by batch because a webhook's roll-up holds its lock
-- (day_counts_lock) until its transaction ends, and a write to one of its deliveries
-- older than a day (a replay, the relay settling a delivery that failed for good)
-- waits for that lock: rolled up in one transaction, every webhook rolled up early in
-- a run held its writers back until the whole run had ended (33 s for the first
-- roll-up of 1,100 webhooks in bench:api), and the run's snapshot kept vacuum from
-- the queue's dead rows as long (test/api/report-counts.test.ts).
-- A procedure that commits runs as its caller (Postgres allows no SECURITY DEFINER
-- there); each batch runs as its owner.
do $$
begin
  -- (a function until 2026-12-03)
  if exists (select 1 from pg_catalog.pg_proc
             where oid = to_regprocedure('webhooks.roll_up_report_counts()') and prokind = 'f') then
    drop function webhooks.roll_up_report_counts();
  end if;
end;
$$;
-- (without visited until 2026-12-03, without p_now, roll_up_report_counts_after's,
-- until 2026-12-06)
drop procedure if exists webhooks.roll_up_report_counts(integer, integer);
drop procedure if exists webhooks.roll_up_report_counts(integer, integer, integer);
create or replace procedure webhooks.roll_up_report_counts(
  inout days integer default null,
  inout visited integer default null,
  p_webhooks_per_batch integer default 25,
  p_now timestamptz default null
)
language plpgsql
as $$
declare
  v_batch record;
  v_after bigint;
  v_counting_before date;
begin
  if p_webhooks_per_batch is null or p_webhooks_per_batch < 1 then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('p_webhooks_per_batch must be 1 or more, not %s', coalesce(p_webhooks_per_batch::text, 'null'));
  end if;
  days := 0;
  visited := 0;
  -- every batch at read committed (roll_up_report_counts_after says why), whatever
  -- the database's default (pg_cron runs this with it)
  if current_setting('transaction_isolation') <> 'read committed' then
    commit;
    set transaction isolation level read committed;
  end if;
  loop
    select b.last_webhook_id, b.days, b.visited, b.counting_before into v_batch
    from webhooks.roll_up_report_counts_after(v_after, p_webhooks_per_batch, v_counting_before, p_now) b;
    days := days + v_batch.days;
    visited := visited + v_batch.visited;
    exit when v_batch.last_webhook_id is null;
    v_after := v_batch.last_webhook_id;
    v_counting_before := v_batch.counting_before;
    commit;
    set transaction isolation level read committed;
  end loop;
end;
$$;

drop function if exists webhooks_private.count_stretch(bigint, bigint, timestamptz, timestamptz, bigint, bigint, bigint);

drop function if exists webhooks_private.count_rows_many(bigint[], bigint[], timestamptz[], timestamptz[]);

-- private, the report's counting: the deliveries of many webhooks (each with its
-- company) created in [since, until): the periods counted wholly inside the range
-- (days from delivery_day_counts, the true hours of days without a day row from
-- delivery_hour_counts), and everything else counted from the rows, as count_rows
-- counts (the same four counts), every webhook's stretches between them in one
-- statement. One row per webhook given. Runs as the caller: row-level security
-- applies to every table it reads.
-- One statement, with the stretches' bounds as values rather than constants: its
-- plan is made once a connection and kept, and each stretch reads only its own
-- partitions as it is counted (run-time pruning), where a statement a stretch with
-- its bounds as constants (count_rows) was planned for every stretch of every
-- webhook. A company's 100 webhooks, 100,000 deliveries in 30 days: the report went
-- from 452 to 78 ms (7 days: 141 to 30); one webhook's line from 8 to 11 ms (7 days:
-- 3.4 to 4.3), a scratch test as a viewer, 2026-12-03. The periods are read once and
-- sorted once for their stretches: each webhook's last period found by a probe of the
-- periods and each hour's day by a probe of the day rows, as before, cost a 90-day
-- report of 100 webhooks 170 of its 210 ms (the same data: 30 days 230 to 35 ms, 90
-- days 356 to 43, later that day).
create or replace function webhooks_private.count_deliveries_of(
  p_webhook_ids bigint[],
  p_company_ids bigint[],
  since timestamptz,
  until timestamptz
)
returns table (webhook_id bigint, fired bigint, succeeded bigint, failed bigint)
language plpgsql
stable
-- the generic plan from the first call: a custom plan (the first five calls of a
-- connection otherwise) took 70 to 200 ms to make for a company of 100 webhooks, and
-- ran no faster than the generic one (about 35 ms)
set plan_cache_mode = force_generic_plan
-- the API plans its requests with partitionwise joins (api/preset.ts), which a count
-- of whole partitions does not want: its statement ran in 11–19 ms with them, 7 without
-- (the typical company of bench:api, 90 days, 2026-12-04)
set enable_partitionwise_join = off
as $$
declare
  v_since constant timestamptz := coalesce(since, '-infinity');
  v_until constant timestamptz := coalesce(until, 'infinity');
  v_all_counted_before constant date := webhooks_private.all_counted_before();
  v_first_day date;
  v_end_day date;
begin
  if v_since >= v_until then
    return query select w, 0::bigint, 0::bigint, 0::bigint from unnest(p_webhook_ids) as w;
    return;
  end if;
  -- the days wholly inside [since, until): from the first day starting at or after
  -- since, up to (not including) the day until falls in
  v_first_day := (v_since at time zone 'utc')::date;
  if (v_first_day::timestamp at time zone 'utc') < v_since then
    v_first_day := v_first_day + 1;
  end if;
  v_end_day := (v_until at time zone 'utc')::date;

  return query
  with candidates as (
    select c.webhook_id, c.day, webhooks_private.utc_day_start(c.day) as starts,
           webhooks_private.utc_day_start(c.day + 1) as ends, c.fired, c.succeeded, c.failed, true as is_day
    from webhooks.delivery_day_counts c
    where c.webhook_id = any (p_webhook_ids) and c.day >= v_first_day and c.day < v_end_day
    union all
    select h.webhook_id, webhooks_private.utc_day(h.hour), h.hour, h.hour + interval '1 hour', h.fired, h.succeeded,
           h.failed, false
    from webhooks.delivery_hour_counts h
    where h.webhook_id = any (p_webhook_ids) and h.hour >= v_since and h.hour <= v_until - interval '1 hour'
      and not h.stale
  ),
  -- (a day just counted keeps its hours until the next roll-up: where its day row is
  -- taken, its hours are not. Said by a window over the periods, which are sorted for
  -- the stretches anyway: as a NOT EXISTS probe of the day rows, planned for an hour
  -- table analyzed while it was empty, it cost 108 ms of a 100-webhook report's 210)
  periods as (
    select p.webhook_id, p.starts, p.ends, p.fired, p.succeeded, p.failed
    from (select p.*, bool_or(p.is_day) over (partition by p.webhook_id, p.day) as day_taken
          from candidates p) p
    where p.is_day or not p.day_taken
  ),
  hooks as (
    select k.webhook_id, k.company_id from unnest(p_webhook_ids, p_company_ids) as k(webhook_id, company_id)
  ),
  summed as (
    select p.webhook_id, sum(p.fired)::bigint as fired, sum(p.succeeded)::bigint as succeeded,
           sum(p.failed)::bigint as failed, max(p.ends) as last_end
    from periods p
    group by p.webhook_id
  ),
  -- the gaps between the periods, before the first and after the last
  gaps as (
    select p.webhook_id, k.company_id,
           coalesce(lag(p.ends) over (partition by p.webhook_id order by p.starts), v_since) as s, p.starts as u
    from periods p
    join hooks k on k.webhook_id = p.webhook_id
    union all
    select k.webhook_id, k.company_id, coalesce(p.last_end, v_since), v_until
    from hooks k
    left join summed p on p.webhook_id = k.webhook_id
  ),
  -- what of them is counted from the rows: a gap's whole days before every webhook is
  -- counted to had no deliveries but those noted to be counted again (a day without
  -- deliveries has no row: see the top); the rest (the parts of days at its ends, the
  -- days since) may have any. Without it, a quiet webhook's report counted every empty
  -- day of the range from the rows, or read a row of zeros for each, which the roll-up
  -- wrote for every webhook and day until 2026-12-04
  stretches as (
    select g.webhook_id, g.company_id, x.s, x.u
    from gaps g
    -- the gap's whole days before that: [zf, zt) when zf < zt (none before a roll-up
    -- went through every webhook)
    cross join lateral (
      select case when v_all_counted_before is null then 'infinity'
                  else webhooks_private.utc_day_start(webhooks_private.utc_day(g.s - interval '1 microsecond') + 1) end as zf,
             least(webhooks_private.utc_day_start(webhooks_private.utc_day(g.u)),
                   webhooks_private.utc_day_start(v_all_counted_before)) as zt
    ) b
    cross join lateral (
      select g.s, g.u where not (b.zf < b.zt)
      union all
      select g.s, b.zf where b.zf < b.zt
      union all
      select b.zt, g.u where b.zf < b.zt
      union all
      select webhooks_private.utc_day_start(n.day), webhooks_private.utc_day_start(n.day + 1)
      from webhooks_private.delivery_days_to_count n
      where b.zf < b.zt and n.webhook_id = g.webhook_id
        and n.day >= webhooks_private.utc_day(b.zf) and n.day < webhooks_private.utc_day(b.zt)
    ) x(s, u)
    -- (most gaps are none: between two days' rows)
    where g.u > g.s
  ),
  counted as (
    select t.webhook_id,
           sum((select count(*) from webhooks.delivery_history d
                where d.webhook_id = t.webhook_id and d.company_id = t.company_id
                  and d.created_at >= t.s and d.created_at < t.u)
             - (select count(*) from webhooks.delivery_history d
                where d.webhook_id = t.webhook_id and d.company_id = t.company_id and d.action = 'webhook.test'
                  and d.created_at >= t.s and d.created_at < t.u)) as messages,
           sum((select count(*) from webhooks.delivery_results e
                where e.webhook_id = t.webhook_id and e.company_id = t.company_id and e.state = 'failed'
                  and e.created_at >= t.s and e.created_at < t.u)
             - (select count(*) from webhooks.delivery_history d
                join webhooks.delivery_results e on e.delivery_id = d.id and e.created_at = d.created_at
                where d.webhook_id = t.webhook_id and d.company_id = t.company_id and d.action = 'webhook.test'
                  and e.state = 'failed' and d.created_at >= t.s and d.created_at < t.u
                  -- (said again of e, its key with them: planned with sequential scans
                  -- off, as the roll-up calls it, the stretch's failures of every
                  -- webhook were read, by their time alone, for each webhook)
                  and e.webhook_id = t.webhook_id and e.company_id = t.company_id
                  and e.created_at >= t.s and e.created_at < t.u)) as failures,
           -- (one short range of each of the queue's two partial indexes)
           sum((select count(*) from webhooks.delivery_queue q
                where q.webhook_id = t.webhook_id and q.locked_by is null and q.action <> 'webhook.test'
                  and q.company_id = t.company_id and q.created_at >= t.s and q.created_at < t.u)
             + (select count(*) from webhooks.delivery_queue q
                where q.webhook_id = t.webhook_id and q.locked_by is not null and q.action <> 'webhook.test'
                  and q.company_id = t.company_id and q.created_at >= t.s and q.created_at < t.u)) as on_its_way
    from stretches t
    where t.u > t.s
    group by t.webhook_id
  )
  select k.webhook_id,
         coalesce(p.fired, 0) + coalesce(r.messages, 0)::bigint,
         coalesce(p.succeeded, 0) + coalesce(r.messages - r.failures - r.on_its_way, 0)::bigint,
         coalesce(p.failed, 0) + coalesce(r.failures, 0)::bigint
  from hooks k
  left join summed p on p.webhook_id = k.webhook_id
  left join counted r on r.webhook_id = k.webhook_id;
end;
$$;

-- private, the report's counting for one webhook (count_deliveries_of, for one)
drop function if exists webhooks.count_deliveries(bigint, bigint, timestamptz, timestamptz);
create or replace function webhooks_private.count_deliveries(
  p_webhook_id bigint,
  p_company_id bigint,
  since timestamptz,
  until timestamptz,
  out fired bigint,
  out succeeded bigint,
  out failed bigint
)
language sql
stable
as $$
  select c.fired, c.succeeded, c.failed
  from webhooks_private.count_deliveries_of(array[p_webhook_id], array[p_company_id], since, until) c;
$$;
