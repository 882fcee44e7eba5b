-- bpd-webhooks engine, part 3b: the relay's database role.
--
-- bpd_webhooks_relay may do exactly what the relay does, through the functions of
-- schema webhooks_relay (claim, settle, release and rescue in 30_delivery.sql, the idle
-- announcements in 36_wakeup.sql), and nothing else: no grant on any table and no use
-- of the other schemas, so it can neither read contacts nor change a webhook's
-- configuration. It is NOLOGIN: the relay connects as whatever user DATABASE_URL
-- names and switches to this role for its work (the role setting at connection
-- start), so that user must be a member of it:
--   GRANT bpd_webhooks_relay TO my_relay_login;
-- Its LISTEN connection needs no grant at all.
--
-- Roles belong to the whole cluster, not to one database; creating it is idempotent
-- and safe when two migrations of one cluster race.
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'bpd_webhooks_relay') then
    create role bpd_webhooks_relay nologin;
  end if;
exception
  when duplicate_object or unique_violation then null;
end;
$$;

grant usage on schema webhooks_relay to bpd_webhooks_relay;

-- Functions are executable by PUBLIC unless revoked: the relay's entry points are
-- for the relay alone.
revoke all on function webhooks_relay.claim_deliveries(text, integer, interval, integer, bigint[], integer[], bigint[], integer) from public;
revoke all on function webhooks_relay.settle_deliveries(text, bigint[], integer[], timestamptz[], integer[], integer[], text[], text[], integer[]) from public;
revoke all on function webhooks_relay.rescue_expired_leases(integer) from public;
revoke all on function webhooks_relay.release_deliveries(text, bigint[]) from public;

grant execute on function webhooks_relay.claim_deliveries(text, integer, interval, integer, bigint[], integer[], bigint[], integer) to bpd_webhooks_relay;
grant execute on function webhooks_relay.settle_deliveries(text, bigint[], integer[], timestamptz[], integer[], integer[], text[], text[], integer[]) to bpd_webhooks_relay;
grant execute on function webhooks_relay.rescue_expired_leases(integer) to bpd_webhooks_relay;
grant execute on function webhooks_relay.release_deliveries(text, bigint[]) to bpd_webhooks_relay;
