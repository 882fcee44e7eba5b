-- Up Migration
-- Backfill (#13): a webhook receives every contact its company already has, as one
-- contact.snapshot delivery each (sql/35_backfill.sql).

-- The action of a snapshot. No webhook subscribes to it (configuration refuses it in
-- actions): backfill alone writes it, to the one webhook being backfilled.
alter type webhooks.action add value if not exists 'contact.snapshot';

-- One row per backfill: its progress, and where it has got to. position is the keyset
-- of the walk: the highest contact id examined so far, written in the same
-- transaction as the deliveries of that batch, so a restart of anything resumes
-- exactly after the last batch committed (nothing missed, nothing twice).
create table webhooks.backfills (
  id          bigint generated always as identity primary key,
  webhook_id  bigint not null references webhooks.webhooks on delete cascade,
  company_id  bigint not null,
  state       text not null default 'running',
  -- contacts to send: counted by the first step (null until then); once done, what
  -- was sent (contacts created or deleted meanwhile make the count move)
  total       bigint,
  -- snapshot deliveries written so far
  queued      bigint not null default 0,
  position    bigint not null default 0,
  created_by  text,
  created_at  timestamptz not null default now(),
  finished_at timestamptz,
  constraint backfills_state_known check (state in ('running', 'done', 'cancelled')),
  constraint backfills_finished_iff_ended check ((state = 'running') = (finished_at is null)),
  constraint backfills_counts_nonnegative check (queued >= 0 and position >= 0 and (total is null or total >= 0)),
  constraint backfills_done_counted check (state <> 'done' or total = queued)
);
-- one backfill of a webhook at a time
create unique index backfills_one_running_idx on webhooks.backfills (webhook_id) where state = 'running';
create index backfills_webhook_idx on webhooks.backfills (webhook_id, created_at desc);
-- the runner's question, "which backfills are running?"
create index backfills_running_idx on webhooks.backfills (id) where state = 'running';

-- The walk reads a company's contacts in id order, a batch at a time, from where it
-- stopped: one index range per batch (the CRM's index on company_id alone would make
-- each batch read and sort all the company's remaining contacts).
create index if not exists contacts_company_id_id_idx on crm.contacts (company_id, id);
