// What one company's work and the engine's periodic work read as the companies grow
// (issue #11, docs/scaling.md): a contact write, a webhook made, changed and deleted,
// the rescuer's and the backfiller's runs, maintenance's roll-up, and the upkeep
// figures of /metrics. Each is measured
// by the buffers it reads (pg_statio_user_tables, heap and index, every table), once
// beside a small fleet and again beside one six times as large: each read the same
// (2026-12-07, 500 and 3,000 companies of three webhooks, each company with one
// delivery retrying later). A path that read anything per other company or webhook
// would read thousands more beside the larger fleet. Not here: the backlog figure,
// which reads the queue's waiting rows up to its cap by design
// (test/sql/backlog.test.ts), and the claim, whose discovery reads a window of the
// webhooks with deliveries waiting (claim-cost.test.ts), and whose relay walks them
// all, window by window, when a window finds nothing (retrying-companies.test.ts).
// The counts are the database's, not the session's: nothing else may add to them while
// a statement is measured (settled(), and autovacuum kept off the tables).
import test from 'ava';
import pg from 'pg';
import { useTestDatabase } from '../helpers/db.ts';

const db = useTestDatabase(test);

const WEBHOOKS_EACH = 3;
const SMALL_FLEET = 500;
const LARGE_FLEET = 3_000;

/** Companies of the fleet, each with its webhooks and one delivery retrying in an hour. */
async function addFleet(session: pg.ClientBase, companies: number): Promise<void> {
  const { rows: [{ first }] } = await session.query(
    `with made as (insert into crm.companies (name) select 'Fleet ' || n from generate_series(1, $1::int) n returning id)
     select min(id) as first from made`, [companies]);
  await session.query(
    `insert into webhooks.webhooks (company_id, name, url, fields, actions)
     select c.id, 'Hook ' || i, 'https://receiver.example.com/' || c.id || '/' || i, '{first_name}', '{contact.created,contact.updated}'
     from crm.companies c, generate_series(1, $2::int) i where c.id >= $1`, [first, WEBHOOKS_EACH]);
  await session.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, next_attempt_at)
     select min(w.id), w.company_id, 'contact.deleted', 1, '{}', now() + interval '1 hour'
     from webhooks.webhooks w where w.company_id >= $1 group by w.company_id`, [first]);
  await session.query('vacuum analyze');
  // (the roll-up's first run notes where it may count from, the next goes through
  // every webhook once: measured after both, as a roll-up runs every few minutes)
  await session.query('call webhooks.roll_up_report_counts()');
  await session.query('call webhooks.roll_up_report_counts()');
}

/** A company of its own, with webhooks that want contact.created, and one whose webhook wants none of its writes. */
async function measuredCompanies(session: pg.ClientBase): Promise<{ matching: string; notMatching: string }> {
  const { rows: [{ matching, not_matching: notMatching }] } = await session.query(
    `with m as (insert into crm.companies (name) values ('Measured') returning id),
          n as (insert into crm.companies (name) values ('Measured, no match') returning id)
     select m.id as matching, n.id as not_matching from m, n`);
  await session.query(
    `insert into webhooks.webhooks (company_id, name, url, fields, actions)
     select $1, 'Hook ' || i, 'https://receiver.example.com/measured/' || i, '{first_name}', '{contact.created,contact.updated}'
     from generate_series(1, $2::int) i`, [matching, WEBHOOKS_EACH]);
  await session.query(
    `insert into webhooks.webhooks (company_id, name, url, fields, actions)
     values ($1, 'Deletions', 'https://receiver.example.com/measured/deletions', '{first_name}', '{contact.deleted}')`, [notMatching]);
  return { matching, notMatching };
}

/**
 * A session's reads reach the statistics when it is next idle, unless it flushed less
 * than a second before: then up to 10 s later (Postgres's idle stats timeout). The
 * fleet's inserts read 60,000 buffers beside 3,000 companies: counted late, they landed
 * inside a later measurement ("a webhook changed": 96 buffers, once 61,616, the sum of
 * the deliveries' insert and the vacuum after it). So the setup runs in a session of its
 * own that flushes, waiting, before anything is measured.
 */
async function settled(session: pg.ClientBase): Promise<void> {
  await session.query('select pg_stat_force_next_flush()');
  await session.query('select 1');
}

/** Buffers read by every table, as the statistics have them now. */
async function buffersRead(url: string): Promise<number> {
  const reader = new pg.Client({ connectionString: url });
  await reader.connect();
  try {
    const { rows: [{ n }] } = await reader.query(
      `select sum(coalesce(heap_blks_hit, 0) + coalesce(heap_blks_read, 0)
                + coalesce(idx_blks_hit, 0) + coalesce(idx_blks_read, 0))::bigint as n
       from pg_statio_user_tables`);
    return Number(n);
  } finally {
    await reader.end();
  }
}

type Work = (session: pg.Client) => Promise<unknown>;

/** The buffers the second of two runs of work reads (the first plans its statements and warms the caches). */
async function readsOf(url: string, work: Work): Promise<number> {
  const session = new pg.Client({ connectionString: url });
  await session.connect();
  // (a session's counts reach the statistics when it is next idle, once asked to)
  const flushed = async () => {
    await session.query('select pg_stat_force_next_flush()');
    await session.query('select 1');
  };
  try {
    await work(session);
    await flushed();
    const before = await buffersRead(url);
    await work(session);
    await flushed();
    return (await buffersRead(url)) - before;
  } finally {
    await session.end();
  }
}

function operations({ matching, notMatching }: { matching: string; notMatching: string }): Record<string, Work> {
  return {
    'a contact written, matching the company\'s webhooks': (s) =>
      s.query(`insert into crm.contacts (company_id, first_name) values ($1, 'Ada')`, [matching]),
    'a contact written, matching none': (s) =>
      s.query(`insert into crm.contacts (company_id, first_name) values ($1, 'Ada')`, [notMatching]),
    'a webhook made': (s) =>
      s.query(`insert into webhooks.webhooks (company_id, name, url, fields, actions)
               values ($1, 'Made', 'https://receiver.example.com/made', '{first_name}', '{contact.created}')`, [matching]),
    'a webhook changed': (s) =>
      s.query(`update webhooks.webhooks set url = url || 'a', enabled = not enabled
               where id = (select max(id) from webhooks.webhooks where company_id = $1)`, [matching]),
    'a webhook deleted': (s) =>
      s.query(`delete from webhooks.webhooks where id = (select max(id) from webhooks.webhooks where company_id = $1 and name = 'Made')`,
              [matching]),
    'the rescuer\'s run': (s) => s.query('select webhooks_relay.rescue_expired_leases()'),
    'the backfiller\'s step': (s) => s.query('select * from webhooks_relay.backfill_step_waiting()'),
    'the roll-up of report counts': (s) => s.query('call webhooks.roll_up_report_counts()'),
    'the upkeep figures of /metrics': (s) => s.query('select * from webhooks_ops.upkeep()'),
  };
}

test.serial(`one company's writes and the periodic work read no more beside ${LARGE_FLEET} companies than beside ${SMALL_FLEET}`, async (t) => {
  const { pool, url } = db();
  // (an autovacuum worker's reads are counted too: a few thousand buffers for a table)
  const setup = await pool.connect();
  await setup.query(`do $$
    declare r record;
    begin
      for r in select c.oid::regclass as t from pg_class c join pg_namespace n on n.oid = c.relnamespace
               where c.relkind in ('r', 'm') and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg_toast%'
      loop
        execute format('alter table %s set (autovacuum_enabled = false)', r.t);
      end loop;
    end $$`);
  try {
    const measure = async () => {
      const companies = await measuredCompanies(setup);
      await settled(setup);
      const reads: Record<string, number> = {};
      for (const [name, work] of Object.entries(operations(companies))) reads[name] = await readsOf(url, work);
      return reads;
    };
    await addFleet(setup, SMALL_FLEET);
    const small = await measure();
    await addFleet(setup, LARGE_FLEET - SMALL_FLEET);
    const large = await measure();
    for (const name of Object.keys(small)) {
      t.log(`${name}: ${small[name]} buffers beside ${SMALL_FLEET} companies, ${large[name]} beside ${LARGE_FLEET}`);
      // (a few buffers either way: a page split, an index one level deeper; a read per
      // other company would be thousands)
      t.true(large[name]! <= small[name]! * 1.25 + 20, `${name}: ${small[name]} → ${large[name]} buffers`);
    }
  } finally {
    setup.release();
  }
  const { rows: [{ waiting }] } = await pool.query(`select count(*)::int as waiting from webhooks.delivery_queue where locked_by is null`);
  t.true(waiting >= LARGE_FLEET, 'every company of the fleet had a delivery waiting');
});
