-- bpd-webhooks engine: lanes, how the claim shares the senders among companies and
-- webhooks (docs/relay-fairness.md tells the reasoning).
--
-- Every webhook has a lane (webhooks_private.lanes, one row, made with the webhook).
-- A claim decides, per lane it serves, how many deliveries that webhook may have now:
--   the fleet-wide cap     max_in_flight (else webhooks.max_in_flight, 32) less what
--                          all relays together hold of it (rows in flight);
--   the relay's own cap    what the relay may hold of one webhook, less what it holds;
--   pacing                 rate_limit requests per second: each delivery gets a slot,
--                          [send_at, send_until), slots following each other across
--                          the whole fleet, at most a second ahead; a slot is
--                          1/rate_limit long and holds one delivery, or above 199 a
--                          second, 10 ms or a little more and holds pacing_group()
--                          deliveries. The relay sends within the slot or hands the
--                          delivery back (not attempted, not charged): however late
--                          a relay runs, no second holds more than rate_limit +
--                          pacing_group() requests (rate_limit + 1 below 200);
--   the circuit breaker    while open, nothing; once its wait is over, one probe;
--   its company's share    of the relay's request slots: (slots − an eighth kept free
--                          for companies that have nothing yet) ÷ companies with work;
--                          and likewise of the payload bytes the relay may hold
--                          (RELAY_MAX_HELD_BYTES), counted from the queue rows'
--                          payload_bytes: a company whose endpoints hang holds its
--                          share of the relay's memory, as of its slots (a company
--                          that holds nothing gets one delivery however large);
-- and serves lanes in rotation: companies served longest ago first, within a company
-- its webhooks served longest ago first, each a fair part of the batch. Oldest-first
-- holds within one webhook only.
--
-- The lane row is locked while a claim decides for it, so two relays never both
-- count the same free slots: claims of one webhook take turns (each holds the lane
-- for a millisecond or two), claims of different webhooks do not meet. A claim never
-- waits for a lane: one that finds every lane it could serve taken by other relays'
-- claims says so (lanes_busy) and the relay asks again shortly. Counting rows in
-- flight (not a counter) keeps the cap exact whatever a relay's crash left behind:
-- rescue and release need not touch the lane.
--
-- The circuit breaker and auto-disable are written by settles (lane_results): a
-- healthy webhook's successes find failures = 0 and write nothing.
--
-- Settings (02_settings.sql has their defaults and bounds): webhooks.max_in_flight (a
-- webhook's own max_in_flight overrides it), webhooks.breaker_after,
-- breaker_probe_interval, breaker_probe_max_interval and auto_disable_after.

-- private: the most requests in flight to one webhook, all relays together
create or replace function webhooks_private.max_in_flight(p_webhook_max integer)
returns integer
language sql
stable
as $$
  select coalesce(p_webhook_max, webhooks_private.integer_setting('webhooks.max_in_flight'));
$$;

-- private: what the claiming relay may still take of one webhook: its cap for that
-- webhook (p_cap, else p_per_webhook) less what it holds of it (p_held, null: none)
create or replace function webhooks_private.relay_room(p_cap integer, p_per_webhook integer, p_held integer)
returns integer
language sql
immutable
as $$
  select coalesce(p_cap, p_per_webhook) - coalesce(p_held, 0);
$$;

-- private (lane_claim): what the claiming relay holds of each webhook, and its cap for
-- it, as an object keyed by the webhook's id, for one lookup a lane of a discovery's
-- window (its keys are kept sorted: a lookup is a binary search). A join with the
-- arrays' rows was a nested loop of them for every lane of the window, whatever the
-- plan's estimates said: 1,600 lanes beside 448 webhooks held, 167 ms of a claim of
-- 190 (2026-12-06).
-- (plpgsql: its statement planned once a connection, where a SQL function the planner
-- cannot inline, as its aggregate keeps this one from, is parsed and planned again in
-- every transaction that calls it: each claim)
create or replace function webhooks_private.held_by_webhook(p_webhooks bigint[], p_counts integer[], p_caps integer[])
returns jsonb
language plpgsql
immutable
as $$
begin
  return (select coalesce(jsonb_object_agg(b.w::text, jsonb_build_array(b.n, b.cap)), '{}')
          from unnest(p_webhooks, p_counts, p_caps) as b(w, n, cap));
end;
$$;

-- private: how many deliveries of a webhook paced at p_rate per second share one slot,
-- a slot being this many times 1/p_rate long: 1 below 200 a second, else p_rate / 100,
-- so that no slot is much shorter than 10 ms. A relay's timers fire to the millisecond,
-- and later when its event loop is busy: slots of 1/p_rate (0.2 ms at 5,000) were
-- nearly all missed, each delivery handed back and claimed again, thousands of times
-- for 40 deliveries at 5,000 a second (test/fleet/rate-limit.test.ts). A second may
-- then hold p_rate + this many requests, 1 % over at most.
create or replace function webhooks_private.pacing_group(p_rate integer)
returns integer
language sql
immutable
as $$
  select greatest(1, p_rate / 100);
$$;

-- private: where the slot of the delivery p_index places after the first (0 for it)
-- begins, from where the claim's slots begin: whole slots of pacing_group(p_rate)
-- deliveries, each that many times 1/p_rate long. A delivery's slot ends where the
-- one pacing_group() places after begins; a claim's slots end where its p_got-th
-- delivery's would begin, rounded up to a whole slot (p_got + group - 1).
create or replace function webhooks_private.pacing_offset(p_index bigint, p_rate integer)
returns interval
language sql
immutable
as $$
  select make_interval(secs => (p_index / webhooks_private.pacing_group(p_rate)
                                * webhooks_private.pacing_group(p_rate))::float8 / p_rate);
$$;

-- private: how long after the claim a webhook's rate_limit slots may begin: no
-- sooner than its answer reaches the relay. Slots from the claim's own now() had
-- passed by then when shorter than its round trip (a slot is 1/rate_limit: 0.2 ms at
-- 5,000), and were handed back: a webhook's last few deliveries, claimed again, got
-- such slots again, claim after claim, for ever (until 2026-12-04;
-- test/fleet/rate-limit.test.ts). Only when the webhook's slots have run out: a
-- paced webhook's next slots follow its last ones.
create or replace function webhooks_private.pacing_lead()
returns interval
language sql
immutable
as $$
  select interval '50 milliseconds';
$$;

-- private: a lane's counter (its failures in a row, its probes) p_more further on, but
-- no further than integer's largest value: a webhook fails for up to
-- webhooks.auto_disable_after (365 days at most) before it is disabled, and with
-- probe intervals of 0 s its breaker counts every attempt, 2^31 - 1 of them in 25
-- days at 1,000 a second; the sum that overflowed failed the settle or the claim
-- (test/fleet/breaker-counts.test.ts). Its largest value opens the breaker as any
-- past breaker_after does, and breaker_wait caps its doublings well below it.
create or replace function webhooks_private.counted_on(p_count integer, p_more bigint)
returns integer
language sql
immutable
as $$
  select least(p_count::bigint + p_more, 2147483647)::integer;
$$;

-- private: how long an open breaker waits before probe number p_probe (1 for the first).
-- In seconds, capped before they are an interval: an interval of 3 hours or more
-- (the setting allows a day) times 2^30 is past what an interval holds, and the claim
-- of a webhook's 31st probe failed every claim (test/fleet/breaker-counts.test.ts).
create or replace function webhooks_private.breaker_wait(p_probe integer)
returns interval
language sql
stable
as $$
  select make_interval(secs => least(
    extract(epoch from webhooks_private.interval_setting('webhooks.breaker_probe_interval'))
      * power(2, least(greatest(p_probe, 1) - 1, 30)),
    extract(epoch from webhooks_private.interval_setting('webhooks.breaker_probe_max_interval'))));
$$;

-- private: when an open breaker lets probe number p_probe go, of a webhook failing
-- since p_failing_since: after breaker_wait, but not past the time the webhook is to
-- be disabled (failing_since + auto_disable_after), so that a probe goes then and its
-- failure disables it on time (waits grow to an hour: the disable came up to an hour
-- late), and never sooner than the first wait.
create or replace function webhooks_private.breaker_reopens(p_probe integer, p_failing_since timestamptz)
returns timestamptz
language sql
stable
as $$
  select least(now() + webhooks_private.breaker_wait(p_probe),
               greatest(p_failing_since + webhooks_private.interval_setting('webhooks.auto_disable_after'),
                        now() + webhooks_private.breaker_wait(1)));
$$;

------------------------------------------------------------------------------------
-- A lane for every webhook; a clean breaker when a webhook is enabled again, or given
-- a new URL

create or replace function webhooks_private.tg_webhooks__create_lane()
returns trigger
language plpgsql
as $$
begin
  insert into webhooks_private.lanes (webhook_id, company_id)
  values (new.id, new.company_id)
  on conflict (webhook_id) do nothing;
  return null;
end;
$$;

-- (the argument 'breaker': the breaker alone, the pacing kept. A new URL is another
-- endpoint, with no failures of its own: until 2026-12-07 its deliveries still waited
-- for the probe the old URL's failures had put off, up to
-- webhooks.breaker_probe_max_interval, and those failures counted towards disabling
-- it; test/fleet/breaker.test.ts. Its rate_limit is the tenant's, kept)
create or replace function webhooks_private.tg_webhooks__reset_lane()
returns trigger
language plpgsql
as $$
begin
  update webhooks_private.lanes
  set failures = 0, failing_since = null, open_until = null, probes = 0,
      paced_until = case when tg_argv[0] = 'breaker' then paced_until end
  where webhook_id = new.id;
  return null;
end;
$$;

-- a webhook no longer ordered, or disabled: its deliveries put off for being held
-- back (put_off_held_back, below) are due at the time they had, not when what held
-- them back ends (an hour away, for one waiting for its retry); and a sleeping relay
-- is woken for them as for a capture (wake_relay): nothing else says they are due
-- now, and its polls skip their walk while no lane it walked may send (docs/relay.md,
-- quiet polls). A disabled webhook's claim asks nothing of order: it fails its
-- deliveries unsent and holds its snapshots (30_delivery.sql). Until 2026-12-08 a
-- live change put off behind its contact's snapshot in flight, which its settle sent
-- back for a retry as the relay disabled the webhook, stayed put off until that
-- snapshot's lease ended, a minute by default, before a claim failed it
-- (test/sql/ordered-put-off.test.ts). Disabled, the lane's row is locked first (as
-- _500_reset_lane writes it on an enable): a claim that holds it, which read the
-- webhook enabled and may be putting off its deliveries, commits before they are
-- looked for, and one after it passes the lane over until the disable commits.
create or replace function webhooks_private.tg_webhooks__release_held_back()
returns trigger
language plpgsql
as $$
declare
  v_notified boolean;
begin
  if old.enabled and not new.enabled then
    perform 1 from webhooks_private.lanes l where l.webhook_id = new.id for update of l;
  end if;
  update webhooks.delivery_queue q
  set next_attempt_at = least(q.next_attempt_at, q.held_due),
      held_due = null
  where q.webhook_id = new.id and q.locked_by is null and q.held_due is not null;
  if found then
    v_notified := webhooks_private.wake_relay();
  end if;
  return null;
end;
$$;

drop trigger if exists _500_create_lane on webhooks.webhooks;
create trigger _500_create_lane
  after insert on webhooks.webhooks
  for each row execute function webhooks_private.tg_webhooks__create_lane();

drop trigger if exists _500_release_held_back on webhooks.webhooks;
create trigger _500_release_held_back
  after update of ordered on webhooks.webhooks
  for each row when (old.ordered and not new.ordered)
  execute function webhooks_private.tg_webhooks__release_held_back();

drop trigger if exists _500_release_held_back_disabled on webhooks.webhooks;
create trigger _500_release_held_back_disabled
  after update of enabled on webhooks.webhooks
  for each row when (old.enabled and not new.enabled and new.ordered)
  execute function webhooks_private.tg_webhooks__release_held_back();

drop trigger if exists _500_reset_lane on webhooks.webhooks;
create trigger _500_reset_lane
  after update of enabled on webhooks.webhooks
  for each row when (new.enabled and not old.enabled)
  execute function webhooks_private.tg_webhooks__reset_lane();

drop trigger if exists _500_close_breaker on webhooks.webhooks;
create trigger _500_close_breaker
  after update of url on webhooks.webhooks
  for each row when (new.url is distinct from old.url)
  execute function webhooks_private.tg_webhooks__reset_lane('breaker');

------------------------------------------------------------------------------------
-- Ordered webhooks (webhooks.webhooks.ordered; docs/backfill.md says what a receiver
-- may rely on). Their deliveries of one contact go one at a time, in delivery id
-- order: a pending delivery is held back while another delivery of the same webhook
-- and contact is in flight, or pending with a smaller id (a retry waiting for its
-- next attempt holds back the later ones of its contact only). The claim asks this of
-- the rows of ordered webhooks alone, so that other webhooks pay nothing.
--
-- A claim first puts off the held-back deliveries among those it will look at
-- (put_off_held_back): each becomes due when what holds it back is due to end, its
-- own due time kept in held_due, so that the claim's look at the webhook's oldest due
-- deliveries, which has a bound (ordered_scan_rows), finds those it may send behind
-- them. When an ordered delivery ends, its settle lets the next of its contact go at
-- the time it had, and wakes the relays (30_delivery.sql), so that it goes at once.

-- (held_back, the question "is this pending delivery held back?", is in
-- 22_outbox.sql: webhooks.deliveries asks it too, and is made before this file)

-- private: how many of an ordered webhook's oldest due deliveries a claim looks at
-- to find the p_take it may send (those not held back). It steps over the later
-- deliveries of a contact whose delivery is on its way or waiting for a retry, but no
-- further than this: 5,000 updates of one contact behind one of its deliveries in
-- flight cost every claim of the relay, every company's, 50 ms and 15,000 index
-- entries (test/fleet/claim-cost.test.ts). The price: while more of one contact's
-- deliveries than this wait behind a stuck one, the webhook's other contacts behind
-- them wait too (docs/backfill.md).
create or replace function webhooks_private.ordered_scan_rows(p_take integer)
returns integer
language sql
immutable
as $$
  select greatest(p_take, 1) * 8;
$$;

-- private: the soonest a held-back delivery put off is looked at again, when what
-- holds it back is due now (a pending delivery of its contact that this claim or the
-- next will send); its settle lets it go sooner
create or replace function webhooks_private.held_back_recheck()
returns interval
language sql
immutable
as $$
  select interval '1 second';
$$;

-- private: how far past what it will look at a claim puts off held-back deliveries of
-- one ordered webhook (put_off_held_back), so that one contact's backlog behind a
-- delivery in its way is out of the claims' sight in a few claims, at a bounded cost
-- each: 1,024 deliveries at the default of 32 requests
create or replace function webhooks_private.put_off_rows(p_take integer)
returns integer
language sql
immutable
as $$
  select webhooks_private.ordered_scan_rows(p_take) * 4;
$$;

-- private (claim): put off the deliveries of one ordered webhook that are held back,
-- among the contacts of the p_bound × 8 oldest due ones (ordered_scan_rows: what the
-- claim's step 2 will look at): their due deliveries among those and the
-- put_off_rows() after them, a contact's all when one of its is in flight, else all
-- but its first pending. Each is due again when what holds it back is
-- due to end, by its lease or its next attempt, and no sooner than
-- held_back_recheck(); held_due keeps the time it had, which the settle that ends
-- the delivery in its way gives back to the next one (30_delivery.sql). Returns how
-- many were put off.
-- Until 2026-12-04 a claim only stepped over held-back deliveries, no further than
-- ordered_scan_rows(): 300 updates of one contact behind its delivery in flight held
-- back every other contact of the webhook for as long as that delivery took
-- (test/relay/ordered.test.ts).
-- What holds a delivery back is locked (FOR KEY SHARE) before the delivery is put
-- off: a settle that ends it waits for this claim to commit and then finds the
-- delivery put off, to let it go. One being changed is passed over (SKIP LOCKED):
-- nothing is then put off behind it, which is always safe (the claim's step 2 still
-- asks held_back of every delivery it sends). The claim never waits for a writer.
create or replace function webhooks_private.put_off_held_back(p_webhook_id bigint, p_bound integer)
returns integer
language plpgsql
volatile
-- the deliveries looked at and their contacts matched by a hash: the planner, which
-- sees one row in each, chose a nested loop, 1,280 × 256 comparisons (54 ms a claim
-- of an ordered webhook with 5,000 deliveries of 1,000 contacts waiting)
set enable_nestloop = off
set jit = off   -- a method turned off prices a plan past JIT's thresholds (claim_deliveries)
as $$
declare
  v_put_off integer;
begin
  -- nothing to do unless one of the first few is held back: a claim sends those that
  -- are not, so the deliveries in front are held back whenever held-back ones fill
  -- what a claim looks at (looking through them all cost an ordered webhook's claim
  -- 1.7 ms of its 5.6 when nothing was held back)
  if not exists (select 1
                 from (select q.contact_id, q.delivery_id from webhooks.delivery_queue q
                       where q.webhook_id = p_webhook_id and q.locked_by is null and q.next_attempt_at <= now()
                       order by q.webhook_id, q.next_attempt_at
                       limit 8) k
                 where webhooks_private.held_back(p_webhook_id, k.contact_id, k.delivery_id)) then
    return 0;
  end if;
  with due as (
    -- its oldest due deliveries: those step 2 will look at, and put_off_rows() more
    select q.ctid as row_ctid, q.contact_id, q.delivery_id,
           row_number() over (order by q.webhook_id, q.next_attempt_at) as n
    from webhooks.delivery_queue q
    where q.webhook_id = p_webhook_id and q.locked_by is null and q.next_attempt_at <= now()
    order by q.webhook_id, q.next_attempt_at
    limit webhooks_private.ordered_scan_rows(p_bound) + webhooks_private.put_off_rows(p_bound)
  ),
  contact as (
    -- the contacts of those step 2 will look at (not test sends, contact 0: never
    -- held back, 22_outbox.sql)
    select distinct d.contact_id from due d where d.n <= webhooks_private.ordered_scan_rows(p_bound) and d.contact_id <> 0
  ),
  in_the_way as (
    -- each one's deliveries in flight, and its first pending one, locked
    select c.contact_id, b.until as flight_ends, f.delivery_id as first_id, f.next_attempt_at as first_due,
           f.ctid as first_ctid,
           -- an update or save waiting out its coalesce window (25_capture.sql) with a
           -- due delivery of its contact behind it: it can take no further change (an
           -- ordered webhook's merge goes into its contact's latest message only), and
           -- goes now (brought, below)
           f.attempts = 0 and f.action in ('contact.updated', 'contact.saved') and f.held_due is null
             and f.next_attempt_at > now() as first_waiting
    from contact c
    left join lateral (select max(x.locked_until) as until
                       from (select e.locked_until from webhooks.delivery_queue e
                             where e.webhook_id = p_webhook_id and e.contact_id = c.contact_id
                               and e.locked_by is not null
                             for key share of e skip locked) x) b on true
    left join lateral (select e.ctid, e.delivery_id, e.next_attempt_at, e.attempts, e.action, e.held_due
                       from webhooks.delivery_queue e
                       where e.webhook_id = p_webhook_id and e.contact_id = c.contact_id and e.locked_by is null
                       order by e.delivery_id
                       limit 1
                       for key share of e skip locked) f on true
  ),
  -- Such an update is brought forward when the change after it is captured
  -- (bring_forward_waiting), unless another transaction held it then: a writer that
  -- had merged a change into it and was still open. Until 2026-12-05 it then waited
  -- out its whole window, and the change behind it (a status or assignment change,
  -- which is never to wait) with it, up to an hour
  -- (test/sql/coalesce-writers.test.ts). One another transaction holds is passed over,
  -- as everything here: the claim never waits for a writer or a session.
  brought as (
    update webhooks.delivery_queue q
    set next_attempt_at = now()
    from in_the_way w
    cross join lateral (select e.ctid as row_ctid from webhooks.delivery_queue e
                        where e.ctid = w.first_ctid and w.first_waiting
                        for no key update of e skip locked) l
    where q.ctid = l.row_ctid
    returning q.delivery_id
  ),
  held as (
    select d.row_ctid,
           greatest(w.flight_ends, case when w.first_waiting then now() else w.first_due end,
                    now() + webhooks_private.held_back_recheck()) as until
    from due d
    join in_the_way w on w.contact_id = d.contact_id
    where w.flight_ends is not null or d.delivery_id > w.first_id
  ),
  locked as (
    -- each by its ctid (a lateral: a join the planner would make a hash of every due
    -- row of the queue), unless a writer holds it
    select l.row_ctid, h.until
    from held h
    cross join lateral (select q.ctid as row_ctid from webhooks.delivery_queue q
                        where q.ctid = h.row_ctid and q.locked_by is null and q.next_attempt_at <= now()
                        for no key update of q skip locked) l
  )
  update webhooks.delivery_queue q
  set held_due = coalesce(q.held_due, q.next_attempt_at),
      next_attempt_at = h.until
  from locked h
  where q.ctid = h.row_ctid;
  get diagnostics v_put_off = row_count;
  return v_put_off;
end;
$$;

-- (Until 2026-12-04 every claim and settle read the ids of all ordered webhooks, of
-- every company, and compared each row with each: the claim now reads its lanes'
-- webhooks' own flag, the settle its batch's.)
drop function if exists webhooks_private.ordered_webhooks();

------------------------------------------------------------------------------------
-- The claim's choice

-- private (lane_claim): how many webhooks with deliveries waiting a discovery walks at
-- most, its window: eight times its batch and at least 256, a few lanes of each
-- company (discovery_company_lanes) from where the connection's last one stopped
-- (discovery_places); within them, companies take turns as they always did, and every
-- lane comes into some discovery's window, one window after the other. A refill ranks
-- the lanes it names, however many.
create or replace function webhooks_private.discovery_window(p_limit integer, p_named integer)
returns integer
language sql
immutable
as $$
  select least(greatest(coalesce(p_limit, 0)::bigint * 8, 256, coalesce(p_named, 0)), 2147483647)::integer;
$$;

-- private (lane_claim): how many webhooks of one company with deliveries waiting a
-- discovery walks at most: as many as the claim's batch, the most lanes a claim
-- serves. Walked in webhook order alone, a window was filled by a company whose
-- webhooks are many: 1,600 lanes of one company of 2,000 with a backlog each at a
-- claim of 200, 2,000 index entries of the queue and 2,200 of the lanes a discovery,
-- 60-90 ms (2026-12-06, test/fleet/claim-cost.test.ts), and another company's webhook
-- came into a window only by a second walk, over the companies. Its next ones come
-- into the next discoveries (discovery_places). Lanes that may not send (their
-- deliveries waiting for a retry, their breaker open, paced ahead) are walked too, so
-- a company's count bounds what its webhooks cost a discovery, whatever they wait for.
create or replace function webhooks_private.discovery_company_lanes(p_limit integer)
returns integer
language sql
immutable
as $$
  select greatest(coalesce(p_limit, 0), 1);
$$;

-- (the walk in webhook order, its bound and its place, and the pass over the companies
-- beside it, until 2026-12-06: the walk by company replaced them)
drop function if exists webhooks_private.discovery_walk(integer);
drop function if exists webhooks_private.discovery_went_to(bigint);
drop function if exists webhooks_private.discovery_went_to(bigint, text);
drop function if exists webhooks_private.discovery_after();
drop function if exists webhooks_private.discovery_after(text);
drop function if exists webhooks_private.discovery_place(text);

-- private (lane_claim): where this connection's next discovery starts its walk: after
-- the company it returns (0: from the first). Settings of the connection, not rows:
-- nothing is written, relays never wait for each other's, and a claim rolled back
-- leaves them as they were. Each connection goes round on its own: a relay's claims
-- all run on one connection of their own (relay/database.ts, claimPool), or a claim
-- on another connection would find that one's place, or none.
-- (One expression, no FROM: the planner inlines it into the claim's own, planned once a
-- connection. A SQL function it cannot inline is parsed and planned again in every
-- transaction that calls it: these six took 0.17 ms more of CPU a claim, BENCHMARKS.md
-- 2026-12-08.)
create or replace function webhooks_private.discovery_company_after()
returns bigint
language sql
stable
as $$
  select case when current_setting('bpd_webhooks.discovery_company_after', true) ~ '^[0-9]{1,18}$'
              then current_setting('bpd_webhooks.discovery_company_after', true)::bigint else 0 end;
$$;

-- private (lane_claim): and within each company whose webhooks with deliveries waiting
-- were more than a discovery walks of one (discovery_company_lanes), the webhook after
-- which the next walk of it starts, as an object {company id: webhook id}: only such
-- companies, and the one where the last walk stopped, have a place (the others are
-- walked whole, from their first webhook), and a walk that goes past a company forgets
-- its place, so the object holds few keys.
-- (one expression, inlined: discovery_company_after)
create or replace function webhooks_private.discovery_places()
returns jsonb
language sql
stable
as $$
  select case when current_setting('bpd_webhooks.discovery_places', true) ~ '^\{("[0-9]{1,18}": [0-9]{1,18}(, )?)*\}$'
              then current_setting('bpd_webhooks.discovery_places', true)::jsonb else '{}'::jsonb end;
$$;

-- private (lane_claim): keeps where the next discovery of this connection starts
-- (plpgsql: its statements planned once a connection; discovery_company_after)
create or replace function webhooks_private.discovery_went_to(p_company_after bigint, p_places jsonb)
returns void
language plpgsql
volatile
as $$
begin
  perform set_config('bpd_webhooks.discovery_company_after', coalesce(p_company_after, 0)::text, false),
          set_config('bpd_webhooks.discovery_places', coalesce(p_places, '{}'::jsonb)::text, false);
end;
$$;

-- private (lane_claim): the webhook whose lane the first of this connection's run of
-- fruitless discoveries walked first (discovery_walks_on), or null: none under way
-- (one expression, inlined: discovery_company_after)
create or replace function webhooks_private.discovery_round_mark()
returns bigint
language sql
stable
as $$
  select case when current_setting('bpd_webhooks.discovery_round_mark', true) ~ '^[0-9]{1,18}$'
              then current_setting('bpd_webhooks.discovery_round_mark', true)::bigint end;
$$;

-- private (lane_claim): whether the relay should discover again at once (claim_deliveries
-- says more_due): this discovery found nothing that may send now (p_fruitless), its
-- window was full (more webhooks with deliveries waiting than it walks), and the
-- discoveries since the first fruitless one have not yet come round to the lane that
-- one walked first (p_mark_walked: this one walked it again). Lanes whose deliveries
-- wait for a retry or a coalescing window are walked like any other, and the relay,
-- told nothing, waited for its next poll before the next window: a company whose lane
-- lay windows away from its place waited that many polls (1,500 companies with a
-- retry waiting, claims of 32: five seconds, test/fleet/retrying-companies.test.ts).
-- So a wake-up walks every lane at most once, a window a claim, and stops at the first
-- that finds work or at the lane it began from. Its mark is kept as the places are,
-- for the connection; a mark whose webhook has nothing waiting any more (delivered,
-- deleted) would never come round, and this discovery's first lane takes its place.
create or replace function webhooks_private.discovery_walks_on(p_fruitless boolean, p_window_full boolean,
                                                               p_first_walked bigint, p_mark_walked boolean)
returns boolean
language plpgsql
volatile
as $$
declare
  v_mark constant bigint := webhooks_private.discovery_round_mark();
  v_walks_on boolean;
begin
  if not (p_fruitless and p_window_full) then
    v_walks_on := false;
    if v_mark is not null then
      perform set_config('bpd_webhooks.discovery_round_mark', '', false);
    end if;
  elsif v_mark is null
        or not exists (select 1 from webhooks.delivery_queue d where d.webhook_id = v_mark and d.locked_by is null) then
    v_walks_on := true;
    perform set_config('bpd_webhooks.discovery_round_mark', p_first_walked::text, false);
  else
    v_walks_on := not p_mark_walked;
    if p_mark_walked then
      perform set_config('bpd_webhooks.discovery_round_mark', '', false);
    end if;
  end if;
  -- (for claim_deliveries, in this transaction alone)
  perform set_config('bpd_webhooks.discovery_walks_on', case when v_walks_on then 'on' else '' end, true);
  return v_walks_on;
end;
$$;

-- private (lane_claim): a round of fruitless discoveries, kept as the mark is
-- (discovery_walks_on), so that a sleeping relay's poll may skip its walk while nothing
-- can have become sendable since (relay/quiet.ts, webhooks_relay.poll_may_skip;
-- docs/relay.md, quiet polls). Called by a discovery whose window found no lane that
-- may send now, with the earliest time any lane of its window may (p_next): p_began,
-- it walked first in a round (a new mark, or all the lanes in one window), which notes
-- its token (the connection and the transaction's time); else the round's earliest
-- time so far takes p_next in. p_ended, the walk came round (or all was one window):
-- the round is said, for claim_deliveries' caller in this transaction alone, as
-- 'token until' (until: epoch milliseconds, Infinity when nothing was waiting). A
-- discovery that finds work leaves the note as it is: the next round's first replaces
-- it, and only a round whose beginning the relay saw is taken by it.
create or replace function webhooks_private.discovery_round_note(p_began boolean, p_ended boolean, p_next timestamptz)
returns void
language plpgsql
volatile
as $$
declare
  -- token, earliest time (epoch ms)
  v_note text[];
  v_next float8 := coalesce(extract(epoch from p_next) * 1000, 'Infinity');
begin
  if p_began then
    v_note := array[pg_backend_pid()::text || ':' || (extract(epoch from now()) * 1000000)::bigint, ''];
    perform set_config('bpd_webhooks.discovery_round_began', v_note[1], true);
  else
    v_note := string_to_array(coalesce(current_setting('bpd_webhooks.discovery_round', true), ''), ' ');
    if cardinality(v_note) is distinct from 2 then
      return;
    end if;
    v_next := least(v_next, v_note[2]::float8);
  end if;
  v_note[2] := v_next::text;
  if p_ended then
    perform set_config('bpd_webhooks.discovery_round', '', false);
    perform set_config('bpd_webhooks.discovery_round_quiet', array_to_string(v_note, ' '), true);
  else
    perform set_config('bpd_webhooks.discovery_round', array_to_string(v_note, ' '), false);
  end if;
end;
$$;

-- private (waiting_lanes): where the walk of one company starts, from its first webhook
-- with deliveries waiting (p_webhook_id, due first at p_first_due): there, unless it
-- has a place in p_places (discovery_places), then at its first webhook after it (one
-- probe of the queue's index by company), or when none is after it, round at its first
-- (wrapped: up to its place). SQL, so that its caller inlines it.
create or replace function webhooks_private.company_walk_start(p_company_id bigint, p_webhook_id bigint,
                                                               p_first_due timestamptz, p_places jsonb)
returns table (company_id bigint, webhook_id bigint, first_due timestamptz, place bigint, wrapped boolean)
language sql
stable
as $$
  select p_company_id, coalesce(y.webhook_id, p_webhook_id), coalesce(y.next_attempt_at, p_first_due),
         k.place, k.place > 0 and y.webhook_id is null
  from (select coalesce((p_places ->> p_company_id::text)::bigint, 0) as place) k
  left join lateral (select d.webhook_id, d.next_attempt_at from webhooks.delivery_queue d
                     where k.place > 0 and d.locked_by is null and d.company_id = p_company_id
                       and (d.company_id, d.webhook_id) > (p_company_id, k.place)
                     order by d.company_id, d.webhook_id, d.next_attempt_at
                     limit 1) y on true;
$$;

-- private (waiting_lanes): where the walk of the first company with deliveries waiting
-- after p_after, up to p_through, starts (company_walk_start): one probe of the
-- queue's index by company (delivery_queue_company_due_idx) finds it and its first
-- webhook with any. SQL, so that its caller inlines it.
create or replace function webhooks_private.next_company_walk(p_after bigint, p_through bigint, p_places jsonb)
returns table (company_id bigint, webhook_id bigint, first_due timestamptz, place bigint, wrapped boolean)
language sql
stable
as $$
  select s.*
  from (select d.company_id, d.webhook_id, d.next_attempt_at from webhooks.delivery_queue d
        where d.locked_by is null and d.company_id > p_after and d.company_id <= p_through
        order by d.company_id, d.webhook_id, d.next_attempt_at
        limit 1) x
  cross join lateral webhooks_private.company_walk_start(x.company_id, x.webhook_id, x.next_attempt_at, p_places) s;
$$;

-- private (lane_claim): the webhooks with deliveries waiting (queue rows not in flight)
-- and the earliest next attempt of each, company by company, of those after p_after up
-- to p_through, in company order (a caller's limit stops the walk): at most
-- p_per_company webhooks of each, from the one after its place in p_places
-- (discovery_places) round to it, else from its first. A loose scan of
-- delivery_queue_company_due_idx (company_id, webhook_id, next_attempt_at): one probe
-- a webhook, whatever the backlogs, as many as a walk in webhook order alone (one
-- probe finds a company's next webhook or the next company's first); one more for a
-- company with a place, and one to pass over the rest of a company walked to its
-- count. step: its order in the walk; n: its order in its company's part of it. SQL,
-- so that the claim inlines it.
create or replace function webhooks_private.waiting_lanes(p_after bigint, p_through bigint, p_places jsonb,
                                                          p_per_company integer)
returns table (company_id bigint, webhook_id bigint, first_due timestamptz, n integer, step integer)
language sql
stable
as $$
  with recursive walk(c, w, first_due, n, place, wrapped, step) as (
    (select s.company_id, s.webhook_id, s.first_due, 1, s.place, s.wrapped, 1
     from webhooks_private.next_company_walk(p_after, p_through, p_places) s)
    union all
    select x.c, x.w, x.first_due, x.n, x.place, x.wrapped, walk.step + 1
    from walk
    -- the next webhook with deliveries waiting, of its company or the next, while its
    -- company is walked up to its count and not round to its place
    left join lateral (select d.company_id, d.webhook_id, d.next_attempt_at from webhooks.delivery_queue d
                       where walk.n < p_per_company and not walk.wrapped
                         and d.locked_by is null and (d.company_id, d.webhook_id) > (walk.c, walk.w)
                         and d.company_id <= p_through
                       order by d.company_id, d.webhook_id, d.next_attempt_at
                       limit 1) next on true
    cross join lateral (
      -- its company's
      (select next.company_id as c, next.webhook_id as w, next.next_attempt_at as first_due, walk.n + 1 as n,
              walk.place, false as wrapped
       where next.company_id = walk.c)
      union all
      -- its company's first, when its walk began after its place and has reached the
      -- end of its webhooks
      (select d.company_id, d.webhook_id, d.next_attempt_at, walk.n + 1, walk.place, true
       from webhooks.delivery_queue d
       where walk.n < p_per_company and walk.place > 0 and not walk.wrapped
         and d.locked_by is null and d.company_id = walk.c
         and (d.company_id, d.webhook_id) > (walk.c, 0::bigint)
         and d.webhook_id <= walk.place
       order by d.company_id, d.webhook_id, d.next_attempt_at
       limit 1)
      union all
      -- its company's next, once round, up to its place
      (select d.company_id, d.webhook_id, d.next_attempt_at, walk.n + 1, walk.place, true
       from webhooks.delivery_queue d
       where walk.n < p_per_company and walk.wrapped
         and d.locked_by is null and d.company_id = walk.c
         and (d.company_id, d.webhook_id) > (walk.c, walk.w)
         and d.webhook_id <= walk.place
       order by d.company_id, d.webhook_id, d.next_attempt_at
       limit 1)
      union all
      -- the next company, found by the probe above
      select s.company_id, s.webhook_id, s.first_due, 1, s.place, s.wrapped
      from webhooks_private.company_walk_start(next.company_id, next.webhook_id, next.next_attempt_at, p_places) s
      where next.company_id > walk.c
      union all
      -- the next company, past the rest of this one (walked to its count, or round)
      select s.company_id, s.webhook_id, s.first_due, 1, s.place, s.wrapped
      from webhooks_private.next_company_walk(walk.c, p_through, p_places) s
      where walk.n >= p_per_company or walk.wrapped
      limit 1) x
  )
  select walk.c, walk.w, walk.first_due, walk.n, walk.step from walk;
$$;

-- private (lane_claim): the lane of one webhook a discovery may rank, if it may send
-- now: a disabled webhook's (its deliveries are failed), or one whose breaker is not
-- open and that is paced no further ahead than p_horizon. By its key and the
-- webhook's: an offset 0 keeps the planner from turning the join around (with sorts
-- priced out it read every lane in company order and compared each with every
-- webhook found: 999,000 comparisons a claim over 1,000 busy webhooks, 40 ms, and
-- 295 ms over 3,000; or, planned for few, merged the webhooks' whole key index with
-- them; 2026-12-04). SQL, so that the claim inlines it.
create or replace function webhooks_private.discovery_lane(p_webhook_id bigint, p_horizon interval)
returns table (webhook_id bigint, company_id bigint, served_at timestamptz, open_until timestamptz,
               enabled boolean, ordered boolean)
language sql
stable
as $$
  select l.webhook_id, l.company_id, l.served_at, l.open_until, w.enabled, w.ordered
  from webhooks_private.lanes l
  join webhooks.webhooks w on w.id = l.webhook_id
  where l.webhook_id = p_webhook_id
    and (not w.enabled
         or ((l.open_until is null or l.open_until <= now())
             and (w.rate_limit is null or l.paced_until is null or l.paced_until <= now() + p_horizon)))
  offset 0;
$$;

-- private (lane_claim, its step 2): keeps the places for the next discovery
-- (discovery_went_to: after p_company_after, and p_next, discovery_places) with each
-- company's moved back to before the first webhook its walk left for lack of room:
-- ranked past the batch (p_ranked false), or ranked into it (true) but neither served
-- by this claim (p_served: the lanes step 2 stamped, given deliveries or passed for
-- being at their caps) nor being decided by another relay (p_elsewhere); a webhook
-- that could not be served now (null: its breaker open, paced ahead, its deliveries
-- waiting for a retry, or held to the relay's cap) is passed over, and so is its
-- company's first lane in the batch's rotation, which had the first of the company's
-- share and, unserved, had nothing to give (its due rows held by another transaction:
-- held as left, it kept its company's place where it was, and the walk served the same
-- batch of webhooks for as long). Back to before the first webhook walked: the place
-- it had (p_places), or none. A company gets from a discovery its share of the claim,
-- fewer lanes than the batch it walks: when its place moved past the whole batch, the
-- rest of it waited until the company's walk came round again (until 2026-12-06: 138
-- of 150 webhooks served in the 11 discoveries that serve each once,
-- test/fleet/claim-cost.test.ts). Reads nothing: until 2026-12-06 it read again the
-- lane of each webhook served (its served_at), 100 lane index entries of a claim of
-- 200. Returns the places kept.
-- (it took the lanes locked, and read which of them were served, until 2026-12-06)
drop function if exists webhooks_private.places_past_served(jsonb, jsonb, bigint[], bigint[], boolean[], bigint[], bigint[]);
create or replace function webhooks_private.places_past_served(p_company_after bigint, p_next jsonb, p_places jsonb,
                                                               p_companies bigint[], p_webhooks bigint[],
                                                               p_ranked boolean[], p_served bigint[],
                                                               p_elsewhere bigint[])
returns jsonb
language plpgsql
volatile
as $$
declare
  v_places jsonb := p_next;
  -- the companies whose first webhook left is found (each company's webhooks come
  -- together, in the walk's order)
  v_found bigint[] := '{}';
  v_place bigint;
begin
  for i in 1 .. coalesce(cardinality(p_webhooks), 0) loop
    continue when p_ranked[i] is null or p_companies[i] = any (v_found);
    continue when p_ranked[i] and (p_webhooks[i] = any (p_elsewhere) or p_webhooks[i] = any (p_served));
    v_found := v_found || p_companies[i];
    v_place := case when i > 1 and p_companies[i - 1] = p_companies[i] then p_webhooks[i - 1]
                    else (p_places ->> p_companies[i]::text)::bigint end;
    v_places := v_places - p_companies[i]::text;
    if v_place is not null then
      v_places := v_places || jsonb_build_object(p_companies[i]::text, v_place);
    end if;
  end loop;
  perform webhooks_private.discovery_went_to(p_company_after, v_places);
  return v_places;
end;
$$;

-- private (claim): lock and return the due deliveries a claim may lease now, by the
-- rules at the top of this file. p_relay: the relay asking; p_slots: its request
-- slots (null: no company shares); p_per_webhook: what it may hold of one webhook;
-- p_busy_*: what it holds (in flight, queued, waiting for a paced slot), per webhook,
-- in deliveries and in payload bytes, what it may hold of that webhook when that
-- is not p_per_webhook (a webhook whose requests come back fast may queue more:
-- relay/slots.ts), and the webhook's company (null: looked up by its lane); p_byte_budget: the payload bytes it may hold (null: no byte shares);
-- p_only_webhooks: look at these webhooks only (a refill), else at every webhook with
-- due deliveries. A paced delivery comes with its slot [send_at, send_until) (null:
-- send at once); webhook_filled: its webhook took all this claim allowed it, whatever
-- set that (its caps, its company's share, the batch), so more of it may be due. One
-- more row, without a delivery (delivery_id null), says that a webhook with due
-- deliveries was at its fleet-wide cap, or, with lanes_busy, that every lane the
-- claim could serve was being decided by another relay (nothing leased). Each
-- delivery also comes with its webhook and its company, its place in its webhook's turn (nth, 1 for
-- the oldest), and its company's byte share: what it may still take in payload
-- bytes (byte_room; null: no byte shares), and whether it holds nothing (it may then
-- take one delivery however large). claim_deliveries cuts by them. Deliveries of a
-- disabled webhook are returned regardless of limits, sent false: the claim fails
-- them without reading or sending them.
-- Called by webhooks_relay.claim_deliveries, inside its transaction: the locks it
-- takes (lanes and deliveries) hold until that claim commits. Every read of the
-- outbox here is of pending or in-flight rows by webhook: webhooks.delivery_queue
-- (22_outbox.sql) with locked_by null / not null.
drop function if exists webhooks_private.lane_claim(integer, integer, integer, bigint[], integer[], bigint[]);
-- (its result gained the row's ctid: a new result type needs the old one dropped)
-- (and its created_at, so that the claim reads the messages before it leases)
drop function if exists webhooks_private.lane_claim(text, integer, integer, integer, bigint[], integer[], bigint[]);
-- (and each held webhook's own cap, p_busy_caps; and lanes_busy in its result; and
-- each delivery's payload_bytes, for the claim's byte budget)
drop function if exists webhooks_private.lane_claim(text, integer, integer, integer, bigint[], integer[], bigint[], integer[]);
-- (and the bytes held per webhook and the relay's byte budget, for the companies'
-- byte shares)
drop function if exists webhooks_private.lane_claim(text, integer, integer, integer, bigint[], integer[], bigint[], integer[], bigint[], bigint);
-- (and the company of each webhook held, p_busy_companies: the claim looked up the
-- lane of every webhook the relay held, on every claim; and each delivery's webhook
-- in its result, which the lease read again from the row, by its ctid, until
-- 2026-12-06)
select webhooks_private.drop_function_unless(
  'webhooks_private.lane_claim(text, integer, integer, integer, bigint[], integer[], bigint[], integer[], bigint[], bigint, bigint[])',
  'p_relay text, p_limit integer, p_slots integer, p_per_webhook integer, p_busy_webhooks bigint[], p_busy_counts integer[], p_only_webhooks bigint[], p_busy_caps integer[], p_busy_bytes bigint[], p_byte_budget bigint, p_busy_companies bigint[]',
  'TABLE(delivery_id bigint, created_at timestamp with time zone, row_ctid tid, send_at timestamp with time zone, send_until timestamp with time zone, webhook_filled boolean, lanes_busy boolean, payload_bytes integer, company_id bigint, nth integer, byte_room bigint, holds_nothing boolean, sent boolean, webhook_id bigint)');
create or replace function webhooks_private.lane_claim(
  p_relay         text,
  p_limit         integer,
  p_slots         integer,
  p_per_webhook   integer,
  p_busy_webhooks bigint[],
  p_busy_counts   integer[],
  p_only_webhooks bigint[],
  p_busy_caps     integer[],
  p_busy_bytes    bigint[],
  p_byte_budget   bigint,
  p_busy_companies bigint[]
)
returns table (delivery_id bigint, created_at timestamptz, row_ctid tid, send_at timestamptz, send_until timestamptz,
               webhook_filled boolean, lanes_busy boolean, payload_bytes integer, company_id bigint, nth integer,
               byte_room bigint, holds_nothing boolean, sent boolean, webhook_id bigint)
language plpgsql
volatile
as $$
#variable_conflict use_column
declare
  -- pacing hands out send times at most this far ahead
  v_horizon constant interval := interval '1 second';
  v_ready bigint[];
  v_bound integer[];
  v_first boolean[];
  v_ordered boolean[];
  v_lanes bigint[];
  -- each lane taken's bound, and how many of them (from the first) v_room counts
  v_lane_bounds integer[] := '{}';
  v_counted integer := 0;
  v_room integer;
  v_contended boolean := false;
  -- a discovery's window: the lanes it ranks, at most (discovery_window)
  v_window constant integer := webhooks_private.discovery_window(p_limit, cardinality(p_only_webhooks));
  -- what this relay holds of each webhook (held_by_webhook)
  v_held constant jsonb := webhooks_private.held_by_webhook(p_busy_webhooks, p_busy_counts, p_busy_caps);
  -- where this connection's last discovery stopped (discovery_company_after,
  -- discovery_places), and how many webhooks of one company it walks
  -- (a refill walks nothing: it reads neither)
  v_company_after constant bigint := case when p_only_webhooks is null
                                          then webhooks_private.discovery_company_after() else 0 end;
  v_places constant jsonb := case when p_only_webhooks is null
                                  then webhooks_private.discovery_places() else '{}' end;
  v_per_company constant integer := webhooks_private.discovery_company_lanes(p_limit);
  v_next_company_after bigint;
  v_next_places jsonb;
  -- the webhooks walked of each company given a place, in the walk's order, and whether
  -- each was ranked into the batch (true), past it (false), or could not be served now
  -- (null); and the lanes of the batch another relay was deciding for (it serves them)
  v_walk_companies bigint[];
  v_walk_webhooks bigint[];
  v_walk_ranked boolean[];
  v_elsewhere bigint[] := '{}';
  -- the lane the first of this connection's fruitless discoveries walked first
  -- (discovery_walks_on), whether this walk came round to it, whether the window was
  -- full, and the lane this walk began with
  v_round_mark constant bigint := case when p_only_webhooks is null then webhooks_private.discovery_round_mark() end;
  v_mark_walked boolean;
  v_window_full boolean;
  v_first_walked bigint;
  v_walks_on boolean;
  -- a window with no lane that may send now: the earliest time one of them may
  -- (discovery_round_note; null when it found one)
  v_next_send timestamptz;
begin
  -- 1. the lanes with due deliveries that may send now, in rotation order, locked.
  --    A lane another relay is deciding for is passed over (that relay serves it;
  --    claims of different webhooks never queue behind each other); when every one
  --    is taken, the claim returns at once, saying so. Statements of their own: the
  --    next one counts rows in flight with a snapshot taken after these locks.
  --    A discovery ranks a window of them: the webhooks with deliveries waiting it
  --    walks, v_window at most, company by company after the company where this
  --    connection's last discovery stopped, then from the first company on, and of
  --    each company no more than v_per_company (waiting_lanes), so that a company
  --    whose webhooks are many neither fills the window nor sets what a discovery
  --    reads. With every webhook found first and ranked after, a claim of 32 over
  --    10,000 companies with a delivery due each read 10,000 index entries of the
  --    queue, as many of the lanes and of the webhooks, and 91,000 buffers, a quarter
  --    to half a second (2026-12-06, docs/scaling.md); the window bounds that by the
  --    batch, and moves on each discovery, so every lane comes into one. Fewer lanes
  --    than the window: all of them, ranked as before.
  with hooks as (
    -- each webhook with deliveries waiting, its company, its earliest due time and
    -- its place in the walk (ord)
    select k.c, k.w, k.first_due, k.n, k.ord
    from (select h.company_id as c, h.webhook_id as w, h.first_due, h.n, h.step::bigint as ord
          from webhooks_private.waiting_lanes(v_company_after, 9223372036854775807, v_places, v_per_company) h
          where p_only_webhooks is null
          union all
          select h.company_id, h.webhook_id, h.first_due, h.n, 2147483648 + h.step
          from webhooks_private.waiting_lanes(0, v_company_after, v_places, v_per_company) h
          where p_only_webhooks is null and v_company_after > 0) k
    -- (the window: the walk stops here)
    limit v_window
  ),
  asked as (
    select hooks.w from hooks where hooks.first_due <= now()
    union all
    -- a refill's webhooks: something due, one index probe each. A lateral probe with
    -- a limit, not "exists": that one the planner may make a hash semi join, which
    -- reads every due row of the queue on every claim (test/fleet/claim-cost.test.ts)
    select o.w
    from unnest(p_only_webhooks) as o(w)
    cross join lateral (select 1 from webhooks.delivery_queue d
                        where d.webhook_id = o.w and d.locked_by is null and d.next_attempt_at <= now()
                        limit 1) due
  ),
  ready as (
    -- each webhook's lane and webhook by their keys (discovery_lane)
    select l.*
    from asked
    cross join lateral webhooks_private.discovery_lane(asked.w, v_horizon) l
  ),
  -- where the walk stopped, when the window was full: the next discovery goes on from
  -- its company, after its webhook (none: every webhook with deliveries waiting was
  -- walked, and the next discovery starts from the first company)
  stopped as (
    select k.c, k.w from hooks k
    where k.ord = (select max(j.ord) from hooks j having count(*) >= v_window)
  ),
  -- the companies' places for the next discovery (discovery_places): of each company
  -- walked to its count, and of the one where the walk stopped, its last webhook
  -- walked (moved back, once the batch is served, to before the first one left
  -- unserved: places_past_served); a place of a company not walked is kept unless the
  -- walk went past it (which then had nothing waiting)
  -- each company walked: its last webhook walked, and how many
  walked as (
    select k.c, max(k.ord) as ord, max(k.n) as n from hooks k group by k.c
  ),
  placed as (
    select c.c, c.ord from walked c
    where c.n >= v_per_company or c.c = (select s.c from stopped s)
  ),
  places as (
    select coalesce(jsonb_object_agg(p.c::text, p.w), '{}'::jsonb) as places
    from (select k.c, k.w
          from placed c
          join hooks k on k.ord = c.ord
          union all
          select e.key::bigint, e.value::bigint
          from jsonb_each_text(v_places) e
          where not exists (select 1 from walked c where c.c = e.key::bigint)
            and exists (select 1 from stopped s
                        where case when s.c > v_company_after
                                   then not (e.key::bigint > v_company_after and e.key::bigint < s.c)
                                   else e.key::bigint > s.c and e.key::bigint <= v_company_after end)) p
  ),
  rotation as (
    select r.webhook_id,
           -- the most this claim could give the lane (its rows in flight elsewhere
           -- not counted: an upper bound, known before the lane is locked)
           case when not r.enabled then p_limit
                when r.open_until is not null then 1   -- a probe
                else webhooks_private.relay_room((v_held -> r.webhook_id::text ->> 1)::integer, p_per_webhook,
                                                 (v_held -> r.webhook_id::text ->> 0)::integer) end as bound,
           row_number() over (partition by r.company_id order by r.served_at, r.webhook_id) as turn,
           max(r.served_at) over (partition by r.company_id) as company_served,
           r.company_id,
           r.enabled,
           r.ordered
    from ready r
  ),
  chosen as (
    select r.webhook_id, r.bound, r.turn, r.enabled, r.ordered,
           -- every company's first lane, then every company's second, …; and apart,
           -- the disabled ones (their deliveries are failed, never sent), after them
           -- and with a batch of their own: a disabled webhook's backlog never holds
           -- up another's deliveries (until 2026-12-04 they came first, and a backlog
           -- of them took whole batches, claim after claim), nor waits for them
           row_number() over (partition by r.enabled order by r.turn, r.company_served, r.company_id) as place
    from rotation r
    -- a lane this relay holds all it may of: nothing to take, and locking it would
    -- keep other relays from it
    where r.bound > 0
  )
  select a.ready, a.bound, a.first, a.ordered, coalesce((select s.c - 1 from stopped s), 0), pl.places,
         pw.companies, pw.webhooks, pw.ranked,
         exists (select 1 from stopped), (select k.w from hooks k order by k.ord limit 1),
         v_round_mark is not null and exists (select 1 from hooks k where k.w = v_round_mark),
         -- (only for a window without a lane that may send now, the idle path: the
         -- subquery is not run otherwise) when the first of its lanes may: its first
         -- due time, or, due, when its breaker's wait ends (open_until) or its pacing
         -- comes within the horizon; now for any other (a disabled webhook's, one this
         -- relay holds all it may of): that poll must walk. Infinity: none waiting.
         case when a.ready is null then
           (select coalesce(min(case when k.first_due > now() then k.first_due
                                     else coalesce((select greatest(l.open_until,
                                                                    case when w.rate_limit is not null
                                                                         then l.paced_until - v_horizon end)
                                                    from webhooks_private.lanes l
                                                    join webhooks.webhooks w on w.id = l.webhook_id
                                                    where l.webhook_id = k.w and w.enabled), now()) end),
                            'infinity')
            from hooks k) end
  into v_ready, v_bound, v_first, v_ordered, v_next_company_after, v_next_places,
       v_walk_companies, v_walk_webhooks, v_walk_ranked,
       v_window_full, v_first_walked, v_mark_walked, v_next_send
  from places pl
  cross join lateral (
    select array_agg(c.webhook_id order by not c.enabled, c.place) as ready,
           array_agg(c.bound order by not c.enabled, c.place) as bound,
           array_agg(c.turn = 1 order by not c.enabled, c.place) as first,
           array_agg(c.enabled and c.ordered order by not c.enabled, c.place) as ordered
    from chosen c
    where c.place <= p_limit) a
  cross join lateral (
    select array_agg(k.c order by k.ord) as companies, array_agg(k.w order by k.ord) as webhooks,
           -- (a company's first lane in the batch had the first of its share: when it
           -- got nothing, it had nothing to give, and is passed over)
           array_agg(case when c.place <= p_limit and c.turn = 1 then null else c.place <= p_limit end
                     order by k.ord) as ranked
    from placed p
    join hooks k on k.c = p.c
    left join chosen c on c.webhook_id = k.w) pw;
  -- the next discovery of this connection goes on where this one stopped: in the
  -- company the walk stopped in (from the company before it), after its webhook, and
  -- in each company walked to its count, after its last webhook walked
  if p_only_webhooks is null then
    perform webhooks_private.discovery_went_to(v_next_company_after, v_next_places);
    -- (a lane ranked into the window is one that may send now: found, the relay goes
    -- on anyway)
    v_walks_on := webhooks_private.discovery_walks_on(v_ready is null, v_window_full, v_first_walked, v_mark_walked);
    if v_ready is null then
      -- began a round: walked all in one window, or set a new mark; ended it: all in
      -- one window, or came round to the mark
      perform webhooks_private.discovery_round_note(
        not v_window_full or (v_walks_on and v_round_mark is distinct from webhooks_private.discovery_round_mark()),
        not v_walks_on, v_next_send);
    end if;
  end if;
  if v_ready is null then
    return;
  end if;

  -- the free ones of them, in rotation order. While another relay is deciding for
  -- one of them (a lane was found locked), no more than the batch needs: every
  -- company's first lane, then further lanes only while what those taken may give
  -- (due rows, counted no further than the batch still needs, up to their bound)
  -- falls short of p_limit. A lane locked is a lane no other relay can claim from
  -- until this claim commits: when every claim locked every lane it could use, four
  -- relays over eight webhooks of one company took turns on all eight, and a third
  -- of the claims waited (17 ms each). A relay alone takes every free lane: the batch
  -- spread over all its webhooks keeps each one's queue fed (one relay over eight
  -- webhooks delivered a quarter less when each claim served one or two of them).
  -- SKIP LOCKED never waits, so the order of locking cannot deadlock.
  -- When every one is being decided by another relay, nothing is waited for: the
  -- claim's statement would hold its snapshot all the while, and the index entries
  -- of the rows the other relays lease and settle meanwhile could not be marked dead,
  -- so every claim read them again (four relays on one webhook: waits of 22–50 ms,
  -- the count of rows in flight reading 1,548 buffers a claim against 294 without
  -- them; docs/relay-fairness.md). The relay asks again shortly instead (the
  -- lanes_busy mode of relay/scheduler.ts).
  v_lanes := '{}';
  v_room := 0;
  for i in 1 .. cardinality(v_ready) loop
    if v_contended and not v_first[i] then
      -- what the lanes taken so far may give: their bound, or fewer when fewer are
      -- due (counted no further than the batch still needs: the rows the claim then
      -- reads), each lane once, in the order taken. Counted only once a lane was
      -- found taken, the only time it decides anything: a relay alone counted the
      -- due rows of every lane it took but the last on every claim, a batch's worth
      -- read twice (64 index entries a claim of 96 over three webhooks;
      -- test/fleet/claim-cost.test.ts). Never for the last lane, which no later
      -- lane's choice depends on: with four relays on one webhook this count read
      -- about 5,900 buffers a claim (the index entries of rows other relays had just
      -- leased, kept while their claims held snapshots)
      while v_counted < cardinality(v_lanes) and v_room < p_limit loop
        v_counted := v_counted + 1;
        select v_room + count(*) into v_room
        from (select 1 from webhooks.delivery_queue d
              where d.webhook_id = v_lanes[v_counted] and d.locked_by is null and d.next_attempt_at <= now()
              order by d.webhook_id, d.next_attempt_at
              limit greatest(least(v_lane_bounds[v_counted], p_limit - v_room), 1)) due;
      end loop;
      continue when v_room >= p_limit;
    end if;
    perform 1 from webhooks_private.lanes l where l.webhook_id = v_ready[i] for update of l skip locked;
    if not found then
      v_contended := true;
      v_elsewhere := v_elsewhere || v_ready[i];
    else
      v_lanes := v_lanes || v_ready[i];
      v_lane_bounds := v_lane_bounds || v_bound[i];
      -- an ordered webhook's deliveries held back by an earlier one of their
      -- contact: put off, so that step 2 looks past them (put_off_held_back)
      if v_ordered[i] then
        perform webhooks_private.put_off_held_back(v_ready[i], v_bound[i]);
      end if;
    end if;
  end loop;
  if cardinality(v_lanes) = 0 then
    return query select null::bigint, null::timestamptz, null::tid, null::timestamptz, null::timestamptz,
                        null::boolean, true, null::integer, null::bigint, null::integer, null::bigint, null::boolean,
                        null::boolean, null::bigint;
    return;
  end if;

  -- 2. how many each lane may take, then its oldest due deliveries, locked
  return query
  with busy as (
    select b.w, b.n, b.cap, b.bytes, b.company_id
    from unnest(p_busy_webhooks, p_busy_counts, p_busy_caps, p_busy_bytes, p_busy_companies)
      as b(w, n, cap, bytes, company_id)
  ),
  lane as (
    -- (a disabled webhook's due deliveries are failed unsent, or held if snapshots, in
    -- any order: none is sent, so none is held back. Taken as ordered, a live change
    -- behind its contact's held snapshot was neither, due and looked at by every claim
    -- of every relay for as long as the webhook stayed disabled, until 2026-12-07:
    -- test/relay/ordered-combinations.test.ts)
    select l.webhook_id, l.company_id, l.served_at, l.open_until, l.probes, w.enabled, w.rate_limit,
           w.enabled and w.ordered as ordered,
           greatest(l.paced_until, now() + webhooks_private.pacing_lead()) as pace_from,
           case
             when not w.enabled then p_limit
             -- the breaker opened while this claim waited for the lane
             when l.open_until > now() then 0
             else least(
               webhooks_private.max_in_flight(w.max_in_flight) - f.n,
               webhooks_private.relay_room(b.cap, p_per_webhook, b.n),
               -- a probe (open_until has passed), and none while a request to the
               -- webhook is on its way (in flight, or held by this relay to send):
               -- the wait before it counts from the last probe's claim, and a
               -- probe that hangs longer (a wait shorter than the request timeout)
               -- let a second one through beside it (until 2026-12-05)
               case when l.open_until is not null then case when f.n > 0 then 0 else 1 end end,
               case when w.rate_limit is not null
                    then floor(extract(epoch from now() + v_horizon
                                                  - greatest(l.paced_until, now() + webhooks_private.pacing_lead()))
                               * w.rate_limit)::integer + 1 end)
           end as room,
           w.enabled and webhooks_private.max_in_flight(w.max_in_flight) <= f.n as at_cap
    from webhooks_private.lanes l
    join webhooks.webhooks w on w.id = l.webhook_id
    -- what this relay holds of it (held_by_webhook: a join with busy was a nested
    -- loop of every webhook held for each lane)
    cross join lateral (select (v_held -> l.webhook_id::text ->> 0)::integer as n,
                               (v_held -> l.webhook_id::text ->> 1)::integer as cap) b
    -- in flight to this webhook, all relays together: the other relays' leases, and
    -- what this relay says it holds (its leases whose request has ended, their result
    -- not yet written, no longer take a slot at the receiver)
    cross join lateral (select count(*)::integer + coalesce(b.n, 0) as n
                        from webhooks.delivery_queue d
                        where d.webhook_id = l.webhook_id and d.locked_by is not null
                          and d.locked_by <> p_relay) f
    where l.webhook_id = any (v_lanes)
      -- (said of the webhooks too, their index's condition: without it, planned for
      -- many rows of one webhook, the join merged the webhooks' whole key index with
      -- the claim's few, every claim; 2026-12-04)
      and w.id = any (v_lanes)
  ),
  open_lane as (
    select * from lane where room > 0
  ),
  -- what the relay holds, per company (for the company shares), by the companies it
  -- names: a lookup of each webhook's lane read 452 lane index entries and about
  -- 1,376 buffers a claim while the relay held 448 webhooks (2026-12-06). A relay of
  -- the previous release names none (an upgrade under way): its webhooks' lanes are
  -- looked up, as then.
  held as (
    select b.company_id, sum(b.n)::integer as n, coalesce(sum(b.bytes), 0)::bigint as bytes
    from (select coalesce(b.company_id, (select l.company_id from webhooks_private.lanes l
                                         where l.webhook_id = b.w)) as company_id, b.n, b.bytes
          from busy b) b
    group by b.company_id
  ),
  company as (
    select c.company_id, count(*)::integer as lanes
    from open_lane c
    where c.enabled
    group by c.company_id
  ),
  active as (
    select count(*)::integer as n
    from (select company_id from company union select company_id from held where n > 0) a
  ),
  share as (
    select s.company_id, s.lanes, s.byte_room, s.holds_nothing,
           -- a company at its byte share takes nothing more (one that holds nothing
           -- may take one delivery however large: claim_deliveries cuts the rest)
           case when s.byte_room = 0 and not s.holds_nothing then 0 else s.room end as room
    from (
      select c.company_id, c.lanes,
             least(
               -- a fair part of this batch
               ceil(p_limit::numeric / greatest((select count(*) from company), 1)),
               -- and of the relay's slots, an eighth kept free for newcomers; a
               -- company that holds none of them gets one, however many companies
               -- have work (the batch, at most the relay's free slots, bounds them
               -- all): with more companies than slots to share, the share is below
               -- one, and until 2026-12-04 no newcomer got a delivery until some
               -- company's request ended (test/fleet/many-companies.test.ts)
               case when p_slots is null then p_limit
                    else greatest(floor((p_slots - p_slots / 8)::numeric / (select n from active))
                                  - coalesce(h.n, 0),
                                  case when coalesce(h.n, 0) = 0 then 1 else 0 end) end
             )::integer as room,
             -- and of the relay's payload bytes, alike (null: no byte shares)
             case when p_byte_budget is not null
                  then greatest(floor((p_byte_budget - p_byte_budget / 8)::numeric / (select n from active))
                                - coalesce(h.bytes, 0), 0)::bigint end as byte_room,
             coalesce(h.bytes, 0) = 0 as holds_nothing
      from company c
      left join held h on h.company_id = c.company_id
    ) s
  ),
  -- each lane's fair part of its company's share, in rotation order: every company's
  -- first lane, then every company's second, …; cut so that no company takes more
  -- than its share and the batch no more than p_limit (disabled webhooks, apart, no
  -- more than a batch of their own: step 1)
  wanted as (
    select l.webhook_id, l.company_id, l.enabled, l.rate_limit, l.ordered, l.pace_from, l.open_until, s.room as company_room,
           -- (a disabled webhook's deliveries are failed, not sent: no bytes held)
           case when l.enabled then s.byte_room end as byte_room, s.holds_nothing,
           case when not l.enabled then l.room
                else least(l.room, ceil(s.room::numeric / s.lanes)::integer) end as take,
           row_number() over (partition by l.company_id order by l.served_at, l.webhook_id) as turn,
           max(l.served_at) over (partition by l.company_id) as company_served
    from open_lane l
    left join share s on s.company_id = l.company_id
  ),
  within_company as (
    select w.*,
           case when not w.enabled then w.take
                else least(w.take, greatest(w.company_room - coalesce(sum(w.take) over (
                       partition by w.company_id order by w.turn rows between unbounded preceding and 1 preceding), 0), 0))
           end as company_take
    from wanted w
  ),
  alloc as (
    select c.webhook_id, c.company_id, c.enabled, c.byte_room, c.holds_nothing, c.rate_limit, c.ordered, c.pace_from,
           c.open_until,
           least(c.company_take, greatest(p_limit - coalesce(sum(c.company_take) over (
             partition by c.enabled order by c.turn, c.company_served, c.company_id
             rows between unbounded preceding and 1 preceding), 0), 0))::integer as take
    from within_company c
  ),
  picked as (
    select a.webhook_id, a.company_id, a.enabled, a.byte_room, a.holds_nothing, a.rate_limit, a.pace_from, a.open_until, c.id,
           c.created_at, c.row_ctid, c.payload_bytes,
           row_number() over (partition by a.webhook_id order by c.next_attempt_at, c.id) as nth,
           count(*) over (partition by a.webhook_id) >= a.take as webhook_filled
    from alloc a
    cross join lateral (
      -- its oldest due deliveries, as many as it may take
      select * from (
       select d.delivery_id as id, d.created_at, d.ctid as row_ctid, d.next_attempt_at, d.payload_bytes
       from webhooks.delivery_queue d
       where not a.ordered
         and d.webhook_id = a.webhook_id
         and d.locked_by is null
         and d.next_attempt_at <= now()
       -- webhook_id first: the (webhook_id, next_attempt_at) index, never a walk of
       -- every webhook's older due rows
       order by d.webhook_id, d.next_attempt_at
       limit greatest(a.take, 0)
       for update skip locked) unordered
      union all
      -- an ordered webhook's: those not held back, among its oldest due ones, no
      -- further than ordered_scan_rows()
      select * from (
       select d.delivery_id, d.created_at, d.ctid, d.next_attempt_at, d.payload_bytes
       from (select q.ctid as row_ctid
             from webhooks.delivery_queue q
             where a.ordered
               and q.webhook_id = a.webhook_id
               and q.locked_by is null
               and q.next_attempt_at <= now()
             order by q.webhook_id, q.next_attempt_at
             limit webhooks_private.ordered_scan_rows(a.take)) k
       join webhooks.delivery_queue d on d.ctid = k.row_ctid
       where not webhooks_private.held_back(a.webhook_id, d.contact_id, d.delivery_id)
       order by d.next_attempt_at
       limit greatest(a.take, 0)
       for update of d skip locked) ordered
    ) c
  ),
  -- the lanes locked that could take nothing by their own limits: at their
  -- fleet-wide cap, or their company at its share. Their turn is over as if served:
  -- kept at the front of the rotation, they filled the view of every claim (its
  -- batch's worth of lanes, step 1) while their companies held their shares, and a
  -- company served after them waited behind them for as long, up to the request
  -- timeout (until 2026-12-04; test/fleet/many-companies.test.ts). Lanes the batch
  -- had no room left for keep their place.
  passed as (
    select l.webhook_id
    from lane l
    left join wanted w on w.webhook_id = l.webhook_id
    -- (a disabled webhook's deliveries are failed, apart from any share: step 1)
    where l.enabled and (l.room <= 0 or w.company_room = 0)
  ),
  served as (
    update webhooks_private.lanes l
    set served_at = now(),
        -- (the end of the last slot given: a slot partly used is not shared with the next claim)
        paced_until = case when g.rate_limit is null then l.paced_until
                           else g.pace_from + webhooks_private.pacing_offset(
                                  g.got + webhooks_private.pacing_group(g.rate_limit) - 1, g.rate_limit) end,
        -- a probe: the next may follow only after a longer wait, whatever this one's outcome
        probes = case when l.open_until is null or g.got is null then l.probes else webhooks_private.counted_on(l.probes, 1) end,
        open_until = case when l.open_until is null or g.got is null then l.open_until
                          else webhooks_private.breaker_reopens(webhooks_private.counted_on(l.probes, 2), l.failing_since) end
    from (select p.webhook_id, count(*) as got, min(p.pace_from) as pace_from, min(p.rate_limit) as rate_limit
          from picked p group by p.webhook_id
          union all
          select s.webhook_id, null, null, null from passed s) g
    where l.webhook_id = g.webhook_id
      -- (the lanes locked above, the index's condition: without it, with sorts priced
      -- out, every claim merged the lanes' whole key index with its few; 3 ms a claim
      -- over 20,000 webhooks, 2026-12-04)
      and l.webhook_id = any (v_lanes)
    returning l.webhook_id
  ),
  -- 3. a company given a place whose batch walked was not all served (its share of the
  --    claim was smaller): its place moves only past the webhooks served, or passed
  --    over, before the first one left (places_past_served, which keeps the places).
  --    Here, so that the lanes served come from the update above, not read again.
  went as (
    select webhooks_private.places_past_served(v_next_company_after, v_next_places, v_places, v_walk_companies,
                                               v_walk_webhooks, v_walk_ranked,
                                               array(select s.webhook_id from served s), v_elsewhere) as places
    where p_only_webhooks is null and v_walk_webhooks is not null
  )
  select p.id, p.created_at, p.row_ctid,
         -- its slot
         case when p.rate_limit is not null
              then p.pace_from + webhooks_private.pacing_offset(p.nth - 1, p.rate_limit) end,
         case when p.rate_limit is not null
              then p.pace_from + webhooks_private.pacing_offset(p.nth - 1 + webhooks_private.pacing_group(p.rate_limit), p.rate_limit) end,
         p.webhook_filled, false, p.payload_bytes, p.company_id, p.nth::integer, p.byte_room, p.holds_nothing, p.enabled,
         p.webhook_id
  from picked p
  union all
  -- a row without a delivery: some webhook with due deliveries is at its fleet-wide
  -- cap; the relay looks again once it has settled something
  select null, null, null, null, null, null, false, null, null, null, null, null, null, null
  where exists (select 1 from lane where lane.at_cap)
  union all
  -- no row: the places kept (went; a query runs a CTE only when it reads it, and the
  -- places are never null)
  select null, null, null, null, null, null, false, null, null, null, null, null, null, null
  from went
  where went.places is null;
end;
$$;

------------------------------------------------------------------------------------
-- The circuit breaker as the company's admins see it (the report, 55_report.sql)

-- private: the caller's company's webhooks whose last attempts failed: how many in a
-- row, since when, until when the breaker holds their deliveries (null: it does not,
-- or its wait is over and a probe goes next) and when the webhook will be disabled
-- unless an attempt succeeds first. As the owner: the lanes are the relay's, and this
-- reads the caller's company's alone (lanes_company_idx).
create or replace function webhooks_private.failing_webhooks()
returns table (webhook_id bigint, failures integer, failing_since timestamptz, paused_until timestamptz,
               disables_at timestamptz)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select l.webhook_id, l.failures, l.failing_since,
         case when l.open_until > now() then l.open_until end,
         l.failing_since + webhooks_private.interval_setting('webhooks.auto_disable_after')
  from webhooks_private.lanes l
  where l.company_id = webhooks.current_company_id()
    and l.failures > 0;
$$;

------------------------------------------------------------------------------------
-- The settle's part: the circuit breaker and auto-disable

-- private: the longest a settle (settle_deliveries, 30_delivery.sql, and lane_results,
-- below) waits for a row another transaction holds. The engine's own transactions
-- hold one for milliseconds; one outside it, for as long as it stays open.
create or replace function webhooks_private.settle_lock_wait()
returns text
language sql
immutable
as $$
  select '1s';
$$;

-- private (settle): count a batch of attempt results into their webhooks' lanes, one
-- array element per attempt (p_webhook_ids: each attempt's webhook; null: skipped).
-- A success closes the breaker; failures in a row open it after
-- webhooks.breaker_after; a webhook whose every attempt has failed for
-- webhooks.auto_disable_after is disabled (disabled_by = 'relay'). Lanes of healthy
-- webhooks (no failure before, none now) are not written.
--
-- It never waits long for a lock: the settle that calls it writes every company's
-- results. The engine holds a lane for milliseconds (a claim, another relay's
-- settle), and is waited for; a transaction outside it may hold one for as long as
-- it stays open (a session that enables or deletes the webhook: the lane is reset or
-- deleted with it). Such a lane is waited for at most settle_lock_wait(), then left
-- out: this batch's counts for it are dropped, as that enable or delete would drop
-- them. A webhook row held the same way is not auto-disabled now; a later failure
-- does it.
select webhooks_private.drop_function_unless(
  'webhooks_private.lane_results(bigint[], timestamptz[], integer[], text[])',
  'p_webhook_ids bigint[], p_attempted_at timestamp with time zone[], p_status_codes integer[], p_errors text[]',
  'void');
create or replace function webhooks_private.lane_results(
  p_webhook_ids  bigint[],
  p_attempted_at timestamptz[],
  p_status_codes integer[],
  p_errors       text[]
)
returns void
language plpgsql
volatile
-- planned once per connection (the settle calls it on every batch)
set plan_cache_mode = force_generic_plan
as $$
declare
  v_lock_timeout constant text := current_setting('lock_timeout');
  v_after constant integer := webhooks_private.integer_setting('webhooks.breaker_after');
  v_disable_after constant interval := webhooks_private.interval_setting('webhooks.auto_disable_after');
  -- the batch's webhooks with a failure now
  v_failed constant bigint[] := array(select r.webhook_id
                                      from unnest(p_webhook_ids, p_status_codes) as r(webhook_id, status_code)
                                      where not webhooks_private.delivered_status(r.status_code));
  -- the lanes this batch counts into, locked
  v_lanes bigint[];
begin
  -- lanes locked in the order claims lock them (no deadlock), and only those that
  -- will change: a failure now, or failures before. (The batch's webhooks said first,
  -- the index's condition: with "a failure now or failures before" alone, a batch with
  -- a failure read every lane, 0.65 ms a settle over 3,000 of them; 2026-12-04.)
  begin
    -- (the block's own setting: its end, or its failure, puts back the caller's)
    perform set_config('lock_timeout', webhooks_private.settle_lock_wait(), true);
    select coalesce(array_agg(l.webhook_id), '{}') into v_lanes
    from (select l.webhook_id
          from webhooks_private.lanes l
          where l.webhook_id = any (p_webhook_ids) and (l.webhook_id = any (v_failed) or l.failures > 0)
          order by l.webhook_id
          for update of l) l;
    perform set_config('lock_timeout', v_lock_timeout, true);
  exception when lock_not_available then
    -- a lane held past the wait by a transaction outside the engine: those free
    -- now are counted, that one is left out
    select coalesce(array_agg(l.webhook_id), '{}') into v_lanes
    from (select l.webhook_id
          from webhooks_private.lanes l
          where l.webhook_id = any (p_webhook_ids) and (l.webhook_id = any (v_failed) or l.failures > 0)
          for update of l skip locked) l;
  end;

  with result as (
    select r.webhook_id, r.attempted_at,
           webhooks_private.delivered_status(r.status_code) as ok,
           coalesce(r.error, 'HTTP ' || r.status_code, 'no response') as error
    from unnest(p_webhook_ids, p_attempted_at, p_status_codes, p_errors)
      as r(webhook_id, attempted_at, status_code, error)
    where r.webhook_id is not null
  ),
  last_ok as (
    select r.webhook_id, max(r.attempted_at) filter (where r.ok) as at
    from result r
    group by r.webhook_id
  ),
  per_lane as (
    -- the failures that came after the batch's last success (all, if none succeeded)
    select r.webhook_id, k.at as last_ok,
           count(*) filter (where not r.ok and r.attempted_at > coalesce(k.at, '-infinity'))::integer as failed,
           min(r.attempted_at) filter (where not r.ok and r.attempted_at > coalesce(k.at, '-infinity')) as first_failed,
           (array_agg(r.error order by r.attempted_at desc) filter (where not r.ok))[1] as last_error
    from result r
    join last_ok k on k.webhook_id = r.webhook_id
    group by r.webhook_id, k.at
  ),
  counted as (
    update webhooks_private.lanes l
    set failures = case when p.last_ok is null then webhooks_private.counted_on(l.failures, p.failed) else p.failed end,
        failing_since = case when p.last_ok is null then coalesce(l.failing_since, p.first_failed)
                             else p.first_failed end,
        open_until = case
          when (case when p.last_ok is null then webhooks_private.counted_on(l.failures, p.failed) else p.failed end) < v_after then null
          when p.last_ok is null and l.open_until is not null then l.open_until
          else now() + webhooks_private.breaker_wait(1) end,
        probes = case when p.last_ok is null then l.probes else 0 end
    from per_lane p
    where l.webhook_id = p.webhook_id
      and l.webhook_id = any (v_lanes)
      and (p.failed > 0 or l.failures > 0)
    returning l.webhook_id, l.failures, l.failing_since, p.last_error
  ),
  -- webhooks to disable whose rows no other transaction holds
  disabling as (
    select w.id, c.failures, c.failing_since, c.last_error
    from webhooks.webhooks w
    join counted c on c.webhook_id = w.id
    where w.enabled
      and c.failures > 0
      and c.failing_since <= now() - v_disable_after
    for no key update of w skip locked
  )
  update webhooks.webhooks w
  set enabled = false,
      disabled_at = now(),
      disabled_by = 'relay',
      -- within what a disable reason may hold (10_config.sql): the endpoint's error
      -- text shortened, control characters and bidi controls made spaces
      disabled_reason = format('every attempt has failed for %s (%s attempts since %s); the last: %s',
                               v_disable_after, c.failures,
                               to_char(c.failing_since at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'),
                               webhooks_private.quoted_in_reason(c.last_error, 300))
  from disabling c
  where w.id = c.id;
end;
$$;
