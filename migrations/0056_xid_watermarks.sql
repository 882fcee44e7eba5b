-- Up Migration
-- The transaction id of each run of the report's roll-up (sql/50_report_counts.sql)
-- with its clock: a transaction whose id is below next_xid had its id (so had
-- written) before at. The roll-up counts an hour only once every transaction of the database
-- that wrote before a time after it has ended (roll_up_bounds), which it can tell from
-- transaction ids whatever the writer's role: pg_stat_activity shows another role's
-- transaction start only to superusers and pg_read_all_stats. Kept: the rows a run
-- may still need (xid_watermarks_kept).
create table if not exists webhooks_private.xid_watermarks (
  next_xid xid8 primary key,
  at timestamptz not null
);
