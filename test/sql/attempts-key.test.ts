// Every attempt the relay records writes one entry into each index of
// webhooks.delivery_attempts, so that table has two (migration 0024): its key
// (company_id, id, delivery_created_at) and (delivery_id, attempt). The key serves
// what a company reads by itself, under row-level security: its attempts in id order
// (the admin API's list) and one attempt by id. Neither may read a partition in full.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

/** Every node type of a plan, from EXPLAIN's JSON, with the relation it reads. */
function nodes(plan: any): string[] {
  const found: string[] = [];
  const walk = (node: any) => {
    found.push(`${node['Node Type']}${node['Index Name'] ? ` using ${node['Index Name']}` : ''}`);
    for (const child of node.Plans ?? []) walk(child);
  };
  walk(plan);
  return found;
}

test('attempts have two indexes: their key, led by the company, and one by delivery', async (t) => {
  const { rows } = await db().pool.query(
    `select pg_get_indexdef(i.indexrelid) as def from pg_index i
     where i.indrelid = 'webhooks.delivery_attempts'::regclass order by 1`);
  t.deepEqual(rows.map((r) => r.def.replace(/^.* USING btree /, '')).sort(), [
    '(company_id, id, delivery_created_at)',
    '(delivery_id, attempt)',
  ]);
});

test('a company\'s attempts in id order, and one attempt by id, are read through the key', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await f.contact(company.id);
  const { rows: [{ id: deliveryId, created_at: createdAt }] } = await db().pool.query(
    'select id, created_at from webhooks.deliveries where webhook_id = $1', [webhook.id]);
  const { rows: [{ id: attemptId }] } = await db().pool.query(
    `insert into webhooks.delivery_attempts
       (delivery_id, delivery_created_at, webhook_id, company_id, attempt, attempted_at, duration_ms, status_code)
     values ($1, $2, $3, $4, 1, now(), 5, 200) returning id`,
    [deliveryId, createdAt, webhook.id, company.id]);

  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await client.query('begin');
  try {
    await client.query(`select set_config('role', 'webhook_viewer', true), set_config('jwt.claims.company_id', $1, true)`, [company.id]);
    // a partition this small is cheapest read in full; forbid that, so the plan shows
    // whether an index serves the query at all
    await client.query('set local enable_seqscan = off');
    for (const sql of [
      'select id, status_code from webhooks.delivery_attempts order by id limit 101',
      `select id, status_code from webhooks.delivery_attempts where id = ${Number(attemptId)}`,
    ]) {
      const { rows: found } = await client.query(sql);
      t.is(found.length, 1, sql);
      const { rows } = await client.query(`explain (format json) ${sql}`);
      const plan = nodes(rows[0]['QUERY PLAN'][0].Plan);
      t.false(plan.some((node) => node.startsWith('Seq Scan')), `${sql}: ${plan.join(', ')}`);
      t.true(plan.some((node) => / using delivery_attempts_\w+_pkey$/.test(node)), `${sql}: ${plan.join(', ')}`);
    }
  } finally {
    await client.query('rollback');
  }
});
