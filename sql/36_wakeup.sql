-- bpd-webhooks engine, part 3c: waking the relay, without making writers wait.
--
-- A NOTIFY is cheap to send but costly to commit: Postgres serialises the commits of
-- all transactions that notify (they queue for one lock, held through the commit's
-- WAL flush). With a NOTIFY in every capturing transaction, contact writes that match
-- a webhook would commit one at a time (measured: 155 updates/s where they otherwise
-- reach 900 with the same durable settings). So a capturing transaction notifies
-- only when a relay is asleep and needs the wake-up; a relay that is awake finds the
-- delivery by itself. Two advisory locks make that exact, with no row to update:
--
--   relay_idle (key 'bpdw' 2)  held SHARED by every relay that is waiting for work,
--                              on its own connection, until it wakes.
--   capturing  (key 'bpdw' 1)  held SHARED by every transaction that wrote a
--                              delivery and did not notify, until it ends.
--
-- A relay falls asleep in three steps: it takes relay_idle (from then on every new
-- capturing transaction notifies); it checks that nobody holds capturing (every
-- transaction that skipped the NOTIFY has ended, so its rows are visible); it claims
-- once more. Only if that claim is empty does it wait for a NOTIFY. If capturing is
-- held, the relay looks again a moment later instead of sleeping. The poll timer
-- stays as a safety net.

-- private: called by capture after writing deliveries (at most once per transaction
-- it matters; the locks are re-entrant and cheap to take again).
create or replace function webhooks_private.wake_relay()
returns void
language plpgsql
as $$
begin
  if pg_try_advisory_xact_lock_shared(1651532919, 1) then   -- capturing
    -- no relay is between "going idle" and "asleep"; is one asleep?
    if pg_try_advisory_lock(1651532919, 2) then              -- relay_idle is free: all awake
      perform pg_advisory_unlock(1651532919, 2);
      return;
    end if;
  end if;
  perform pg_notify('bpd_webhooks', '');
end;
$$;

-- private (relay): announce that this connection's relay is going idle. Returns true
-- when no capturing transaction that skipped its NOTIFY is still open, i.e. one more
-- empty claim means the relay may sleep until a NOTIFY; false means "look again soon".
create or replace function webhooks_relay.going_idle()
returns boolean
language plpgsql
as $$
begin
  -- taken again if already held: awake() gives it up as often as it was taken
  perform pg_advisory_lock_shared(1651532919, 2);             -- relay_idle
  if pg_try_advisory_lock(1651532919, 1) then                 -- nobody is capturing
    perform pg_advisory_unlock(1651532919, 1);
    return true;
  end if;
  return false;
end;
$$;

-- private (relay): the relay on this connection is awake again.
create or replace function webhooks_relay.awake()
returns void
language plpgsql
as $$
begin
  while pg_advisory_unlock_shared(1651532919, 2) loop      -- relay_idle, as often as taken
  end loop;
end;
$$;

revoke all on function webhooks_relay.going_idle() from public;
revoke all on function webhooks_relay.awake() from public;

grant execute on function webhooks_relay.going_idle() to bpd_webhooks_relay;
grant execute on function webhooks_relay.awake() to bpd_webhooks_relay;
