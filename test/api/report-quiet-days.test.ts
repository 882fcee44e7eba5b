// Days without deliveries (sql/50_report_counts.sql): the roll-up writes no row for
// them; once a roll-up has gone through every webhook, the report reads the days
// before its first day not countable without a row as empty, unless they are noted to
// be counted again, and later roll-ups visit only the webhooks with deliveries since.
// Until 2026-12-04 every such day had a row of zeros, for every webhook, for ever, and
// every webhook was visited once a day to write it.
import test from 'ava';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';
import { indexUse } from '../helpers/plans.ts';
import { insertFinished, rawCounts, reported } from '../helpers/report-counts.ts';

const { db, api } = useTestDatabaseWithApi(test);

const DAY = 86_400_000;
const HOUR = 3_600_000;
const startOfToday = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate());
const at = (daysAgo: number, hours = 0) => new Date(startOfToday - daysAgo * DAY + hours * HOUR).toISOString();
const day = (daysAgo: number) => at(daysAgo).slice(0, 10);
// the last day a roll-up may count: the one that ended more than two days ago
const LAST_COUNTABLE = 3;
const ROLL_UP = 'call webhooks.roll_up_report_counts()';

/** Ranges over the quiet days and across them: whole days, parts of days, open ends. */
const RANGES: Array<[string | null, string | null]> = [
  [null, null], [at(30), null], [at(25), at(2)], [at(19, 7.5), at(6, 13.25)], [at(13), at(6)],
  [at(12, 1), at(9, 23)], [null, at(8, 12)], [at(7, 6), null], [at(9), at(7)], [at(4), at(3, 12)],
];

async function assertReportMatchesRows(t: any, token: string, webhookId: string, when: string) {
  for (const [since, until] of RANGES) {
    t.deepEqual(await reported(api(), token, webhookId, since, until), await rawCounts(db().pool, webhookId, since, until),
      `${when}: [${since}, ${until})`);
  }
}

async function dayRows(webhookId: string): Promise<Array<[string, number]>> {
  const { rows } = await db().pool.query(
    `select to_char(day, 'YYYY-MM-DD') as day, fired::int from webhooks.delivery_day_counts where webhook_id = $1 order by day`,
    [webhookId]);
  return rows.map((r) => [r.day, r.fired]);
}

// serial: a roll-up covers every webhook of the database
test.serial('a quiet webhook has rows for its days with deliveries alone; the report equals the rows, a day noted to count again included', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const quiet = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const token = await api().token(company.id);
  await insertFinished(db().pool, quiet.id, company.id,
    [at(20, 5), at(20, 6), at(14, 1), at(5, 23.5)], ['succeeded', 'failed', 'succeeded', 'succeeded']);
  // a day of test sends alone: not counted, as in Times Fired
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'webhook.test', 0, '{}', 'succeeded', 1, $3, $3)`, [quiet.id, company.id, at(10, 2)]);

  await db().pool.query(ROLL_UP);
  t.deepEqual(await dayRows(quiet.id), [[day(20), 2], [day(14), 1], [day(5), 1]], 'no row for the days between');
  await assertReportMatchesRows(t, token, quiet.id, 'rolled up');

  // a delivery written into an empty day of the span, and one deleted from a counted
  // day: both days noted, and counted from the rows until the next roll-up
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'failed', 1, $3, $3)`, [quiet.id, company.id, at(8, 4)]);
  await db().pool.query(
    `delete from webhooks.deliveries where webhook_id = $1 and created_at >= $2 and created_at < $3`,
    [quiet.id, at(14), at(13)]);
  const { rows: noted } = await db().pool.query(
    `select to_char(day, 'YYYY-MM-DD') as day from webhooks_private.delivery_days_to_count where webhook_id = $1 order by day`,
    [quiet.id]);
  t.deepEqual(noted.map((r) => r.day), [day(14), day(8)]);
  await assertReportMatchesRows(t, token, quiet.id, 'days noted');

  await db().pool.query(ROLL_UP);
  t.deepEqual(await dayRows(quiet.id), [[day(20), 2], [day(8), 1], [day(5), 1]],
    'the emptied day has no row now, the day written into has one');
  await assertReportMatchesRows(t, token, quiet.id, 'rolled up again');

  // another company's viewer reads none of these notes
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'failed', 1, $3, $3)`, [quiet.id, company.id, at(12, 4)]);
  const stranger = await f.company();
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await client.query('begin');
  try {
    const notes = async (companyId: string) => {
      await client.query(`select set_config('role', 'webhook_viewer', true), set_config('jwt.claims.company_id', $1, true)`, [companyId]);
      return (await client.query('select count(*)::int as n from webhooks_private.delivery_days_to_count')).rows[0].n;
    };
    t.is(await notes(company.id), 1);
    t.is(await notes(stranger.id), 0);
  } finally {
    await client.query('rollback');
  }
});

test.serial("a new day's roll-up visits only the webhooks with deliveries in the day it can count now, and counts that day even when a later one is noted; a quiet webhook's days still read as empty", async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const quiet = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const idle = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const busy = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const token = await api().token(company.id);
  await insertFinished(db().pool, quiet.id, company.id, [at(10, 3)], ['succeeded']);
  // (busy's delivery of 1 day ago, written more than a day after it was created, notes
  // its day, which is not countable yet: the days before it must still be counted)
  await insertFinished(db().pool, busy.id, company.id, [at(LAST_COUNTABLE, 3), at(1, 3)], ['succeeded', 'failed']);
  const webhooks = Number((await db().pool.query('select count(*) from webhooks.webhooks')).rows[0].count);
  // the first roll-up of an install visits every webhook
  await db().pool.query('delete from webhooks_private.report_counts_rolled_up');
  t.is((await db().pool.query(ROLL_UP)).rows[0].visited, webhooks);

  // as if the last day countable had not been, the last time: its day comes now
  await db().pool.query('update webhooks_private.report_counts_rolled_up set counted_before = counted_before - 1');
  await db().pool.query('delete from webhooks.delivery_day_counts where day = $1', [day(LAST_COUNTABLE)]);
  const { rows: [{ thatDay }] } = await db().pool.query(
    `select array_agg(w.id::text order by w.id) as "thatDay" from webhooks.webhooks w
     where exists (select 1 from webhooks.deliveries d
                   where d.webhook_id = w.id and d.created_at >= $1 and d.created_at < $2)`,
    [at(LAST_COUNTABLE), at(LAST_COUNTABLE - 1)]);
  t.true(thatDay.includes(busy.id) && !thatDay.includes(quiet.id) && !thatDay.includes(idle.id));
  t.is((await db().pool.query(ROLL_UP)).rows[0].visited, thatDay.length, 'the webhooks with deliveries in that day');
  t.deepEqual(await dayRows(busy.id), [[day(LAST_COUNTABLE), 1]]);
  t.deepEqual(await dayRows(quiet.id), [[day(10), 1]]);
  t.deepEqual(await dayRows(idle.id), []);
  for (const hook of [quiet, idle, busy]) await assertReportMatchesRows(t, token, hook.id, `webhook ${hook.id}`);
});

test.serial("the report of a quiet webhook does not count its empty days from the rows", async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await insertFinished(db().pool, hook.id, company.id, [at(25, 3), at(4, 3)], ['succeeded', 'failed']);
  // a busy webhook of another company: a delivery every day, so every day has its
  // partitions, as in any install with some traffic
  const busy = await f.company();
  const busyHook = await f.webhook({ companyId: busy.id, actions: ['contact.created'] });
  const everyDay = Array.from({ length: 30 }, (_, i) => at(i + 1, 12));
  await insertFinished(db().pool, busyHook.id, busy.id, everyDay, everyDay.map(() => 'succeeded'));
  await db().pool.query(ROLL_UP);
  t.deepEqual(await dayRows(hook.id), [[day(25), 1], [day(4), 1]]);

  // index scans of history in one transaction, as the company's viewer: counting a
  // stretch of days from the rows probes each day's partition
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await client.query('begin');
  try {
    await client.query(`select set_config('role', 'webhook_viewer', true), set_config('jwt.claims.company_id', $1, true)`, [company.id]);
    const { result: { rows: [counts] }, used: scans } = await indexUse(client, 'webhooks.delivery_history', () => client.query(
      `select fired::int, succeeded::int, failed::int from webhooks_private.count_deliveries($1, $2, $3, $4)`,
      [hook.id, company.id, at(28), at(LAST_COUNTABLE - 1)]), 'scans');
    t.deepEqual(counts, { fired: 2, succeeded: 1, failed: 1 });
    // (the parts of days at the range's ends, and the days since where every webhook is
    // counted to: a few at most)
    t.true(scans < 20, `${scans} index scans of history`);
  } finally {
    await client.query('rollback');
  }
});
