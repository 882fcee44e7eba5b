-- Up Migration
-- A test send (webhooks.send_test_webhook, sql/47_audit.sql) is a delivery like any
-- other (same outbox, same relay, same history), told apart by its action. A new enum
-- value can be used only once committed: it has a migration of its own, and
-- 0008 uses it.
alter type webhooks.action add value if not exists 'webhook.test';
