-- Up Migration
-- Many companies, many relays (#11): limits per webhook that hold for the whole
-- fleet, and each webhook's lane: its place in the fair rotation, its pacing and its
-- circuit breaker (sql/28_lanes.sql).

-- null: the database setting webhooks.max_in_flight (32 unless changed)
alter table webhooks.webhooks add column max_in_flight integer;
-- requests per second; null: not paced
alter table webhooks.webhooks add column rate_limit integer;
alter table webhooks.webhooks add constraint webhooks_max_in_flight_range check (max_in_flight between 1 and 1000);
alter table webhooks.webhooks add constraint webhooks_rate_limit_range check (rate_limit between 1 and 10000);

-- One row per webhook, written by claims and by failed settles only: a healthy
-- webhook's successes never write it. Kept apart from webhooks.webhooks so that the
-- claim's lock on a lane never blocks an admin editing the webhook, and a row that
-- changes every claim stays small (HOT updates: no index on what changes).
create table webhooks_private.lanes (
  webhook_id    bigint primary key references webhooks.webhooks on delete cascade,
  company_id    bigint not null,
  -- when a claim last gave this webhook deliveries: the rotation serves the
  -- company, then the webhook, served longest ago first
  served_at     timestamptz not null default '-infinity',
  -- rate_limit pacing: the send time of the next request (GCRA's theoretical arrival time)
  paced_until   timestamptz,
  -- the circuit breaker: failed attempts in a row, since when, and while open,
  -- until when no delivery is claimed (then one probe); probes sent since it opened
  failures      integer not null default 0,
  failing_since timestamptz,
  open_until    timestamptz,
  probes        integer not null default 0,
  constraint lanes_failures_nonnegative check (failures >= 0 and probes >= 0),
  constraint lanes_failing_since_iff_failures check ((failures = 0) = (failing_since is null)),
  constraint lanes_open_only_when_failing check (open_until is null or failures > 0)
) with (fillfactor = 50);
create index lanes_company_idx on webhooks_private.lanes (company_id);

insert into webhooks_private.lanes (webhook_id, company_id)
select id, company_id from webhooks.webhooks;

-- The fleet-wide cap's question, "how many of this webhook's deliveries are in
-- flight?", reads that webhook's in-flight rows alone. Only where the outbox is the
-- one table webhooks.deliveries: the queue table of #15 has an index of its own for
-- it (delivery_queue_leases_idx).
do $$
begin
  if exists (select 1 from pg_class
             where oid = to_regclass('webhooks.deliveries') and relkind = 'r') then
    create index if not exists deliveries_in_flight_webhook_idx
      on webhooks.deliveries (webhook_id) where state = 'in_flight';
  end if;
end;
$$;
