// A webhook's historyCount (webhooks.webhooks_history_count, sql/55_report.sql): the
// number of deliveries its history gives for the same range and state, as a page of
// all of them holds, but from the report's rolled-up days rather than row by row; before the rows are rolled up, after, and after the retention
// dropped some days and kept one it could not drop.
import test from 'ava';
import { maintain } from '../../tools/maintain.ts';
import { RATE_UNBOUNDED, useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';
import { indexUse } from '../helpers/plans.ts';
import { insertFinished } from '../helpers/report-counts.ts';

const { db, api } = useTestDatabaseWithApi(test, { limits: RATE_UNBOUNDED });

const DAY = 86_400_000;
const HOUR = 3_600_000;
const STATES = ['succeeded', 'succeeded', 'succeeded', 'failed'];
const startOfToday = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate());
const at = (daysAgo: number, hours = 0) => new Date(startOfToday - daysAgo * DAY + hours * HOUR).toISOString();

const COUNTS = `query($id: BigInt!, $since: Datetime, $until: Datetime, $state: String) {
  webhookById(id: $id) {
    history(since: $since, until: $until, state: $state, first: 1000) { pageInfo { hasNextPage } nodes { id } }
    historyCount(since: $since, until: $until, state: $state)
  } }`;

const EACH_AND_ALL = `query($id: BigInt!, $since: Datetime, $until: Datetime) {
  webhookById(id: $id) {
    all: historyCount(since: $since, until: $until)
    succeeded: historyCount(since: $since, until: $until, state: "succeeded")
    failed: historyCount(since: $since, until: $until, state: "failed")
    pending: historyCount(since: $since, until: $until, state: "pending")
    counts: historyCounts(since: $since, until: $until) { total succeeded failed pending }
  } }`;

/** Ranges that start and end mid-day, on day boundaries, open, empty, inverted. */
const RANGES: Array<[string | null, string | null]> = [
  [null, null], [at(30), null], [at(10), at(5)], [at(10, 7.5), at(5, 13.25)], [null, at(8, 12)],
  [at(6, 6), null], [at(7), at(7)], [at(4), at(9)], [at(1), null],
];
const STATE_FILTERS = [null, 'succeeded', 'failed', 'pending', 'in_flight'];   // (another text is refused: errors.test.ts)

async function assertCountsAgree(t: any, token: string, webhookId: string, when: string) {
  let compared = 0;
  for (const [since, until] of RANGES) {
    for (const state of STATE_FILTERS) {
      const response = await api().gql(token, COUNTS, { id: webhookId, since, until, state });
      t.falsy(response.errors, JSON.stringify(response.errors));
      const node = response.data.webhookById;
      t.false(node.history.pageInfo.hasNextPage, 'every row on one page');
      t.is(Number(node.historyCount), node.history.nodes.length, `${when}: [${since}, ${until}) ${state}`);
      if (node.history.nodes.length > 0) compared++;
    }
    // the four counts of the history page, asked at once, are the four historyCounts
    const each = await api().gql(token, EACH_AND_ALL, { id: webhookId, since, until });
    t.falsy(each.errors, JSON.stringify(each.errors));
    const { all, succeeded, failed, pending, counts } = each.data.webhookById;
    t.deepEqual(counts, { total: all, succeeded, failed, pending }, `${when}: historyCounts of [${since}, ${until})`);
  }
  return compared;
}

test.serial("historyCount says how many rows the history gives, for every range and state, before and after a roll-up and a retention drop; historyCounts all four at once", async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const token = await api().token(company.id);
  // finished deliveries on the days 3 to 12 ago, at varied hours
  const times: string[] = [];
  const states: string[] = [];
  for (let day = 3; day <= 12; day++) {
    for (let i = 0; i < 5; i++) {
      times.push(at(day, i * 4 + (day % 4) + i / 60));
      states.push(STATES[(day + i) % STATES.length]!);
    }
  }
  await insertFinished(db().pool, hook.id, company.id, times, states);
  // test sends (in the history, not in the report's counts): one that succeeded, one
  // that failed, one on its way; and deliveries on their way: two pending (one of them
  // on day 9 ago, which keeps that day from being rolled up or dropped), one in flight
  const write = (action: string, state: string, createdAt: string) => db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, $3, 1, '{}', $4, $5, case when $4 <> 'pending' then $6::timestamptz end, $6) returning id`,
    [hook.id, company.id, action, state, state === 'pending' ? 0 : 1, createdAt]);
  await write('webhook.test', 'succeeded', at(5, 2));
  await write('webhook.test', 'failed', at(4, 3));
  await write('webhook.test', 'pending', at(0, 0.5));
  await write('contact.created', 'pending', at(9, 20));
  await write('contact.created', 'pending', at(0, 0.25));
  const { rows: [inFlight] } = await write('contact.created', 'pending', at(0, 0.1));
  await db().pool.query(
    `update webhooks.delivery_queue set locked_by = 'relay-a', locked_until = now() + interval '1 minute'
     where delivery_id = $1`, [inFlight.id]);
  // another webhook of the company, and another company's, with deliveries of their own
  const other = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await insertFinished(db().pool, other.id, company.id, [at(5, 1), at(5, 2)], ['succeeded', 'failed']);
  const stranger = await f.company();
  const theirs = await f.webhook({ companyId: stranger.id, actions: ['contact.created'] });
  await insertFinished(db().pool, theirs.id, stranger.id, [at(5, 1)], ['failed']);

  t.true(await assertCountsAgree(t, token, hook.id, 'counted from the rows') > 20);
  await db().pool.query('call webhooks.roll_up_report_counts()');
  const { rows: [counted] } = await db().pool.query(
    'select count(*)::int as days from webhooks.delivery_day_counts where webhook_id = $1 and fired > 0', [hook.id]);
  t.is(counted.days, 9, 'every finished day but the one with a delivery on its way is rolled up');
  await assertCountsAgree(t, token, hook.id, 'rolled up');

  // the retention drops the days past 6 days ago but day 9 ago, which has a delivery
  // on its way: the history has that day, the report also the days dropped
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '6 days'`);
  try {
    const result = await maintain(db().url);
    t.true(result.daysDropped.includes(at(8).slice(0, 10)) && !result.daysDropped.includes(at(9).slice(0, 10)));
  } finally {
    await db().pool.query(`alter database ${db().name} reset webhooks.retention`);
  }
  await assertCountsAgree(t, token, hook.id, 'days dropped');

  // another company's webhook: its history is not the caller's to count
  const response = await api().gql(token, COUNTS, { id: theirs.id, since: null, until: null, state: null });
  t.is(response.data.webhookById, null);
  const { rows: [theirCounts] } = await db().pool.query(
    `select (webhooks.webhooks_history_counts(w)).total from webhooks.webhooks w where w.id = $1`, [theirs.id]);
  t.is(theirCounts.total, '1', 'their count, asked by their owner');
});

test.serial('historyCount reads the rolled-up days, not every delivery of them', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const times: string[] = [];
  for (let i = 0; i < 2_000; i++) times.push(at(3 + (i % 4), (i % 20) + i / 10_000));
  await insertFinished(db().pool, hook.id, company.id, times, times.map((_, i) => STATES[i % 4]!));
  await db().pool.query('call webhooks.roll_up_report_counts()');

  // index entries of history read in one transaction, as the company's viewer
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await client.query('begin');
  try {
    await client.query(`select set_config('role', 'webhook_viewer', true), set_config('jwt.claims.company_id', $1, true)`, [company.id]);
    const counted = async (statement: string) => {
      const { result, used } = await indexUse(client, 'webhooks.delivery_history', () => client.query(statement, [hook.id]));
      return { n: Number(result.rows[0].n), read: used };
    };
    const byCount = await counted(
      'select webhooks.webhooks_history_count(w) as n from webhooks.webhooks w where w.id = $1');
    const byRows = await counted(
      'select (select count(*) from webhooks.webhooks_history(w)) as n from webhooks.webhooks w where w.id = $1');
    t.is(byCount.n, 2_000);
    t.is(byRows.n, 2_000);
    t.true(byRows.read >= 2_000, `counting the rows read ${byRows.read}`);
    t.true(byCount.read < 50, `historyCount read ${byCount.read} index entries of history`);
  } finally {
    await client.query('rollback');
  }
});
