// A page of the report (webhooks.webhook_report without its counts, as the Reports
// page reads a company's webhooks, a page at a time) reads about a page of the
// company's webhooks, however many it has. Before, each page listed and sorted every
// webhook of the company and PostGraphile's cursor skipped an offset of them (10–20
// ms a page at 1,200 webhooks: reading all of them took a time that grew with their
// square). Its own file: its webhooks and statistics would change the plans of other
// tests of one database.
import test from 'ava';
import type pg from 'pg';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { asTheApi, rowsRead } from '../helpers/plans.ts';

const db = useTestDatabase(test);

const WEBHOOKS = 1_200;
const PAGE = 100;

// A page as PostGraphile asks it of webhookReport(withCounts: false): the function's
// rows, a row more than the page to know whether another follows.
const FIRST_PAGE = `select r.webhook_id::text as id, r.created_at::text as created_at
                    from webhooks.webhook_report(with_counts => $1::boolean) r limit ${PAGE + 1}`;
// the page after one, asked after its last row (afterCreatedAt, afterId)
const NEXT_PAGE = `select r.webhook_id::text as id, r.created_at::text as created_at
                   from webhooks.webhook_report(with_counts => $1::boolean, after_created_at => $2::timestamptz,
                                                after_id => $3::bigint) r limit ${PAGE + 1}`;

/** An execute statement's rows and the webhooks its plan read. */
async function run(client: pg.PoolClient, execute: string): Promise<{ read: number; rows: Array<{ id: string; created_at: string }> }> {
  const { rows: [{ 'QUERY PLAN': [plan] }] } = await client.query(`explain (analyze, format json) ${execute}`);
  const { rows } = await client.query(execute);
  return { read: rowsRead(plan.Plan).get('webhooks') ?? 0, rows };
}

test('each page of a company of 1,200 webhooks reads about a page of them, as the API plans it; the pages, after one another, give every webhook once, newest first', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const other = await f.company();
  const writer = await db().pool.connect();
  try {
    await writer.query(`set webhooks.max_webhooks_per_company = '${WEBHOOKS}'`);
    // a few at each instant: the order breaks the tie by id
    for (const [companyId, count] of [[company.id, WEBHOOKS], [other.id, 300]] as const) {
      await writer.query(
        `insert into webhooks.webhooks (company_id, name, url, fields, actions, created_at)
         select $1, 'Hook ' || n, 'https://receiver.example.com/' || n, '{first_name}', '{contact.created}',
                now() - (n / 3) * interval '1 minute'
         from generate_series(1, $2::int) n`, [companyId, count]);
    }
    await writer.query('analyze webhooks.webhooks');
  } finally {
    writer.release();
  }
  const client = await asTheApi(t, db().pool, company.id, { first_page: FIRST_PAGE });
  const first = await run(client, 'execute first_page(false)');
  t.is(first.rows.length, PAGE + 1);
  t.true(first.read <= PAGE + 1 + 2, `webhooks read for the first page: ${first.read} of ${WEBHOOKS}`);

  await client.query(`prepare next_page as ${NEXT_PAGE}`);
  const seen = first.rows.slice(0, PAGE);
  const reads = [first.read];
  for (let last = seen.at(-1)!; ;) {
    const page = await run(client, `execute next_page(false, '${last.created_at}', ${last.id})`);
    reads.push(page.read);
    seen.push(...page.rows.slice(0, PAGE));
    if (page.rows.length <= PAGE) break;
    last = seen.at(-1)!;
  }
  t.true(reads.every((read) => read <= PAGE + 1 + 2), `webhooks read a page: ${reads.join(', ')}`);
  const { rows: every } = await client.query(
    'select w.id::text as id from webhooks.webhooks w order by w.created_at desc, w.id desc');
  t.is(every.length, WEBHOOKS);
  t.deepEqual(seen.map((row) => row.id), every.map((row) => row.id));

  // one webhook's line, as its history page asks it (with its counts): that webhook
  // alone, by its key, not a walk of the company's webhooks to it
  const oldest = every.at(-1)!.id;
  await client.query(`prepare one_line as select r.webhook_id::text as id, r.created_at::text as created_at
                      from webhooks.webhook_report(webhook_id => $1::bigint) r limit ${PAGE + 1}`);
  const line = await run(client, `execute one_line(${oldest})`);
  t.deepEqual(line.rows.map((row) => row.id), [oldest]);
  t.true(line.read <= 2, `webhooks read for one webhook's line: ${line.read}`);
});
