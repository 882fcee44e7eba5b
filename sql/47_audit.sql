-- bpd-webhooks engine: the audit trail and test sends.
--
-- webhooks.audit_log has one row for every change made to a webhook: created,
-- updated, deleted, disabled, enabled, secret rotated, deliveries replayed, a
-- backfill started or cancelled, a test sent. The rows are decided here, in the database, from the changes themselves:
-- triggers on webhooks.webhooks, webhooks.deliveries and webhooks.backfills write them whoever makes the
-- change (GraphQL, psql, the relay), so none can be skipped, and no API role may
-- write the table (trigger functions run as their owner, 60_access.sql).
--
-- A test send (webhooks.send_test_webhook) writes its row itself.
--
-- The actor is the token's subject (jwt.claims.sub) in an API request, else the
-- database role (webhooks_private.audit_actor, 05_caller.sql). A change the relay
-- makes (disabling a webhook whose receiver answered 410 Gone, or auto-disabling one
-- that keeps failing) is marked disabled_by = 'relay' and recorded with the actor
-- 'relay'. Grants and row-level security: 60_access.sql; GraphQL: 70_graphql.sql.
--
-- Public API: webhooks.audit_log (GraphQL: allAuditLogs, and the field auditLog of a
-- webhook), read by the company's admins and viewers under row-level security;
-- webhooks.send_test_webhook(id) (GraphQL: sendTestWebhook); webhooks.sample_contact()
-- (GraphQL: sampleContact), the contact a test sends.

-- private: append one row; a change made through the API (a request's company is
-- set) is one of its company's changes of the hour (charge_change)
create or replace function webhooks_private.audit(
  p_company_id bigint,
  p_webhook_id bigint,
  p_action     text,
  p_details    jsonb default '{}',
  p_actor      text default null
)
returns bigint
language plpgsql
volatile
as $$
declare
  v_id bigint;
begin
  if webhooks.current_company_id() is not null then
    perform webhooks_private.charge_change(p_company_id);
  end if;
  insert into webhooks.audit_log (company_id, webhook_id, actor, action, details)
  values (p_company_id, p_webhook_id, coalesce(p_actor, webhooks_private.audit_actor()), p_action, p_details)
  returning id into v_id;
  return v_id;
end;
$$;

-- private: one change of the company's allowance, webhooks.max_changes_per_hour
-- (02_settings.sql), as a bucket that holds an hour's changes and refills at that
-- rate: a burst of them at once, and no more than that many an hour for long. Every
-- change an admin makes is an audit row, and some write more (a test send writes a
-- delivery): without it a script changing webhooks in a loop, at the few ms a change
-- takes, would grow the database by millions of rows a day. A refusal rolls the
-- change back, its charge with it. Changes by DBAs and the relay are not counted.
-- The company's row is locked until the change commits: one company's changes go
-- one after the other, as its creations already do (10_config.sql).
create or replace function webhooks_private.charge_change(p_company_id bigint)
returns void
language plpgsql
volatile
as $$
declare
  v_per_hour constant integer := webhooks_private.integer_setting('webhooks.max_changes_per_hour');
  v_left double precision;
begin
  insert into webhooks_private.company_changes as c (company_id, tokens, at)
  values (p_company_id, v_per_hour - 1, now())
  on conflict (company_id) do update
    set tokens = least(v_per_hour, c.tokens + extract(epoch from now() - c.at) * v_per_hour / 3600.0) - 1,
        at = now()
  returning tokens into v_left;
  if v_left < 0 then
    raise exception using
      errcode = 'program_limit_exceeded',
      message = format('company %s made its %s changes to webhooks of this hour (webhooks.max_changes_per_hour): the next is allowed in %s s',
                       p_company_id, v_per_hour, ceil(-v_left * 3600.0 / v_per_hour)),
      constraint = 'company_changes_per_hour';
  end if;
end;
$$;

-- private: the settings of a webhook an admin chooses, as the audit shows them.
-- Everything but identity, bookkeeping and the enabled state (recorded as its own
-- action), so that settings added later (filters, limits) are recorded without change here.
create or replace function webhooks_private.audited_settings(p_webhook webhooks.webhooks)
returns jsonb
language sql
immutable
as $$
  select to_jsonb(p_webhook) - '{id,company_id,created_at,updated_at,version,enabled,disabled_at,disabled_by,disabled_reason,secret_rotated_at,deleted_filter_target}'::text[];
$$;

------------------------------------------------------------------------------------
-- Changes to a webhook

create or replace function webhooks_private.tg_webhooks__audit()
returns trigger
language plpgsql
as $$
declare
  v_old jsonb;
  v_new jsonb;
  v_changed jsonb;
begin
  if tg_op = 'INSERT' then
    perform webhooks_private.audit(new.company_id, new.id, 'webhook.created', webhooks_private.audited_settings(new));
    return null;
  end if;
  if tg_op = 'DELETE' then
    perform webhooks_private.audit(old.company_id, old.id, 'webhook.deleted',
      jsonb_build_object('name', old.name, 'url', old.url));
    return null;
  end if;

  v_old := webhooks_private.audited_settings(old);
  v_new := webhooks_private.audited_settings(new);
  select jsonb_object_agg(n.key, jsonb_build_object('from', v_old -> n.key, 'to', n.value))
  into v_changed
  from jsonb_each(v_new) n
  where n.value is distinct from v_old -> n.key;
  if v_changed is not null then
    perform webhooks_private.audit(new.company_id, new.id, 'webhook.updated', jsonb_build_object('changed', v_changed));
  end if;

  if old.enabled and not new.enabled then
    perform webhooks_private.audit(new.company_id, new.id, 'webhook.disabled',
      jsonb_strip_nulls(jsonb_build_object('reason', new.disabled_reason)),
      case when new.disabled_by = 'relay' then 'relay' end);
  elsif new.enabled and not old.enabled then
    perform webhooks_private.audit(new.company_id, new.id, 'webhook.enabled');
  end if;

  if new.secret_rotated_at is distinct from old.secret_rotated_at then
    perform webhooks_private.audit(new.company_id, new.id, 'webhook.secret_rotated',
      jsonb_build_object('previous_secret_valid_until', now() + webhooks_private.secret_grace()));
  end if;
  return null;
end;
$$;

drop trigger if exists _900_audit on webhooks.webhooks;
create trigger _900_audit
  after insert or update or delete on webhooks.webhooks
  for each row execute function webhooks_private.tg_webhooks__audit();

------------------------------------------------------------------------------------
-- Backfills (35_backfill.sql): started, and cancelled before they were done

create or replace function webhooks_private.tg_backfills__audit()
returns trigger
language plpgsql
as $$
begin
  if tg_op = 'INSERT' then
    perform webhooks_private.audit(new.company_id, new.webhook_id, 'webhook.backfill_started',
      jsonb_build_object('backfill_id', new.id));
  elsif old.state = 'running' and new.state = 'cancelled' then
    perform webhooks_private.audit(new.company_id, new.webhook_id, 'webhook.backfill_cancelled',
      jsonb_strip_nulls(jsonb_build_object('backfill_id', new.id, 'queued', new.queued, 'total', new.total)));
  end if;
  return null;
end;
$$;

drop trigger if exists _900_audit on webhooks.backfills;
create trigger _900_audit
  after insert or update of state on webhooks.backfills
  for each row execute function webhooks_private.tg_backfills__audit();

------------------------------------------------------------------------------------
-- Replays and test sends
--
-- A replay is the one change that puts a finished delivery back to pending (retries
-- and rescues start from in_flight). One transaction that replays many deliveries of
-- a webhook (replayFailed) makes one row that counts them, written once a statement
-- (write_replays below).

-- private: the setting that holds this transaction's replay row of a webhook
create or replace function webhooks_private.replay_audit_setting(p_webhook_id bigint)
returns text
language sql
immutable
as $$
  select 'webhooks.replay_audit_' || p_webhook_id;
$$;

-- private: the replays of this transaction's statement not yet written to the audit
-- trail, as jsonb text: for each webhook (its id a key) its company, how many, and
-- the first delivery ids
create or replace function webhooks_private.replays_unwritten_setting()
returns text
language sql
immutable
as $$
  select 'webhooks.replays_unwritten';
$$;

-- private: deliveries were replayed (taken from finished back to pending). The first
-- delivery ids are listed; the count says how many there were in
-- all. Noted in a transaction-local setting, and written by the statement's trigger
-- below once for each webhook: an update of the audit row for each delivery left a
-- version of it that every next update read past, and replayFailed's 1,000 read
-- 127,000 buffers for it at the third call of a session (154,000 in all, 2 to 4 s
-- under load; test/sql/replay-cost.test.ts). p_count deliveries of the webhook, the
-- first of them p_delivery_ids (as many of these as the list still has room for).
create or replace function webhooks_private.note_replays(p_company_id bigint, p_webhook_id bigint, p_count integer,
                                                        p_delivery_ids bigint[])
returns void
language plpgsql
as $$
declare
  v_unwritten jsonb := coalesce(nullif(current_setting(webhooks_private.replays_unwritten_setting(), true), '')::jsonb,
                                '{}');
  v_of_webhook jsonb := coalesce(v_unwritten -> p_webhook_id::text,
                                 jsonb_build_object('company_id', p_company_id, 'deliveries', 0, 'delivery_ids', '[]'::jsonb));
  v_listed constant integer := jsonb_array_length(v_of_webhook -> 'delivery_ids');
begin
  v_of_webhook := jsonb_build_object(
    'company_id', p_company_id,
    'deliveries', (v_of_webhook ->> 'deliveries')::integer + p_count,
    'delivery_ids', (v_of_webhook -> 'delivery_ids')
                    || coalesce(to_jsonb(p_delivery_ids[1:greatest(20 - v_listed, 0)]), '[]'::jsonb));
  perform pg_catalog.set_config(webhooks_private.replays_unwritten_setting(),
                                jsonb_set(v_unwritten, array[p_webhook_id::text], v_of_webhook)::text, true);
end;
$$;

-- (one delivery: the view's trigger below)
drop function if exists webhooks_private.tg_deliveries__audit_replay();
create or replace function webhooks_private.audit_replay(p_company_id bigint, p_webhook_id bigint, p_delivery_id bigint)
returns void
language sql
as $$
  select webhooks_private.note_replays(p_company_id, p_webhook_id, 1, array[p_delivery_id]);
$$;

-- private: the replays a statement made, written: one row per webhook and
-- transaction (the row's id kept in a transaction-local setting, like an issued
-- secret, 15_secrets.sql), added to by a later statement of the same transaction
create or replace function webhooks_private.write_replays()
returns void
language plpgsql
as $$
declare
  v_unwritten jsonb := nullif(current_setting(webhooks_private.replays_unwritten_setting(), true), '')::jsonb;
  v_webhook text;
  v_of_webhook jsonb;
  v_row_id bigint;
begin
  if v_unwritten is null or v_unwritten = '{}' then
    return;
  end if;
  perform pg_catalog.set_config(webhooks_private.replays_unwritten_setting(), '', true);
  for v_webhook, v_of_webhook in select e.key, e.value from jsonb_each(v_unwritten) e order by e.key::bigint loop
    v_row_id := nullif(current_setting(webhooks_private.replay_audit_setting(v_webhook::bigint), true), '')::bigint;
    if v_row_id is not null then
      update webhooks.audit_log a
      set details = jsonb_build_object(
            'deliveries', (a.details ->> 'deliveries')::integer + (v_of_webhook ->> 'deliveries')::integer,
            'delivery_ids', (select coalesce(jsonb_agg(i.id order by i.n), '[]')
                             from jsonb_array_elements((a.details -> 'delivery_ids') || (v_of_webhook -> 'delivery_ids'))
                                  with ordinality i(id, n)
                             where i.n <= 20))
      where a.id = v_row_id;
      continue when found;
    end if;
    v_row_id := webhooks_private.audit((v_of_webhook ->> 'company_id')::bigint, v_webhook::bigint, 'webhook.replayed',
      jsonb_build_object('deliveries', (v_of_webhook ->> 'deliveries')::integer,
                         'delivery_ids', v_of_webhook -> 'delivery_ids'));
    perform pg_catalog.set_config(webhooks_private.replay_audit_setting(v_webhook::bigint), v_row_id::text, true);
  end loop;
end;
$$;

-- Every write to the view webhooks.deliveries goes through its instead-of trigger
-- _500_write (22_outbox.sql); this one fires after it on an update, with the same
-- old and new rows, whoever replays through it (replay_delivery, a DBA's update;
-- replay_failed writes its own, below).
create or replace function webhooks_private.tg_deliveries__audit()
returns trigger
language plpgsql
as $$
begin
  if old.state in ('succeeded', 'failed') and new.state = 'pending' then
    perform webhooks_private.audit_replay(new.company_id, new.webhook_id, new.id);
  end if;
  return new;
end;
$$;

drop trigger if exists _900_audit on webhooks.deliveries;
create trigger _900_audit
  instead of update on webhooks.deliveries
  for each row execute function webhooks_private.tg_deliveries__audit();

-- once the statement's rows are written, its replays (the rows noted above)
create or replace function webhooks_private.tg_deliveries__write_replays()
returns trigger
language plpgsql
as $$
begin
  perform webhooks_private.write_replays();
  return null;
end;
$$;

drop trigger if exists _900_write_replays on webhooks.deliveries;
create trigger _900_write_replays
  after update on webhooks.deliveries
  for each statement execute function webhooks_private.tg_deliveries__write_replays();

-- private: failed deliveries of a webhook put back on their way (replay_failed below),
-- set by set: what the view's write trigger (_500_write, 22_outbox.sql) does for a
-- failed delivery written pending, one statement for each table. Their results are
-- deleted (their hours and days noted for counting again by that table's statement
-- trigger, 50_report_counts.sql) and their queue rows written in one statement, the
-- relay woken once and the replays noted and written to the audit trail once.
-- Through the view, each delivery was four trigger calls, a recount and a write of its
-- hour's count row (replayFailed's 1,000: 4,001 trigger calls; BENCHMARKS.md,
-- test/sql/replay-cost.test.ts). Only those still failed, of this webhook and
-- company, with no queue row, of the days kept and not left out for their payload's
-- size are taken; the rest are passed by. A delivery a concurrent replay took first
-- is not taken again: its result row, deleted by that replay, is waited for and then
-- gone. Returns those taken. As its owner (the admin writes no table of the outbox),
-- so for the request's company only: a session that switched role (the API's) must
-- name it (jwt.claims.company_id); a DBA's own session need not.
create or replace function webhooks_private.requeue_failed(p_webhook_id bigint, p_company_id bigint,
                                                          p_ids bigint[], p_created_at timestamptz[])
returns table (requeued_id bigint, requeued_created_at timestamptz)
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_first_kept constant timestamptz := webhooks_private.utc_day_start(webhooks_private.first_kept_day());
  v_ids bigint[];
  v_created_at timestamptz[];
  v_woken boolean;
begin
  if webhooks.current_company_id() is distinct from p_company_id
     and pg_catalog.current_setting('role') <> 'none' then
    perform webhooks_private.raise_not_found('webhook', p_webhook_id, 'webhook_id');
  end if;
  with taken as (
    delete from webhooks.delivery_results r
    using unnest(p_ids, p_created_at) k(id, created_at), webhooks.delivery_history h
    where r.delivery_id = k.id and r.created_at = k.created_at
      and r.webhook_id = p_webhook_id and r.company_id = p_company_id and r.state = 'failed'
      and r.created_at >= v_first_kept
      and h.id = r.delivery_id and h.created_at = r.created_at and h.webhook_id = r.webhook_id
      and not webhooks_private.payload_omitted(h.payload)
      and not exists (select from webhooks.delivery_queue q where q.delivery_id = r.delivery_id)
    returning h.id, h.created_at, h.webhook_id, h.company_id, h.action, h.contact_id,
              octet_length(h.payload::text) as payload_bytes,
              r.attempts, r.last_attempt_at, r.last_status_code, r.last_error),
  queued as (
    -- (as the view's write: in the lane of the id its contact has now)
    insert into webhooks.delivery_queue
      (delivery_id, created_at, webhook_id, company_id, action, contact_id, next_attempt_at, attempts,
       last_attempt_at, last_status_code, last_error, payload_bytes)
    select t.id, t.created_at, t.webhook_id, t.company_id, t.action,
           coalesce(webhooks_private.contact_id_now(t.contact_id, t.created_at), t.contact_id), now(), t.attempts,
           t.last_attempt_at, t.last_status_code, t.last_error, t.payload_bytes
    from taken t
    returning delivery_id, created_at)
  select array_agg(q.delivery_id order by q.created_at, q.delivery_id),
         array_agg(q.created_at order by q.created_at, q.delivery_id)
  into v_ids, v_created_at
  from queued q;
  if v_ids is null then
    return;
  end if;
  v_woken := webhooks_private.wake_relay();   -- 20_wakeup.sql
  perform webhooks_private.note_replays(p_company_id, p_webhook_id, cardinality(v_ids), v_ids[1:20]);
  perform webhooks_private.write_replays();
  return query select * from unnest(v_ids, v_created_at);
end;
$$;

-- public: send again the failed deliveries of a webhook created since a time, oldest
-- first, at most max_deliveries of them (replay_max_deliveries() unless given, and no
-- more): a call that returns that many may have left more, which the next call takes.
-- Not those never sent for their payload's size: replay_delivery refuses them one by one;
-- nor those older than the retention, which it refuses too. Here, after the audit
-- trail's functions, as it writes its replays itself (requeue_failed above).
drop function if exists webhooks.replay_failed(bigint, timestamptz);
create or replace function webhooks.replay_failed(webhook_id bigint, since timestamptz, max_deliveries integer default null)
returns setof webhooks.deliveries
language plpgsql
volatile
as $$
declare
  v_webhook webhooks.webhooks := webhooks_private.webhook_for_update(replay_failed.webhook_id, 'webhook_id');
  v_most constant integer := webhooks_private.replay_max_deliveries();
  v_ids bigint[];
  v_created_at timestamptz[];
begin
  if max_deliveries is not null and max_deliveries not between 1 and v_most then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('replayFailed replays from 1 to %s deliveries a call (maxDeliveries); call it again for more', v_most),
      constraint = 'replay_max_deliveries_range',
      column = 'max_deliveries';
  end if;
  perform webhooks_private.requested_times(since, null);   -- 22_outbox.sql
  perform webhooks_private.require_enabled(v_webhook);
  -- the failed ones from their result rows (22_outbox.sql: a delivery is failed when
  -- it has a failed result and no queue row), in the order of the results' index:
  -- a webhook that failed for days has hundreds of thousands, and the view would
  -- join and sort them all to take the first few
  select array_agg(f.delivery_id order by f.created_at, f.delivery_id),
         array_agg(f.created_at order by f.created_at, f.delivery_id)
  into v_ids, v_created_at
  from (select r.delivery_id, r.created_at
        from webhooks.delivery_results r
        where r.webhook_id = v_webhook.id and r.company_id = v_webhook.company_id
          -- (none of a day past the retention: it cannot go back on its way, 22_outbox.sql)
          and r.created_at >= greatest(since, webhooks_private.utc_day_start(webhooks_private.first_kept_day()))
          and r.state = 'failed'
          and not exists (select 1 from webhooks.delivery_queue q where q.delivery_id = r.delivery_id)
          and not exists (select 1 from webhooks.delivery_history h
                          where h.id = r.delivery_id and h.created_at = r.created_at
                            and webhooks_private.payload_omitted(h.payload))
        order by r.created_at, r.delivery_id
        limit coalesce(max_deliveries, v_most)) f;
  -- (read in a statement after the one that wrote them: one statement would read the
  -- view as it was before, failed)
  select array_agg(k.requeued_id), array_agg(k.requeued_created_at) into v_ids, v_created_at
  from webhooks_private.requeue_failed(v_webhook.id, v_webhook.company_id, v_ids, v_created_at) k;
  return query
    select d.*
    from unnest(v_ids, v_created_at) k(id, created_at)
    join webhooks.deliveries d on d.id = k.id and d.created_at = k.created_at
    order by d.created_at, d.id;
end;
$$;

-- public: the sample contact a test sends (id 0): a test sends its id and the
-- webhook's chosen fields (a column not listed here is sent as null). Its times are
-- written in UTC, as a firing's (webhooks_private.json_as_sent, 25_capture.sql):
-- jsonb_build_object writes a timestamptz in the session's TimeZone, and an API whose
-- database sets another zone sent "…-05:00" in a test where every firing has
-- "…+00:00" (until 2026-12-07; test/sql/capture-session-settings.test.ts).
create or replace function webhooks.sample_contact()
returns jsonb
language sql
stable
set timezone = 'UTC'
as $$
  select jsonb_build_object(
    'id', 0,
    'company_id', webhooks.current_company_id(),
    'first_name', 'Ada',
    'last_name', 'Lovelace',
    'email', 'ada.lovelace@example.com',
    'phone', '+1 555 010 0199',
    'street', '12 Analytical Way',
    'city', 'Springfield',
    'state', 'IL',
    'postal_code', '62701',
    'birthday', '1815-12-10',
    'custom', '{}'::jsonb,
    'created_at', now(),
    'updated_at', now());
$$;

-- private: the most test sends of one webhook on their way at once
create or replace function webhooks_private.max_test_sends_waiting()
returns integer
language sql
immutable
as $$
  select 10;
$$;

-- public: queue one signed test delivery (action and payload type webhook.test) to
-- the webhook, with the sample contact's chosen fields. It goes through the outbox
-- and the relay like any delivery and shows in the history; the report leaves it out
-- of Times Fired. It runs as its owner, to write the outbox and the audit trail that
-- the API roles may not write; so it finds the webhook among the caller's company's
-- own itself (row-level security does not apply to the owner), and only admins may
-- call it. (Its write to the view wakes a relay asleep: 22_outbox.sql.)
create or replace function webhooks.send_test_webhook(id bigint)
returns webhooks.deliveries
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_webhook webhooks.webhooks;
  v_sample constant jsonb := webhooks.sample_contact();
  v webhooks.deliveries;
begin
  select * into v_webhook from webhooks.webhooks w
  where w.id = send_test_webhook.id and w.company_id = webhooks.current_company_id()
  for update;
  if not found then
    perform webhooks_private.raise_not_found('webhook', send_test_webhook.id);
  end if;
  perform webhooks_private.require_enabled(v_webhook, 'sending a test', 'id');   -- 30_delivery.sql
  -- a bound on what test sends can queue: a receiver that does not answer keeps them
  -- retrying, and a script that sends tests in a loop would fill the outbox. Two
  -- short ranges of the queue's indexes (test sends are contact 0), pending and in
  -- flight; concurrent sends of one webhook wait for each other (the row lock above).
  if (select count(*) from webhooks.delivery_queue q
      where q.webhook_id = v_webhook.id and q.contact_id = 0 and q.locked_by is null and q.action = 'webhook.test')
     + (select count(*) from webhooks.delivery_queue q
        where q.webhook_id = v_webhook.id and q.contact_id = 0 and q.locked_by is not null and q.action = 'webhook.test')
     >= webhooks_private.max_test_sends_waiting() then
    raise exception using
      errcode = 'object_not_in_prerequisite_state',
      message = format('webhook %s has %s test sends on their way already: wait until one is delivered or fails',
                       v_webhook.id, webhooks_private.max_test_sends_waiting()),
      constraint = 'test_sends_waiting',
      column = 'id';
  end if;
  insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload)
  values (v_webhook.id, v_webhook.company_id, 'webhook.test', 0, jsonb_build_object(
    'type', 'webhook.test',
    'timestamp', to_char(now() at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'data', jsonb_build_object(
      'contact', (select jsonb_object_agg(f, v_sample -> f) from unnest('{id}'::text[] || v_webhook.fields) f),
      'source', 'test')))
  returning * into v;
  perform webhooks_private.audit(v.company_id, v.webhook_id, 'webhook.test',
    jsonb_build_object('delivery_id', v.id, 'message_id', v.message_id));
  return v;
end;
$$;

-- public: a webhook's audit trail, newest first (GraphQL: the field auditLog of a webhook)
create or replace function webhooks.webhooks_audit_log(w webhooks.webhooks)
returns setof webhooks.audit_log
language sql
stable
as $$
  select a.* from webhooks.audit_log a
  where a.webhook_id = w.id and a.company_id = w.company_id
  order by a.at desc, a.id desc;
$$;

------------------------------------------------------------------------------------
-- Retention of the trail: rows older than webhooks.audit_retention (02_settings.sql;
-- 400 days unless set) are removed by maintenance (tools/maintain.ts), at most
-- p_max_rows a call, each call its own short transaction. Until 2026-12-07 the trail
-- was kept for ever. The rows looked at are the trail's oldest by id (its key, in the
-- order they were written): at most p_max_rows of them, those among them past the
-- retention removed. A call that removes none (the oldest rows are within the
-- retention) has read p_max_rows entries of the key, never the whole trail; a row
-- written late in a long transaction (its time its transaction's start, its id a
-- later one) goes once the rows before it have gone. A DELETE takes no lock an API
-- write or read of the trail waits for (its new rows, its reads), and the rows it
-- removes are no one's to change. Returns how many it removed.
create or replace function webhooks.forget_audit_log(p_max_rows integer default 1000)
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_before constant timestamptz :=
    webhooks_private.clock() - webhooks_private.interval_setting('webhooks.audit_retention');
  v_removed integer;
begin
  if p_max_rows is null or p_max_rows < 1 or p_max_rows > 100000 then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('forget_audit_log: p_max_rows must be from 1 to 100000, got %s', coalesce(p_max_rows::text, 'null')),
      constraint = 'forget_audit_log_max_rows_range',
      column = 'p_max_rows';
  end if;
  with oldest as (
    select a.id, a.at from webhooks.audit_log a order by a.id limit p_max_rows
  )
  delete from webhooks.audit_log a
  using oldest o
  where a.id = o.id
    and o.at < v_before;
  get diagnostics v_removed = row_count;
  return v_removed;
end;
$$;
