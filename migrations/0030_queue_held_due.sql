-- Up Migration
-- An ordered webhook's delivery held back behind an earlier one of its contact (in
-- flight, or pending with a smaller id) is put off by the claim that finds it so, so
-- that later claims look past it to the webhook's other contacts; the settle that ends
-- the delivery in its way lets it go again at the time it had (sql/28_lanes.sql).
-- held_due is that time: when the delivery was due before it was put off (null: it
-- was not). Until now a claim stepped over held-back deliveries no further than
-- ordered_scan_rows(), and more of them than that held the other contacts back too.
alter table webhooks.delivery_queue add column if not exists held_due timestamptz;
do $$
begin
  if not exists (select 1 from pg_constraint
                 where conrelid = 'webhooks.delivery_queue'::regclass
                   and conname = 'delivery_queue_held_not_leased') then
    -- put off means waiting: a delivery leased is no longer held back
    alter table webhooks.delivery_queue
      add constraint delivery_queue_held_not_leased check (held_due is null or locked_by is null);
  end if;
end;
$$;
