-- Up Migration
-- A signing secret is what webhooks_private.new_secret() makes (sql/15_secrets.sql):
-- "whsec_" and the base64 of 32 random bytes, 44 characters whose last is "=" (and
-- the one before it one of the 16 that carry no bits past the 32 bytes). The tables
-- checked only like 'whsec_%', which let a secret written by hand through that cannot
-- sign, "whsec_" alone (the relay fails such an attempt: docs/relay.md). These checks
-- say exactly the form, and are its one statement: the engine makes no other.
-- NOT VALID: a secret written by hand before may not pass, and stays until the
-- webhook's secret is rotated (which does not keep it: sql/15_secrets.sql); every row
-- written from now on, inserted or updated, is checked.
alter table webhooks_private.webhook_secrets
  drop constraint if exists webhook_secrets_secret_check,
  drop constraint if exists webhook_secrets_secret_form;
alter table webhooks_private.webhook_secrets
  add constraint webhook_secrets_secret_form
  check (secret ~ '^whsec_[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$') not valid;
alter table webhooks_private.rotated_secrets
  drop constraint if exists rotated_secrets_secret_check,
  drop constraint if exists rotated_secrets_secret_form;
alter table webhooks_private.rotated_secrets
  add constraint rotated_secrets_secret_form
  check (secret ~ '^whsec_[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$') not valid;
