-- bpd-webhooks engine: what operators' tools ask (ops/operations.ts).
--
-- The admin API and the relay answer /readyz and /metrics with two questions to the
-- database: "is it migrated to the version this code expects?" and "how big and how
-- old is the backlog?". Neither process's role may read the tables involved (the API
-- logs in as webhook_authenticator, the relay works as bpd_webhooks_relay), so each
-- question is one function that runs as its owner and answers counts only: no row,
-- no company, nothing a tenant wrote. They live in a schema of their own, which
-- PostGraphile does not show.
-- (The schema webhooks_ops: 00_schemas.sql; the grants: 60_access.sql. The third
-- question, which settings were refused: 02_settings.sql.)

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
-- of them has been due, in seconds (0 when none is). Walks the queue's index of rows
-- not in flight by webhook and due time (delivery_queue_webhook_due_idx, 22_outbox.sql)
-- as the claim does: one probe for each webhook with rows on their way, then the due
-- part of its range; retries waiting for a later attempt are not read.
create or replace function webhooks_ops.backlog(out due bigint, out oldest_due_seconds double precision)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select coalesce(sum(c.due), 0)::bigint,
         coalesce(extract(epoch from now() - min(c.oldest)), 0)::double precision
  from webhooks_private.waiting_webhooks() h
  cross join lateral (select count(*) as due, min(d.next_attempt_at) as oldest
                      from webhooks.delivery_queue d
                      where d.webhook_id = h.webhook_id and d.locked_by is null
                        and d.next_attempt_at <= now()) c
  where h.first_due <= now();
$$;
