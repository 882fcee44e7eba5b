-- Up Migration
-- The audit trail (sql/47_audit.sql writes it) and test sends (action webhook.test, 0007).

-- Who changed what about a webhook, when. Rows are written by triggers and by the
-- admin functions running as the table's owner; no API role may write here.
-- webhook_id and company_id carry no foreign key: the trail outlives the webhook
-- (its deletion is the last row about it) and is written while a company's
-- webhooks are being deleted with it.
create table webhooks.audit_log (
  id         bigint generated always as identity primary key,
  at         timestamptz not null default now(),
  company_id bigint not null,
  webhook_id bigint not null,
  actor      text not null,
  action     text not null,
  details    jsonb not null default '{}',
  constraint audit_log_action_known check (action in (
    'webhook.created', 'webhook.updated', 'webhook.deleted',
    'webhook.disabled', 'webhook.enabled', 'webhook.secret_rotated',
    'webhook.replayed', 'webhook.backfill_started', 'webhook.backfill_cancelled',
    'webhook.test'))
);
create index audit_log_webhook_idx on webhooks.audit_log (webhook_id, at desc, id desc);
create index audit_log_company_idx on webhooks.audit_log (company_id, at desc, id desc);

-- A test send's action (0007) is never a webhook's subscription.
alter table webhooks.webhooks add constraint webhook_actions_contact_only
  check (not (actions::text[] @> '{webhook.test}'));

-- The report leaves test sends out of Times Fired: it counts them apart and takes
-- them off, from this small index.
create index deliveries_tests_idx on webhooks.deliveries (webhook_id, created_at) include (state)
  where action = 'webhook.test';
