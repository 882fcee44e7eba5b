-- bpd-webhooks engine: waking the relay, without making writers wait.
--
-- A NOTIFY is cheap to send but costly to commit: Postgres serialises the commits of
-- all transactions that notify (they queue for one lock, held through the commit's
-- WAL flush). With a NOTIFY in every capturing transaction, contact writes that match
-- a webhook would commit one at a time (measured: 155 updates/s where they otherwise
-- reach 900 with the same durable settings). So a capturing transaction notifies
-- only when a relay is asleep and needs the wake-up; a relay that is awake finds the
-- delivery by itself. Two advisory locks make that exact, with no row to update:
--
--   relay_idle  held SHARED by every relay that is waiting for work, on its own
--               connection, until it wakes.
--   capturing   held SHARED by every transaction that wrote a delivery and did not
--               notify, until it ends.
-- (Their keys: webhooks_private.lock_space() with relay_idle_lock() and
-- capturing_lock(), 00_schemas.sql.)
--
-- A relay falls asleep in three steps: it takes relay_idle (from then on every new
-- capturing transaction notifies); it checks that nobody holds capturing (every
-- transaction that skipped the NOTIFY has ended, so its rows are visible); it claims
-- once more. Only if that claim is empty does it wait for a NOTIFY. If capturing is
-- held, the relay keeps relay_idle and asks captures_done() again, backing off to once
-- a second (relay/wakeup.ts): a transaction left open costs it nothing more, and its
-- deliveries come at most a second after it commits. The poll timer stays as a
-- safety net.
--
-- A writer whose transactions may be prepared for a two-phase commit (an XA
-- transaction manager's) sets webhooks.two_phase = on: Postgres refuses PREPARE
-- TRANSACTION in a transaction that has sent a NOTIFY, so such a transaction sends
-- none, and a sleeping relay finds its deliveries at its poll timer, or sooner if
-- anything else wakes it (docs/relay.md#two-phase-writers). It still holds capturing
-- when it can, so no relay falls asleep while it is open or prepared.
--
-- Capture (25_capture.sql) calls wake_relay(), and so does every write to the view
-- webhooks.deliveries that leaves a delivery pending (replays, test sends, a DBA's
-- repair: 22_outbox.sql); rescue and release (30_delivery.sql) wake every relay with
-- notify_relays(). The relay's side: relay/idle.ts.

-- private: the writer said its transaction may be prepared (webhooks.two_phase, read
-- as Postgres reads a boolean's usual spellings; anything else, or unset, is off). Read
-- only where a NOTIFY is about to be sent: the capture of a change while every relay
-- is awake never reads it.
create or replace function webhooks_private.two_phase_writer()
returns boolean
language sql
stable
as $$
  select coalesce(lower(btrim(current_setting('webhooks.two_phase', true))) in ('on', 'true', 'yes', '1'), false);
$$;

-- private: wake every relay that listens (the channel: 00_schemas.sql). A writer's
-- wake-up goes through wake_relay(), which asks two_phase_writer() first; the others
-- (a settle that lets an ordered delivery go, a rescue) are the relay's own.
-- (A bare SELECT of one expression, so that it is inlined: the check written into it
-- as a WHERE made each call 70 µs dearer, a capture's with a relay asleep among them.)
create or replace function webhooks_private.notify_relays()
returns void
language sql
volatile
as $$
  select pg_notify(webhooks_private.notify_channel(), '');
$$;

-- private: called by capture after writing deliveries (at most once per transaction
-- it matters; the locks are re-entrant and cheap to take again). True when it
-- notified. (Its calls are assignments, not PERFORM: 25_capture.sql says why.)
select webhooks_private.drop_function_unless('webhooks_private.wake_relay()', '', 'boolean');
create or replace function webhooks_private.wake_relay()
returns boolean
language plpgsql
as $$
declare
  v_unlocked boolean;
begin
  if pg_try_advisory_xact_lock_shared(webhooks_private.lock_space(), webhooks_private.capturing_lock()) then
    -- no relay is between "going idle" and "asleep"; is one asleep?
    if pg_try_advisory_lock(webhooks_private.lock_space(), webhooks_private.relay_idle_lock()) then
      -- relay_idle is free: all awake
      v_unlocked := pg_advisory_unlock(webhooks_private.lock_space(), webhooks_private.relay_idle_lock());
      return false;
    end if;
  end if;
  if webhooks_private.two_phase_writer() then
    return false;
  end if;
  perform webhooks_private.notify_relays();
  return true;
end;
$$;

-- private (relay): true when nobody holds capturing, i.e. every capturing transaction
-- that skipped its NOTIFY has ended (its rows are visible). Takes capturing for an
-- instant only: a capture that meanwhile finds it taken notifies instead.
create or replace function webhooks_relay.captures_done()
returns boolean
language plpgsql
as $$
begin
  if pg_try_advisory_lock(webhooks_private.lock_space(), webhooks_private.capturing_lock()) then
    perform pg_advisory_unlock(webhooks_private.lock_space(), webhooks_private.capturing_lock());
    return true;
  end if;
  return false;
end;
$$;

-- private: whether some transaction holds capturing (or waits for it), read from
-- pg_locks of this database, never by taking the lock: a capture must never wait on a
-- relay nor find capturing taken because a relay looked (captures_done() takes an
-- instant of it). A prepared transaction's lock counts (its pid is null).
create or replace function webhooks_private.capturing_held()
returns boolean
language sql
stable
as $$
  select exists (select 1 from pg_catalog.pg_locks l
                 where l.locktype = 'advisory'
                   and l.database = (select d.oid from pg_catalog.pg_database d where d.datname = current_database())
                   and l.classid = webhooks_private.lock_space()::oid
                   and l.objid = webhooks_private.capturing_lock()::oid
                   and l.objsubid = 2);
$$;

-- private: how far the deliveries' ids have gone (their sequence's last value, 0 before
-- the first): every delivery written takes one, whether it notified or not (a
-- capture, a two-phase writer's, a backfill step's, a replay). Read without a lock.
create or replace function webhooks_private.deliveries_written()
returns bigint
language sql
stable
as $$
  select coalesce(pg_catalog.pg_sequence_last_value(
                    pg_catalog.pg_get_serial_sequence('webhooks.delivery_history', 'id')::regclass), 0);
$$;

-- private (relay): asked before a look's discoveries (the last look, a poll's): the
-- deliveries written so far (deliveries_written), or null while some transaction holds
-- capturing (a capture, a two-phase writer's prepared transaction, a write through
-- webhooks.deliveries): its rows may be invisible to the round that follows and
-- visible after it. Read before the round's first snapshot: read after it (as the
-- round ended), a prepared transaction committed meanwhile was in neither.
create or replace function webhooks_relay.quiet_since()
returns bigint
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select case when not webhooks_private.capturing_held() then webhooks_private.deliveries_written() end;
$$;

-- private (relay): whether a sleeping relay's poll may skip its walk of the lanes: its
-- last round of discoveries came round finding nothing that may send (its claims said
-- so: discovery_round_note, 28_lanes.sql), no delivery was written since it began
-- (p_written: quiet_since() before it), nobody holds capturing now, and no lane it
-- walked may send before p_until_ms (epoch milliseconds, the database's clock;
-- Infinity: nothing was waiting). What else must hold, the relay checks
-- (relay/quiet.ts): no wake-up since that round began, and a walk every few polls.
create or replace function webhooks_relay.poll_may_skip(p_written bigint, p_until_ms float8)
returns boolean
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select extract(epoch from clock_timestamp()) * 1000 < p_until_ms
         and webhooks_private.deliveries_written() = p_written
         and not webhooks_private.capturing_held();
$$;

-- private (relay): announce that this connection's relay is going idle. Returns true
-- when no capturing transaction that skipped its NOTIFY is still open, i.e. one more
-- empty claim means the relay may sleep until a NOTIFY; false means "ask
-- captures_done() again later": the relay stays announced, it need not go idle twice.
create or replace function webhooks_relay.going_idle()
returns boolean
language plpgsql
as $$
begin
  perform pg_advisory_lock_shared(webhooks_private.lock_space(), webhooks_private.relay_idle_lock());
  return webhooks_relay.captures_done();
end;
$$;

-- private (relay): the relay on this connection is awake again. Gives relay_idle back
-- once: the relay calls it once for each going_idle() (relay/idle.ts counts), as an
-- unlock of a lock not held is refused with a WARNING in the server log.
create or replace function webhooks_relay.awake()
returns void
language plpgsql
as $$
begin
  perform pg_advisory_unlock_shared(webhooks_private.lock_space(), webhooks_private.relay_idle_lock());
end;
$$;

-- A webhook changed where its deliveries go, whether it sends, or how they are signed
-- (its URL, a disable, a delete, a rotated secret). A relay may hold some of its
-- deliveries claimed with the webhook as it was, queued behind its busy request
-- slots or waiting for a rate_limit slot: sent, they would go to the old URL, signed
-- without the new secret, or out of a disabled webhook. So every relay is told, by a
-- notification that names the webhook, and hands those back to be claimed again as
-- the webhook is now (relay/loop.ts); requests already under way finish. Rare writes
-- of configuration: their commit's NOTIFY costs nothing that matters. A two-phase
-- writer's transaction sends none (a CRM delete that disables a webhook filtered on
-- a user or status, in an XA transaction): the relays then send what they had already
-- claimed of it as it was, as they finish requests already under way.
create or replace function webhooks_private.webhook_changed_notice()
returns text
language sql
immutable
as $$
  select 'webhook_changed:';
$$;

create or replace function webhooks_private.tg_webhooks__notify_changed()
returns trigger
language plpgsql
as $$
begin
  if not webhooks_private.two_phase_writer() then
    perform pg_notify(webhooks_private.notify_channel(), webhooks_private.webhook_changed_notice() || old.id);
  end if;
  return null;
end;
$$;

drop trigger if exists _900_notify_changed on webhooks.webhooks;
create trigger _900_notify_changed
  after update of url, enabled, secret_rotated_at on webhooks.webhooks
  for each row
  when (old.url is distinct from new.url or (old.enabled and not new.enabled)
        or old.secret_rotated_at is distinct from new.secret_rotated_at)
  execute function webhooks_private.tg_webhooks__notify_changed();
drop trigger if exists _900_notify_deleted on webhooks.webhooks;
create trigger _900_notify_deleted
  after delete on webhooks.webhooks
  for each row
  execute function webhooks_private.tg_webhooks__notify_changed();
