// The report's daily counts (sql/50_report_counts.sql): whatever has been rolled up
// and whatever changed since, the report says what counting the rows would say.
import test from 'ava';
import pg from 'pg';
import { startTestApi, useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';
import { insertFinished, rawCounts, reported } from '../helpers/report-counts.ts';
import { waitForRows } from '../helpers/relay.ts';

const { db, api } = useTestDatabaseWithApi(test);

const DAY = 86_400_000;
const STATES = ['succeeded', 'succeeded', 'succeeded', 'failed'];
const ROLL_UP_ONE_WEBHOOK_A_BATCH = 'call webhooks.roll_up_report_counts(p_webhooks_per_batch => 1)';

/** Deliveries spread over the days 3 to 12 days ago, at varied hours, finished. */
async function history(webhookId: string, companyId: string, perDay = 5) {
  const startOfToday = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate());
  const times: string[] = [];
  const states: string[] = [];
  for (let day = 3; day <= 12; day++) {
    for (let i = 0; i < perDay; i++) {
      times.push(new Date(startOfToday - day * DAY + (i * 4 + (day % 4)) * 3_600_000 + i * 61_000).toISOString());
      states.push(STATES[(day + i) % STATES.length]);
    }
  }
  return { startOfToday, rows: await insertFinished(db().pool, webhookId, companyId, times, states) };
}

/** Ranges that start and end mid-day, on day boundaries, open, empty, inverted. */
function ranges(startOfToday: number): Array<[string | null, string | null]> {
  const at = (days: number, hours = 0) => new Date(startOfToday - days * DAY + hours * 3_600_000).toISOString();
  return [
    [null, null],
    [at(30), null],
    [at(10), at(5)],
    [at(10, 7.5), at(5, 13.25)],
    [at(12, 23.99), at(3, 0.01)],
    [null, at(8, 12)],
    [at(6, 6), null],
    [at(7), at(7)],
    [at(4), at(9)],
  ];
}

async function assertReportMatchesRows(t: any, token: string, webhookId: string, startOfToday: number, when: string) {
  for (const [since, until] of ranges(startOfToday)) {
    t.deepEqual(await reported(api(), token, webhookId, since, until), await rawCounts(db().pool, webhookId, since, until), `${when}: [${since}, ${until})`);
  }
}

// serial: a roll-up covers every webhook of the database, so these tests take turns
test.serial('the report equals counting the rows: before a roll-up, after it, after changes to counted days, and after rolling up again', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const { startOfToday, rows } = await history(hook.id, company.id);
  const token = await api().token(company.id);
  // a day with a delivery still on its way is not counted yet
  const unfinished = rows.find((r) => startOfToday - r.created_at.getTime() > 9 * DAY)!;
  await db().pool.query("update webhooks.deliveries set state = 'pending', completed_at = null where id = $1", [unfinished.id]);

  await assertReportMatchesRows(t, token, hook.id, startOfToday, 'nothing rolled up');

  const { rows: [{ days: written }] } = await db().pool.query('call webhooks.roll_up_report_counts()');
  t.is(written, 9, 'ten days, one not finished');
  const { rows: counted } = await db().pool.query('select day::text, fired::int from webhooks.delivery_day_counts where webhook_id = $1 order by day', [hook.id]);
  t.is(counted.length, 9);
  t.true(counted.every((c) => c.fired === 5));
  await assertReportMatchesRows(t, token, hook.id, startOfToday, 'rolled up');

  // changes to counted days: a replay, a retry settling, a delete, a late insert, a
  // delivery moved to another counted day on its way again (another partition: no
  // result row is written, whose trigger would see the day it joins)
  const [replayed, settled, deleted, moved] = [rows[10], rows[20], rows[30], rows[40]];
  const movedTo = new Date(startOfToday - 6 * DAY + 2 * 3_600_000).toISOString(); // a day no other change touches
  await db().pool.query("update webhooks.deliveries set state = 'pending', completed_at = null, created_at = $2 where id = $1",
    [moved.id, movedTo]);
  await db().pool.query("update webhooks.deliveries set state = 'failed' where id = $1", [replayed.id]);
  const replay = await api().gql(token, 'mutation($id: BigInt!) { replayDelivery(input: { id: $id }) { result { state } } }', { id: replayed.id });
  t.is(replay.data.replayDelivery.result.state, 'pending');
  await db().pool.query("update webhooks.deliveries set state = 'failed' where id = $1", [settled.id]);
  await db().pool.query('delete from webhooks.deliveries where id = $1', [deleted.id]);
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, now(), $3)`,
    [hook.id, company.id, new Date(startOfToday - 4 * DAY + 3_600_000).toISOString()]);
  await assertReportMatchesRows(t, token, hook.id, startOfToday, 'after changes');

  await db().pool.query('call webhooks.roll_up_report_counts()');
  await assertReportMatchesRows(t, token, hook.id, startOfToday, 'rolled up again');
  const { rows: [{ pendingDays }] } = await db().pool.query(
    `select count(*)::int as "pendingDays" from webhooks.delivery_day_counts
     where webhook_id = $1
       and day = any (array[(($2::timestamptz) at time zone 'utc')::date, (($3::timestamptz) at time zone 'utc')::date,
                            (($4::timestamptz) at time zone 'utc')::date])`,
    [hook.id, replayed.created_at, unfinished.created_at, movedTo]);
  t.is(pendingDays, 0, 'days with a delivery on its way stay uncounted');
});

test.serial('recent days are never rolled up: they change all the time', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await f.contact(company.id);
  await db().pool.query("update webhooks.deliveries set state = 'succeeded', attempts = 1, completed_at = now() where webhook_id = $1", [hook.id]);
  await db().pool.query('call webhooks.roll_up_report_counts()');
  const { rows } = await db().pool.query('select * from webhooks.delivery_day_counts where webhook_id = $1', [hook.id]);
  t.deepEqual(rows, []);
});

test.serial('the API server rolls the counts up by itself, as webhook_authenticator', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await history(hook.id, company.id, 1);
  const rolling = await startTestApi(db().url, { reportCountsEveryMs: 50 });
  t.teardown(() => rolling.stop());
  const counted = await waitForRows(db().pool, 'select day from webhooks.delivery_day_counts where webhook_id = $1', [hook.id], (rows) => rows.length === 10);
  t.is(counted.length, 10);
});

test.serial('a roll-up commits webhook by webhook: a change to an old delivery of a webhook it has counted does not wait for the rest of it', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const first = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const later = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const { startOfToday, rows: firstRows } = await history(first.id, company.id, 2);
  const { rows: laterRows } = await history(later.id, company.id, 2);
  const token = await api().token(company.id);

  // a writer of an old delivery of the later webhook, its transaction open: the roll-up
  // counts the first webhook, then waits for the writer at the later one
  const writer = new pg.Client({ connectionString: db().url });
  await writer.connect();
  t.teardown(() => writer.end());
  await writer.query('begin');
  // (days before the hour counts' three: the writer and the roll-up meet on the lock alone)
  const old = (rows: Array<{ id: string; created_at: Date }>) => rows.find((r) => startOfToday - r.created_at.getTime() > 5 * DAY)!.id;
  await writer.query("update webhooks.deliveries set state = 'failed' where id = $1", [old(laterRows)]);
  const rollUp = new pg.Client({ connectionString: db().url });
  await rollUp.connect();
  t.teardown(() => rollUp.end());
  const pid = (await rollUp.query('select pg_backend_pid() as pid')).rows[0].pid;
  const running = rollUp.query(ROLL_UP_ONE_WEBHOOK_A_BATCH);
  await waitForRows(db().pool, `select 1 from pg_locks where pid = $1 and locktype = 'advisory' and not granted`, [pid], (r) => r.length > 0);
  t.true((await db().pool.query('select 1 from webhooks.delivery_day_counts where webhook_id = $1', [first.id])).rows.length > 0,
    'the first webhook is counted, and committed');

  // a replay of an old delivery of the first webhook goes through at once
  const replayer = new pg.Client({ connectionString: db().url });
  await replayer.connect();
  t.teardown(() => replayer.end());
  await replayer.query(`set lock_timeout = '2s'`);
  await replayer.query("update webhooks.deliveries set state = 'failed' where id = $1", [old(firstRows)]);

  await writer.query('commit');
  await running;
  await assertReportMatchesRows(t, token, first.id, startOfToday, 'after the roll-up');
  await assertReportMatchesRows(t, token, later.id, startOfToday, 'after the roll-up');
});

test.serial('a roll-up visits only the webhooks with deliveries since the last day it could count, or days to count again; the first of an install visits all', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const quiet = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const recent = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const idle = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const { startOfToday, rows: quietRows } = await history(quiet.id, company.id, 1);
  await insertFinished(db().pool, recent.id, company.id, [new Date(Date.now() - 3 * 3_600_000).toISOString()], ['succeeded']);
  const token = await api().token(company.id);
  const rollUp = async () => (await db().pool.query('call webhooks.roll_up_report_counts(p_webhooks_per_batch => 2)')).rows[0];
  const webhooks = async () => (await db().pool.query('select count(*)::int as n from webhooks.webhooks')).rows[0].n;
  // the webhooks with a delivery created since the start of the first day not
  // countable yet, or with a day noted to count again
  const expected = async () => (await db().pool.query(
    `select array_agg(w.id::text order by w.id) as ids from webhooks.webhooks w
     where exists (select 1 from webhooks.deliveries d
                   where d.webhook_id = w.id and d.created_at >= (((now() - interval '2 days') at time zone 'utc')::date)::timestamp at time zone 'utc')
        or exists (select 1 from webhooks_private.delivery_days_to_count n
                   where n.webhook_id = w.id and n.day < ((now() - interval '2 days') at time zone 'utc')::date)`)).rows[0].ids as string[];

  // as if no roll-up had gone through every webhook yet: this one does
  await db().pool.query('delete from webhooks_private.report_counts_rolled_up');
  const first = await rollUp();
  t.is(first.visited, await webhooks(), 'the first visits every webhook');
  t.is((await db().pool.query('select count(*)::int as n from webhooks.delivery_day_counts where webhook_id = $1', [quiet.id])).rows[0].n,
    10, "the quiet webhook's ten days");

  const visiting = await expected();
  t.true(visiting.includes(recent.id));
  t.false(visiting.includes(quiet.id));
  t.false(visiting.includes(idle.id));
  t.is((await rollUp()).visited, visiting.length, 'the next visits the webhooks with something to count');
  await assertReportMatchesRows(t, token, quiet.id, startOfToday, 'after the next');
  // the runs after it, the same day, only the webhooks noted for them (an hour left for
  // a delivery on its way, a write to an older delivery) and those with deliveries in
  // the hours finished since (none here, unless an hour ends meanwhile)
  const noted = async () => (await db().pool.query(
    `select count(*)::int as n from webhooks.webhooks w
     where exists (select 1 from webhooks_private.webhooks_to_roll_up r where r.webhook_id = w.id)
        or exists (select 1 from webhooks_private.delivery_days_to_count n
                   where n.webhook_id = w.id and n.day < webhooks_private.countable_before())`)).rows[0].n as number;
  const left = await noted();
  t.true(left < visiting.length, `noted: ${left}`);
  t.is((await rollUp()).visited, left, 'the next visits those noted');

  // a settle of an old delivery of the quiet webhook notes its day: visited once more
  const old = quietRows.find((r) => startOfToday - r.created_at.getTime() > 5 * DAY)!;
  await db().pool.query("update webhooks.deliveries set state = 'failed' where id = $1 and state = 'succeeded'", [old.id]);
  t.true((await expected()).includes(quiet.id));
  const again = await rollUp();
  t.is(again.visited, left + 1);
  t.is((await rollUp()).visited, left, 'once counted, it is left alone again');
  await assertReportMatchesRows(t, token, quiet.id, startOfToday, 'after the settle');

  // once a new day can be counted (here: as if the last roll-up through all of them had
  // been a day ago), the webhooks with deliveries in that day are visited, and those a
  // run within the day visits (noted; with deliveries in the hours finished since: none
  // here, unless an hour ends meanwhile); the others, those with deliveries since that
  // day included, have nothing new to count (a day without deliveries gets no row, and
  // their hours are counted as they come)
  await db().pool.query('update webhooks_private.report_counts_rolled_up set counted_before = counted_before - 1');
  const { rows: [{ since, thatDay }] } = await db().pool.query(
    `select count(*) filter (where exists (select 1 from webhooks.deliveries d
                                           where d.webhook_id = w.id
                                             and d.created_at >= webhooks_private.utc_day_start(webhooks_private.countable_before() - 1)))::int as since,
            count(*) filter (where exists (select 1 from webhooks.deliveries d
                                           where d.webhook_id = w.id
                                             and d.created_at >= webhooks_private.utc_day_start(webhooks_private.countable_before() - 1)
                                             and d.created_at < webhooks_private.utc_day_start(webhooks_private.countable_before()))
                               or exists (select 1 from webhooks_private.webhooks_to_roll_up r where r.webhook_id = w.id)
                               or exists (select 1 from webhooks_private.delivery_days_to_count n
                                          where n.webhook_id = w.id and n.day < webhooks_private.countable_before()))::int as "thatDay"
     from webhooks.webhooks w`);
  t.true(thatDay > left && thatDay < since, `that day's: ${thatDay}, since: ${since}`);
  t.is((await rollUp()).visited, thatDay);
  t.is((await rollUp()).visited, await noted());
});

test.serial('a roll-up asked for batches of no webhook, or for days not countable yet, says so', async (t) => {
  for (const batch of ['0', '-3', 'null']) {
    await t.throwsAsync(db().pool.query(`call webhooks.roll_up_report_counts(p_webhooks_per_batch => ${batch})`),
      { message: `p_webhooks_per_batch must be 1 or more, not ${batch}` });
  }
  await t.throwsAsync(db().pool.query('select * from webhooks.roll_up_report_counts_after(null, 1, current_date)'),
    { message: /^p_counting_before must be \d{4}-\d\d-\d\d or earlier \(the first day not countable yet\), not \d{4}-\d\d-\d\d$/ });
});
