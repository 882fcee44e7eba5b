-- bpd-webhooks engine: what operators' tools ask (ops/operations.ts).
--
-- The admin API and the relay answer /readyz and /metrics with two questions to the
-- database: "is it migrated to the version this code expects?" and "how big and how
-- old is the backlog?". Neither process's role may read the tables involved (the API
-- logs in as webhook_authenticator, the relay works as bpd_webhooks_relay), so each
-- question is one function that runs as its owner and answers counts only: no row,
-- no company, nothing a tenant wrote. They live in a schema of their own, which
-- PostGraphile does not show.
-- (The schema webhooks_ops: 00_schemas.sql; the grants: 60_access.sql.)

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

-- Deliveries due now (pending, next attempt reached) and how long the longest-waiting
-- of them has been due, in seconds (0 when none is). Reads the queue's partial index
-- of rows not in flight (delivery_queue_due_idx, 22_outbox.sql) only.
create or replace function webhooks_ops.backlog(out due bigint, out oldest_due_seconds double precision)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select count(*),
         coalesce(extract(epoch from now() - min(next_attempt_at)), 0)::double precision
  from webhooks.delivery_queue
  where locked_by is null and next_attempt_at <= now();
$$;
