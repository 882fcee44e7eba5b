-- Up Migration
-- Tokens revoked before they expire (sql/48_tokens.sql; docs/operations.md, "Revoking
-- tokens"): a token's signature stays good until its exp, and a leaked admin token
-- stayed good with it. A row is either every token of a company (subject '') or of one
-- subject of it issued up to issued_before, or one token by its id (jti), kept until
-- the token expires. The version is the one row the API reads each second: the
-- revocations are read again only when it has moved. Re-runnable.
create table if not exists webhooks_private.token_revocations (
  company_id    bigint not null,
  -- '' for every subject of the company; a jti revocation's is the token's subject
  subject       text not null default '',
  -- a token's id, or '' for a revocation by company or subject
  jti           text not null default '',
  -- a token issued at or before it (its iat, whole seconds) is refused
  issued_before timestamptz not null,
  -- a revocation by id: when the token expires (then the row is of no use)
  expires_at    timestamptz,
  revoked_at    timestamptz not null default now(),
  revoked_by    text not null,
  primary key (company_id, subject, jti)
);
create table if not exists webhooks_private.token_revocations_version (
  one     boolean primary key default true check (one),
  version bigint not null
);
insert into webhooks_private.token_revocations_version (version) values (0) on conflict do nothing;
