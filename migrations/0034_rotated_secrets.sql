-- Up Migration
-- Each rotated-out signing secret keeps its own 24 hours (sql/15_secrets.sql). One
-- previous secret used to be kept: a second rotation within the 24 hours (the page's
-- advice when a new secret is lost before it is stored) ended the first one's at
-- once, and a receiver still on it failed every delivery.
create table if not exists webhooks_private.rotated_secrets (
  webhook_id bigint not null references webhooks.webhooks on delete cascade,
  secret     text not null check (secret like 'whsec_%'),
  expires_at timestamptz not null,
  primary key (webhook_id, secret)
);
-- (run again, as a migrate may after its record was lost, the columns are gone already)
do $move$
begin
  if exists (select from pg_catalog.pg_attribute a
             where a.attrelid = 'webhooks_private.webhook_secrets'::regclass
               and a.attname = 'previous_secret' and not a.attisdropped) then
    insert into webhooks_private.rotated_secrets (webhook_id, secret, expires_at)
    select s.webhook_id, s.previous_secret, s.previous_expires_at
    from webhooks_private.webhook_secrets s
    where s.previous_secret is not null and s.previous_expires_at > now()
    on conflict do nothing;
  end if;
end;
$move$;
alter table webhooks_private.webhook_secrets
  drop constraint if exists webhook_secrets_previous_pair,
  drop column if exists previous_secret,
  drop column if exists previous_expires_at;
