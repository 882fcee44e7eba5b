-- Up Migration
-- An attempt's key leads with its company: (company_id, id, delivery_created_at). It
-- serves what delivery_attempts_company_idx (company_id, id) served, the admin API's
-- company-wide lists, and every lookup of an attempt by id, which row-level security
-- (sql/60_access.sql) always pairs with the company. One index fewer: every attempt
-- the relay records writes two index entries, not three (about 75 bytes of WAL less
-- per delivery, docs/outbox.md). The key the distributed plan of docs/scaling.md asks
-- for, too. A DBA who looks an attempt up by id alone should look it up by its
-- delivery (delivery_attempts_delivery_idx) or name the company.
-- Builds the key on every partition: on a large history this holds the table for the
-- length of that build (the relay's settles wait); run it in a quiet hour.
-- (Once only: test/sql/migrate-day-counts.test.ts runs the migrations from 0021 on again.)
do $$
begin
  if (select array_agg(a.attname::text order by k.n)
      from pg_constraint c
      cross join unnest(c.conkey) with ordinality as k(attnum, n)
      join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.attnum
      where c.conrelid = 'webhooks.delivery_attempts'::regclass and c.conname = 'delivery_attempts_pkey')
     is distinct from array['company_id', 'id', 'delivery_created_at'] then
    alter table webhooks.delivery_attempts drop constraint if exists delivery_attempts_pkey;
    alter table webhooks.delivery_attempts add constraint delivery_attempts_pkey
      primary key (company_id, id, delivery_created_at);
  end if;
end;
$$;
drop index if exists webhooks.delivery_attempts_company_idx;
