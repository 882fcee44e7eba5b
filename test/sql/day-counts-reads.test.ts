// webhooks.daily_counts outlives the history: its day counts are kept for every
// webhook and day for ever, so a question of one company's totals (docs/sql.md,
// "Company 7's totals for a year?") must read that company's counts, not every
// company's of every year. Its own file: its statistics would change other files' plans.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { rowsRead, roundingSlack } from '../helpers/plans.ts';

const db = useTestDatabase(test);

const COMPANIES = 40;
const WEBHOOKS = 5;
const DAYS = 365;

/** COMPANIES companies named `name n`, WEBHOOKS webhooks each, and a year of days long past counted by the roll-up for each: 7 fired, 6 succeeded, 1 failed. */
async function yearOfCounts(name: string): Promise<string[]> {
  const { rows: companies } = await db().pool.query(
    `insert into crm.companies (name) select $2 || ' ' || n from generate_series(1, $1::int) n returning id`, [COMPANIES, name]);
  const ids = companies.map((c) => c.id as string);
  await db().pool.query(
    `insert into webhooks.webhooks (company_id, name, url, fields, actions)
     select c, 'Hook ' || n, 'https://example.com/hook', '{first_name}', '{contact.created}'
     from unnest($1::bigint[]) c, generate_series(1, $2::int) n`, [ids, WEBHOOKS]);
  await db().pool.query(
    `insert into webhooks.delivery_day_counts (webhook_id, company_id, day, fired, succeeded, failed)
     select w.id, w.company_id, current_date - 10 - d, 7, 6, 1
     from webhooks.webhooks w, generate_series(0, $2::int - 1) d where w.company_id = any ($1)`, [ids, DAYS]);
  await db().pool.query('analyze webhooks.delivery_day_counts');
  return ids;
}

// (serial: the second counts every company's rows of a day, which the first writes too)
test.serial("a company's totals for a year read its own day counts by an index, not every company's", async (t) => {
  const ids = await yearOfCounts('Counted');

  const company = ids[7]!;
  // (docs/sql.md's question, as written but for its company)
  const sql = `select day, sum(fired), sum(succeeded), sum(failed), sum(pending) from webhooks.daily_counts
               where company_id = ${Number(company)} and day >= current_date - 400 group by day order by day`;
  const { rows } = await db().pool.query({ text: sql, rowMode: 'array' });
  t.is(rows.length, DAYS);
  t.deepEqual(rows[0].slice(1), [7, 6, 1, 0].map((n) => String(n * WEBHOOKS)));

  const { rows: [{ 'QUERY PLAN': [explained] }] } = await db().pool.query(`explain (analyze, format json) ${sql}`);
  const read = rowsRead(explained.Plan).get('delivery_day_counts') ?? 0;
  const slack = roundingSlack(explained.Plan).get('delivery_day_counts') ?? 0;
  t.true(read <= WEBHOOKS * DAYS + slack, `day count rows read: ${read}, of the company's ${WEBHOOKS * DAYS} and ${COMPANIES * WEBHOOKS * DAYS} in all`);
});

// A DBA's "how many fired yesterday, everywhere?" (docs/sql.md): one day of every
// company reads that day's counts by an index on the day (0107_day_counts_by_day),
// not every day of every company (it read all 73,000 rows here for 200).
test.serial("every company's totals for one day read that day's counts by an index, not every day's", async (t) => {
  await yearOfCounts('Day');

  // (docs/sql.md's question, as written but for its day)
  const sql = 'select sum(fired), sum(succeeded), sum(failed), sum(pending) from webhooks.daily_counts where day = current_date - 20';
  const { rows: [{ n: ofThatDay }] } = await db().pool.query(
    'select count(*)::int as n from webhooks.delivery_day_counts where day = current_date - 20');
  const { rows: [{ n: inAll }] } = await db().pool.query('select count(*)::int as n from webhooks.delivery_day_counts');
  t.true(ofThatDay >= COMPANIES * WEBHOOKS);
  const { rows } = await db().pool.query({ text: sql, rowMode: 'array' });
  t.deepEqual(rows[0], [7, 6, 1, 0].map((n) => String(n * ofThatDay)));

  // (Postgres 17 answered it by a bitmap scan of the whole (company_id, day) index:
  // the rows read were the day's, the index pages every day's)
  const { rows: [{ 'QUERY PLAN': [explained] }] } = await db().pool.query(`explain (analyze, buffers, format json) ${sql}`);
  const read = rowsRead(explained.Plan).get('delivery_day_counts') ?? 0;
  const slack = roundingSlack(explained.Plan).get('delivery_day_counts') ?? 0;
  t.true(read <= ofThatDay + slack, `day count rows read: ${read}, of the day's ${ofThatDay} and ${inAll} in all`);
  const indexPages = indexBuffers(explained.Plan, /^delivery_day_counts/);
  t.true(indexPages <= 10, `index pages of the day counts read: ${indexPages}, for ${ofThatDay} of ${inAll} rows`);
});

type Node = { 'Index Name'?: string; 'Shared Hit Blocks'?: number; 'Shared Read Blocks'?: number; Plans?: Node[] };
/** The buffers read by index scans of indexes named so (a bitmap scan's own, not its heap's). */
function indexBuffers(node: Node, name: RegExp): number {
  const own = node['Index Name'] && name.test(node['Index Name']) ? (node['Shared Hit Blocks'] ?? 0) + (node['Shared Read Blocks'] ?? 0) : 0;
  return own + (node.Plans ?? []).reduce((sum, child) => sum + indexBuffers(child, name), 0);
}
