// latestBackfills (webhooks.latest_backfills, sql/35_backfill.sql): each webhook's
// latest backfill, of the caller's company alone, for the Reports page's progress
// bars. The page asks it every second while a backfill runs, so it reads one backfill
// a webhook by its index, however many the company has run over the years: until
// 2026-12-06 the page read every page of allBackfills instead, all of them, each
// second, from every admin's open tab. Its own file: its backfills and statistics
// would change the plans of other tests of one database.
import test from 'ava';
import { API_PLANNER_SETTINGS } from '../../api/preset.ts';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';
import { rowsRead } from '../helpers/plans.ts';

const { db, api } = useTestDatabaseWithApi(test);

const LATEST = `{ latestBackfills { nodes { id webhookId state total queued unfinished createdAt finishedAt error } } }`;

/** Finished backfills of the webhook, n of them, the i-th started i hours before `before` hours ago. */
async function finished(webhook: { id: string; company_id: string }, n: number, before = 0, queued = 1): Promise<void> {
  await db().pool.query(
    `insert into webhooks.backfills (webhook_id, company_id, state, total, queued, created_at, finished_at)
     select $1, $2, 'done', $4, $4, now() - ($5 + i) * interval '1 hour', now() - ($5 + i) * interval '1 hour'
     from generate_series(1, $3) i`, [webhook.id, webhook.company_id, n, queued, before]);
}

test("each webhook's latest backfill, of the caller's company alone", async (t) => {
  const f = factories(db().pool);
  const [mine, theirs] = [await f.company(), await f.company()];
  const often = await f.webhook({ companyId: mine.id, name: 'Backfilled often', actions: ['contact.deleted'] });
  const once = await f.webhook({ companyId: mine.id, name: 'Backfilled once, long ago', actions: ['contact.deleted'] });
  await f.webhook({ companyId: mine.id, name: 'Never backfilled', actions: ['contact.deleted'] });
  const other = await f.webhook({ companyId: theirs.id, actions: ['contact.deleted'] });
  // the one of `once`, older than the 150 of `often` (more than a page of allBackfills)
  await finished(once, 1, 200, 7);
  await finished(often, 150, 0, 3);
  // and `often`'s latest is running, started after the others
  const { rows: [{ id: running }] } = await db().pool.query('select webhooks.backfill($1) as id', [often.id]);
  await finished(other, 3);
  const { rows: [{ id: otherRunning }] } = await db().pool.query('select webhooks.backfill($1) as id', [other.id]);

  const { rows: [{ id: onceId }] } = await db().pool.query('select id::text from webhooks.backfills where webhook_id = $1', [once.id]);

  for (const role of ['webhook_admin', 'webhook_viewer'] as const) {
    const response = await api().gql(await api().token(mine.id, role), LATEST);
    t.falsy(response.errors, JSON.stringify(response.errors));
    const nodes: any[] = response.data.latestBackfills.nodes;
    // none of the webhook never backfilled, none of the other company's
    t.deepEqual(nodes.map((n) => [n.webhookId, n.id, n.state]).sort(),
      [[often.id, running, 'running'], [once.id, onceId, 'done']].sort(), role);
    t.like(nodes.find((n) => n.webhookId === once.id), { total: '7', queued: '7', unfinished: '0', error: null });
    t.like(nodes.find((n) => n.webhookId === often.id), { total: null, queued: '0', unfinished: '0', finishedAt: null });
  }
  // of the webhooks named alone, as a progress bar asks for those still going
  const named = async (ids: string[]) => {
    const response = await api().gql(await api().token(mine.id, 'webhook_viewer'),
      'query($ids: [BigInt]) { latestBackfills(webhookIds: $ids) { nodes { id webhookId } } }', { ids });
    t.falsy(response.errors, JSON.stringify(response.errors));
    return response.data.latestBackfills.nodes.map((n: any) => [n.webhookId, n.id]);
  };
  t.deepEqual(await named([often.id]), [[often.id, running]]);
  t.deepEqual(await named([once.id, other.id]), [[once.id, onceId]], 'another company\'s webhook named gives nothing');
  t.deepEqual(await named([]), []);

  // paged as the page reads a company of more webhooks than a page holds
  const paged: string[] = [];
  const admin = await api().token(mine.id);
  for (let after: string | null = null, more = true; more;) {
    const response: any = await api().gql(admin,
      'query($after: Cursor) { latestBackfills(first: 1, after: $after) { pageInfo { hasNextPage endCursor } nodes { id } } }', { after });
    t.falsy(response.errors, JSON.stringify(response.errors));
    paged.push(...response.data.latestBackfills.nodes.map((n: any) => n.id));
    ({ hasNextPage: more, endCursor: after } = response.data.latestBackfills.pageInfo);
  }
  t.deepEqual(paged.sort(), [running, onceId].sort());

  const theirsAnswer = await api().gql(await api().token(theirs.id, 'webhook_viewer'), LATEST);
  t.deepEqual(theirsAnswer.data.latestBackfills.nodes.map((n: any) => [n.webhookId, n.id]), [[other.id, otherRunning]]);

  // two started in one transaction have one created_at: the later of them is the latest
  await db().pool.query('select webhooks.cancel_backfill($1)', [otherRunning]);
  const client = await db().pool.connect();
  let second: string;
  try {
    await client.query('begin');
    const first = (await client.query('select webhooks.backfill($1) as id', [other.id])).rows[0].id;
    await client.query('select webhooks.cancel_backfill($1)', [first]);
    second = (await client.query('select webhooks.backfill($1) as id', [other.id])).rows[0].id;
    await client.query('commit');
  } finally {
    client.release();
  }
  const again = await api().gql(await api().token(theirs.id, 'webhook_viewer'), LATEST);
  t.deepEqual(again.data.latestBackfills.nodes.map((n: any) => [n.webhookId, n.id, n.state]), [[other.id, second, 'running']]);
});

test('a company of thousands of backfills: the latest of each webhook are read by an index, about one backfill a webhook', async (t) => {
  const f = factories(db().pool);
  const big = await f.company();
  const WEBHOOKS = 20;
  const EACH = 400;
  const webhooks = [];
  for (let i = 0; i < WEBHOOKS; i++) webhooks.push(await f.webhook({ companyId: big.id, actions: ['contact.deleted'] }));
  for (const webhook of webhooks) await finished(webhook, EACH);
  // other companies' backfills beside them
  for (let i = 0; i < 5; i++) {
    const company = await f.company();
    await finished(await f.webhook({ companyId: company.id, actions: ['contact.deleted'] }), 200);
  }
  await db().pool.query('analyze webhooks.webhooks, webhooks.backfills');

  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await client.query('begin');
  try {
    await client.query(`select set_config('role', 'webhook_viewer', true), set_config('jwt.claims.company_id', $1, true)`, [big.id]);
    for (const [name, value] of Object.entries(API_PLANNER_SETTINGS)) {
      await client.query('select set_config($1, $2, true)', [name, value]);
    }
    // as PostGraphile asks it: the function as a table, a page of it
    const query = 'select b.id, b.webhook_id, b.state, b.queued from webhooks.latest_backfills() b limit 101';
    const { rows: [{ 'QUERY PLAN': [plan] }] } = await client.query(`explain (analyze, format json) ${query}`);
    const { rows } = await client.query(query);
    t.is(rows.length, WEBHOOKS);
    t.deepEqual(rows.map((r) => r.webhook_id).sort(), webhooks.map((w) => w.id).sort());
    const read = rowsRead(plan.Plan);
    // each webhook's latest, and the entry after it, which shows that none was started
    // at the same instant (their order is by id then)
    t.true((read.get('backfills') ?? 0) <= 2 * WEBHOOKS, `backfills read: ${read.get('backfills')} of ${WEBHOOKS * EACH + 1000}`);
    t.true((read.get('webhooks') ?? 0) <= WEBHOOKS, `webhooks read: ${read.get('webhooks')}`);
  } finally {
    await client.query('rollback');
  }
});
