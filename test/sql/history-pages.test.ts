// A page of a webhook's history reads about a page of its rows, however many it has:
// each day's rows of the webhook newest first by its index, each joined to its own
// day's results, merged across the days and stopped at the page's end
// (webhooks.webhooks_history, sql/55_report.sql, with the API's planner settings,
// api/preset.ts). Before, the plan sorted all of them first (30 ms for a webhook of
// 28,571 deliveries in bench:api, and growing with it). Its own file: its webhooks
// and statistics would change the plans of other tests of one database.
import test from 'ava';
import { API_PLANNER_SETTINGS } from '../../api/preset.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { rowsRead } from '../helpers/plans.ts';

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

test("a page of a big webhook's history reads about a page of its rows, not all of them, as the API plans it", async (t) => {
  const f = factories(db().pool);
  const companies = [await f.company(), await f.company(), await f.company()];
  // many webhooks with a few deliveries a day, so that the planner expects a webhook to
  // have a few a day; and one with 150 a day, over 20 days
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
            now() - (i / 150) * interval '1 day' - (i % 150) * interval '1 second' - interval '1 hour'
     from generate_series(0, 2999) i`, [big.id, big.company_id]);
  // and two of its newest on their way
  const queued = await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, created_at)
     select $1, $2, 'contact.created', i, '{}', now() - i * interval '1 minute' from generate_series(1, 2) i returning id`,
    [big.id, big.company_id]);
  await db().pool.query('analyze webhooks.webhooks, webhooks.delivery_history, webhooks.delivery_results, webhooks.delivery_queue, webhooks.delivery_attempts');

  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await client.query('begin');
  try {
    await client.query(`select set_config('role', 'webhook_viewer', true), set_config('jwt.claims.company_id', $1, true)`,
      [big.company_id]);
    for (const [name, value] of Object.entries(API_PLANNER_SETTINGS)) {
      await client.query('select set_config($1, $2, true)', [name, value]);
    }
    // the API's prepared statement, from a connection's first request on (its settings
    // make it plan the statement once, not anew for each of a connection's first five
    // requests, with the webhook's id: with a row or two a day expected, sorting all of
    // the webhook's rows and merging the days cost about the same to the planner, which
    // took either, and planning each request cost 30 to 50 ms at bench:api's size)
    await client.query(`prepare history_page(bigint, text) as ${HISTORY_PAGE}`);
    await client.query(`prepare oldest_page(bigint, text) as ${OLDEST_PAGE}`);
    const page = async (state: string | null, statement = 'history_page') => {
      const execute = `execute ${statement}(${Number(big.id)}, ${state === null ? 'null' : `'${state}'`})`;
      const { rows: [{ 'QUERY PLAN': [plan] }] } = await client.query(`explain (analyze, format json) ${execute}`);
      const { rows: [{ array: rows }] } = await client.query(execute);
      return { read: rowsRead(plan.Plan).get('delivery_history') ?? 0, rows: rows as string[][] };
    };
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
    t.deepEqual(pending.rows.map((row) => row[0]), queued.rows.map((row) => String(row.id)));
    t.true(pending.read <= 2, `history rows read for what is pending: ${pending.read}`);
    // a page of a date range, as the report's Times Fired opens it: since and until are
    // the request's variables, so the kept plan has them as parameters, and the page
    // starts at until, not at the webhook's newest row (1,350 newer ones here)
    await client.query(`prepare dated_page(bigint, timestamptz, timestamptz) as ${HISTORY_PAGE.replace('null, null, $2', '$2, $3, null')}`);
    const dated = `execute dated_page(${Number(big.id)}, now() - interval '15 days', now() - interval '9 days')`;
    const { rows: [{ 'QUERY PLAN': [datedPlan] }] } = await client.query(`explain (analyze, format json) ${dated}`);
    const { rows: [{ array: datedRows }] } = await client.query(dated);
    const { rows: [{ newest }] } = await client.query(
      `select id::text as newest from webhooks.delivery_history
       where webhook_id = $1 and created_at < now() - interval '9 days' order by created_at desc, id desc limit 1`, [big.id]);
    t.is(datedRows.length, 25);
    t.is(datedRows[0][0], newest);
    const datedRead = rowsRead(datedPlan.Plan).get('delivery_history') ?? 0;
    t.true(datedRead <= 25 + 21, `history rows read for a page of a date range: ${datedRead}`);

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
    t.deepEqual(oldestPending.rows.map((row) => row[0]), queued.rows.map((row) => String(row.id)).reverse());
  } finally {
    await client.query('rollback');
  }
});
