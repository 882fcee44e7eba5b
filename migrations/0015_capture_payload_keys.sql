-- Up Migration
-- A subscription row carries the contact keys its webhook's payload may hold (id and
-- the chosen fields), beside payload_omit: capture checks every payload against them,
-- so a column the CRM adds to crm.contacts reaches no webhook that did not choose it,
-- whether or not sql/ was applied again since (sql/25_capture.sql).
alter table webhooks_private.subscriptions add column payload_keys text[];
update webhooks_private.subscriptions s
  set payload_keys = '{id}' || array_remove(w.fields, 'id')
  from webhooks.webhooks w
  where w.id = s.webhook_id;
update webhooks_private.subscriptions set payload_keys = '{id}' where payload_keys is null;
alter table webhooks_private.subscriptions alter column payload_keys set not null;
