// A webhook's history (webhooks.webhooks_history over the view webhooks.deliveries,
// the page's "Times Fired" list) reads that webhook's rows of results and queue, not
// its company's other webhooks' nor another company's. Before, the view joined them by
// delivery id alone: the plan read every result row of the company in every day kept,
// and the history page of a typical company took 100 ms at 1,000,000 deliveries kept,
// growing with everyone's history (bench:api, 2026-12-03).
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { rowsRead } from '../helpers/plans.ts';

const db = useTestDatabase(test);

// (Its history rows it finds through the index of its webhook, as the plans at a
// million rows show; in tables this small the planner may as well filter the
// company's, so they are not asserted here.)
test("one webhook's history and its days read its own results and queue rows only", async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const other = await f.company();
  const quiet = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const busy = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const backlogged = await f.webhook({ companyId: other.id, actions: ['contact.created'] });
  const finished = (webhook: { id: string; company_id: string }, count: number, state: string) => db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at,
                                      last_status_code, created_at)
     select $1, $2, 'contact.created', i, '{}', $4, 1, now(), case when $4 = 'failed' then 500 else 200 end,
            now() - (i % 20) * interval '1 day' - interval '1 hour'
     from generate_series(1, $3::int) i`, [webhook.id, webhook.company_id, count, state]);
  await finished(quiet, 3, 'failed');
  await finished(busy, 3000, 'failed');
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, next_attempt_at)
     select $1, $2, 'contact.created', i, '{}', now() + interval '1 hour' from generate_series(1, 3000) i`,
    [backlogged.id, other.id]);
  await db().pool.query('analyze webhooks.delivery_history, webhooks.delivery_results, webhooks.delivery_queue, webhooks.delivery_attempts');

  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await client.query('begin');
  try {
    await client.query(`select set_config('role', 'webhook_viewer', true), set_config('jwt.claims.company_id', $1, true)`,
      [company.id]);
    // tables this small are cheaper to scan whole, which says nothing of a million
    // rows: the plan as it is with days of history, where the indexes are taken
    await client.query('set local enable_seqscan = off');
    const { rows: [{ 'QUERY PLAN': [plan] }] } = await client.query(
      `explain (analyze, format json)
       select h.* from webhooks.webhooks w, webhooks.webhooks_history(w, now() - interval '30 days', null, null) h
       where w.id = ${Number(quiet.id)} order by h.created_at desc, h.id desc limit 26`);
    const read = rowsRead(plan.Plan);
    // and its days in webhooks.daily_counts, counted from the rows (50_report_counts.sql)
    const { rows: [{ 'QUERY PLAN': [days] }] } = await client.query(
      `explain (analyze, format json) select * from webhooks.daily_counts where webhook_id = ${Number(quiet.id)}`);
    const readForDays = rowsRead(days.Plan);
    t.true((readForDays.get('delivery_results') ?? 0) <= 3, `results rows read for daily_counts: ${readForDays.get('delivery_results')}`);
    t.true((read.get('delivery_results') ?? 0) <= 3, `results rows read: ${read.get('delivery_results')}`);
    t.true((read.get('delivery_queue') ?? 0) <= 3, `queue rows read: ${read.get('delivery_queue')}`);
  } finally {
    await client.query('rollback');
  }
});
