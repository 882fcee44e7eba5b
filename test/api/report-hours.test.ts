// The report's hour counts (sql/50_report_counts.sql): the finished hours of the days
// not counted yet are counted by the roll-up, a write to a delivery of a counted hour
// makes its row stale at once, and a roll-up that counted before such a write never
// writes its older count over it. Whatever the rows of delivery_hour_counts, the
// report says what counting the deliveries would say.
import test from 'ava';
import pg from 'pg';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';
import { insertFinished, rawCounts, reported } from '../helpers/report-counts.ts';
import { waitForRows } from '../helpers/relay.ts';

const { db, api } = useTestDatabaseWithApi(test);

const HOUR = 3_600_000;
const STATES = ['succeeded', 'succeeded', 'failed'];

/** The start of the UTC hour `hoursAgo` hours before the current one. */
function hourStart(hoursAgo: number): number {
  return Math.floor(Date.now() / HOUR) * HOUR - hoursAgo * HOUR;
}

/** Finished deliveries in the hours 26 to 3 hours before this one (three an hour, two in every fourth hour). */
async function recentHistory(webhookId: string, companyId: string) {
  const times: string[] = [];
  const states: string[] = [];
  for (let ago = 26; ago >= 3; ago--) {
    for (let i = 0; i < (ago % 4 === 0 ? 2 : 3); i++) {
      times.push(new Date(hourStart(ago) + i * 700_000 + 1_000).toISOString());
      states.push(STATES[(ago + i) % STATES.length]!);
    }
  }
  return insertFinished(db().pool, webhookId, companyId, times, states);
}

/** Ranges over the recent hours: open, on hour boundaries, starting and ending mid-hour. */
function ranges(): Array<[string | null, string | null]> {
  const at = (hoursAgo: number, minutes = 0) => new Date(hourStart(hoursAgo) + minutes * 60_000).toISOString();
  return [[null, null], [at(30), null], [at(20), at(5)], [at(20, 7), at(5, 31)], [at(12, 59), null], [null, at(9, 1)], [at(4), at(4)]];
}

async function assertReportMatchesRows(t: any, token: string, webhookId: string, when: string) {
  for (const [since, until] of ranges()) {
    t.deepEqual(await reported(api(), token, webhookId, since, until), await rawCounts(db().pool, webhookId, since, until), `${when}: [${since}, ${until})`);
  }
}

async function hourRows(webhookId: string) {
  const { rows } = await db().pool.query(
    `select extract(epoch from hour)::bigint * 1000 as hour, fired::int, succeeded::int, failed::int, stale
     from webhooks.delivery_hour_counts where webhook_id = $1 order by hour`, [webhookId]);
  return rows.map((r) => ({ ...r, hour: Number(r.hour) }));
}

/** A webhook with recentHistory, rolled up; inHour(n): its deliveries of the hour n hours ago. */
async function countedScene() {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const rows = await recentHistory(hook.id, company.id);
  const token = await api().token(company.id);
  await db().pool.query('call webhooks.roll_up_report_counts()');
  const inHour = (ago: number) => rows.filter((r) => r.created_at.getTime() >= hourStart(ago) && r.created_at.getTime() < hourStart(ago - 1));
  return { hook, token, inHour };
}

// serial: a roll-up covers every webhook of the database, so these tests take turns
test.serial('the finished hours of recent days are counted, an hour with a delivery on its way is not, and the report equals the rows', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const silent = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const rows = await recentHistory(hook.id, company.id);
  // an hour with a delivery still on its way, and a delivery of the hour before last
  // (an hour that ended less than two hours ago)
  const unfinished = rows.find((r) => r.created_at.getTime() >= hourStart(10) && r.created_at.getTime() < hourStart(9))!;
  await db().pool.query("update webhooks.deliveries set state = 'pending', completed_at = null where id = $1", [unfinished.id]);
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, now(), $3)`, [hook.id, company.id, new Date(hourStart(1) + 60_000).toISOString()]);
  const token = await api().token(company.id);

  await db().pool.query('call webhooks.roll_up_report_counts()');
  // (the writes above made stale rows of the hours they touched: those count as none)
  const counted = (await hourRows(hook.id)).filter((r) => !r.stale);
  const expected = [];
  for (let ago = 26; ago >= 3; ago--) {
    if (ago === 10) continue;
    const n = ago % 4 === 0 ? 2 : 3;
    const failed = Array.from({ length: n }, (_, i) => STATES[(ago + i) % STATES.length]).filter((s) => s === 'failed').length;
    expected.push({ hour: hourStart(ago), fired: n, succeeded: n - failed, failed, stale: false });
  }
  t.deepEqual(counted, expected, 'every hour from the first delivery to the last that ended two hours ago, the unfinished one left out');
  t.deepEqual(await hourRows(silent.id), [], 'a webhook that never fired has no hour rows');
  await assertReportMatchesRows(t, token, hook.id, 'rolled up');

  // the delivery on its way ends: the next roll-up counts its hour
  await db().pool.query("update webhooks.deliveries set state = 'succeeded', completed_at = now() where id = $1", [unfinished.id]);
  await db().pool.query('call webhooks.roll_up_report_counts()');
  t.true((await hourRows(hook.id)).some((r) => r.hour === hourStart(10) && !r.stale));
  await assertReportMatchesRows(t, token, hook.id, 'rolled up again');
});

test.serial('a write to a delivery of a counted hour makes its row stale at once; the next roll-up counts it again', async (t) => {
  const { hook, token, inHour } = await countedScene();
  const [deleted] = inHour(7);
  const [failed] = inHour(15);
  await db().pool.query('delete from webhooks.deliveries where id = $1', [deleted!.id]);
  await db().pool.query("update webhooks.deliveries set state = 'failed' where id = $1", [failed!.id]);
  const replay = await api().gql(token, 'mutation($id: BigInt!) { replayDelivery(input: { id: $id }) { result { state } } }', { id: failed!.id });
  t.is(replay.data.replayDelivery.result.state, 'pending');
  const stale = (await hourRows(hook.id)).filter((r) => r.stale).map((r) => r.hour);
  t.deepEqual(stale, [hourStart(15), hourStart(7)]);
  await assertReportMatchesRows(t, token, hook.id, 'after the writes');

  await db().pool.query('call webhooks.roll_up_report_counts()');
  t.deepEqual((await hourRows(hook.id)).filter((r) => r.stale).map((r) => r.hour), [hourStart(15)], 'the hour of the replayed delivery waits for it to end');
  t.like((await hourRows(hook.id)).find((r) => r.hour === hourStart(7)), { fired: inHour(7).length - 1, stale: false });
  await assertReportMatchesRows(t, token, hook.id, 'rolled up again');
});

test.serial('a message written into a counted hour through the view makes its row stale at once', async (t) => {
  const { hook, token } = await countedScene();
  // pending: no result row is written with it, whose trigger would see it too (history
  // has no INSERT trigger: the view's write notes it, sql/50_report_counts.sql)
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, created_at)
     values ($1, $2, 'contact.created', 1, '{}', $3)`,
    [hook.id, hook.company_id, new Date(hourStart(11) + 60_000).toISOString()]);
  t.deepEqual((await hourRows(hook.id)).filter((r) => r.stale).map((r) => r.hour), [hourStart(11)]);
  await assertReportMatchesRows(t, token, hook.id, 'after the insert');
  await db().pool.query('call webhooks.roll_up_report_counts()');
  t.deepEqual((await hourRows(hook.id)).filter((r) => r.stale).map((r) => r.hour), [hourStart(11)], 'the hour waits for its delivery to end');
  await assertReportMatchesRows(t, token, hook.id, 'rolled up again');
});

/** The UTC day of the hour `hoursAgo` hours before this one. */
function dayOf(hoursAgo: number): string {
  return new Date(hourStart(hoursAgo)).toISOString().slice(0, 10);
}

/** Moves a delivery of the hour 9 hours ago into the hour `toAgo` hours ago: both rows are stale at once. */
async function assertMoveMakesBothStale(t: any, toAgo: number) {
  const { hook, token, inHour } = await countedScene();
  const [moved] = inHour(9);
  // pending again: its result row goes (that trigger sees the hour it leaves), a queue
  // row comes
  await db().pool.query(
    `update webhooks.deliveries set state = 'pending', completed_at = null, created_at = $2 where id = $1`,
    [moved!.id, new Date(hourStart(toAgo) + 60_000).toISOString()]);
  t.deepEqual((await hourRows(hook.id)).filter((r) => r.stale).map((r) => r.hour), [hourStart(9), hourStart(toAgo)].sort((a, b) => a - b));
  await assertReportMatchesRows(t, token, hook.id, 'after the move');
}

test.serial('a delivery moved to another counted hour of its day makes both rows stale, the one it joins seen by history\'s own trigger', async (t) => {
  // an hour beside it on the same UTC day: the row stays in its partition
  await assertMoveMakesBothStale(t, [8, 10].find((ago) => dayOf(ago) === dayOf(9))!);
});

test.serial('a delivery moved to a counted hour of another day makes both rows stale, the one it joins seen by the view\'s trigger', async (t) => {
  // another UTC day, so another partition: Postgres moves the row as a DELETE and an
  // INSERT, and history's UPDATE trigger does not fire (the hours 26 to 3 hours ago
  // span two days unless they are exactly one; then 2 hours ago is the next day)
  const toAgo = Array.from({ length: 24 }, (_, i) => 26 - i).find((ago) => dayOf(ago) !== dayOf(9)) ?? 2;
  t.not(dayOf(toAgo), dayOf(9));
  await assertMoveMakesBothStale(t, toAgo);
});

test.serial('a roll-up that counted an hour before a write to it does not write its count over the stale row', async (t) => {
  const { hook, token, inHour } = await countedScene();

  // an earlier hour made stale (committed), so that the next roll-up counts from there on
  await db().pool.query('delete from webhooks.deliveries where id = $1', [inHour(20)[0]!.id]);
  // a writer, its transaction still open: a delivery of a later counted hour deleted
  const writer = new pg.Client({ connectionString: db().url });
  await writer.connect();
  t.teardown(() => writer.end());
  await writer.query('begin');
  await writer.query('delete from webhooks.deliveries where id = $1', [inHour(8)[0]!.id]);

  // the roll-up counts without the writer's change, then meets its row and waits
  const rollUp = new pg.Client({ connectionString: db().url });
  await rollUp.connect();
  t.teardown(() => rollUp.end());
  await rollUp.query(`set statement_timeout = '10s'`);
  const pid = (await rollUp.query('select pg_backend_pid() as pid')).rows[0].pid;
  const running = rollUp.query('call webhooks.roll_up_report_counts()');
  await waitForRows(db().pool, 'select 1 from pg_locks where pid = $1 and not granted', [pid], (r) => r.length > 0);
  await writer.query('commit');
  await running;

  const after = await hourRows(hook.id);
  t.like(after.find((r) => r.hour === hourStart(20)), { fired: inHour(20).length - 1, stale: false }, 'the hour stale before it began: counted');
  t.like(after.find((r) => r.hour === hourStart(8)), { stale: true }, 'the hour written meanwhile: left stale');
  await assertReportMatchesRows(t, token, hook.id, 'after the race');
  await db().pool.query('call webhooks.roll_up_report_counts()');
  t.like((await hourRows(hook.id)).find((r) => r.hour === hourStart(8)), { fired: inHour(8).length - 1, stale: false });
  await assertReportMatchesRows(t, token, hook.id, 'rolled up again');
});

test.serial('a counted day whose hour rows are still there is counted once: by its day row where the range holds it whole, by its hours where not', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const token = await api().token(company.id);
  // a day that ended four days ago, three deliveries an hour
  const dayStart = Math.floor(Date.now() / (24 * HOUR)) * 24 * HOUR - 5 * 24 * HOUR;
  const times: string[] = [];
  const states: string[] = [];
  for (let hour = 0; hour < 24; hour++) {
    for (let i = 0; i < 3; i++) {
      times.push(new Date(dayStart + hour * HOUR + i * 600_000 + 1_000).toISOString());
      states.push(STATES[(hour + i) % STATES.length]!);
    }
  }
  await insertFinished(db().pool, hook.id, company.id, times, states);
  await db().pool.query('call webhooks.roll_up_report_counts()');
  // its hours, as true as its day row (as a roll-up leaves them until the next one)
  await db().pool.query(
    `insert into webhooks.delivery_hour_counts (webhook_id, company_id, hour, fired, succeeded, failed, stale)
     select webhook_id, company_id, date_trunc('hour', created_at), count(*), count(*) filter (where state = 'succeeded'),
            count(*) filter (where state = 'failed'), false
     from webhooks.deliveries where webhook_id = $1 group by 1, 2, 3`, [hook.id]);
  const { rows: [both] } = await db().pool.query(
    `select (select fired::int from webhooks.delivery_day_counts where webhook_id = $1 and day = $2::timestamptz::date) as day,
            (select count(*)::int from webhooks.delivery_hour_counts where webhook_id = $1) as hours`, [hook.id, new Date(dayStart).toISOString()]);
  t.deepEqual(both, { day: 72, hours: 24 });
  const at = (hours: number) => new Date(dayStart + hours * HOUR).toISOString();
  for (const [since, until] of [[null, null], [at(-1), at(25)], [at(0), at(24)], [at(5), null], [at(3), at(30)], [at(-2), at(20)]] as const) {
    t.deepEqual(await reported(api(), token, hook.id, since, until), await rawCounts(db().pool, hook.id, since, until), `[${since}, ${until})`);
  }
});

test.serial('a roll-up leaves alone the counted hours it finds unchanged: an earlier hour still on its way does not rewrite those after it', async (t) => {
  const { hook, inHour } = await countedScene();
  // an hour with a delivery on its way: every roll-up counts again from there
  await db().pool.query("update webhooks.deliveries set state = 'pending', completed_at = null where id = $1", [inHour(20)[0]!.id]);
  await db().pool.query('call webhooks.roll_up_report_counts()');
  const versions = async () => (await db().pool.query(
    `select extract(epoch from hour)::bigint * 1000 as hour, xmin::text as xmin
     from webhooks.delivery_hour_counts where webhook_id = $1 and hour > $2 order by hour`,
    [hook.id, new Date(hourStart(20)).toISOString()])).rows;
  const before = await versions();
  t.true(before.length >= 15);
  await db().pool.query('call webhooks.roll_up_report_counts()');
  t.deepEqual(await versions(), before, 'no row written again');
});

test.serial('a webhook whose hours are counted is not counted again: neither the hours before its first delivery nor one still on its way bring its other hours back', async (t) => {
  const { hook, token, inHour } = await countedScene();
  const pending = inHour(20)[0]!;
  await db().pool.query("update webhooks.deliveries set state = 'pending', completed_at = null where id = $1", [pending.id]);
  // how often this webhook's roll-up counts periods (its own session counts its calls)
  const session = new pg.Client({ connectionString: db().url });
  await session.connect();
  t.teardown(() => session.end());
  await session.query("set track_functions = 'pl'");
  const countingsOf = async (work: () => Promise<unknown>) => {
    const read = async () => {
      await session.query('select pg_stat_force_next_flush()');
      await session.query('select 1'); // (the flush comes as this session goes idle)
      return (await db().pool.query(
        `select coalesce(sum(calls), 0)::int as n from pg_stat_user_functions
         where funcid = 'webhooks_private.count_periods(bigint, bigint, timestamptz, timestamptz, interval)'::regprocedure`)).rows[0].n as number;
    };
    const before = await read();
    await work();
    return (await read()) - before;
  };
  const rollUpThisWebhook = () => session.query(`select webhooks_private.roll_up_webhook_days($1, b.days_before, b.hours_before)
     from webhooks_private.roll_up_bounds(now()) b`, [hook.id]);

  t.is(await countingsOf(rollUpThisWebhook), 0, 'an hour on its way, its hour row stale: nothing to count yet');
  t.is(await countingsOf(rollUpThisWebhook), 0);
  await db().pool.query("update webhooks.deliveries set state = 'succeeded', completed_at = now() where id = $1", [pending.id]);
  t.is(await countingsOf(rollUpThisWebhook), 1, 'the hour finished: counted');
  t.is((await hourRows(hook.id)).find((r) => r.hour === hourStart(20))?.stale, false);
  t.is(await countingsOf(rollUpThisWebhook), 0, 'then nothing again');
  await assertReportMatchesRows(t, token, hook.id, 'after');
});

// A relay's settle landing after the roll-up passed the delivery's hour and day: the day
// is counted only once every delivery of it ended, so the settle after the roll-up is
// counted by the next one, and the day counts are the rows' throughout.
test.serial('a delivery of a countable day settled after a roll-up: the next roll-up counts its day as its rows are', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const dayStart = Math.floor(Date.now() / (24 * HOUR)) * 24 * HOUR - 3 * 24 * HOUR;
  const at = (hours: number) => new Date(dayStart + hours * HOUR).toISOString();
  await insertFinished(db().pool, hook.id, company.id, [at(1), at(2), at(5)], ['succeeded', 'failed', 'succeeded']);
  const { rows: [late] } = await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, next_attempt_at,
                                      locked_by, locked_until, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'in_flight', 1, now(), 'relay-1', now() + interval '1 minute', $3)
     returning id`, [hook.id, company.id, at(2.5)]);
  const day = new Date(dayStart).toISOString().slice(0, 10);
  const counted = async () => (await db().pool.query(
    `select fired::text, succeeded::text, failed::text from webhooks.daily_counts where webhook_id = $1 and day = $2::date`,
    [hook.id, day])).rows;
  const rows = () => rawCounts(db().pool, hook.id, at(0), at(24));

  await db().pool.query('call webhooks.roll_up_report_counts()');
  const { rows: [kept] } = await db().pool.query(
    'select count(*)::int as n from webhooks.delivery_day_counts where webhook_id = $1 and day = $2::date', [hook.id, day]);
  t.is(kept.n, 0, 'not counted while a delivery of it is on its way');
  // the relay's settle lands now: a 410, failed for good
  const { rows: settled } = await db().pool.query(
    `select state from webhooks_relay.settle_deliveries('relay-1', $1::bigint[], '{1}', $2::timestamptz[], '{5}', '{410}',
       '{null}', '{gone}', '{null}')`, [[late.id], [new Date()]]);
  t.deepEqual(settled, [{ state: 'failed' }]);
  t.deepEqual(await rows(), { fired: '4', succeeded: '2', failed: '2' });
  t.deepEqual(await counted(), [await rows()], 'before the next roll-up: from the rows');
  await db().pool.query('call webhooks.roll_up_report_counts()');
  const { rows: dayRow } = await db().pool.query(
    'select fired::text, succeeded::text, failed::text from webhooks.delivery_day_counts where webhook_id = $1 and day = $2::date',
    [hook.id, day]);
  t.deepEqual(dayRow, [await rows()], 'rolled up: its day count');
  t.deepEqual(await counted(), [await rows()]);
});
