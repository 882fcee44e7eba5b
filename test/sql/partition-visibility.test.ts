// A day's partitions made by another session while a transaction writes the outbox
// (sql/22_outbox.sql, ensure_day): the transaction's later writes to that day, new
// messages and a delivery moved there, go to the new partitions. Two DBAs' repairs of
// past days at once, or a repair beside a test, must both land. (Written when a page
// test was once refused with "no partition of relation … found for row", 2026-12-01;
// this sequence does not bring it back: Postgres takes the other session's catalog
// changes in before the writes.)
import test from 'ava';
import type pg from 'pg';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

// days no partition holds (long before any test's today)
const DAY_MADE_BEFORE = '2024-01-10';
const DAY_MADE_MEANWHILE = '2024-01-11';
const DAY_MOVED_TO = '2024-01-12';

async function insertThroughView(client: pg.PoolClient, webhookId: string, companyId: string, at: string): Promise<string> {
  const { rows } = await client.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, created_at)
     values ($1, $2, 'contact.created', 1, '{}', $3) returning id`, [webhookId, companyId, at]);
  return rows[0].id as string;
}

test('a transaction that wrote history can write, and move a delivery, to days another session made since', async (t) => {
  const pool = db().pool;
  const f = factories(pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await pool.query('select webhooks_private.ensure_day($1)', [DAY_MADE_BEFORE]);

  const writer = await pool.connect();
  const other = await pool.connect();
  t.teardown(() => { writer.release(); other.release(); });

  await writer.query('begin');
  const first = await insertThroughView(writer, hook.id, company.id, `${DAY_MADE_BEFORE}T12:00:00Z`);
  // another session makes two days and commits, while the writer's transaction is open
  await other.query('select webhooks_private.ensure_day(d::date) from unnest($1::text[]) d', [[DAY_MADE_MEANWHILE, DAY_MOVED_TO]]);
  const second = await insertThroughView(writer, hook.id, company.id, `${DAY_MADE_MEANWHILE}T12:00:00Z`);
  await writer.query(`update webhooks.deliveries set created_at = $2 where id = $1`, [first, `${DAY_MOVED_TO}T12:00:00Z`]);
  await writer.query('commit');

  const { rows } = await pool.query(
    `select id, to_char(created_at at time zone 'utc', 'YYYY-MM-DD') as day, tableoid::regclass::text as partition
     from webhooks.delivery_history where webhook_id = $1 order by id`, [hook.id]);
  t.deepEqual(rows, [
    { id: first, day: DAY_MOVED_TO, partition: 'webhooks_partitions.delivery_history_p20240112' },
    { id: second, day: DAY_MADE_MEANWHILE, partition: 'webhooks_partitions.delivery_history_p20240111' },
  ]);
  const { rows: queued } = await pool.query(
    'select delivery_id from webhooks.delivery_queue where webhook_id = $1 order by delivery_id', [hook.id]);
  t.deepEqual(queued.map((r) => r.delivery_id), [first, second]);
});
