// A webhook's delete takes its history, results and attempts with it (22_outbox.sql),
// and its counts go by their foreign keys. Recounting the day of every row it deletes
// would be work thrown away: 50 µs a row, 6 s for 100,000 kept deliveries, past the
// API's statement timeout, so a busy webhook could not be deleted at all.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

/** Failed deliveries of the webhook, created three days ago (a day already counted). */
async function pastDeliveries(webhook: { id: string; company_id: string }, count: number) {
  await db().pool.query(`select webhooks_private.ensure_day(webhooks_private.utc_day(now() - interval '3 days'))`);
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, last_error,
                                      completed_at, created_at)
     select $1, $2, 'contact.created', i, '{"type": "contact.created"}', 'failed', 1, 'HTTP 500', now(), now() - interval '3 days'
     from generate_series(1, $3) i`, [webhook.id, webhook.company_id, count]);
}

async function countsOf(webhookId: string) {
  const { rows: [counts] } = await db().pool.query(
    `select (select count(*) from webhooks.delivery_day_counts where webhook_id = $1)::int as days,
            (select count(*) from webhooks.delivery_hour_counts where webhook_id = $1)::int as hours,
            (select count(*) from webhooks_private.delivery_days_to_count where webhook_id = $1)::int as to_count,
            (select count(*) from webhooks.delivery_history where webhook_id = $1)::int as history,
            (select count(*) from webhooks.delivery_results where webhook_id = $1)::int as results`, [webhookId]);
  return counts;
}

test("a webhook's delete leaves none of its rows or counts, and marks none of its days to be counted again; a delete after it in the same transaction still does", async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const gone = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const kept = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await pastDeliveries(gone, 20);
  await pastDeliveries(kept, 2);
  await db().pool.query('select webhooks.roll_up_report_counts()');
  t.like(await countsOf(gone.id), { days: 1, to_count: 0, history: 20, results: 20 });

  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await client.query('begin');
  await client.query('delete from webhooks.webhooks where id = $1', [gone.id]);
  await client.query('delete from webhooks.deliveries where id = (select min(id) from webhooks.delivery_history where webhook_id = $1)', [kept.id]);
  await client.query('commit');

  t.deepEqual(await countsOf(gone.id), { days: 0, hours: 0, to_count: 0, history: 0, results: 0 });
  // the other webhook's day lost a delivery: it is counted again
  t.like(await countsOf(kept.id), { days: 0, to_count: 1, history: 1 });
});
