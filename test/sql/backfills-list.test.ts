// A company's list of backfills (GraphQL: allBackfills) pages and counts the company's
// rows alone, whatever other companies have run: row-level security filters on
// company_id, and without an index that starts with it a page walked every company's
// backfills in id order, testing each for the caller's.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { asTheApi, rowsRead } from '../helpers/plans.ts';

const db = useTestDatabase(test);

const OTHERS = 2_000;

test('a page and a count of a company\'s backfills read its own rows, not every company\'s', async (t) => {
  const f = factories(db().pool);
  const busy = await f.company();
  const busyHook = await f.webhook({ companyId: busy.id, actions: ['contact.created'] });
  const mine = await f.company();
  const myHook = await f.webhook({ companyId: mine.id, actions: ['contact.created'] });
  // another company's backfills first, then two of mine: the newest ids of the table
  const insert = (hook: { id: string; companyId: string }, n: number) => db().pool.query(
    `insert into webhooks.backfills (webhook_id, company_id, state, total, queued, finished_at)
     select $1, $2, 'done', 10, 10, now() from generate_series(1, $3)`, [hook.id, hook.companyId, n]);
  await insert({ id: busyHook.id, companyId: busy.id }, OTHERS);
  await insert({ id: myHook.id, companyId: mine.id }, 2);
  await db().pool.query('analyze webhooks.backfills');

  const client = await asTheApi(t, db().pool, mine.id, {});
  const read = async (statement: string) => {
    const { rows: [row] } = await client.query(`explain (analyze, format json) ${statement}`);
    return rowsRead(row['QUERY PLAN'][0].Plan).get('backfills') ?? 0;
  };
  // as PostGraphile asks them: a first page in id order, and its totalCount
  t.deepEqual({
    page: await read('select id from webhooks.backfills order by id limit 101'),
    count: await read('select count(*) from webhooks.backfills'),
  }, { page: 2, count: 2 });
  t.is((await client.query('select count(*)::int as n from webhooks.backfills')).rows[0].n, 2);
});
