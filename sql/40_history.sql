-- bpd-webhooks engine: history for DBAs.
--
-- public: webhooks.fire_history, one row per firing (message) with its outcome so far.
-- security_invoker: whoever queries it sees only the rows their own grants and
-- row-level security allow on the tables beneath.
drop view if exists webhooks.fire_history;
create view webhooks.fire_history with (security_invoker = true) as
select d.id               as delivery_id,
       d.message_id,
       d.webhook_id,
       w.name             as webhook_name,
       w.company_id,
       d.action,
       d.contact_id,
       d.created_at,
       d.state,
       d.attempts,
       d.last_status_code,
       d.last_error,
       d.completed_at
from webhooks.deliveries d
join webhooks.webhooks w on w.id = d.webhook_id;

comment on view webhooks.fire_history is
  'Every webhook firing (one row per message) with its delivery state. For DBAs: query with psql.';
