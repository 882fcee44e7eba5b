-- Up Migration
-- The fingerprint of the sql/ the last change of it replaced (tools/migrate.ts): in a
-- rolling upgrade, the processes of the release before still run against the database
-- the next release's migrate has changed, and /readyz (ops/operations.ts) keeps them
-- ready while that database is one step past their own, no further. Null until a
-- migrate replaces one sql/ with another.
alter table webhooks_private.sql_applied add column if not exists replaced text;
