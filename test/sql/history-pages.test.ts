// A page of a webhook's history reads about a page of its rows, however many it has:
// each day's rows of the webhook newest first by its index, each joined to its own
// day's results, merged across the days and stopped at the page's end
// (webhooks.webhooks_history, sql/55_report.sql, with the API's planner settings,
// api/preset.ts). Before, the plan sorted all of them first (30 ms for a webhook of
// 28,571 deliveries in bench:api, and growing with it). And a page in the middle of
// the history, asked after the last row of the page before, reads about as many. Its
// own file: its webhooks and statistics would change the plans of other tests of one
// database; its tests share theirs, made once and only read.
import test from 'ava';
import type pg from 'pg';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { asTheApi as asTheApiOn, rowsRead } from '../helpers/plans.ts';

const db = useTestDatabase(test);

// The history page as PostGraphile asks for it: the webhook's row, and a page of its
// history as a sublink of it, with the columns the page shows.
const HISTORY_PAGE = `
  select array(select array[h.id::text, h.state, h.attempts::text, h.last_status_code::text, h.last_error,
                            h.created_at::text, h.payload::text]
               from webhooks.webhooks_history(w, null, null, $2) h
               order by h.created_at desc, h.id desc limit 25)
  from webhooks.webhooks w where w.id = $1`;

// Its last page as the Reports page asks for it: from the oldest end
// (webhooks.webhooks_history_oldest_first, GraphQL historyOldestFirst).
const OLDEST_PAGE = HISTORY_PAGE
  .replace('webhooks.webhooks_history(', 'webhooks.webhooks_history_oldest_first(')
  .replace('order by h.created_at desc, h.id desc', 'order by h.created_at, h.id');

// Many webhooks with a few deliveries a day, so that the planner expects a webhook to
// have a few a day; and one with 150 a day, over 20 days, two of them created at each
// instant (its order breaks the tie by id), and two of its newest on their way.
async function makeHistory(): Promise<{ big: { id: string; company_id: string }; queued: string[] }> {
  const f = factories(db().pool);
  const companies = [await f.company(), await f.company(), await f.company()];
  for (const company of companies) {
    await db().pool.query(
      `insert into webhooks.webhooks (company_id, name, url, fields, actions)
       select $1, 'Quiet ' || n, 'https://receiver.example.com/' || n, '{first_name}', '{contact.created}'
       from generate_series(1, 90) n`, [company.id]);
  }
  const big = await f.webhook({ companyId: companies[0]!.id, actions: ['contact.created'] });
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at,
                                      last_status_code, created_at)
     select w.id, w.company_id, 'contact.created', d, '{"type": "contact.created"}', 'succeeded', 1, now(), 200,
            now() - d * interval '1 day' + interval '1 hour'
     from webhooks.webhooks w, generate_series(1, 20) d, generate_series(1, 4) k
     where w.name like 'Quiet %'`);
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at,
                                      last_status_code, created_at)
     select $1, $2, 'contact.created', i, '{"type": "contact.created"}',
            case when i % 10 = 0 then 'failed' else 'succeeded' end, 1, now(),
            case when i % 10 = 0 then 500 else 200 end,
            now() - (i / 150) * interval '1 day' - ((i % 150) / 2) * interval '1 second' - interval '1 hour'
     from generate_series(0, 2999) i`, [big.id, big.company_id]);
  const queued = (await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, created_at)
     select $1, $2, 'contact.created', i, '{}', now() - i * interval '1 minute' from generate_series(1, 2) i returning id`,
    [big.id, big.company_id])).rows.map((row) => String(row.id));
  await db().pool.query('analyze webhooks.webhooks, webhooks.delivery_history, webhooks.delivery_results, webhooks.delivery_queue, webhooks.delivery_attempts');
  return { big, queued };
}
/** The history, made by the first test to ask (the database is made in a hook of its own, which runs at the same time as another). */
let history: ReturnType<typeof makeHistory> | undefined;
const theHistory = () => (history ??= makeHistory());

/** A connection of the company's viewer as the API plans (helpers/plans.ts). */
const asTheApi = (t: Parameters<typeof asTheApiOn>[0], companyId: string, statements: Record<string, string>) =>
  asTheApiOn(t, db().pool, companyId, statements);

/** An execute statement's rows (the first column of each) and the history rows its plan read. */
async function run(client: pg.PoolClient, execute: string): Promise<{ read: number; rows: string[][] }> {
  const { rows: [{ 'QUERY PLAN': [plan] }] } = await client.query(`explain (analyze, format json) ${execute}`);
  const { rows: [{ array: rows }] } = await client.query(execute);
  return { read: rowsRead(plan.Plan).get('delivery_history') ?? 0, rows: rows as string[][] };
}

test("a page of a big webhook's history reads about a page of its rows, not all of them, as the API plans it", async (t) => {
  const { big, queued } = await theHistory();
  const client = await asTheApi(t, big.company_id, { history_page: HISTORY_PAGE, oldest_page: OLDEST_PAGE });
  const page = (state: string | null, statement = 'history_page') =>
    run(client, `execute ${statement}(${Number(big.id)}, ${state === null ? 'null' : `'${state}'`})`);
  // a page of 25, and the first row of each day, to merge the days
  const all = await page(null);
  t.is(all.rows.length, 25);
  t.true(all.read <= 25 + 21, `history rows read for a page: ${all.read} of 3,002`);
  const failed = await page('failed');
  t.is(failed.rows.length, 25);
  t.true(failed.rows.every((row) => row[1] === 'failed'));
  // one in ten failed: ten rows a failure, and the first row of each day
  t.true(failed.read <= 250 + 21 + 10, `history rows read for a page of failures: ${failed.read}`);
  // what is on its way starts at the oldest queued delivery
  const pending = await page('pending');
  t.deepEqual(pending.rows.map((row) => row[0]), queued);
  t.true(pending.read <= 2, `history rows read for what is pending: ${pending.read}`);
  // a page of a date range, as the report's Times Fired opens it: since and until are
  // the request's variables, so the kept plan has them as parameters, and the page
  // starts at until, not at the webhook's newest row (1,350 newer ones here)
  await client.query(`prepare dated_page(bigint, timestamptz, timestamptz) as ${HISTORY_PAGE.replace('null, null, $2', '$2, $3, null')}`);
  const dated = await run(client, `execute dated_page(${Number(big.id)}, now() - interval '15 days', now() - interval '9 days')`);
  const { rows: [{ newest }] } = await client.query(
    `select id::text as newest from webhooks.delivery_history
     where webhook_id = $1 and created_at < now() - interval '9 days' order by created_at desc, id desc limit 1`, [big.id]);
  t.is(dated.rows.length, 25);
  t.is(dated.rows[0]![0], newest);
  t.true(dated.read <= 25 + 21, `history rows read for a page of a date range: ${dated.read}`);

  // the last page, from its own end: about a page of rows too, where an offset past
  // the rest read all 3,002 (and the newest-first function asked oldest first sorted them)
  const oldest = await page(null, 'oldest_page');
  t.true(oldest.read <= 25 + 21, `history rows read for the last page: ${oldest.read} of 3,002`);
  const { rows: everyRow } = await client.query(
    'select h.id::text from webhooks.webhooks w, webhooks.webhooks_history(w) h where w.id = $1', [big.id]);
  t.deepEqual(oldest.rows.map((row) => row[0]), everyRow.map((row) => row.id).slice(-25).reverse());
  const oldestFailed = await page('failed', 'oldest_page');
  t.true(oldestFailed.rows.every((row) => row[1] === 'failed'));
  t.true(oldestFailed.read <= 250 + 21 + 10, `history rows read for the last page of failures: ${oldestFailed.read}`);
  const oldestPending = await page('pending', 'oldest_page');
  t.deepEqual(oldestPending.rows.map((row) => row[0]), [...queued].reverse());
});

// The page after a page, asked after its last row (after_created_at, after_id), and the
// page before it (oldest first after its first row), as the Reports page asks them:
// the statements' arguments, so the kept plan has them as parameters.
const AFTER_PAGE = HISTORY_PAGE.replace('null, null, $2)', 'null, null, $2, $3, $4)');
const BEFORE_PAGE = OLDEST_PAGE.replace('null, null, $2)', 'null, null, $2, $3, $4)');

test("a page in the middle of a big webhook's history, asked after the row before it, reads about a page of its rows in either direction", async (t) => {
  const { big } = await theHistory();
  const client = await asTheApi(t, big.company_id, { history_page: HISTORY_PAGE, after_page: AFTER_PAGE, before_page: BEFORE_PAGE });
  // every row, newest first, as a page shows it: id, state, …, created_at (as text: to the microsecond)
  const { rows: [{ array: every }] } = await client.query(HISTORY_PAGE.replace(' limit 25', ''), [big.id, null]);
  t.is(every.length, 3002);
  const page = (statement: string, state: string | null, row?: string[]) => run(client,
    `execute ${statement}(${Number(big.id)}, ${state === null ? 'null' : `'${state}'`}, ${row ? `'${row[5]}'` : 'null'}, ${row ? row[0] : 'null'})`);
  const ids = (rows: string[][]) => rows.map((row) => row[0]);

  // the first page as asked with no row to start after: the first page
  const first = await page('after_page', null);
  t.deepEqual(ids(first.rows), ids(every.slice(0, 25)));
  t.true(first.read <= 25 + 21, `history rows read for the first page: ${first.read}`);

  // the middle, after a row that shares its instant with the next (the tie is broken by id)
  const middle = every.findIndex((row: string[], i: number) => i >= 1500 && row[5] === every[i + 1]?.[5]);
  t.true(middle >= 1500 && middle < 1520);
  const next = await page('after_page', null, every[middle]);
  t.deepEqual(ids(next.rows), ids(every.slice(middle + 1, middle + 26)));
  t.true(next.read <= 25 + 21, `history rows read for a page after row ${middle + 1} of 3,002: ${next.read}`);
  // and before it: the rows newer than it, nearest first
  const previous = await page('before_page', null, every[middle + 1]);
  t.deepEqual(ids(previous.rows), ids(every.slice(middle - 24, middle + 1).reverse()));
  t.true(previous.read <= 25 + 21, `history rows read for a page before row ${middle + 2} of 3,002: ${previous.read}`);

  // (an offset to the same page reads every row before it)
  const { rows: [{ 'QUERY PLAN': [offsetPlan] }] } = await client.query(
    `explain (analyze, format json) ${HISTORY_PAGE.replace(' limit 25', ` offset ${middle + 1} limit 25`)}`, [big.id, null]);
  t.log(`history rows read for the page after row ${middle + 1}: ${next.read} after the row, `
    + `${rowsRead(offsetPlan.Plan).get('delivery_history')} by an offset`);

  // a page of failures in the middle of them
  const failures = every.filter((row: string[]) => row[1] === 'failed');
  const failedNext = await page('after_page', 'failed', failures[150]);
  t.deepEqual(ids(failedNext.rows), ids(failures.slice(151, 176)));
  t.true(failedNext.read <= 250 + 21 + 10, `history rows read for a page of failures after the 151st: ${failedNext.read}`);
  const failedPrevious = await page('before_page', 'failed', failures[150]);
  t.deepEqual(ids(failedPrevious.rows), ids(failures.slice(125, 150).reverse()));
  t.true(failedPrevious.read <= 250 + 21 + 10, `history rows read for a page of failures before the 151st: ${failedPrevious.read}`);

  // the ends: after the oldest row and before the newest, nothing
  t.deepEqual((await page('after_page', null, every.at(-1))).rows, []);
  t.deepEqual((await page('before_page', null, every[0])).rows, []);
});
