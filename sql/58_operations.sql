-- bpd-webhooks engine: what operators' tools ask (ops/operations.ts).
--
-- The admin API and the relay answer /readyz and /metrics with four questions to
-- the database: "is it migrated to the version this code expects, and does it run
-- this code's sql/?", "how big and how old is the backlog?", "is maintenance
-- keeping up?" and "which transactions hold the relays awake?". Neither process's
-- role may read the tables involved (the API logs in as webhook_authenticator, the
-- relay works as bpd_webhooks_relay), so each question
-- is one function that runs as its owner and answers counts only (or fingerprints):
-- no row, no company, nothing a tenant wrote. They live in a
-- schema of their own, which PostGraphile does not show.
-- (The schema webhooks_ops: 00_schemas.sql; the grants: 60_access.sql. The fifth
-- question, which settings were refused: 02_settings.sql.) At the end, the question an
-- alert leads the owner to, which names companies and so is the owner's alone:
-- webhooks.backlog_by_webhook().

-- The newest versioned migration applied (node-pg-migrate's table
-- webhooks_private.migrations, tools/migrate.ts).
create or replace function webhooks_ops.latest_migration()
returns text
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select max(name) from webhooks_private.migrations;
$$;

-- The fingerprint of the sql/ the last migrate applied (webhooks_private.sql_applied,
-- recorded with it by tools/migrate.ts), null when none is recorded: /readyz compares
-- it with this code's (ops/engine.ts). Asked only once the migrations are current, so
-- the table is there.
create or replace function webhooks_ops.applied_sql()
returns text
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select fingerprint from webhooks_private.sql_applied;
$$;

-- The fingerprint of the sql/ the last migrate that changed it replaced
-- (webhooks_private.sql_applied.replaced), null when none is recorded: the processes
-- of that release stay ready under the next one (ops/operations.ts). Asked with
-- applied_sql(), when both the functions are there. Null too once a further
-- release's migrations have run over the sql/ in force: the replaced release is two
-- behind then, and its processes (releases before 0048_sql_releases ask no more than
-- this) are not ready.
create or replace function webhooks_ops.replaced_sql()
returns text
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select case when a.migration < (select max(name) from webhooks_private.migrations) then null else a.replaced end
  from webhooks_private.sql_applied a;
$$;

-- The releases whose migrate ran on this database, in the order each first ran (a
-- release rolled back to from a later one, its migrate's first here, before them all),
-- each with whether its sql/ was ever applied and whether it was so rolled back to,
-- and the newest migration of the release whose sql/ is in force
-- (webhooks_private.sql_releases, sql_applied): /readyz places its own release among
-- them (ops/operations.ts).
create or replace function webhooks_ops.sql_releases()
returns jsonb
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select jsonb_build_object(
    'appliedMigration', (select migration from webhooks_private.sql_applied),
    'releases', coalesce((select jsonb_agg(jsonb_build_object('fingerprint', r.fingerprint, 'migration', r.migration,
                                                              'applied', r.first_applied_at is not null,
                                                              'rolledBackTo', r.rolled_back_to) order by r.n)
                          from webhooks_private.sql_releases r), '[]'::jsonb));
$$;

-- private: the most due deliveries the backlog figure counts (webhooks_ops.backlog):
-- past it, the figure says this many, "at least" (docs/operations.md). Twice the
-- backlog the documented alert watches for (WebhookBacklogGrowing, over 10,000).
create or replace function webhooks_private.backlog_due_cap()
returns integer
language sql
immutable
as $$
  select 20000;
$$;

-- private: the rows per webhook past which the backlog figure (below) finds the first
-- due time of the webhooks after those it read by one index probe each rather than
-- by reading their rows: a probe descends the index (three or four pages), about
-- what reading this many entries of a page costs.
create or replace function webhooks_private.backlog_probe_rows()
returns integer
language sql
immutable
as $$
  select 32;
$$;

-- Deliveries due now (pending, next attempt reached) that wait for a relay, counted up to
-- backlog_due_cap() (past it, that many: at least so many are due), and how long the
-- longest-waiting of them has been due, in seconds (0 when none is), exact whatever
-- the backlog. Those of a webhook whose circuit breaker is open (until its next probe
-- is due: lanes.open_until, 28_lanes.sql) wait for their receiver, not for a relay,
-- and are left out: one company's receiver that is down held the alerts on this
-- figure (WebhookBacklogOld, WebhookRelaysIdleWithBacklog) firing for the operator
-- until its webhook was disabled, days later (until 2026-12-07; test/sql/backlog.test.ts).
-- Likewise those of a webhook at a limit its company set (28_lanes.sql): the next slot
-- of its own rate_limit ahead (lanes.paced_until), or as many in flight as its own
-- max_in_flight. They wait for the pace the company chose: one import of 10,000
-- contacts into a webhook paced at 1 a second held WebhookBacklogOld firing for hours,
-- every relay idle or busy elsewhere (until 2026-12-07). Below its limit with
-- deliveries due, a webhook waits for a relay, and they count again. (The fleet-wide
-- webhooks.max_in_flight is the operator's, not a company's: a webhook held at it
-- still counts.) The webhooks so held are read by lanes_open_idx (migration 0101),
-- which holds the open breakers alone, and webhooks_own_limits_idx (migration 0102),
-- which holds the webhooks with a limit of their own alone. From the queue's index of
-- rows not in flight by webhook and due time
-- (delivery_queue_webhook_due_idx, 22_outbox.sql), whose first entry of each webhook
-- is its earliest due time, read in chunks in its order, the first as many entries as
-- the cap:
--   1. a chunk shorter than asked is the rest of the index: its due rows counted, its
--      earliest due time taken, done. Most of the time the first chunk is all of it
--      (the rows waiting, due or later, are fewer than the cap): one plain scan.
--   2. a full chunk ends among the rows of its last webhook: the webhooks before that
--      one are whole in it and counted; the last one's due rows are counted by its
--      own range (no further than the cap; none when the chunk holds enough), and the
--      next chunk starts at the webhook after it, stepping over the rest of its rows.
--      A chunk mostly spent on that last webhook is followed by one half as long (64
--      entries at least), else by one twice as long (the cap at most).
--   3. when the webhooks the chunk holds whole have more than backlog_probe_rows()
--      rows each on average, the webhooks after it give their first due time by one
--      index probe each (waiting_webhooks), and, while fewer than the cap are counted,
--      their due rows by their own ranges: a probe then reads less than their rows.
-- So a scrape reads at most the cap's entries a chunk, the due rows up to the cap,
-- and per webhook with rows waiting a probe or fewer than backlog_probe_rows()
-- entries, never a descent of the index per webhook while the webhooks are small.
-- The queue has no index by due time alone (dropped, 0023: every capture paid for
-- it), so an exact oldest due costs a read of each webhook's first entry.
-- (Until 2026-12-06 the cap's entries were read in one scan, and past them every
-- webhook after the last one read was probed: one tenant's backlog past the cap in
-- the first webhook of the index cost the others' figure a descent each, 2,002 scans
-- of the index with 2,000 companies with one due each, where they alone cost one;
-- before that every webhook with rows waiting was probed first, and each due one's
-- range read again by the count: 20,010 index entries with one delivery due at each
-- of 10,000 companies and ten retrying later, where one scan reads 10,010; before
-- that every due row was counted: 1,020,004 entries and 320 ms with a million due to
-- one webhook, at every scrape; test/sql/backlog.test.ts.)
-- Sorts and sequential scans off, as the claim's, and each read in the index's order:
-- each must read that index (the chunks in its order, the others each webhook's due
-- range), whatever the statistics say of the queue (freshly vacuumed, with no rows
-- counted, a count of one webhook's due rows read all its rows by another index).
create or replace function webhooks_ops.backlog(out due bigint, out oldest_due_seconds double precision)
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
set enable_seqscan = off
set enable_sort = off
-- (a method turned off prices a plan that needs it past every JIT threshold:
-- test/sql/jit-off.test.ts)
set jit = off
as $$
declare
  v_cap constant integer := webhooks_private.backlog_due_cap();
  -- the shortest chunk: about what a probe of the index reads
  v_least_chunk constant integer := 64;
  v_now constant timestamptz := now();
  v_chunk integer := v_cap;
  v_after bigint := 0;
  v_oldest timestamptz;
  v_rest record;
  c record;
  -- webhooks whose open breaker holds their deliveries now, and those at a limit of
  -- their own: the next slot of their rate_limit ahead, or as many in flight as their
  -- max_in_flight (counted no further, by the lease index)
  v_held constant bigint[] := array(
    select l.webhook_id from webhooks_private.lanes l
    where l.open_until is not null and l.open_until > v_now
    union
    select w.id
    from webhooks.webhooks w
    join webhooks_private.lanes l on l.webhook_id = w.id
    where (w.rate_limit is not null or w.max_in_flight is not null)
      and ((w.rate_limit is not null and l.paced_until > v_now)
           or (w.max_in_flight is not null
               and (select count(*) from (select from webhooks.delivery_queue d
                                          where d.webhook_id = w.id and d.locked_by is not null
                                          limit w.max_in_flight) f) >= w.max_in_flight)));
begin
  due := 0;
  loop
    -- the next chunk: from the webhook after v_after, in the index's order
    select count(*) as n,
           count(distinct s.w) as webhooks,
           coalesce(sum(case when s.t <= v_now and not s.held then 1 else 0 end), 0) as due,
           coalesce(sum(case when s.t <= v_now and not s.held and s.w < s.last_w then 1 else 0 end), 0) as due_before_last,
           coalesce(sum(case when s.w = s.last_w then 1 else 0 end), 0) as of_last,
           min(s.t) filter (where s.t <= v_now and not s.held) as oldest,
           max(s.w) as last
    into c
    from (select d.webhook_id as w, d.next_attempt_at as t, max(d.webhook_id) over () as last_w,
                 d.webhook_id = any (v_held) as held
          from (select d.webhook_id, d.next_attempt_at from webhooks.delivery_queue d
                where d.locked_by is null and d.webhook_id > v_after
                order by d.webhook_id, d.next_attempt_at
                limit v_chunk) d) s;
    v_oldest := least(v_oldest, c.oldest);
    -- 1. the rest of the index
    if c.n < v_chunk then
      due := due + c.due;
      exit;
    end if;
    -- 2. the webhooks before the last one whole; the last one's due rows
    due := due + c.due_before_last;
    if due < v_cap and not c.last = any (v_held) then
      if due + (c.due - c.due_before_last) >= v_cap then
        due := v_cap;
      else
        due := due + (select count(*) from (select from webhooks.delivery_queue d
                                            where d.webhook_id = c.last and d.locked_by is null
                                              and d.next_attempt_at <= v_now
                                            order by d.webhook_id, d.next_attempt_at
                                            limit v_cap - due) l);
      end if;
    end if;
    v_after := c.last;
    -- 3. webhooks of many rows each: the rest by a probe each
    if c.webhooks > 1 and (c.n - c.of_last) / (c.webhooks - 1) > webhooks_private.backlog_probe_rows() then
      if due < v_cap then
        with hooks as materialized (
          select h.webhook_id, h.first_due from webhooks_private.waiting_webhooks(v_after) h
          where h.first_due <= v_now and not h.webhook_id = any (v_held)
        )
        select (select count(*)
                from (select
                      from hooks
                      cross join lateral (select from webhooks.delivery_queue d
                                          where d.webhook_id = hooks.webhook_id and d.locked_by is null
                                            and d.next_attempt_at <= v_now
                                          order by d.webhook_id, d.next_attempt_at
                                          limit v_cap - due) r
                      limit v_cap - due) counted) as n,
               (select min(hooks.first_due) from hooks) as oldest
        into v_rest;
        due := due + v_rest.n;
      else
        select null::bigint as n, min(h.first_due) as oldest into v_rest
        from webhooks_private.waiting_webhooks(v_after) h
        where h.first_due <= v_now and not h.webhook_id = any (v_held);
      end if;
      v_oldest := least(v_oldest, v_rest.oldest);
      exit;
    end if;
    v_chunk := case when c.of_last * 2 > v_chunk then greatest(v_chunk / 2, v_least_chunk)
                    else least(v_chunk * 2, v_cap) end;
  end loop;
  due := least(due, v_cap);
  oldest_due_seconds := coalesce(extract(epoch from v_now - v_oldest), 0);
end;
$$;

-- Whether failures are widespread: the enabled webhooks in a run of failed attempts now
-- (lanes.failing_since set: their last attempt failed, 28_lanes.sql), open breakers
-- among them, and the companies they belong to. The fleet's share of failed attempts
-- (bpd_webhooks_deliveries_total) is one busy tenant's when its receiver fails half its
-- requests and its breaker never opens: that one held WebhookFailureRatioHigh on alone
-- (until 2026-12-07). A receiver that fails is its company's matter; many companies'
-- at once is the operator's (the relays' network, DNS, a proxy). Which ones:
-- webhooks.backlog_by_webhook()'s failures_in_a_row. Read from lanes_failing_idx
-- (migration 0103), which holds the failing lanes alone, and each one's webhook by its
-- key: a few entries, whatever the fleet. (A disabled webhook's lane keeps its
-- failures until it is enabled again, 28_lanes.sql: it is in that index, not counted.)
create or replace function webhooks_ops.failing(out webhooks bigint, out companies bigint)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
set enable_seqscan = off
set jit = off
as $$
  select count(*), count(distinct l.company_id)
  from webhooks_private.lanes l
  join webhooks.webhooks w on w.id = l.webhook_id
  where l.failing_since is not null and w.enabled;
$$;

-- How far the outbox's upkeep (tools/maintain.ts: hourly under npm start, else a
-- DBA's schedule) is behind. When it stops, nothing fails at once: the days made
-- ahead run out one a day, after which new deliveries land in the tail (which the
-- next run must turn into a span of days), history outlives the retention and grows,
-- and deleted webhooks' rows stay in the tables. Operators see it here first
-- (/metrics, docs/operations.md), as three counts:
--   days_ahead          days after today with partitions of their own: days_ahead()
--                       right after maintenance, one fewer each UTC midnight it does
--                       not run, 0 at the least
--   days_past_retention days of history kept although they ended more than the
--                       retention ago: 0, or 1 for up to an hour after midnight; more
--                       when maintenance does not run, or while a day still holds a
--                       delivery on its way or a count not rolled up (kept on purpose)
--   webhooks_to_purge   deleted webhooks whose kept deliveries wait to be removed
--   report_days_behind  countable days (ended more than two days ago) that the last
--                       roll-up through every webhook had not reached
--                       (50_report_counts.sql): 0, or 1 until the first roll-up after
--                       UTC midnight (every 5 minutes under the API server); more when
--                       nothing rolls up, and the report counts those days from the
--                       rows, slower, and the retention keeps them. With no roll-up
--                       through every webhook yet, the days since the first webhook
--                       was made (the one of the lowest id).
-- Read from the catalog's list of partitions and small tables: well under a
-- millisecond, whatever the history holds.
do $$
begin
  -- (three counts until 2026-12-03)
  if exists (select 1 from pg_catalog.pg_proc
             where oid = to_regprocedure('webhooks_ops.upkeep()') and cardinality(proallargtypes) = 3) then
    drop function webhooks_ops.upkeep();
  end if;
end;
$$;
create or replace function webhooks_ops.upkeep(
  out days_ahead integer, out days_past_retention integer, out webhooks_to_purge bigint,
  out report_days_behind integer)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  with made as (
    select p.table_name, max(p.last_day) as last_day
    from webhooks_private.outbox_partitions() p
    group by p.table_name
  )
  select
    greatest(coalesce((select min(m.last_day) from made m), webhooks_private.utc_day(now()))
             - webhooks_private.utc_day(now()), 0),
    -- (by their names alone: a DBA's partition named as a day but bounded otherwise,
    -- which the retention never drops, is counted until the DBA drops it, and each run
    -- of maintenance names it. Telling it by its bounds deparses them, which opens the
    -- partitioned table: a DBA's lock of delivery_history then held every scrape of
    -- /metrics, test/api/company-share.test.ts)
    (select count(distinct p.last_day)::integer
     from webhooks_private.outbox_partitions() p
     where p.last_day < webhooks_private.first_kept_day()),
    (select count(*) from webhooks_private.webhooks_to_purge),
    greatest(webhooks_private.countable_before()
             - coalesce(webhooks_private.all_counted_before(),
                        -- (the first webhook by its key: the earliest made, without
                        -- reading every webhook's time on every scrape as min() did
                        -- until 2026-12-06)
                        (select webhooks_private.utc_day(w.created_at) from webhooks.webhooks w order by w.id limit 1),
                        webhooks_private.countable_before()),
             0);
$$;

-- public (operators and DBAs, as the owner; not the API's roles, not GraphQL: it
-- crosses companies): where the deliveries on their way are, when an alert on the
-- backlog fires. One row per webhook with any: due now, due later (retries waiting),
-- in flight, since when the longest-waiting due one has been due, and the webhook's
-- circuit breaker (28_lanes.sql: failed attempts in a row; until when it holds the
-- deliveries), its own limits (rate_limit, max_in_flight: null when it has none), and
-- what its due deliveries wait on (waits_on), by the backlog figure's rules above:
--   'breaker'        its breaker is open (paused_until): they wait for its receiver
--   'rate_limit'     the next slot of its own rate_limit is ahead
--   'max_in_flight'  as many in flight as its own max_in_flight
--   'relay'          none of those: they wait for a relay, and count in the figure
--   null             none is due
-- (the first of them that holds, in that order). The first three are left out of
-- bpd_webhooks_due and bpd_webhooks_oldest_due_seconds: until 2026-12-07 the row of such
-- a webhook showed a due count the figure did not, and not why
-- (test/sql/backlog.test.ts). The longest-waiting first, then the most due.
--   select * from webhooks.backlog_by_webhook() limit 20;
--   select * from webhooks.backlog_by_webhook() where waits_on = 'relay' limit 20;
-- Finds the webhooks by the same loose index scan as the backlog figure, then counts
-- each one's rows in its own index range: 0.4 to 0.5 s with 1,200,000 waiting, a
-- million of them one webhook's (the test server, 2026-12-03).
-- (ten columns, without the limits and waits_on, until 2026-12-07)
select webhooks_private.drop_function_unless('webhooks.backlog_by_webhook()', '',
  'TABLE(company_id bigint, webhook_id bigint, name text, enabled boolean, due bigint, later bigint, in_flight bigint, ' ||
  'oldest_due_at timestamp with time zone, failures_in_a_row integer, paused_until timestamp with time zone, ' ||
  'rate_limit integer, max_in_flight integer, waits_on text)');
create or replace function webhooks.backlog_by_webhook()
returns table (company_id bigint, webhook_id bigint, name text, enabled boolean,
               due bigint, later bigint, in_flight bigint, oldest_due_at timestamptz,
               failures_in_a_row integer, paused_until timestamptz,
               rate_limit integer, max_in_flight integer, waits_on text)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  with hooks as (
    select h.webhook_id from webhooks_private.waiting_webhooks() h
    union
    -- (one probe of the lease index per webhook, not every row in flight: 22_outbox.sql)
    select f.webhook_id from webhooks_private.webhooks_in_flight() f
  )
  select w.company_id, w.id, w.name, w.enabled,
         c.due, c.later, f.in_flight, c.oldest_due_at,
         coalesce(l.failures, 0), case when l.open_until > now() then l.open_until end,
         w.rate_limit, w.max_in_flight,
         case when c.due = 0 then null
              when l.open_until > now() then 'breaker'
              when w.rate_limit is not null and l.paced_until > now() then 'rate_limit'
              when w.max_in_flight is not null and f.in_flight >= w.max_in_flight then 'max_in_flight'
              else 'relay' end
  from hooks
  join webhooks.webhooks w on w.id = hooks.webhook_id
  left join webhooks_private.lanes l on l.webhook_id = w.id
  cross join lateral (select count(*) filter (where d.next_attempt_at <= now()) as due,
                             count(*) filter (where d.next_attempt_at > now()) as later,
                             min(d.next_attempt_at) filter (where d.next_attempt_at <= now()) as oldest_due_at
                      from webhooks.delivery_queue d
                      where d.webhook_id = w.id and d.locked_by is null) c
  cross join lateral (select count(*) as in_flight
                      from webhooks.delivery_queue d
                      where d.webhook_id = w.id and d.locked_by is not null) f
  order by c.oldest_due_at nulls last, c.due desc, w.id;
$$;

-- The transactions that hold the relays awake. A transaction that captured a delivery
-- holds capturing (SHARED) until it ends, and while anyone holds it no relay sleeps:
-- each asks captures_done() again once a second (20_wakeup.sql, relay/idle.ts). A transaction left open (a session idle in
-- transaction), or left prepared by a two-phase writer whose transaction manager went
-- away (docs/relay.md#two-phase-writers), holds it for hours, across restarts of
-- Postgres if prepared, and its deliveries wait for its end. Four figures:
--   transactions    transactions holding capturing now, prepared or not
--   oldest_seconds  the oldest one's age: since its start (pg_stat_activity), or since
--                   its PREPARE for a prepared one (pg_prepared_xacts: its start is not
--                   kept); 0 when none
--   prepared        how many of them are prepared transactions
--   oldest_prepared_seconds  the oldest prepared one's age, since its PREPARE; 0 when
--                   none (an alert on it is not set off by an old open transaction
--                   beside a prepared one of a moment)
--   ages_unknown    how many of them are open transactions whose start this role is
--                   not shown (below), left out of oldest_seconds
--   oldest_xid_age  the oldest one's age in transaction ids: how many were given since
--                   its own (age(xid)), known of every role's; 0 when none
-- Read from the server's lock table (pg_locks, read once), which shows every
-- session's locks to any role, and a prepared transaction's too: with a null pid, and
-- a virtual transaction id that is the same on each of its locks but no fixed form of
-- its xid (on Postgres 17, the one it had before PREPARE). So a prepared holder is
-- found by the lock on its own xid that it holds under the same virtual transaction
-- id, the xid pg_prepared_xacts names (its other xid locks, of subtransactions, name
-- none). An
-- open transaction's start is shown only to superusers, members of pg_read_all_stats
-- and its own role: hence security definer (as the engine's owner). An owner that is
-- none of them still counts every holder, prepared ones with their age, but not the
-- age of another role's open transaction in seconds: that one is counted in
-- ages_unknown, and its transaction id (backend_xid, shown to every role: a holder
-- has one, it wrote) in oldest_xid_age (docs/operations.md;
-- test/sql/capturing-writer-roles.test.ts). Only shared holds count: a relay's
-- captures_done() takes the lock exclusively for an instant.
-- About 1.4 ms a call, nearly all of it planning (reading pg_locks: 0.08 ms; the test
-- server, 2026-12-06), asked once a second at most by each process's /metrics.
-- (four figures until 2026-12-06)
select webhooks_private.drop_function_unless('webhooks_ops.capturing()',
  'OUT transactions bigint, OUT oldest_seconds double precision, OUT prepared bigint, ' ||
  'OUT oldest_prepared_seconds double precision, OUT ages_unknown bigint, OUT oldest_xid_age bigint', 'record');
create or replace function webhooks_ops.capturing(
  out transactions bigint, out oldest_seconds double precision, out prepared bigint,
  out oldest_prepared_seconds double precision, out ages_unknown bigint, out oldest_xid_age bigint)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  with locks as materialized (
    select l.locktype, l.pid, l.virtualtransaction, l.transactionid
    from pg_locks l
    where (l.locktype = 'advisory'
           and l.database = (select d.oid from pg_database d where d.datname = current_database())
           and l.classid = webhooks_private.lock_space()::oid
           and l.objid = webhooks_private.capturing_lock()::oid
           and l.objsubid = 2
           and l.mode = 'ShareLock' and l.granted)
       or (l.locktype = 'transactionid' and l.pid is null and l.mode = 'ExclusiveLock')
  ),
  holders as (
    select coalesce(x.prepared, a.xact_start) as since, l.pid is null as is_prepared,
           coalesce(x.transaction, a.backend_xid) as xid
    from locks l
    left join lateral (select p.prepared, p.transaction
                       from locks t
                       join pg_prepared_xacts p on p.transaction = t.transactionid
                       where l.pid is null and t.locktype = 'transactionid'
                         and t.virtualtransaction = l.virtualtransaction
                       limit 1) x on true
    left join pg_stat_activity a on a.pid = l.pid
    where l.locktype = 'advisory'
  )
  select count(*),
         coalesce(extract(epoch from now() - min(h.since)), 0)::double precision,
         count(*) filter (where h.is_prepared),
         coalesce(extract(epoch from now() - min(h.since) filter (where h.is_prepared)), 0)::double precision,
         count(*) filter (where h.since is null),
         coalesce(max(age(h.xid)), 0)
  from holders h;
$$;

-- A DBA's, after CRM rows were loaded with triggers off (pg_restore --disable-triggers,
-- session_replication_role = replica, ALTER TABLE … DISABLE TRIGGER: docs/operations.md,
-- "Backups and copies"): the triggers of migration 0069 that keep the words of the
-- users' and statuses' names (webhooks_private.crm_name_words, the setup form's search)
-- did not run either, and a restored "Ann de la Cruz" is not found by "Cruz". Fills the
-- table again from crm.users and crm.statuses as that migration did; the tables are
-- taken against writes meanwhile (SHARE), so that none is missed. Running it again
-- changes nothing. Not for the API's or the relay's roles (60_access.sql).
create or replace procedure webhooks_ops.refill_crm_name_words()
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  lock table crm.users, crm.statuses in share mode;
  delete from webhooks_private.crm_name_words;
  insert into webhooks_private.crm_name_words (company_id, kind, key, id, word_at)
  select u.company_id, 'u', k.key, u.id, k.word_at
  from crm.users u cross join lateral webhooks_private.name_words(u.name) k
  on conflict do nothing;
  insert into webhooks_private.crm_name_words (company_id, kind, key, id, word_at)
  select s.company_id, 's', k.key, s.id, k.word_at
  from crm.statuses s cross join lateral webhooks_private.name_words(s.name) k
  on conflict do nothing;
end;
$$;
