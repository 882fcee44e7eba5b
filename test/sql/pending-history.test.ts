// A history of what is on its way (state pending or in_flight: the Reports page's
// filter) starts at the oldest of the webhook's queue rows
// (webhooks_private.oldest_queued_at, sql/55_report.sql). It is found among the
// webhook's own queue rows, by the queue's indexes (one for the rows waiting, one for
// those in flight): asked as "webhook_id = $1" alone, which neither index serves, every
// company's queue rows were read for each such page.
import test from 'ava';
import { API_PLANNER_SETTINGS } from '../../api/preset.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { tableReads } from '../helpers/plans.ts';

const db = useTestDatabase(test);

test("a history of what is on its way reads the webhook's own queue rows, not every company's", async (t) => {
  const BACKLOG = 3_000;
  const f = factories(db().pool);
  await f.backlog(BACKLOG);
  const tenant = await f.company();
  const webhook = await f.webhook({ companyId: tenant.id, actions: ['contact.created'] });
  await f.contact(tenant.id);
  await f.contact(tenant.id);
  const { rows: [leased] } = await db().pool.query(
    `update webhooks.delivery_queue set locked_by = 'relay-a', locked_until = now() + interval '1 minute'
     where delivery_id = (select min(delivery_id) from webhooks.delivery_queue where webhook_id = $1)
     returning delivery_id::text as id`, [webhook.id]);
  await db().pool.query('analyze webhooks.delivery_queue');

  const client = await db().pool.connect();
  t.teardown(() => client.release());
  for (const [state, expected] of [['in_flight', 1], ['pending', 1]] as const) {
    await client.query('begin');
    await client.query(`select set_config('role', 'webhook_viewer', true), set_config('jwt.claims.company_id', $1, true)`,
      [tenant.id]);
    for (const [name, value] of Object.entries(API_PLANNER_SETTINGS)) {
      await client.query('select set_config($1, $2, true)', [name, value]);
    }
    const read = () => tableReads(client, 'webhooks.delivery_queue');
    const before = await read();
    const { rows } = await client.query(
      `select h.id::text as id from webhooks.webhooks w, webhooks.webhooks_history(w, null, null, $2) h where w.id = $1`,
      [webhook.id, state]);
    const used = (await read()) - before;
    await client.query('rollback');
    t.is(rows.length, expected, state);
    if (state === 'in_flight') t.deepEqual(rows.map((row) => row.id), [leased.id]);
    t.true(used < 100, `a history of ${state} read ${used} rows of the queue (${BACKLOG} of another company's)`);
  }
});
