-- Up Migration
-- A running backfill's contacts whose id changed across its walk's position
-- (sql/35_backfill.sql): examined already under an id behind the position and now
-- ahead of it (examined = true: the walk passes the new id over), or not examined yet
-- and now behind it (examined = false: the next step examines it there). Without
-- these, such a contact got its snapshot twice, or never. Rows live while their
-- backfill runs.
create table if not exists webhooks_private.backfill_renumbered (
  backfill_id bigint not null references webhooks.backfills on delete cascade,
  contact_id  bigint not null,
  examined    boolean not null,
  primary key (backfill_id, contact_id)
);
