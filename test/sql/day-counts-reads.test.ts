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

test("a company's totals for a year read its own day counts by an index, not every company's", async (t) => {
  const { rows: companies } = await db().pool.query(
    `insert into crm.companies (name) select 'Counted ' || n from generate_series(1, $1::int) n returning id`, [COMPANIES]);
  const ids = companies.map((c) => c.id as string);
  await db().pool.query(
    `insert into webhooks.webhooks (company_id, name, url, fields, actions)
     select c, 'Hook ' || n, 'https://example.com/hook', '{first_name}', '{contact.created}'
     from unnest($1::bigint[]) c, generate_series(1, $2::int) n`, [ids, WEBHOOKS]);
  // a year of days long past, each counted by the roll-up: 7 fired, 1 failed
  await db().pool.query(
    `insert into webhooks.delivery_day_counts (webhook_id, company_id, day, fired, succeeded, failed)
     select w.id, w.company_id, current_date - 10 - d, 7, 6, 1
     from webhooks.webhooks w, generate_series(0, $2::int - 1) d where w.company_id = any ($1)`, [ids, DAYS]);
  await db().pool.query('analyze webhooks.delivery_day_counts');

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
