// The views a DBA reads in psql (docs/sql.md, "Reading fire history"): `\d+` says what
// each column means, in the words the rows use, and the columns one joins on are of
// one type across the views and tables they are joined with.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { utcDay } from '../helpers/days.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

/** The DBAs' own views: out of GraphQL, read in psql, where `\d+` is all the help there is. */
const DBA_VIEWS = ['webhooks.fire_history', 'webhooks.daily_counts'];

/** What webhooks.deliveries.state may be (22_outbox.sql), and so fire_history's. */
const STATES = ['pending', 'in_flight', 'succeeded', 'failed'];

async function columnComments(view: string): Promise<Record<string, string | null>> {
  const { rows } = await db().pool.query(
    `select a.attname, col_description(a.attrelid, a.attnum) as comment
     from pg_attribute a where a.attrelid = $1::regclass and a.attnum > 0 and not a.attisdropped order by a.attnum`, [view]);
  return Object.fromEntries(rows.map((r) => [r.attname, r.comment]));
}

test("every column of the DBAs' views has a comment in \\d+", async (t) => {
  for (const view of DBA_VIEWS) {
    const comments = await columnComments(view);
    t.deepEqual(Object.keys(comments).filter((column) => !comments[column]?.trim()), [], view);
  }
});

test("fire_history's state names each state its rows take; the days of daily_counts and of history say they are UTC days", async (t) => {
  const history = await columnComments('webhooks.fire_history');
  for (const state of STATES) t.regex(history.state ?? '', new RegExp(`\\b${state}\\b`), `fire_history.state names ${state}`);
  // a DBA in another time zone asks for "yesterday" by the UTC day, not current_date
  t.regex(history.created_at ?? '', /\bUTC\b/);
  const counts = await columnComments('webhooks.daily_counts');
  t.regex(counts.day ?? '', /\bUTC day\b/);
  // what a day's fired leaves out, and what a coalesced burst counts
  t.regex(counts.fired ?? '', /webhook\.test/);
  t.regex(counts.fired ?? '', /coalesce/i);
});

test('the columns a DBA joins on are of one type across the views and tables of webhooks', async (t) => {
  const { rows } = await db().pool.query(`
    select a.attname as column, string_agg(distinct format_type(a.atttypid, a.atttypmod), ', ') as types
    from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'webhooks' and c.relkind in ('r', 'p', 'v') and not c.relispartition and a.attnum > 0 and not a.attisdropped
      and a.attname in ('company_id', 'webhook_id', 'contact_id', 'delivery_id', 'message_id', 'created_at', 'completed_at', 'day', 'state')
    group by a.attname order by a.attname`);
  t.deepEqual(Object.fromEntries(rows.map((r) => [r.column, r.types])), {
    company_id: 'bigint',
    completed_at: 'timestamp with time zone',
    contact_id: 'bigint',
    created_at: 'timestamp with time zone',
    day: 'date',
    delivery_id: 'bigint',
    message_id: 'text',
    state: 'text',
    webhook_id: 'bigint',
  });
  // and the CRM's keys they name
  const { rows: crm } = await db().pool.query(`
    select c.relname, format_type(a.atttypid, a.atttypmod) as type from pg_attribute a join pg_class c on c.oid = a.attrelid
    where c.oid in ('crm.companies'::regclass, 'crm.contacts'::regclass) and a.attname = 'id' order by 1`);
  for (const { relname, type } of crm) t.true(['bigint', 'integer'].includes(type), `crm.${relname}.id is ${type}`);
});

test("in a session of America/New_York, docs/sql.md's UTC day of fire_history and daily_counts agree, where dates written alone are New York's", async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  // three firings of yesterday (UTC) before 05:00, still the day before in New York, and two after
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     select $1, $2, 'contact.created', n, '{}', 'succeeded', 1, now(), $3::timestamptz + n * interval '1 hour'
     from unnest(array[1, 2, 3, 10, 20]) n`, [hook.id, company.id, utcDay(-1).toISOString()]);
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await client.query(`set time zone 'America/New_York'`);
  try {
    const yesterday = utcDay(-1).toISOString().slice(0, 10);
    const today = utcDay(0).toISOString().slice(0, 10);
    const { rows: [counts] } = await client.query(
      `select day::text, fired from webhooks.daily_counts where webhook_id = $1 and day = (now() at time zone 'utc')::date - 1`, [hook.id]);
    t.deepEqual(counts, { day: yesterday, fired: '5' });
    const { rows: [utc] } = await client.query(
      `select count(*)::int as n from webhooks.fire_history
       where webhook_id = $1 and created_at >= '${yesterday}T00:00Z' and created_at < '${today}T00:00Z'`, [hook.id]);
    t.is(utc.n, 5);
    // (dates written alone are New York's midnights, 05:00 UTC: the two after it)
    const { rows: [local] } = await client.query(
      `select count(*)::int as n from webhooks.fire_history
       where webhook_id = $1 and created_at >= '${yesterday}' and created_at < '${today}'`, [hook.id]);
    t.is(local.n, 2);
  } finally {
    await client.query('reset time zone');
  }
});
