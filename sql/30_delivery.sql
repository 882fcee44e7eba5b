-- bpd-webhooks engine: delivery, the state machine the relay drives.
--
--            claim                     settle 2xx, 302, 303
--   pending ───────▶ in_flight ──────────────────────────▶ succeeded
--    ▲ ▲ ▲               │  settle failure, attempts left (next_attempt_at = backoff)
--    │ │ ├───────────────┤
--    │ │ │  rescue       │  settle failure, attempts used up; or 410 Gone
--    │ │ └── (lease run  └─────────────────────────────────▶ failed
--    │ │      out)                                           │
--    │ └── release (claimed, never sent)                     │
--    └──────────────────────── replay ◀──────────────────────┘ (and from succeeded)
--
-- The relay only asks; these functions decide. Claim takes due rows with FOR UPDATE
-- SKIP LOCKED and leases them (locked_by, locked_until), so many relays can share one
-- outbox without taking a row twice while its lease holds. Settle applies a batch of
-- HTTP results in one statement, and only to rows still leased by the relay that
-- reports (state = 'in_flight' and locked_by = me): a relay that comes back after its
-- lease ran out cannot overwrite what another relay has done since. Release hands
-- back rows a stopping relay claimed but never sent. Rescue returns rows whose lease
-- ran out (their relay died or lost the database) to pending; it runs on a timer of
-- its own, apart from the claim/settle loop. Replay (the admin API) puts a finished
-- delivery back to pending, as the same message.
--
-- Private API for the relay, in a schema of its own (webhooks_relay: usage and
-- EXECUTE granted to bpd_webhooks_relay in 60_access.sql, to nobody else):
-- claim_deliveries, settle_deliveries, release_deliveries, release_unheld_leases,
-- rescue_expired_leases.
-- They are SECURITY DEFINER so that the relay's role needs no grant on any table, no
-- row-level security policy, and no access to webhooks_private: these functions (and
-- the idle announcements of 20_wakeup.sql) are all it can do.
-- Public: webhooks.retry_schedule() shows the retry schedule in force;
-- webhooks.replay_delivery and webhooks.replay_failed (GraphQL mutations).
--
-- Settings (02_settings.sql has their defaults and bounds): webhooks.max_attempts (a
-- webhook's own max_attempts overrides it), webhooks.retry_base, retry_factor,
-- retry_max_delay, retry_jitter (each wait varied at random, so that deliveries that
-- failed together do not all come back at the same instant) and retry_after_max.
-- With the defaults: 10 attempts, waits of 10 s, 30 s, 1.5 min, 4.5 min, 13.5 min,
-- 40.5 min, 2 h, 6 h, 12 h: the last attempt comes about 21 hours after the first.

-- private: the most bytes of payloads one claim returns unless its caller says less
-- (32 MiB). Payloads are bounded one by one (webhooks.max_payload_bytes, 25_capture.sql);
-- this bounds a batch of them, in the relay's memory and in the arrays the claim
-- builds (Postgres refuses any value over 1 GB: a batch of big payloads would make
-- every claim fail, every company's deliveries with it). Counted as max_payload_bytes
-- counts them, the jsonb's size as capture built it (a payload written otherwise: its
-- text's), which is about the size of the body sent; at most six times it, for a
-- payload of nothing but control characters, each sent as \u00XX.
create or replace function webhooks_private.claim_max_bytes()
returns integer
language sql
immutable
as $$
  select 33554432;
$$;

-- private: attempts a delivery of this webhook gets (p_webhook_max: webhooks.max_attempts)
create or replace function webhooks_private.max_attempts(p_webhook_max integer)
returns integer
language sql
stable
as $$
  select coalesce(p_webhook_max, webhooks_private.integer_setting('webhooks.max_attempts'));
$$;

-- private: how long to wait after failed attempt number p_attempt, before jitter
create or replace function webhooks_private.nominal_retry_delay(p_attempt integer)
returns interval
language sql
stable
as $$
  select make_interval(secs => least(
    extract(epoch from webhooks_private.interval_setting('webhooks.retry_base'))
      * power(webhooks_private.number_setting('webhooks.retry_factor'), greatest(p_attempt, 1) - 1),
    extract(epoch from webhooks_private.interval_setting('webhooks.retry_max_delay'))));
$$;

-- private: how long to wait after failed attempt number p_attempt, when the endpoint
-- asked for p_retry_after_s seconds (Retry-After) or said nothing (null). The
-- endpoint's wish is honoured up to webhooks.retry_after_max; it never shortens
-- the backoff.
create or replace function webhooks_private.retry_wait(p_attempt integer, p_retry_after_s integer)
returns interval
language sql
volatile -- random()
as $$
  select greatest(
    webhooks_private.nominal_retry_delay(p_attempt)
      * (1 + webhooks_private.number_setting('webhooks.retry_jitter') * (2 * random() - 1)),
    least(make_interval(secs => greatest(coalesce(p_retry_after_s, 0), 0)),
          webhooks_private.interval_setting('webhooks.retry_after_max')));
$$;

-- public: the retry schedule in force (without jitter), one row per attempt. Runs as
-- its owner: its helpers live in webhooks_private, which no API role may use, and it
-- reads nothing but settings. p_max_attempts is bounded as a webhook's max_attempts is
-- (webhooks_max_attempts_range): a caller cannot ask for a billion rows; refused by
-- name (retry_max_attempts_range, the argument as its column).
create or replace function webhooks.retry_schedule(p_max_attempts integer default null)
returns table (attempt integer, wait_before interval, since_first_attempt interval)
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if p_max_attempts is not null and p_max_attempts not between 1 and 100 then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = 'max attempts must be from 1 to 100',
      constraint = 'retry_max_attempts_range',
      column = 'p_max_attempts';
  end if;
  return query
  select n,
         case when n = 1 then interval '0' else webhooks_private.nominal_retry_delay(n - 1) end,
         coalesce(sum(webhooks_private.nominal_retry_delay(n - 1)) filter (where n > 1)
                    over (order by n), interval '0')
  from generate_series(1, webhooks_private.max_attempts(p_max_attempts)) n
  order by n;
end;
$$;

------------------------------------------------------------------------------------
-- claim

-- private (claim): the longest a claim waits for what another transaction holds
-- when it fails a disabled webhook's deliveries unsent (the counts of their hours:
-- the engine's own transactions hold one for milliseconds), and how long the
-- deliveries it could not fail then wait before a claim tries again. Not
-- settle_lock_wait(): a claim waits while it holds its lanes, and the relay claims
-- one claim at a time.
create or replace function webhooks_private.claim_lock_wait()
returns text
language sql
immutable
as $$
  select '50ms';
$$;

create or replace function webhooks_private.unsent_put_off()
returns interval
language sql
immutable
as $$
  select interval '10 seconds';
$$;

-- private (claim, and enabling a webhook): the due time of a backfill's snapshot
-- held while its webhook is disabled: none (a claim never finds it due). A disabled
-- webhook's backfill pauses (35_backfill.sql), and so do the snapshots it has written:
-- failed unsent as a disabled webhook's other deliveries are, up to
-- webhooks.backfill_outstanding contacts never got theirs, for the backfill went on
-- after them once enabled (until 2026-12-05; test/sql/backfill.test.ts). Held, they
-- go once the webhook is enabled (tg_webhooks__release_held_snapshots, below), or fail
-- with the others if their backfill is cancelled meanwhile (they are pending).
create or replace function webhooks_private.snapshot_held()
returns timestamptz
language sql
immutable
as $$
  select 'infinity'::timestamptz;
$$;

-- private (relay): lease up to p_limit due deliveries to relay p_relay for p_lease.
-- Which ones is decided by webhooks_private.lane_claim (sql/28_lanes.sql): fair
-- rotation across companies then webhooks, each webhook within its fleet-wide
-- max_in_flight, its rate_limit and its circuit breaker, each company within its
-- share of the relay's p_slots request slots. p_per_webhook caps what this relay
-- holds of one webhook (in flight and queued); p_busy_webhooks/p_busy_counts say
-- what it holds, and p_busy_caps (entries may be null) a cap of a held webhook's own
-- in place of p_per_webhook. p_only_webhooks null: look at every webhook with due
-- deliveries (discovery; more_due says the batch was full, or, on a row without a
-- delivery, that the window walked found nothing and more lanes wait beyond it:
-- discovery_walks_on, 28_lanes.sql); given: refill those
-- webhooks only.
-- Returns what the relay needs to send: the body is the stored payload serialised
-- here, once, and signed as is; send_at and send_until, when not null, are the slot
-- the delivery must be sent in (rate_limit pacing), else handed back; webhook_filled:
-- its webhook took all this claim allowed it (more of it may be due). at_cap: a
-- webhook with due deliveries was at its fleet-wide cap (look again after a settle);
-- lanes_busy: every webhook this claim could serve was being claimed by another
-- relay at that moment, so nothing was leased (look again shortly: that claim holds
-- them a few milliseconds); when nothing is leased these come in a row of their own,
-- its delivery_id null. Due deliveries of a disabled webhook are not sent: they fail
-- with a reason, but a backfill's snapshots wait until it is enabled (step 4).
-- p_max_bytes bounds the payloads one claim returns (null: claim_max_bytes()); rows
-- past it stay pending, and more_due and webhook_filled say that more is due. p_byte_budget: the payload bytes the relay may hold in all
-- (RELAY_MAX_HELD_BYTES), and p_busy_bytes what it holds per webhook, beside
-- p_busy_counts: the claim takes no more than the budget leaves, and each company no
-- more than its share of it (sql/28_lanes.sql). Null: no bound but p_max_bytes.
-- p_busy_companies: the company of each webhook held, beside p_busy_webhooks, for
-- the companies' shares (null, or an entry null: looked up by the webhook's lane).
drop function if exists webhooks_relay.claim_deliveries(text, integer, interval, integer, bigint[], integer[], bigint[]);
-- (p_busy_caps came after p_slots)
drop function if exists webhooks_relay.claim_deliveries(text, integer, interval, integer, bigint[], integer[], bigint[], integer);
-- (lanes_busy came after at_cap: a new result type needs the old one dropped)
drop function if exists webhooks_relay.claim_deliveries(text, integer, interval, integer, bigint[], integer[], bigint[], integer, integer[]);
-- (p_busy_bytes and p_byte_budget came last)
drop function if exists webhooks_relay.claim_deliveries(text, integer, interval, integer, bigint[], integer[], bigint[], integer, integer[], integer);
-- (the result changed with the same arguments: previous_secrets, every rotated-out
-- secret still valid, replaced previous_secret; then company_id came last, the relay
-- sharing its free request slots between companies, relay/slots.ts; then
-- p_busy_companies came last, the company of each webhook held, which the claim had
-- looked up by the webhook's lane, one lookup a webhook held on every claim. A relay
-- of the previous release calls the new one with its arguments, p_busy_companies
-- null: its claim looks them up, as before.)
drop function if exists webhooks_relay.claim_deliveries(text, integer, interval, integer, bigint[], integer[], bigint[], integer, integer[], integer, bigint[], bigint);
create or replace function webhooks_relay.claim_deliveries(
  p_relay         text,
  p_limit         integer,
  p_lease         interval,
  p_per_webhook   integer,
  p_busy_webhooks bigint[] default '{}',
  p_busy_counts   integer[] default '{}',
  p_only_webhooks bigint[] default null,
  p_slots         integer default null,
  p_busy_caps     integer[] default null,
  p_max_bytes     integer default null,
  p_busy_bytes    bigint[] default null,
  p_byte_budget   bigint default null,
  p_busy_companies bigint[] default null
)
returns table (
  delivery_id     bigint,
  message_id      text,
  webhook_id      bigint,
  attempt         integer,
  url             text,
  body            text,
  secret          text,
  previous_secrets text[],
  send_at         timestamptz,
  send_until      timestamptz,
  webhook_filled  boolean,
  more_due        boolean,
  at_cap          boolean,
  lanes_busy      boolean,
  company_id      bigint
)
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
-- Index paths only: the queue grows in bursts faster than autovacuum analyses it,
-- and with stale statistics the planner chose to read every pending row (a bitmap
-- scan and a sort) for a batch of 32. The indexes serve every query here at any size.
set enable_seqscan = off
set enable_bitmapscan = off
-- and never a sort of a webhook's pending rows: a claim takes the oldest few from
-- delivery_queue_webhook_due_idx, in its order. Planned while the statistics said the
-- queue was empty (a vacuum had seen it so before a burst came: pages, no rows), so
-- that every path looked like one row, a claim chose the contact index instead, read
-- a backlog of 22,192 rows and sorted them to take 100 (auto_explain in a fleet
-- benchmark, in about a third of the runs: Postgres CPU per delivery 0.22–0.30 s/1k
-- in those, 0.10–0.12 in the others; docs/outbox.md). The sorts that remain have no
-- other way.
set enable_sort = off
-- and no JIT: the methods turned off price these plans at 10^10, past every
-- jit_*_above_cost, and on a Postgres built with LLVM each claim compiled itself for
-- about a second (the relay's sessions turn it off too: relay/database.ts; this is
-- for every other caller)
set jit = off
-- one plan per connection: with custom plans each call planned its queries again
set plan_cache_mode = force_generic_plan
-- and no parallel workers: a claim reads a few hundred rows by key, and a worker
-- started for it costs more than the claim (step 3 once planned a parallel scan of a
-- day's whole company index for a batch of 193: 4 ms instead of 0.4)
set max_parallel_workers_per_gather = 0
as $$
#variable_conflict use_column
declare
  v_locked bigint[];
  v_created timestamptz[];
  v_ctids tid[];
  v_send_at timestamptz[];
  v_send_until timestamptz[];
  v_filled boolean[];
  v_at_cap boolean;
  v_lanes_busy boolean;
  v_day date;
  v_days bigint;
  v_relation text;
  v_day_ids bigint[];
  v_day_messages text[];
  v_day_bodies text[];
  v_message_ids bigint[] := '{}';
  v_messages text[] := '{}';
  v_bodies text[] := '{}';
  v_sizes integer[];
  v_companies bigint[];
  v_webhooks bigint[];
  v_nths integer[];
  v_byte_rooms bigint[];
  v_holds_nothing boolean[];
  v_sent boolean[];
  v_read_ids bigint[];
  v_read_created timestamptz[];
  v_total bigint;
  v_least_room bigint;
  -- (least() passes over a null: no budget, or no bytes held)
  v_max_bytes constant bigint := least(coalesce(p_max_bytes, webhooks_private.claim_max_bytes()),
                                       p_byte_budget - (select sum(b) from unnest(p_busy_bytes) b),
                                       p_byte_budget);
  v_cut boolean := false;
  -- (an ordered webhook's deliveries failed unsent: step 4)
  v_unsent_webhooks bigint[];
  v_unsent_contacts bigint[];
  v_walks_on boolean;
begin
  -- 0. this relay's claims lock, shared, until the claim's transaction ends: a claim
  -- whose answer the relay gave up may still be running, and the relay's hand-back
  -- of the unheld (release_unheld_leases) waits for it so (a few microseconds a
  -- claim: test/relay/lost-claim-late-commit.test.ts)
  perform pg_advisory_xact_lock_shared(webhooks_private.relay_claims_lock(p_relay));
  -- 1. choose and lock (sql/28_lanes.sql)
  select array_agg(c.delivery_id) filter (where c.delivery_id is not null),
         array_agg(c.created_at) filter (where c.delivery_id is not null),
         array_agg(c.row_ctid) filter (where c.delivery_id is not null),
         array_agg(c.send_at) filter (where c.delivery_id is not null),
         array_agg(c.send_until) filter (where c.delivery_id is not null),
         array_agg(c.webhook_filled) filter (where c.delivery_id is not null),
         coalesce(bool_or(c.delivery_id is null and not c.lanes_busy), false),
         coalesce(bool_or(c.lanes_busy), false),
         array_agg(c.payload_bytes) filter (where c.delivery_id is not null),
         array_agg(c.company_id) filter (where c.delivery_id is not null),
         array_agg(c.webhook_id) filter (where c.delivery_id is not null),
         array_agg(c.nth) filter (where c.delivery_id is not null),
         array_agg(c.byte_room) filter (where c.delivery_id is not null),
         array_agg(c.holds_nothing) filter (where c.delivery_id is not null),
         array_agg(c.sent) filter (where c.delivery_id is not null),
         sum(c.payload_bytes) filter (where c.sent), min(c.byte_room)
    into v_locked, v_created, v_ctids, v_send_at, v_send_until, v_filled, v_at_cap, v_lanes_busy, v_sizes,
         v_companies, v_webhooks, v_nths, v_byte_rooms, v_holds_nothing, v_sent, v_total, v_least_room
  from webhooks_private.lane_claim(p_relay, p_limit, p_slots, p_per_webhook, p_busy_webhooks,
                                   p_busy_counts, p_only_webhooks, p_busy_caps, p_busy_bytes, p_byte_budget,
                                   p_busy_companies) c;

  -- 2. no more than p_max_bytes of payloads (claim_max_bytes), nor than what the
  --    relay's byte budget leaves, in one claim, and always one (a relay that holds
  --    its whole budget does not claim: relay/slots.ts); and no company more than its
  --    share of the budget (lane_claim's byte_room), its webhooks' first rows first,
  --    then their second, …, except that a company that holds nothing gets one
  --    delivery however large. Counted from the sizes capture wrote into the queue
  --    rows (payload_bytes, 25_capture.sql), in the order lane_claim chose the rows;
  --    those past a budget are left pending (locked until this claim commits) for a
  --    later claim, and their webhooks may have more due (a paced webhook's slots
  --    for the rows left go unused, a probe cut waits for the next: lane_claim
  --    counted them). Computed only when the sizes could pass a budget: with
  --    payloads of a few kB they never do. A disabled webhook's deliveries (sent
  --    false) weigh nothing: they are failed, never read nor sent.
  --    A size may be null: a row an older engine wrote while an upgrade was between
  --    migrations/0025 and sql/ (the column cannot be NOT NULL until no engine that
  --    leaves it out can still be writing); it counts as nothing, as before 0025.
  --    Only a cut by the claim's budget says that more is due now (more_due): rows
  --    cut by their company's share wait until it holds less, as rows past its share
  --    of the slots do, and a relay told to look again at once would only cut them
  --    again.
  if v_total > least(v_max_bytes, v_least_room) then
    select array_agg(c.id order by c.n) filter (where c.fits), array_agg(c.created order by c.n) filter (where c.fits),
           array_agg(c.row_ctid order by c.n) filter (where c.fits), array_agg(c.send_at order by c.n) filter (where c.fits),
           array_agg(c.send_until order by c.n) filter (where c.fits), array_agg(true) filter (where c.fits),
           array_agg(c.sent order by c.n) filter (where c.fits), array_agg(c.webhook_id order by c.n) filter (where c.fits),
           coalesce(bool_or(not c.fits), false)
      into v_locked, v_created, v_ctids, v_send_at, v_send_until, v_filled, v_sent, v_webhooks, v_cut
    from (select f.*, not f.sent
                      or sum(coalesce(f.size, 0)) over (partition by f.sent order by f.n) <= v_max_bytes
                      or row_number() over (partition by f.sent order by f.n) = 1 as fits
          from (select c.*,
                       sum(coalesce(c.size, 0)) over (partition by c.company_id, c.sent order by c.nth, c.n) as company_upto,
                       row_number() over (partition by c.company_id, c.sent order by c.nth, c.n) as company_k
                from unnest(v_locked, v_created, v_ctids, v_send_at, v_send_until, v_sizes, v_companies, v_nths,
                            v_byte_rooms, v_holds_nothing, v_sent, v_webhooks)
                  with ordinality as c(id, created, row_ctid, send_at, send_until, size, company_id, nth,
                                       byte_room, holds_nothing, sent, webhook_id, n)) f
          where not f.sent or f.byte_room is null or f.company_upto <= f.byte_room
             or (f.holds_nothing and f.company_k = 1)) c;
  end if;

  if v_locked is null then
    -- nothing to lease; say whether a fleet-wide cap or other relays' claims held
    -- deliveries back, or whether a discovery that walked a full window of lanes
    -- without finding one that may send now has more to walk (more_due:
    -- discovery_walks_on, 28_lanes.sql)
    v_walks_on := p_only_webhooks is null and current_setting('bpd_webhooks.discovery_walks_on', true) = 'on';
    if v_at_cap or v_lanes_busy or v_walks_on then
      return query select null::bigint, null::text, null::bigint, null::integer, null::text, null::text,
                          null::text, null::text[], null::timestamptz, null::timestamptz, null::boolean, v_walks_on,
                          v_at_cap, v_lanes_busy, null::bigint;
    end if;
    return;
  end if;

  -- 3. what to send: the messages, from each day's history partition by name (nearly
  --    always one; 22_outbox.sql), planned on every call. Read before the lease: the
  --    rows are locked, nothing changes them. By their ids (the identity: one row of
  --    the day's partition each), all in one walk of the primary key: Postgres 17
  --    takes an "id = any" array in order, and the ids on one leaf page with one
  --    visit, about a buffer a delivery (the row's page) where a probe for each row
  --    read three (root, leaf, row; until 2026-12-06, test/fleet/claim-cost.test.ts).
  --    The array reaches the plan as a subquery's value, unknown when it is planned:
  --    given the array itself, the planner guessed from a day's partition without
  --    statistics (a burst's) that a batch of about 200 ids would match most of it,
  --    and chose to walk the day's company index, or to start parallel workers for it
  --    (4 ms a claim; BENCHMARKS.md); an array it cannot see it takes for a few ids.
  --    (Only the messages to be sent: a disabled webhook's deliveries are failed
  --    unread.)
  v_read_ids := v_locked;
  v_read_created := v_created;
  if false = any (v_sent) then
    select array_agg(c.id), array_agg(c.created) into v_read_ids, v_read_created
    from unnest(v_locked, v_created, v_sent) as c(id, created, sent)
    where c.sent;
  end if;
  --    A day with no partition of history (dropped by hand, 29_retention.sql) is read
  --    from the partitioned table, for that day's rows alone: all the claim's rows
  --    there found every other day's messages a second time, and the claim returned
  --    those deliveries twice. A row whose message is not found leaves the queue
  --    unsent (drop_orphaned_deliveries, below); the rest go on.
  for v_day, v_days in select d.day, count(*) over ()
                       from (select distinct webhooks_private.utc_day(c) as day from unnest(v_read_created) c) d loop
    v_relation := webhooks_private.history_relation(v_day);
    if v_relation = 'webhooks.delivery_history' then
      select array_agg(h.id), array_agg(h.message_id), array_agg(h.payload::text)
      into v_day_ids, v_day_messages, v_day_bodies
      from unnest(v_read_ids, v_read_created) as k(id, created_at)
      join webhooks.delivery_history h on h.id = k.id and h.created_at = k.created_at
      where webhooks_private.utc_day(k.created_at) = v_day;
    else
      -- (the day's ids: all of them, unless the claim's rows span days)
      v_day_ids := case when v_days = 1 then v_read_ids
                        else array(select k.id from unnest(v_read_ids, v_read_created) as k(id, created_at)
                                   where webhooks_private.utc_day(k.created_at) = v_day) end;
      execute format($q$
        select array_agg(h.id), array_agg(h.message_id), array_agg(h.payload::text)
        from %s h
        where h.id = any ((select $1)::bigint[])$q$,
        v_relation)
        into v_day_ids, v_day_messages, v_day_bodies
        using v_day_ids;
    end if;
    v_message_ids := v_message_ids || v_day_ids;
    v_messages := v_messages || v_day_messages;
    v_bodies := v_bodies || v_day_bodies;
  end loop;
  if cardinality(v_message_ids) < cardinality(v_read_ids) then
    perform webhooks_private.drop_orphaned_deliveries(
      array(select unnest(v_read_ids) except select unnest(v_message_ids)));
  end if;

  -- 4. fail what a disabled webhook would get, in a statement of its own (rows of a
  --    claim only now and then: the claim's own statement below stays as it is
  --    planned), but hold a backfill's snapshots until it is enabled again
  --    (snapshot_held(), above: no result row, so no count to wait for; this
  --    transaction holds the rows since lane_claim). A failure's result row changes
  --    its hour's count, which a session that writes that webhook's older
  --    deliveries holds until it ends (50_report_counts.sql): waited for at most
  --    claim_lock_wait(), then those deliveries are put off
  --    (unsent_put_off()) and failed by a later claim. Until 2026-12-05 this was part
  --    of the statement below, which waited for such a session for as long as it
  --    stayed open: every claim of the relay, every company's, failed at
  --    RELAY_DB_QUERY_TIMEOUT_MS and came back to the same rows
  --    (test/relay/open-transaction.test.ts).
  if false = any (v_sent) then
    update webhooks.delivery_queue q
    set next_attempt_at = webhooks_private.snapshot_held()
    from unnest(v_ctids) as c(row_ctid), webhooks.webhooks w
    where q.ctid = c.row_ctid and w.id = q.webhook_id and not w.enabled and q.action = 'contact.snapshot';
    declare
      v_lock_timeout constant text := current_setting('lock_timeout');
    begin
      begin
        -- (the block's own setting: its end, or its failure, puts back the caller's)
        perform set_config('lock_timeout', webhooks_private.claim_lock_wait(), true);
        with not_sent as (
          delete from webhooks.delivery_queue q
          using unnest(v_ctids) as c(row_ctid), webhooks.webhooks w
          where q.ctid = c.row_ctid and w.id = q.webhook_id and not w.enabled and q.action <> 'contact.snapshot'
          returning q.delivery_id, q.created_at, q.webhook_id, q.company_id, q.attempts, q.last_attempt_at,
                    q.last_status_code, q.contact_id, w.ordered
        ),
        failed as (
          insert into webhooks.delivery_results
            (delivery_id, created_at, webhook_id, company_id, state, attempts, last_attempt_at, last_status_code,
             last_error)
          select n.delivery_id, n.created_at, n.webhook_id, n.company_id, 'failed', n.attempts, n.last_attempt_at,
                 n.last_status_code, 'not sent: the webhook is disabled'
          from not_sent n
        )
        select array_agg(n.webhook_id), array_agg(n.contact_id) into v_unsent_webhooks, v_unsent_contacts
        from not_sent n
        where n.ordered;
        -- an ordered webhook's delivery failed unsent ended as a settle's would: the next
        -- of its contact, put off behind it, goes now (to be failed unsent in its turn,
        -- or sent if the webhook is enabled again meanwhile), not when the claim had
        -- put it off to, a lease later (test/sql/ordered-put-off.test.ts)
        if v_unsent_webhooks is not null
           and webhooks_private.let_next_go(v_unsent_webhooks, v_unsent_contacts) > 0 then
          perform webhooks_private.notify_relays();   -- 20_wakeup.sql
        end if;
        perform set_config('lock_timeout', v_lock_timeout, true);
      exception when lock_not_available or check_violation then
        -- (check_violation: a row whose day has no partition of results, dropped by
        -- hand, 29_retention.sql: such rows leave the queue unfailed, and the others
        -- are failed by a later claim)
        if sqlstate = '23514' and webhooks_private.drop_orphaned_deliveries(
             array(select c.id from unnest(v_locked, v_sent) as c(id, sent) where not c.sent)) = 0 then
          raise;
        end if;
        -- (this transaction holds the rows since lane_claim: only their due time moves)
        update webhooks.delivery_queue q
        set next_attempt_at = now() + webhooks_private.unsent_put_off()
        from unnest(v_ctids) as c(row_ctid), webhooks.webhooks w
        where q.ctid = c.row_ctid and w.id = q.webhook_id and not w.enabled and q.action <> 'contact.snapshot';
      end;
    end;
  end if;

  -- 5. lease the rest (queue rows only) and return them with their messages, in one
  --    statement planned once (the rows are reached by the ctid lane_claim locked
  --    them at: this transaction holds them, so no one else can have moved them; a
  --    disabled webhook's, failed or put off above, are no longer at theirs). Each
  --    row is read once, by the update: its webhook is lane_claim's (until
  --    2026-12-06 a join read each row by its ctid for it first, a row and a buffer
  --    a delivery; test/fleet/claim-cost.test.ts)
  return query
  with chosen as (
    select c.id, c.row_ctid, c.send_at, c.send_until, c.filled, c.n, c.webhook_id
    from unnest(v_locked, v_ctids, v_send_at, v_send_until, v_filled, v_webhooks)
      with ordinality as c(id, row_ctid, send_at, send_until, filled, webhook_id, n)
  ),
  -- each enabled webhook once, however many of its deliveries the batch holds (a
  -- disabled one's deliveries, failed or put off above, are not leased)
  hooks as materialized (
    select w.id, w.url, s.secret,
           webhooks_private.valid_rotated_secrets(w.id) as previous_secrets
    from webhooks.webhooks w
    left join webhooks_private.webhook_secrets s on s.webhook_id = w.id
    where w.id in (select c.webhook_id from chosen c) and w.enabled
  ),
  leased as (
    update webhooks.delivery_queue q
    set locked_by = p_relay,
        -- a paced delivery's request may start as late as the end of its slot (up
        -- to two seconds ahead): its lease counts from there, so that it outlasts the
        -- request as any other's does (RELAY_LEASE_MS > RELAY_REQUEST_TIMEOUT_MS).
        -- Until 2026-12-04 it counted from the claim, and a lease a second or two
        -- longer than the request timeout ran out under a paced request, which the
        -- rescue then sent again (test/fleet/rate-limit.test.ts).
        -- (greatest passes over a null: no slot)
        locked_until = greatest(c.send_until, now()) + p_lease,
        attempts = q.attempts + 1,
        last_attempt_at = now(),
        -- (a held-back delivery put off, due again and no longer held back)
        held_due = null
    from chosen c
    join hooks w on w.id = c.webhook_id
    where q.ctid = c.row_ctid
    returning q.delivery_id, q.webhook_id, q.attempts, w.url, w.secret, w.previous_secrets,
              c.send_at, c.send_until, c.filled, c.n, q.company_id
  )
  -- in the order lane_claim chose them (oldest first within a lane): the relay sends
  -- in this order
  select l.delivery_id, m.message_id, l.webhook_id, l.attempts, l.url, m.body, l.secret, l.previous_secrets,
         l.send_at, l.send_until, l.filled, (p_only_webhooks is null and cardinality(v_locked) >= p_limit) or v_cut,
         v_at_cap, false, l.company_id
  from leased l
  join unnest(v_message_ids, v_messages, v_bodies) as m(id, message_id, body) on m.id = l.delivery_id
  order by l.n;
end;
$$;

-- A webhook enabled again: its backfill's snapshots held while it was disabled
-- (snapshot_held(), claim step 4) are due now, and a relay asleep is woken. One range
-- of the queue's due index (webhook, due time), read only when a webhook is enabled.
-- After _500_reset_lane (28_lanes.sql), whose write of the webhook's lane waits for a
-- claim that holds the lane: such a claim may be holding the webhook's snapshots as
-- disabled (it read the webhook before the enable), and a release that came first
-- found none of them, which then waited for the next enable; a claim that comes after
-- the lane's write finds the lane locked, and takes none of them
-- (test/sql/backfill.test.ts).
create or replace function webhooks_private.tg_webhooks__release_held_snapshots()
returns trigger
language plpgsql
as $$
declare
  v_woken boolean;
begin
  update webhooks.delivery_queue q
  set next_attempt_at = now()
  where q.webhook_id = new.id and q.locked_by is null and q.next_attempt_at = webhooks_private.snapshot_held();
  if found then
    v_woken := webhooks_private.wake_relay();   -- 20_wakeup.sql
  end if;
  return null;
end;
$$;

drop trigger if exists _600_release_held_snapshots on webhooks.webhooks;
create trigger _600_release_held_snapshots
  after update of enabled on webhooks.webhooks
  for each row when (new.enabled and not old.enabled)
  execute function webhooks_private.tg_webhooks__release_held_snapshots();

------------------------------------------------------------------------------------
-- settle

-- private: the backfill that wrote a snapshot of this webhook at p_created_at: the
-- webhook's latest started by then (one runs at a time). One index probe
-- (backfills_webhook_idx). Of two started at one instant (one transaction that
-- cancelled a backfill and started the next), the later by its id: by its time alone
-- either could come first, and a settle asked about the cancelled one failed the
-- next one's snapshot for good instead of retrying it.
create or replace function webhooks_private.snapshot_backfill(p_webhook_id bigint, p_created_at timestamptz)
returns setof webhooks.backfills
language sql
stable
as $$
  select * from webhooks.backfills b
  where b.webhook_id = p_webhook_id and b.created_at <= p_created_at
  order by b.created_at desc, b.id desc
  limit 1;
$$;

-- private (cancel_backfill, 35_backfill.sql; and a release, below): fail a cancelled
-- backfill's snapshots not sent yet, with the reason: those pending (p_ids null), or
-- those of p_ids among them. Through the view, as a DBA's repair: each leaves the
-- queue with its result, and on an ordered webhook the next of its contact goes
-- (22_outbox.sql). Returns how many.
create or replace function webhooks_private.fail_unsent_snapshots(p_backfill webhooks.backfills,
                                                                  p_ids bigint[] default null)
returns integer
language plpgsql
volatile
as $$
declare
  v_failed integer;
begin
  update webhooks.deliveries d
  set state = 'failed',
      completed_at = now(),
      last_error = format('not sent: backfill %s was cancelled', p_backfill.id)
  where d.webhook_id = p_backfill.webhook_id
    and d.state = 'pending'
    and d.action = 'contact.snapshot'
    and d.created_at >= p_backfill.created_at
    and (p_ids is null or d.id = any (p_ids));
  get diagnostics v_failed = row_count;
  return v_failed;
end;
$$;

-- private (settle, release and rescue, below): was the backfill that wrote a snapshot
-- of this webhook at p_created_at (snapshot_backfill) cancelled after p_claimed_at,
-- while the attempt claimed then was being made? Such a snapshot whose attempt
-- failed, or whose lease ran out (the rescue), is failed, not tried again, and one
-- handed back unsent (a release) fails as not sent; one replayed after the cancel
-- (replay_failed) is retried as any delivery. One index probe, asked only of a
-- snapshot's failed attempt, release or lease run out.
create or replace function webhooks_private.backfill_cancelled(p_webhook_id bigint, p_created_at timestamptz,
                                                               p_claimed_at timestamptz)
returns boolean
language sql
stable
as $$
  select coalesce((select b.state = 'cancelled' and b.finished_at >= p_claimed_at
                   from webhooks_private.snapshot_backfill(p_webhook_id, p_created_at) b), false);
$$;

-- private: what an attempt row says went wrong: the error given, and an attempt that
-- got no HTTP status always says something (delivery_attempts_has_outcome)
create or replace function webhooks_private.attempt_error(p_status_code integer, p_error text)
returns text
language sql
immutable
as $$
  select case when p_status_code is null then coalesce(p_error, 'no response') else p_error end;
$$;

-- private: the error of a result that came back after its lease ran out (recorded
-- beside the delivery, which it leaves alone): said so first, as its attempt number
-- is the one the rescue's "lease expired" row already has, and two attempts 1 read as
-- one attempt twice (until 2026-12-07)
create or replace function webhooks_private.late_attempt_error(p_status_code integer, p_error text)
returns text
language sql
immutable
as $$
  select 'late (its lease had run out; the delivery is unchanged)'
         || coalesce(': ' || webhooks_private.attempt_error(p_status_code, p_error), '');
$$;

-- private (relay): apply a batch of attempt results, one array element per attempt.
-- Every attempt becomes a row of webhooks.delivery_attempts, even one whose lease
-- ran out meanwhile (it did happen). The delivery itself changes only while this
-- relay still holds it. 2xx, 302 and 303 succeed (delivered_status); 410 Gone fails the delivery and disables the
-- webhook; anything else (other statuses, other 3xx, timeouts, refused
-- destinations) is retried after retry_wait, or fails once the attempts are used up.
-- A delivery that ends leaves the queue; one that failed gets its result row, once
-- (a success gets none: its attempt row says it all, 22_outbox.sql); one retried
-- stays in the queue, due later. Returns the new state of each delivery
-- settled; a result missing from the answer had lost its lease, or its delivery
-- was held by another transaction (below).
--
-- A settle writes every company's results in one statement, so it never waits long
-- for a row another transaction holds. The engine holds the rows a settle changes for
-- milliseconds at most (a rescue of a lease that ran out); a transaction outside it
-- may hold them for as long as it stays open: a session that deletes a webhook
-- deletes its queue rows, those in flight included; a session that writes a
-- webhook's deliveries older than an hour holds the count rows of their hours; and a
-- session that changes or deletes a webhook holds its row. The first two are waited
-- for at most settle_lock_wait() (28_lanes.sql), then the settle is done again
-- without the deliveries held, webhook by webhook (their results are left out of the
-- answer: the lease runs out, and the rescue retries the delivery if it is still
-- there once that transaction ends); the last is never waited for (the webhook is
-- left enabled, and the next 410 or failure disables it).
-- test/relay/open-transaction.test.ts shows each.
-- private (settle): a settle that waited settle_lock_wait() in vain, for a lock on
-- one of the engine's tables rather than on rows (a DBA's CREATE INDEX without
-- CONCURRENTLY, LOCK TABLE, an ALTER TABLE waiting its turn): raised as
-- lock_not_available with the constraint settle_table_locked, which the relay takes
-- as "cannot write now" (relay/settle.ts, cannotWriteNow): the whole batch waits and
-- is written again. Such a lock holds every result alike, and left out of the answer,
-- as a held row's is, every delivery in flight stayed so until its lease ran out and
-- was sent again (until 2026-12-05; test/relay/backpressure.test.ts). A table lock of
-- the engine's own upkeep, met here by chance, costs a batch a wait, nothing more.
create or replace function webhooks_private.raise_if_table_locked()
returns void
language plpgsql
as $$
declare
  r record;
begin
  select n.nspname as schema_name, c.relname as table_name, l.pid, l.mode, l.granted
  into r
  from pg_catalog.pg_locks l
  join pg_catalog.pg_class c on c.oid = l.relation
  join pg_catalog.pg_namespace n on n.oid = c.relnamespace
  where l.locktype = 'relation' and l.pid <> pg_backend_pid()
    and l.database = (select d.oid from pg_catalog.pg_database d where d.datname = current_database())
    -- the modes that conflict with a write's ROW EXCLUSIVE, held or waited for
    and l.mode in ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
    and n.nspname in ('webhooks', 'webhooks_private', 'webhooks_partitions')
  limit 1;
  if found then
    raise exception using
      errcode = 'lock_not_available',
      message = format('%I.%I is locked by session %s (%s%s): the results wait and are written again',
                       r.schema_name, r.table_name, r.pid, r.mode, case when r.granted then '' else ', waiting' end),
      constraint = 'settle_table_locked',
      schema = r.schema_name,
      table = r.table_name;
  end if;
end;
$$;

-- p_urls: the URL each attempt was sent to, given for those that did not succeed and
-- for successes whose webhook changed while the relay held them (null: not given).
-- Each attempt records its URL (webhooks.delivery_attempts.url_id, the id of one of
-- its webhook's URLs in webhooks_private.webhook_urls; webhooks.delivery_attempts_url
-- reads it): the one given, else the URL its webhook has (a success whose webhook did
-- not change while it was held), each looked up once a settle however many of its
-- attempts the batch holds. Until 2026-12-07 no attempt kept its URL, and after a
-- change of it the history could not say which attempts went to the old one.
-- A failure of a URL its webhook no longer has (a request to the old URL still on its
-- way when the URL changed) is recorded as any other, the delivery retried, but it
-- counts towards neither the webhook's breaker nor its disabling, and a 410 Gone from
-- it neither fails the delivery nor disables the webhook: the endpoint that failed is
-- no longer the webhook's (until 2026-12-07 it counted as the new URL's first
-- failure). A success of such a URL ends its delivery (it was delivered) but does not
-- clear the new URL's failures in a row (until 2026-12-07 it did, and the breaker
-- opened later; test/fleet/breaker.test.ts).
-- (p_urls came last: a relay of the previous release calls this with its nine
-- arguments, and its failures count as before)
drop function if exists webhooks_relay.settle_deliveries(text, bigint[], integer[], timestamptz[], integer[], integer[],
                                                         text[], text[], integer[]);
create or replace function webhooks_relay.settle_deliveries(
  p_relay           text,
  p_ids             bigint[],
  p_attempts        integer[],
  p_attempted_at    timestamptz[],
  p_duration_ms     integer[],
  p_status_codes    integer[],
  p_errors          text[],
  p_response_bodies text[],
  p_retry_after_s   integer[],
  p_urls            text[] default null
)
returns table (delivery_id bigint, state text, next_attempt_at timestamptz)
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_lock_timeout constant text := current_setting('lock_timeout');
  v_free bigint[];
  v_webhook_ids bigint[];
begin
  begin
    -- (the block's own setting: its end, or its failure, puts back the caller's)
    perform set_config('lock_timeout', webhooks_private.settle_lock_wait(), true);
    return query
      select * from webhooks_private.settle_results(p_relay, p_ids, p_attempts, p_attempted_at, p_duration_ms,
                                                     p_status_codes, p_errors, p_response_bodies, p_retry_after_s,
                                                     p_urls);
    perform set_config('lock_timeout', v_lock_timeout, true);
    return;
  exception when lock_not_available then
    -- (nothing was returned: the results come back only once the settle is done)
    perform webhooks_private.raise_if_table_locked();
  end;
  -- a delivery held past the wait: those still this relay's that another transaction
  -- holds are left out, the rest locked (none of them waited for again) and settled
  -- webhook by webhook, each waited for at most settle_lock_wait() too: a lock held on
  -- something else of one webhook's (the count of an old delivery's hour, which a
  -- session writing that webhook's old deliveries holds) leaves out that webhook's
  -- results alone
  v_free := array(select q.delivery_id
                  from webhooks.delivery_queue q
                  where q.delivery_id = any (p_ids) and q.locked_by is not distinct from p_relay
                  for no key update of q skip locked);
  for v_webhook_ids in
    select array_agg(q.delivery_id) from webhooks.delivery_queue q where q.delivery_id = any (v_free) group by q.webhook_id
  loop
    begin
      perform set_config('lock_timeout', webhooks_private.settle_lock_wait(), true);
      return query
        select * from webhooks_private.settle_results_of(v_webhook_ids, p_relay, p_ids, p_attempts, p_attempted_at,
                                                         p_duration_ms, p_status_codes, p_errors, p_response_bodies,
                                                         p_retry_after_s, p_urls);
      perform set_config('lock_timeout', v_lock_timeout, true);
    exception when lock_not_available then
      perform webhooks_private.raise_if_table_locked();
    end;
  end loop;
end;
$$;

-- private (settle_deliveries): the settle itself, as described above it. p_again: a
-- delivery still this relay's that the settle's statement passed over (its row was
-- changed under it) is settled by a call of its own (false in that call: once).
-- (p_again came last, then p_urls before it)
drop function if exists webhooks_private.settle_results(text, bigint[], integer[], timestamptz[], integer[], integer[],
                                                        text[], text[], integer[]);
drop function if exists webhooks_private.settle_results(text, bigint[], integer[], timestamptz[], integer[], integer[],
                                                        text[], text[], integer[], boolean);
create or replace function webhooks_private.settle_results(
  p_relay           text,
  p_ids             bigint[],
  p_attempts        integer[],
  p_attempted_at    timestamptz[],
  p_duration_ms     integer[],
  p_status_codes    integer[],
  p_errors          text[],
  p_response_bodies text[],
  p_retry_after_s   integer[],
  p_urls            text[],
  p_again           boolean default true
)
returns table (delivery_id bigint, state text, next_attempt_at timestamptz)
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
-- Index paths only, and no JIT, for the reasons given at claim_deliveries.
set enable_seqscan = off
set enable_bitmapscan = off
set jit = off
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
declare
  v_ids bigint[];
  v_ended_webhooks bigint[];
  v_ended_contacts bigint[];
  v_let_go integer;
  v_states text[];
  v_next timestamptz[];
  v_webhooks bigint[];
  v_contacts bigint[];
  v_gone bigint[];
  v_to_old_url bigint[];
  v_again bigint[] := '{}';
  -- the results other than successes (a 2xx, 302 or 303 ends a delivery whatever its row says)
  v_others constant bigint[] := array(select r.id from unnest(p_ids, p_status_codes) as r(id, status_code)
                                      where not webhooks_private.delivered_status(r.status_code));
begin
  -- the results of deliveries this relay still holds ("still mine, still in flight"),
  -- found by their primary key. A success's row is deleted as it is found, read once
  -- (until 2026-12-06 it was read first, with the others, and reached again by its
  -- ctid: a row and about a buffer more a delivery; test/fleet/claim-cost.test.ts);
  -- a row another transaction changes meanwhile is deleted as it is then, if it is
  -- still this relay's lease of that attempt. The others' are read first (their
  -- outcome depends on them), not locked: each change below reaches the row version
  -- read here (its ctid) and repeats the guard, and a row changed in between
  -- (rescued, leased again) is not that version any more: it is left alone, and its
  -- result recorded as one whose lease was lost (below). Only what the changes
  -- returned counts as settled. A lock taken first cost a WAL record and another
  -- write to the row's page per delivery (docs/outbox.md).
  with result as (
    select *
    from unnest(p_ids, p_attempts, p_attempted_at, p_duration_ms, p_status_codes, p_errors,
                p_response_bodies, p_retry_after_s, p_urls)
      as r(id, attempt, attempted_at, duration_ms, status_code, error, response_body, retry_after_s, url)
  ),
  succeeded as (
    -- (the lease of the attempt this result is of, as for the others: below). Each
    -- success's row probed by its key from its result: asked as "delivery_id = any"
    -- of the successes too, the plan walked the key for them all and compared every
    -- result with every row, 40,000 pairs a settle of 200, 80 µs of CPU a delivery
    -- (bench:sql; test/fleet/claim-cost.test.ts)
    delete from webhooks.delivery_queue q
    using result r
    where webhooks_private.delivered_status(r.status_code) and q.delivery_id = r.id
      and q.locked_by is not distinct from p_relay and q.attempts = r.attempt
    returning r.id, r.attempt, r.attempted_at, r.duration_ms, r.status_code, r.error, r.response_body,
              r.retry_after_s, q.ctid, q.created_at, q.webhook_id, q.company_id, q.contact_id, q.attempts,
              -- sent to a URL the webhook no longer has: a success whose URL the relay
              -- gives (its webhook changed while the relay held it, p_urls at
              -- settle_deliveries); the others' webhook is not read (the case's
              -- subquery runs only for a URL given)
              case when r.url is null then false
                   else coalesce(r.url <> (select w.url from webhooks.webhooks w where w.id = q.webhook_id), false)
              end as to_old_url,
              r.url,
              'succeeded'::text as new_state, null::timestamptz as next_attempt_at
  ),
  mine as (
    -- ctid: the row version read here, which the delete or update below reaches
    -- without a second walk of the primary key, and only if it is still that version
    select q.ctid, q.delivery_id, q.created_at, q.webhook_id, q.company_id, q.contact_id, q.attempts, q.action,
           q.last_attempt_at
    from webhooks.delivery_queue q
    -- (is not distinct from, not =: with "=" the planner may prove the lease index's
    -- predicate and walk every lease in it instead of probing the primary key)
    where q.delivery_id = any (v_others) and q.locked_by is not distinct from p_relay
  ),
  -- each webhook's attempt limit and URL, read once however many of its results the
  -- batch holds
  hooks as materialized (
    select w.id, webhooks_private.max_attempts(w.max_attempts) as max_attempts, w.url
    from webhooks.webhooks w
    where w.id in (select m.webhook_id from mine m)
  ),
  outcome as (
    select o.id, o.attempt, o.attempted_at, o.duration_ms, o.status_code, o.error, o.response_body,
           o.retry_after_s, o.ctid, o.created_at, o.webhook_id, o.company_id, o.contact_id, o.attempts,
           o.to_old_url, o.url,
           -- (a success is not among them: succeeded, above)
           case
             when o.status_code = 410 and not o.to_old_url then 'failed'
             when o.attempts >= o.max_attempts then 'failed'
             -- a snapshot being sent when its backfill was cancelled: not tried again
             -- (backfill_cancelled, above). Until 2026-12-05 it was, for the whole schedule, and on
             -- an ordered webhook it held back its contact's changes all the while
             -- (test/sql/backfill.test.ts). (last_attempt_at: when this attempt was
             -- claimed; one replayed after the cancel is retried as any delivery.)
             when o.action = 'contact.snapshot'
                  and webhooks_private.backfill_cancelled(o.webhook_id, o.created_at, o.last_attempt_at)
               then 'failed'
             else 'pending'
           end as new_state
    from (
      select r.id, r.attempt, r.attempted_at, r.duration_ms, r.status_code, r.error, r.response_body,
             r.retry_after_s, m.ctid, m.created_at, m.webhook_id, m.company_id, m.contact_id, m.attempts,
             -- sent to a URL the webhook no longer has (p_urls, at settle_deliveries)
             coalesce(r.url <> w.url, false) as to_old_url,
             -- (a relay of the previous release gives none: the webhook's)
             coalesce(r.url, w.url) as url,
             w.max_attempts, m.action, m.last_attempt_at
      from result r
      -- the lease of the attempt this result is of: a settle repeated (its answer lost)
      -- after the same relay leased the delivery again is an older attempt's, and must
      -- not end or reschedule the lease now in flight (it is recorded once, below)
      join mine m on m.delivery_id = r.id and m.attempts = r.attempt
      join hooks w on w.id = m.webhook_id
    ) o
  ),
  finished as (
    delete from webhooks.delivery_queue q
    using outcome o
    where q.ctid = o.ctid and o.new_state <> 'pending' and q.locked_by is not distinct from p_relay
    returning o.*, null::timestamptz as next_attempt_at
  ),
  retried as (
    update webhooks.delivery_queue q
    set locked_by = null,
        locked_until = null,
        last_attempt_at = o.attempted_at,
        last_status_code = o.status_code,
        last_error = coalesce(o.error, 'HTTP ' || o.status_code),
        next_attempt_at = now() + webhooks_private.retry_wait(o.attempts, o.retry_after_s)
    from outcome o
    where o.new_state = 'pending' and q.ctid = o.ctid and q.locked_by is not distinct from p_relay
    returning o.*, q.next_attempt_at
  ),
  -- what this settle changed: only these are its deliveries' attempts and results.
  -- Each change returns its outcome whole: a join back to the outcomes by id was a
  -- nested loop of every result by every row changed (the planner sees one row in
  -- each), 10,000 comparisons for a batch of 100.
  settled as (
    select * from succeeded
    union all
    select * from finished
    union all
    select * from retried
  ),
  -- the URL of each success the relay gave none for (its webhook did not change while
  -- the relay held it: the URL the webhook has), read once a webhook however many of
  -- its successes the batch holds
  success_urls as materialized (
    select w.id, w.url
    from webhooks.webhooks w
    where w.id in (select s.webhook_id from succeeded s where s.url is null)
  ),
  sent as (
    select o.*, coalesce(o.url, (select u.url from success_urls u where u.id = o.webhook_id)) as sent_url
    from settled o
  ),
  -- the id of each URL the batch's attempts went to, looked up once each
  sent_urls as materialized (
    select u.id, u.webhook_id, u.url
    from webhooks_private.webhook_urls u
    where (u.webhook_id, u.url) in (select distinct s.webhook_id, s.sent_url from sent s)
  ),
  recorded as (
    insert into webhooks.delivery_attempts
      (delivery_id, delivery_created_at, webhook_id, company_id, attempt, attempted_at, duration_ms,
       status_code, error, response_body, relay_id, url_id)
    select o.id, o.created_at, o.webhook_id, o.company_id, o.attempt, o.attempted_at, greatest(o.duration_ms, 0),
           o.status_code, webhooks_private.attempt_error(o.status_code, o.error),
           o.response_body, p_relay,
           (select u.id from sent_urls u where u.webhook_id = o.webhook_id and u.url = o.sent_url)
    from sent o
  ),
  ended as (
    insert into webhooks.delivery_results
      (delivery_id, created_at, webhook_id, company_id, state, attempts, last_attempt_at, last_status_code,
       last_error)
    select o.id, o.created_at, o.webhook_id, o.company_id, o.new_state, o.attempts, o.attempted_at, o.status_code,
           coalesce(o.error, 'HTTP ' || o.status_code)
    from settled o
    where o.new_state = 'failed'
  )
  select coalesce(array_agg(a.id), '{}'), coalesce(array_agg(a.new_state), '{}'),
         coalesce(array_agg(coalesce(a.next_attempt_at, now())), '{}'),
         coalesce(array_agg(a.webhook_id), '{}'),
         coalesce(array_agg(a.contact_id), '{}'),
         coalesce(array_agg(a.id) filter (where a.status_code = 410 and not a.to_old_url), '{}'),
         coalesce(array_agg(a.id) filter (where a.to_old_url), '{}')
  into v_ids, v_states, v_next, v_webhooks, v_contacts, v_gone, v_to_old_url
  from settled a;

  -- 410 Gone: the endpoint asks not to be called again. A webhook whose row another
  -- transaction holds (a session that changes or deletes it and stays open) is passed
  -- over, never waited for: this statement writes every company's results. It stays
  -- enabled, and the next 410 disables it (test/relay/open-transaction.test.ts).
  if cardinality(v_gone) > 0 then
    with g as (
      select distinct on (d.webhook_id) d.webhook_id, d.message_id
      from webhooks.deliveries d
      where d.id = any (v_gone)
      order by d.webhook_id, d.id
    ),
    free as (
      select w.id from webhooks.webhooks w
      where w.id in (select g.webhook_id from g) and w.enabled
      for no key update of w skip locked
    )
    update webhooks.webhooks w
    set enabled = false,
        disabled_at = now(),
        disabled_by = 'relay',
        disabled_reason = format('the endpoint answered 410 Gone to message %s: it asks not to be called again', g.message_id)
    from g join free on free.id = g.webhook_id
    where w.id = g.webhook_id and w.enabled;
  end if;

  -- Results the statement above passed over whose delivery this relay still holds, at
  -- the attempt reported: their row was changed while the statement ran, by a write
  -- that leaves the lease as it is (a contact's change of id moves its deliveries in
  -- flight to the new id, move_contact_deliveries in 22_outbox.sql). Each change below
  -- reaches the version the statement read, and that one was no longer the row's.
  -- Settled again, once, by a statement that reads the row as it is now; recorded
  -- here as lost, their request was sent again once the lease ran out. Asked only when
  -- a result was passed over: one probe of the primary key each.
  if p_again and cardinality(v_ids) < cardinality(p_ids) then
    v_again := array(select r.id
                     from unnest(p_ids, p_attempts) as r(id, attempt)
                     join webhooks.delivery_queue q on q.delivery_id = r.id
                     where r.id <> all (v_ids) and q.locked_by is not distinct from p_relay
                       and q.attempts = r.attempt);
  end if;
  if cardinality(v_again) > 0 then
    return query
      select * from webhooks_private.settle_results_of(v_again, p_relay, p_ids, p_attempts, p_attempted_at, p_duration_ms,
                                                       p_status_codes, p_errors, p_response_bodies, p_retry_after_s,
                                                       p_urls, false);
  end if;

  -- results of deliveries this relay no longer holds (its lease ran out, or this is a
  -- settle repeated because its answer was lost on the way back): recorded as
  -- attempts once, said to be late (late_attempt_error), the delivery left alone.
  -- Rare; found by id in every partition.
  if cardinality(v_ids) + cardinality(v_again) < cardinality(p_ids) then
    insert into webhooks.delivery_attempts
      (delivery_id, delivery_created_at, webhook_id, company_id, attempt, attempted_at, duration_ms,
       status_code, error, response_body, relay_id, url_id)
    select r.id, h.created_at, h.webhook_id, h.company_id, r.attempt, r.attempted_at, greatest(r.duration_ms, 0),
           r.status_code, webhooks_private.late_attempt_error(r.status_code, r.error),
           r.response_body, p_relay,
           (select u.id from webhooks_private.webhook_urls u
            where u.webhook_id = h.webhook_id
              and u.url = coalesce(r.url, (select w.url from webhooks.webhooks w where w.id = h.webhook_id)))
    from unnest(p_ids, p_attempts, p_attempted_at, p_duration_ms, p_status_codes, p_errors, p_response_bodies, p_urls)
      as r(id, attempt, attempted_at, duration_ms, status_code, error, response_body, url)
    join webhooks.delivery_history h on h.id = r.id
    where r.id <> all (v_ids) and r.id <> all (v_again)
      and not exists (select 1 from webhooks.delivery_attempts a
                      where a.delivery_id = r.id and a.delivery_created_at = h.created_at
                        and a.attempt = r.attempt and a.relay_id = p_relay and a.attempted_at = r.attempted_at);
  end if;

  -- the circuit breaker and auto-disable (28_lanes.sql), each attempt counted for its
  -- webhook (a result whose lease was lost counts for none, nor one sent to a URL the
  -- webhook no longer has, a success or not). A batch of successes to webhooks without failures changes
  -- no lane: asked in one probe, the usual case costs no call (a call cost a
  -- millisecond a batch)
  if exists (select 1 from unnest(p_status_codes) as r(status_code)
             where not webhooks_private.delivered_status(r.status_code))
     or exists (select 1 from webhooks_private.lanes l
                where l.webhook_id = any (v_webhooks) and l.failures > 0) then
    perform webhooks_private.lane_results(
      array(select a.webhook_id
            from unnest(p_ids) with ordinality as r(id, n)
            left join unnest(v_ids, v_webhooks) as a(id, webhook_id) on a.id = r.id and a.id <> all (v_to_old_url)
            order by r.n),
      p_attempted_at, p_status_codes, p_errors);
  end if;
  -- an ordered delivery that ended lets the next of its contact go (let_next_go,
  -- 22_outbox.sql), and the relays are told now, not at their next poll. (Each of the
  -- batch's webhooks that ended one, looked up by its key; until 2026-12-04, the ids of
  -- every company's ordered webhooks, read at each settle.)
  if exists (select 1 from webhooks.webhooks w where w.ordered)   -- (none: one empty index probe)
     and exists (select 1
                 from (select distinct e.webhook_id from unnest(v_states, v_webhooks) as e(state, webhook_id)
                       where e.state <> 'pending') e
                 where (select w.ordered from webhooks.webhooks w where w.id = e.webhook_id)) then
    select array_agg(e.webhook_id), array_agg(e.contact_id) into v_ended_webhooks, v_ended_contacts
    from (select distinct e.webhook_id, e.contact_id
          from unnest(v_states, v_webhooks, v_contacts) as e(state, webhook_id, contact_id)
          where e.state <> 'pending'
            and (select w.ordered from webhooks.webhooks w where w.id = e.webhook_id)) e;
    v_let_go := webhooks_private.let_next_go(v_ended_webhooks, v_ended_contacts);
    perform webhooks_private.notify_relays();   -- 20_wakeup.sql
  end if;

  return query select * from unnest(v_ids, v_states, v_next);
end;
$$;

-- private (settle_deliveries, settle_results): the settle of those results of a batch
-- whose delivery is one of p_only (settle_results, p_again as there)
-- (p_urls came before p_again)
drop function if exists webhooks_private.settle_results_of(bigint[], text, bigint[], integer[], timestamptz[], integer[],
                                                           integer[], text[], text[], integer[], boolean);
create or replace function webhooks_private.settle_results_of(
  p_only            bigint[],
  p_relay           text,
  p_ids             bigint[],
  p_attempts        integer[],
  p_attempted_at    timestamptz[],
  p_duration_ms     integer[],
  p_status_codes    integer[],
  p_errors          text[],
  p_response_bodies text[],
  p_retry_after_s   integer[],
  p_urls            text[],
  p_again           boolean default true
)
returns table (delivery_id bigint, state text, next_attempt_at timestamptz)
language sql
volatile
set search_path = pg_catalog, pg_temp
as $$
  select s.*
  from (select array_agg(r.id) as ids, array_agg(r.attempt) as attempts, array_agg(r.attempted_at) as attempted_at,
               array_agg(r.duration_ms) as duration_ms, array_agg(r.status_code) as status_codes,
               array_agg(r.error) as errors, array_agg(r.response_body) as response_bodies,
               array_agg(r.retry_after_s) as retry_after_s, array_agg(r.url) as urls
        from unnest(p_ids, p_attempts, p_attempted_at, p_duration_ms, p_status_codes, p_errors,
                    p_response_bodies, p_retry_after_s, p_urls)
          as r(id, attempt, attempted_at, duration_ms, status_code, error, response_body, retry_after_s, url)
        where r.id = any (p_only)) f
  cross join lateral webhooks_private.settle_results(p_relay, f.ids, f.attempts, f.attempted_at, f.duration_ms,
                                                       f.status_codes, f.errors, f.response_bodies, f.retry_after_s,
                                                       f.urls, p_again) s;
$$;

------------------------------------------------------------------------------------
-- release

-- private (relay): hand back deliveries this relay claimed but never sent (it claims
-- ahead of its free request slots and is stopping with some still queued). Each
-- becomes pending again, due as before, with the attempt its claim counted taken
-- back and last_attempt_at as its recorded history says (a snapshot whose backfill
-- was cancelled since its claim fails instead, not sent: release_leases). Only rows
-- still in flight and held by p_relay change: a row rescued meanwhile, settled, or
-- leased to another relay is left alone. Returns how many were released.
--
-- Like a settle, a release never waits long for a row another transaction holds: a
-- session that deletes a webhook holds its queue rows, those the relay queued
-- included, for as long as it stays open, and one that enables or deletes it holds
-- its lane. Such rows are waited for at most settle_lock_wait(), then passed over
-- (their lease runs out; if they are still there, the rescue takes them), and the
-- others released. Until 2026-12-05 a release waited for them: past
-- RELAY_DB_QUERY_TIMEOUT_MS the relay took the answer for lost, and the hand-back of
-- the unheld that then comes before every claim waited for the same rows, so the
-- relay claimed nothing for any company while the session stayed open
-- (test/relay/open-transaction.test.ts).
create or replace function webhooks_relay.release_deliveries(p_relay text, p_ids bigint[])
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_lock_timeout constant text := current_setting('lock_timeout');
  v_released integer;
begin
  -- (held shared until the transaction ends, as a claim's: a release whose answer
  -- was lost is waited for by the hand-back of the unheld, below)
  perform pg_advisory_xact_lock_shared(webhooks_private.relay_claims_lock(p_relay));
  begin
    -- (the block's own setting: its end, or its failure, puts back the caller's)
    perform set_config('lock_timeout', webhooks_private.settle_lock_wait(), true);
    v_released := webhooks_private.release_leases(p_relay, p_ids, false);
    perform set_config('lock_timeout', v_lock_timeout, true);
    return v_released;
  exception when lock_not_available then
    null;
  end;
  -- a row or a lane held past the wait: those free now are released, the rest passed over
  return webhooks_private.release_leases(p_relay, p_ids, true);
end;
$$;

-- private (release_leases): hand back these deliveries leased to p_relay, never sent:
-- pending again, due as before, the attempt their claim counted taken back and
-- last_attempt_at as their recorded history says. Returns the webhook of each.
create or replace function webhooks_private.release_rows(p_relay text, p_ids bigint[])
returns bigint[]
language sql
volatile
set search_path = pg_catalog, pg_temp
as $$
  with released as (
    update webhooks.delivery_queue q
    set locked_by = null,
        locked_until = null,
        attempts = greatest(q.attempts - 1, 0),
        last_attempt_at = (select max(a.attempted_at) from webhooks.delivery_attempts a
                           where a.delivery_id = q.delivery_id and a.delivery_created_at = q.created_at)
    where q.delivery_id = any (p_ids)
      and q.locked_by = p_relay
    returning q.webhook_id
  )
  select coalesce(array_agg(r.webhook_id), '{}') from released r;
$$;

-- private (release_deliveries): the release itself, as described above it; with
-- p_skip_held, rows and lanes another transaction holds are passed over, not waited for
create or replace function webhooks_private.release_leases(p_relay text, p_ids bigint[], p_skip_held boolean)
returns integer
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
  v_ids bigint[] := p_ids;
  v_released integer;
  v_webhooks bigint[];
  v_lanes bigint[];
  v_cancelled bigint[];
  v_backfill webhooks.backfills;
  v_lock_timeout constant text := current_setting('lock_timeout');
begin
  if p_skip_held then
    v_ids := array(select q.delivery_id from webhooks.delivery_queue q
                   where q.delivery_id = any (p_ids) and q.locked_by = p_relay
                   for no key update of q skip locked);
  end if;
  -- Snapshots whose backfill was cancelled since they were claimed (backfill_cancelled,
  -- above: last_attempt_at is their claim's time) were not sent: they fail as the
  -- cancel failed those pending then (fail_unsent_snapshots). Handed back pending,
  -- another relay sent them after the cancel (until 2026-12-05;
  -- test/sql/backfill.test.ts). Their results change their hours' counts, which a
  -- session may hold (release_deliveries): waited for at most settle_lock_wait(), else
  -- they stay leased, and the rescue fails them once their lease has run out.
  v_cancelled := array(select q.delivery_id from webhooks.delivery_queue q
                       where q.delivery_id = any (v_ids) and q.locked_by = p_relay
                         and q.action = 'contact.snapshot'
                         and webhooks_private.backfill_cancelled(q.webhook_id, q.created_at, q.last_attempt_at));
  if cardinality(v_cancelled) > 0 then
    v_ids := array(select i from unnest(v_ids) i where i <> all (v_cancelled));
  end if;
  v_webhooks := webhooks_private.release_rows(p_relay, v_ids);
  v_released := cardinality(v_webhooks);
  if cardinality(v_cancelled) > 0 then
    begin
      -- (the block's own setting: its end, or its failure, puts back the caller's)
      perform set_config('lock_timeout', webhooks_private.settle_lock_wait(), true);
      v_webhooks := v_webhooks || webhooks_private.release_rows(p_relay, v_cancelled);
      for v_backfill in
        select distinct on (b.id) b.*
        from webhooks.delivery_queue q
        cross join lateral webhooks_private.snapshot_backfill(q.webhook_id, q.created_at) b
        where q.delivery_id = any (v_cancelled)
        order by b.id
      loop
        perform webhooks_private.fail_unsent_snapshots(v_backfill, v_cancelled);
      end loop;
      perform set_config('lock_timeout', v_lock_timeout, true);
      v_released := cardinality(v_webhooks);
    exception when lock_not_available then
      null;
    end;
  end if;
  v_webhooks := array(select distinct w from unnest(v_webhooks) w);
  -- A webhook whose breaker is open had one delivery leased, its probe, and the claim
  -- made the next wait longer as it leased it (28_lanes.sql). Handed back unsent, the
  -- probe had no answer: the breaker goes back to where it was, the probe due again,
  -- as if it had not been claimed. (It used to keep the longer wait: a relay stopping
  -- or a missed slot doubled a failing endpoint's wait without a request.) A lane
  -- held by another transaction is left as it is (an enable or a delete resets it).
  if p_skip_held then
    v_lanes := array(select k.webhook_id from webhooks_private.lanes k
                     where k.webhook_id = any (v_webhooks) and k.open_until > now() and k.probes > 0
                     order by k.webhook_id
                     for update of k skip locked);
  else
    v_lanes := array(select k.webhook_id from webhooks_private.lanes k
                     where k.webhook_id = any (v_webhooks) and k.open_until > now() and k.probes > 0
                     order by k.webhook_id
                     for update of k);
  end if;
  update webhooks_private.lanes l
  set probes = greatest(l.probes - 1, 0),
      open_until = now()
  where l.webhook_id = any (v_lanes);
  -- due again, and no capture says so: the relays are woken, as by a rescue. A relay
  -- asleep beside one that stops (a rolling restart) otherwise found them at its next
  -- poll that walks, up to QUIET_POLLS_MAX polls later (relay/quiet.ts;
  -- test/relay/quiet-polls.test.ts)
  if v_released > 0 then
    perform webhooks_private.notify_relays();   -- 20_wakeup.sql
  end if;
  return v_released;
end;
$$;

-- private (relay): hand back every delivery leased to this relay that it does not
-- hold (p_held: those in flight, queued, paced, or with a result not yet written).
-- Such leases come from a claim whose answer never reached the relay: the claim
-- committed, then its connection broke or went silent on the way back, and the relay
-- could not tell whether it had run. Released as release_deliveries releases (never
-- sent: the attempt taken back). Until 2026-12-04 they waited for their lease to run
-- out (RELAY_LEASE_MS, a minute by default), and the rescue then recorded an attempt
-- that was never made. (A release whose answer was lost leaves the same doubt.) The
-- relay asks this only then, before its next claim (it runs one claim at a time,
-- relay/loop.ts). Reads every lease in flight, through their own partial index (it
-- does not lead with the relay), never the pending rows of a backlog: a rare path.
-- Returns how many were released.
--
-- A lost answer does not mean an ended statement: the claim may still be running on
-- the server (waiting for a lock, or slow under load) and commit after this. Until
-- 2026-12-08 it then did: this found nothing leased yet, and the claim's deliveries
-- stayed leased to the relay, unsent, until their lease ran out. So every claim and
-- release holds relay_claims_lock(relay) shared until its transaction ends, and this
-- takes it first, exclusively: it runs after every one of them sent before it has
-- committed or rolled back. (Rather than the relay ending the lost statement's
-- backend, pg_terminate_backend: that needs its pid, which a pid reused meanwhile
-- makes another session's, and the right to signal it, which a relay's role given by
-- a DBA may lack; and the lock costs a claim a few microseconds.) A claim waits at
-- most claim_lock_wait() for rows, but for a table another session holds (LOCK
-- TABLE, an ALTER) as long as that session stays open: this waits for it at most
-- settle_lock_wait(), then fails (lock_not_available, its message naming the lock the
-- statement waits for and the pids holding it: the operator's lead) and the relay,
-- still in doubt, claims nothing and asks again before its next claim
-- (test/relay/lost-claim-late-commit.test.ts, lost-release-late-commit.test.ts).
create or replace function webhooks_relay.release_unheld_leases(p_relay text, p_held bigint[])
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
set enable_seqscan = off
set jit = off   -- (claim_deliveries says why)
as $$
declare
  v_lock_timeout constant text := current_setting('lock_timeout');
  v_key constant bigint := webhooks_private.relay_claims_lock(p_relay);
  v_waits text;
begin
  begin
    -- (the block's own setting: its end, or its failure, puts back the caller's)
    perform set_config('lock_timeout', webhooks_private.settle_lock_wait(), true);
    perform pg_advisory_xact_lock(v_key);
    perform set_config('lock_timeout', v_lock_timeout, true);
  exception when lock_not_available then
    -- what the statement still running waits for, and which sessions hold it: the
    -- operator's lead (read only on this failure, once a poll)
    select string_agg(distinct coalesce(w.relation::regclass::text, w.locktype)
                               || coalesce(' (held by pid ' || (select string_agg(b::text, ', ' order by b)
                                                                from unnest(pg_blocking_pids(h.pid)) b) || ')', ''), '; ')
    into v_waits
    from pg_locks h
    join pg_locks w on w.pid = h.pid and not w.granted
    where h.database = (select d.oid from pg_database d where d.datname = current_database())
      and h.locktype = 'advisory' and h.granted and h.objsubid = 1
      and h.classid = ((v_key >> 32) & 4294967295)::oid
      and h.objid = (v_key & 4294967295)::oid;
    raise exception using
      errcode = 'lock_not_available',
      message = format('a claim or release of relay %s sent before is still running%s: its leases are handed back once it has ended, and until then this relay claims nothing',
                       p_relay, coalesce(', waiting for a lock on ' || v_waits, '')),
      hint = 'a session holding a table of the engine (LOCK TABLE, ALTER TABLE) holds that claim; the relay asks again before each poll''s claim';
  end;
  return webhooks_relay.release_deliveries(
           p_relay,
           array(select q.delivery_id from webhooks.delivery_queue q
                 where q.locked_by = p_relay and q.delivery_id <> all (p_held)));
end;
$$;

------------------------------------------------------------------------------------
-- rescue

-- private (relay): return deliveries whose lease ran out to pending, due now (or to
-- failed when their attempts are used up, or when a snapshot's backfill was cancelled
-- while it was being sent, as the settle does). The attempt their relay made, or may
-- have made, is recorded as such. Wakes the relays when it rescued anything. Reads
-- the in-flight rows alone (their own partial index), however long the queue.
--
-- Like a settle, a rescue writes every company's rows in one statement, and so waits
-- at most settle_lock_wait() for a lock another transaction holds (the count of an
-- old delivery's hour, held by a session that writes that webhook's old deliveries
-- and stays open); then it rescues webhook by webhook, each waited for as long,
-- leaving the held webhook's rows to a later run.
-- test/relay/open-transaction.test.ts shows it.
create or replace function webhooks_relay.rescue_expired_leases(p_limit integer default 1000)
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_lock_timeout constant text := current_setting('lock_timeout');
  v_rescued integer := 0;
  v_webhook_id bigint;
begin
  begin
    -- (the block's own setting: its end, or its failure, puts back the caller's)
    perform set_config('lock_timeout', webhooks_private.settle_lock_wait(), true);
    v_rescued := webhooks_private.rescue_leases(p_limit, null);
    perform set_config('lock_timeout', v_lock_timeout, true);
    return v_rescued;
  exception when lock_not_available then
    null;
  when check_violation then
    -- an expired lease whose day has no partition of attempts (dropped by hand:
    -- maintenance drops no day with a delivery on its way, 29_retention.sql): until 2026-12-06 every
    -- rescue, every company's, failed on it. Such rows leave the queue
    -- (drop_orphaned_deliveries), and the rescue begins again.
    if webhooks_private.drop_orphaned_deliveries(null) = 0 then
      raise;
    end if;
    return webhooks_relay.rescue_expired_leases(p_limit);
  end;
  for v_webhook_id in
    select distinct q.webhook_id from webhooks.delivery_queue q
    where q.locked_by is not null and q.locked_until < now()
    limit p_limit
  loop
    begin
      perform set_config('lock_timeout', webhooks_private.settle_lock_wait(), true);
      v_rescued := v_rescued + webhooks_private.rescue_leases(p_limit, v_webhook_id);
      perform set_config('lock_timeout', v_lock_timeout, true);
    exception when lock_not_available then
      -- (whatever holds it, a row or a whole table: its leases wait for a later run)
      null;
    when check_violation then
      -- (as above; the webhook's other leases are rescued by the next run)
      if webhooks_private.drop_orphaned_deliveries(null) = 0 then
        raise;
      end if;
    end;
  end loop;
  return v_rescued;
end;
$$;

-- private (the claim and the rescue, in the rare case): deliveries on their way whose
-- message is gone (their day's history dropped by hand: maintenance drops no day with
-- a delivery on its way, 29_retention.sql) leave the queue unsent: nothing can send them, their attempt may
-- have no partition to go to, and a failure's result row would mark a day counted from
-- rows no longer there. Each is named in a WARNING (the server's log). p_ids: those to
-- look at (a claim's rows), or null: every expired lease (the rescue's). Rows another
-- transaction holds are passed over. Returns how many left.
create or replace function webhooks_private.drop_orphaned_deliveries(p_ids bigint[])
returns integer
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
  v_row record;
  v_left integer := 0;
begin
  for v_row in
    delete from webhooks.delivery_queue q
    where q.ctid in (
      select c.ctid from webhooks.delivery_queue c
      where (case when p_ids is null then c.locked_by is not null and c.locked_until < now()
                  else c.delivery_id = any (p_ids) end)
        and not exists (select 1 from webhooks.delivery_history h
                        where h.id = c.delivery_id and h.created_at = c.created_at)
      for update of c skip locked)
    returning q.delivery_id, q.created_at, q.webhook_id, q.company_id, q.contact_id
  loop
    v_left := v_left + 1;
    raise warning 'bpd-webhooks: delivery % of webhook % (company %), created at %, left the queue unsent: its message is gone (its day''s history was dropped)',
      v_row.delivery_id, v_row.webhook_id, v_row.company_id, v_row.created_at;
    perform webhooks_private.let_next_of_contact_go(v_row.webhook_id, v_row.contact_id);
  end loop;
  return v_left;
end;
$$;

-- private (rescue_expired_leases): the rescue itself, of every webhook's rows or of one's
create or replace function webhooks_private.rescue_leases(p_limit integer, p_webhook_id bigint)
returns integer
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
  v_rescued integer;
begin
  with leases as (
    select q.delivery_id, q.created_at, q.webhook_id, q.company_id, q.attempts, q.locked_by, q.locked_until,
           q.action, coalesce(q.last_attempt_at, now()) as claimed_at,
           webhooks_private.max_attempts(w.max_attempts) as max_attempts, w.url
    from webhooks.delivery_queue q
    join webhooks.webhooks w on w.id = q.webhook_id
    where q.locked_by is not null and q.locked_until < now()
      and (p_webhook_id is null or q.webhook_id = p_webhook_id)
    order by q.locked_until
    limit p_limit
    for update of q skip locked
  ),
  -- a snapshot whose backfill was cancelled while this attempt was being made is not
  -- tried again, as the settle says (backfill_cancelled, above); until 2026-12-05 the
  -- rescue put it back to pending and it was sent again (test/sql/backfill.test.ts)
  expired as (
    select l.*,
           l.action = 'contact.snapshot'
             and webhooks_private.backfill_cancelled(l.webhook_id, l.created_at, l.claimed_at) as cancelled
    from leases l
  ),
  recorded as (
    insert into webhooks.delivery_attempts
      (delivery_id, delivery_created_at, webhook_id, company_id, attempt, attempted_at, duration_ms, error, relay_id,
       url_id)
    select e.delivery_id, e.created_at, e.webhook_id, e.company_id, e.attempts, e.claimed_at,
           least(extract(epoch from now() - e.claimed_at) * 1000, 2147483647)::integer,
           -- (no relay id in the text: ids name hosts, and tenants read this; the
           -- attempt's relay_id keeps it for operators)
           format('lease expired: the relay did not settle this attempt by %s (it stopped or lost the database); the request may or may not have reached the endpoint',
                  e.locked_until),
           -- (the URL the webhook has as the lease is found run out: a request the
           -- relay made before a change of it went to the one before)
           e.locked_by,
           (select u.id from webhooks_private.webhook_urls u where u.webhook_id = e.webhook_id and u.url = e.url)
    from expired e
  ),
  finished as (
    delete from webhooks.delivery_queue q
    using expired e
    where q.delivery_id = e.delivery_id and (e.attempts >= e.max_attempts or e.cancelled)
  ),
  ended as (
    insert into webhooks.delivery_results
      (delivery_id, created_at, webhook_id, company_id, state, attempts, last_attempt_at, last_error)
    select e.delivery_id, e.created_at, e.webhook_id, e.company_id, 'failed', e.attempts, e.claimed_at,
           format('lease expired: the relay did not settle attempt %s', e.attempts)
             || case when e.cancelled then '; not tried again: its backfill was cancelled' else '' end
    from expired e
    where e.attempts >= e.max_attempts or e.cancelled
  ),
  requeued as (
    update webhooks.delivery_queue q
    set locked_by = null,
        locked_until = null,
        last_status_code = null,
        last_error = format('lease expired: the relay did not settle attempt %s', e.attempts),
        next_attempt_at = now()
    from expired e
    where e.attempts < e.max_attempts and not e.cancelled and q.delivery_id = e.delivery_id
  )
  select count(*) into v_rescued from expired;
  if v_rescued > 0 then
    perform webhooks_private.notify_relays();   -- 20_wakeup.sql
  end if;
  return v_rescued;
end;
$$;

------------------------------------------------------------------------------------
-- replay (the admin API: runs as the caller, so grants and row-level security apply)

-- private: put deliveries back in the outbox as the same messages (same message_id,
-- so the receiver can recognise them); the relay makes each attempt attempts + 1,
-- due now. Given by history's key, (id, created_at) in two arrays; returns those put
-- back as the view shows them now, oldest first. One in flight is left as it is and
-- not returned (a relay holds it): the caller refuses it by name. One UPDATE of the
-- view for them all: row by row, each update read the view's joins again, and 1,000
-- replays took 1.0 s on an idle machine against 0.33 s now; under a full test run
-- they once went past the API's 5 s statement timeout, and so replayed nothing.
drop function if exists webhooks.requeue_delivery(webhooks.deliveries);
drop function if exists webhooks_private.requeue_delivery(webhooks.deliveries);
create or replace function webhooks_private.requeue_deliveries(p_ids bigint[], p_created_at timestamptz[])
returns setof webhooks.deliveries
language sql
volatile
as $$
  with requeued as (
    update webhooks.deliveries d
    set state = 'pending', next_attempt_at = now(), completed_at = null
    from unnest(p_ids, p_created_at) k(id, created_at)
    where d.id = k.id and d.created_at = k.created_at and d.state <> 'in_flight'
    returning d.*)
  select * from requeued r order by r.created_at, r.id;
$$;

-- private: refuse what a disabled webhook would not send (a replay, a test send, a
-- backfill): the one home of the webhook_disabled refusal. p_doing completes "enable
-- it before …"; p_column is the argument the caller named the webhook by.
drop function if exists webhooks.require_enabled(webhooks.webhooks);
drop function if exists webhooks_private.require_enabled(webhooks.webhooks);
create or replace function webhooks_private.require_enabled(
  p_webhook webhooks.webhooks,
  p_doing   text default 'replaying',
  p_column  text default 'webhook_id'
)
returns void
language plpgsql
as $$
begin
  if not p_webhook.enabled then
    raise exception using
      errcode = 'object_not_in_prerequisite_state',
      message = format('webhook %s is disabled; enable it before %s', p_webhook.id, p_doing),
      constraint = 'webhook_disabled',
      column = p_column;
  end if;
end;
$$;

-- public: send one delivery again, as a new attempt of the same message
create or replace function webhooks.replay_delivery(id bigint)
returns webhooks.deliveries
language plpgsql
volatile
as $$
declare
  v webhooks.deliveries;
  v_webhook webhooks.webhooks;
begin
  select * into v from webhooks.deliveries d where d.id = replay_delivery.id;
  if not found then
    perform webhooks_private.raise_not_found('delivery', replay_delivery.id);
  end if;
  if webhooks_private.payload_omitted(v.payload) then
    -- only a summary was kept (webhooks_private.enqueue): nothing to send again
    perform webhooks_private.refuse_omitted_payload(v.id, v.payload, 'id');
  end if;
  v_webhook := webhooks_private.webhook_for_update(v.webhook_id);
  perform webhooks_private.require_enabled(v_webhook);
  select * into v from webhooks_private.requeue_deliveries(array[v.id], array[v.created_at]);
  if not found then
    raise exception using
      errcode = 'object_not_in_prerequisite_state',
      message = format('delivery %s is being sent right now; replay it once it has finished', replay_delivery.id),
      constraint = 'delivery_in_flight',
      column = 'id';
  end if;
  return v;
end;
$$;

-- private: the most deliveries one replay_failed call sends again. Each is a write of
-- queue, results, counts and audit (a third of a millisecond): a webhook that failed
-- for days has hundreds of thousands, more than one request's statement timeout
-- allows, and a call that timed out would replay nothing, ever. So a call replays the
-- oldest few and the caller calls again: those replayed are no longer failed.
create or replace function webhooks_private.replay_max_deliveries()
returns integer
language sql
immutable
as $$
  select 1000;
$$;

-- (webhooks.replay_failed, which sends many again, set by set: 47_audit.sql, where
-- its replays are written to the audit trail)

-- private (relay): takes this RELAY_ID for the session, false if another session holds
-- it. Leases are the relay's by its id alone (locked_by): two relays of one id took
-- each other's for their own, one's release of what it did not hold handing back what
-- the other was sending, to be sent again (test/relay/relay-id.test.ts). Held on a
-- connection the relay keeps while it runs (relay/loop.ts); it ends with the session.
create or replace function webhooks_relay.hold_relay_id(p_relay_id text)
returns boolean
language sql
as $$
  select pg_try_advisory_lock(webhooks_private.relay_id_lock(p_relay_id));
$$;
