-- Up Migration
-- A webhook's version: 1 when made, one more at each write that changes it
-- (webhooks_private.tg_webhooks__skip_unchanged, sql/10_config.sql). An editor reads
-- it with the webhook and gives it back with its change (update_webhook's
-- expected_version, sql/45_admin.sql), refused if another change came between: two
-- admins saving the same webhook, the second overwrote the first without a word.
-- A constant default: no table rewrite. Re-runnable.
alter table webhooks.webhooks add column if not exists version integer not null default 1;
