// A detach maintenance gave up on half way (tools/maintain.ts): DETACH PARTITION …
// CONCURRENTLY committed its first step, then its wait for an open transaction ended at
// lock_timeout, and the run failed. The partition stays "detach pending", and Postgres
// allows one per partitioned table: until 2026-12-07 every later detach of that table
// (another day past the retention, a tail moved ahead) failed with 55000 naming the
// pending one, and every run of maintenance with it. The next detach of the table
// finishes it (FINALIZE) first and treats it as a stopped run's leftovers: dropped when
// its day is the engine's to drop (its history gone), attached back when its day is kept
// (its history attached, forgotten or not). Results and attempts a stopped run left
// detached (not pending) are found by every run: webhooks.detached_day_partitions.
import test from 'ava';
import pg from 'pg';
import { maintain } from '../../tools/maintain.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { noDayDroppedBeforeEachTest, utcDay } from '../helpers/days.ts';

const db = useTestDatabase(test);
noDayDroppedBeforeEachTest(test, db);
// (each test its own days: a day once dropped is not made again)
const ymd = (day: Date) => day.toISOString().slice(0, 10).replaceAll('-', '');
const iso = (day: Date) => day.toISOString().slice(0, 10);

/** a DETACH … CONCURRENTLY that gives up waiting for an open reader of the table, as a run's does */
async function detachGivenUp(table: string, partition: string): Promise<void> {
  const reader = new pg.Client({ connectionString: db().url });
  const detacher = new pg.Client({ connectionString: db().url });
  await reader.connect();
  await detacher.connect();
  try {
    await reader.query('begin');
    await reader.query(`select count(*) from webhooks.${table}`);
    await detacher.query(`set lock_timeout = '100ms'`);
    const error = await detacher.query(
      `alter table webhooks.${table} detach partition webhooks_partitions.${partition} concurrently`).then(() => null, (e) => e);
    if ((error as { code?: string } | null)?.code !== '55P03') throw new Error(`the detach did not give up: ${error}`);
    await reader.query('commit');
  } finally {
    await reader.end();
    await detacher.end();
  }
}

async function pendingDetaches(): Promise<string[]> {
  const { rows } = await db().pool.query(
    `select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhdetachpending order by 1`);
  return rows.map((r) => r.relname);
}

/** the tables of webhooks_partitions attached to nothing */
async function orphans(): Promise<string[]> {
  const { rows } = await db().pool.query(
    `select c.relname from pg_class c
     where c.relnamespace = 'webhooks_partitions'::regnamespace and c.relkind = 'r'
       and not exists (select 1 from pg_inherits i where i.inhrelid = c.oid) order by 1`);
  return rows.map((r) => r.relname);
}

async function dayPartitions(day: Date): Promise<string[]> {
  const { rows } = await db().pool.query(`select relname from pg_class where relname like '%\\_p' || $1 order by 1`, [ymd(day)]);
  return rows.map((r) => r.relname);
}

/** two days past the retention, each with a delivery sent and counted */
async function twoDaysPast(t: { teardown: (fn: () => unknown) => void }, from: number) {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '5 days'`);
  t.teardown(() => db().pool.query(`alter database ${db().name} reset webhooks.retention`));
  const [older, pending] = [utcDay(from), utcDay(from + 1)];
  for (const day of [older, pending]) {
    await db().pool.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
       values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, $3, $3)`,
      [webhook.id, company.id, new Date(day.getTime() + 600_000)]);
  }
  await db().pool.query('call webhooks.roll_up_report_counts()');
  const counts = async () => (await db().pool.query(
    `select to_char(day, 'YYYY-MM-DD') as day, fired::int from webhooks.daily_counts where webhook_id = $1 order by 1`,
    [webhook.id])).rows;
  return { older, pending, counts };
}

test.serial('a day\'s history left pending detach by a run that gave up: the next run finishes and drops it, and drops the day before it', async (t) => {
  const { older, pending, counts } = await twoDaysPast(t, -14);
  const before = await counts();
  // the run that gave up: the older day kept then (a delivery on its way, ended since),
  // the later one forgotten, and its history's detach given up
  await db().pool.query('select webhooks.forget_day($1::date)', [iso(pending)]);
  await detachGivenUp('delivery_history', `delivery_history_p${ymd(pending)}`);
  t.deepEqual(await pendingDetaches(), [`delivery_history_p${ymd(pending)}`]);

  const said: string[] = [];
  const result = await maintain(db().url, (line) => said.push(line));
  t.deepEqual(result.daysDropped, [iso(older), iso(pending)], said.join('\n'));
  t.deepEqual(await pendingDetaches(), []);
  t.deepEqual(await orphans(), []);
  t.deepEqual(await dayPartitions(older), []);
  t.deepEqual(await dayPartitions(pending), []);
  t.deepEqual(await counts(), before);
});

test.serial('a day\'s attempts left pending detach by a run that gave up: the next run finishes and drops them, and drops the day before it', async (t) => {
  const { older, pending, counts } = await twoDaysPast(t, -17);
  const before = await counts();
  // the run that gave up: the day's history dropped, then the detach of its attempts given up
  await db().pool.query('select webhooks.forget_day($1::date)', [iso(pending)]);
  await db().pool.query(`alter table webhooks.delivery_history detach partition webhooks_partitions.delivery_history_p${ymd(pending)}`);
  await db().pool.query(`drop table webhooks_partitions.delivery_history_p${ymd(pending)}`);
  await detachGivenUp('delivery_attempts', `delivery_attempts_p${ymd(pending)}`);
  t.deepEqual(await pendingDetaches(), [`delivery_attempts_p${ymd(pending)}`]);

  const said: string[] = [];
  const result = await maintain(db().url, (line) => said.push(line));
  t.deepEqual(result.daysDropped, [iso(older), iso(pending)], said.join('\n'));
  t.deepEqual(await pendingDetaches(), []);
  t.deepEqual(await orphans(), []);
  t.deepEqual(await dayPartitions(older), []);
  t.deepEqual(await dayPartitions(pending), []);
  t.deepEqual(await counts(), before);
});

test.serial('detaches a DBA left pending, of a day\'s history with a delivery on its way and of a kept day\'s results, are finished and attached back by the next run', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '5 days'`);
  t.teardown(() => db().pool.query(`alter database ${db().name} reset webhooks.retention`));
  const [expired, onItsWay, kept] = [utcDay(-20), utcDay(-19), utcDay(-2)];
  const write = async (day: Date, state: string) => (await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', $3, case when $3 = 'pending' then 0 else 1 end,
             case when $3 = 'pending' then null else $4::timestamptz end, $4::timestamptz) returning id`,
    [webhook.id, company.id, state, new Date(day.getTime() + 600_000)])).rows[0].id as string;
  await write(expired, 'succeeded');
  const waiting = await write(onItsWay, 'pending');
  const sent = await write(kept, 'failed');
  await db().pool.query('call webhooks.roll_up_report_counts()');
  await detachGivenUp('delivery_history', `delivery_history_p${ymd(onItsWay)}`);
  await detachGivenUp('delivery_results', `delivery_results_p${ymd(kept)}`);

  const said: string[] = [];
  const result = await maintain(db().url, (line) => said.push(line));
  t.deepEqual(result.daysDropped, [iso(expired)], said.join('\n'));
  t.true(said.includes(`attached back the history of ${iso(onItsWay)}, left detached by hand: a delivery of it is on its way`), said.join('\n'));
  t.deepEqual(await pendingDetaches(), []);
  t.deepEqual(await orphans(), []);
  const { rows } = await db().pool.query(
    'select id, state from webhooks.deliveries where id = any ($1::bigint[]) order by id', [[waiting, sent]]);
  t.deepEqual(rows, [{ id: waiting, state: 'pending' }, { id: sent, state: 'failed' }]);
  t.deepEqual(await dayPartitions(kept), [`delivery_attempts_p${ymd(kept)}`, `delivery_history_p${ymd(kept)}`, `delivery_results_p${ymd(kept)}`]);
});

test.serial('a day\'s history left pending detach by a run that gave up does not stop the next run\'s move of the tail ahead', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '5 days'`);
  t.teardown(() => db().pool.query(`alter database ${db().name} reset webhooks.retention`));
  const pending = utcDay(-23);
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, $3, $3)`,
    [webhook.id, company.id, new Date(pending.getTime() + 600_000)]);
  await db().pool.query('call webhooks.roll_up_report_counts()');
  await db().pool.query('select webhooks.forget_day($1::date)', [iso(pending)]);
  await detachGivenUp('delivery_history', `delivery_history_p${ymd(pending)}`);
  // a day has passed since the days ahead were made: the last of them goes, and the tail
  // starts there, within the days ahead (to be moved ahead, empty)
  const [last, tail] = [ymd(utcDay(14)), ymd(utcDay(15))];
  for (const table of ['delivery_history', 'delivery_results', 'delivery_attempts']) {
    for (const name of [`${table}_p${last}`, `${table}_from_${tail}`]) {
      await db().pool.query(`alter table webhooks.${table} detach partition webhooks_partitions.${name}`);
      await db().pool.query(`drop table webhooks_partitions.${name}`);
    }
    await db().pool.query('select webhooks_private.attach_tail($1)', [table]);
  }

  const said: string[] = [];
  const result = await maintain(db().url, (line) => said.push(line));
  t.is(result.tails, 'detach');
  t.deepEqual(result.daysDropped, [iso(pending)], said.join('\n'));
  t.deepEqual(await pendingDetaches(), []);
  t.deepEqual(await orphans(), []);
  t.deepEqual(await dayPartitions(pending), []);
  const { rows: tails } = await db().pool.query(
    `select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid where c.relkind = 'r' and c.relname like '%\\_from\\_%' order by 1`);
  t.deepEqual(tails.map((r) => r.relname), [`delivery_attempts_from_${tail}`, `delivery_history_from_${tail}`, `delivery_results_from_${tail}`]);
});

// A run stopped between a day's detach of its results or attempts and their drop: a
// view a DBA made of that partition (which the detach leaves in place) makes the drop
// fail after the detach. Until 2026-12-07 no later run looked at
// detached results or attempts: the table was left for good, out of every count and
// listing, its disk space kept.
for (const table of ['delivery_results', 'delivery_attempts']) {
  test.serial(`a day's ${table.slice(9)} detached by a run stopped before their drop: a later run drops them once nothing depends on them, the day's counts kept`, async (t) => {
    const { older, pending, counts } = await twoDaysPast(t, table === 'delivery_results' ? -26 : -29);
    const before = await counts();
    const partition = `${table}_p${ymd(older)}`;
    await db().pool.query(`create view public.archive_view as select * from webhooks_partitions.${partition}`);
    const stopped = await maintain(db().url).then(() => null, (e) => e);
    t.is((stopped as { code?: string } | null)?.code, '2BP01', String(stopped));
    // what the stopped run left: the day's history gone, the table detached, nothing pending
    t.deepEqual(await orphans(), [partition]);
    t.deepEqual(await pendingDetaches(), []);
    // the view still there: the next run says so and goes on
    const blocked: string[] = [];
    const goneOn = await maintain(db().url, (line) => blocked.push(line));
    // (the attempts' day still has its results attached: named again, and they go)
    t.deepEqual(goneOn.daysDropped, table === 'delivery_results' ? [iso(pending)] : [iso(older), iso(pending)], blocked.join('\n'));
    t.true(blocked.some((line) => line.startsWith(`left ${partition} detached, its day's history gone: cannot drop table`)), blocked.join('\n'));
    t.deepEqual(await orphans(), [partition]);
    await db().pool.query('drop view public.archive_view');

    const said: string[] = [];
    const result = await maintain(db().url, (line) => said.push(line));
    t.deepEqual(result.daysDropped, [], said.join('\n'));
    t.deepEqual(await orphans(), [], said.join('\n'));
    t.true(said.includes(`dropped ${partition}, left detached by a run that stopped: its day's history gone`), said.join('\n'));
    t.deepEqual(await dayPartitions(older), []);
    t.deepEqual(await dayPartitions(pending), []);
    t.deepEqual(await counts(), before);
  });
}

// The reverse: a day forgotten but kept (its history attached back by
// keep_day_on_its_way: one of its deliveries was on its way), whose results a DBA's
// detach left pending. Until 2026-12-07 the next detach of results finished it and
// dropped it as a forgotten day's, the day's failures reading as successes after.
test.serial('a kept day\'s results left pending detach, their day forgotten: the next run attaches them back, its failures stay failures', async (t) => {
  const { older, counts } = await twoDaysPast(t, -32);
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const kept = utcDay(-31);
  const at = new Date(kept.getTime() + 900_000);
  const write = async (state: string) => (await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', $3, case when $3 = 'pending' then 0 else 1 end,
             case when $3 = 'pending' then null else $4::timestamptz end, $4::timestamptz) returning id`,
    [webhook.id, company.id, state, at])).rows[0].id as string;
  const failed = await write('failed');
  const waiting = await write('pending');
  await db().pool.query('call webhooks.roll_up_report_counts()');
  const before = await counts();
  // a run forgot the day, then found a delivery of it on its way: the day kept
  await db().pool.query('select webhooks.forget_day($1::date)', [iso(kept)]);
  await detachGivenUp('delivery_results', `delivery_results_p${ymd(kept)}`);

  const said: string[] = [];
  const result = await maintain(db().url, (line) => said.push(line));
  t.deepEqual(result.daysDropped, [iso(older)], said.join('\n'));
  t.deepEqual(await pendingDetaches(), []);
  t.deepEqual(await orphans(), []);
  t.deepEqual(await dayPartitions(kept), ['attempts', 'history', 'results'].map((table) => `delivery_${table}_p${ymd(kept)}`));
  const { rows } = await db().pool.query(
    'select id, state from webhooks.deliveries where id = any ($1::bigint[]) order by id', [[failed, waiting]]);
  t.deepEqual(rows, [{ id: failed, state: 'failed' }, { id: waiting, state: 'pending' }]);
  t.deepEqual(await counts(), before);
});

// A detach of a kept day's results or attempts left pending (a DBA's given up, with no
// day past the retention to drop): until 2026-12-07 it was finished only at that
// table's next detach, a day past the retention or a tail moved ahead, perhaps days
// later; meanwhile the day's failures read as successes (a result row missing means
// succeeded), and its attempts were gone from its deliveries' history. Every run of
// maintenance now finishes it at its start, and attaches it back.
for (const table of ['delivery_results', 'delivery_attempts']) {
  test.serial(`a kept day's ${table.slice(9)} left pending detach, no day past the retention: the next run attaches them back`, async (t) => {
    const f = factories(db().pool);
    const company = await f.company();
    const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
    const kept = utcDay(table === 'delivery_results' ? -3 : -4);
    const at = new Date(kept.getTime() + 900_000);
    const { rows: [{ id: failed }] } = await db().pool.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
       values ($1, $2, 'contact.created', 1, '{}', 'failed', 1, $3, $3) returning id`,
      [webhook.id, company.id, at]);
    await db().pool.query(
      `insert into webhooks.delivery_attempts (delivery_id, delivery_created_at, webhook_id, company_id, attempt, attempted_at,
                                               duration_ms, status_code)
       values ($1, $2, $3, $4, 1, $2, 5, 500)`,
      [failed, at, webhook.id, company.id]);
    const readings = async () => {
      const { rows: [delivery] } = await db().pool.query('select state from webhooks.deliveries where id = $1', [failed]);
      const { rows: attempts } = await db().pool.query(
        'select attempt, status_code from webhooks.delivery_attempts where delivery_id = $1', [failed]);
      return { state: delivery.state, attempts };
    };
    const before = await readings();
    t.deepEqual(before, { state: 'failed', attempts: [{ attempt: 1, status_code: 500 }] });
    await detachGivenUp(table, `${table}_p${ymd(kept)}`);
    t.notDeepEqual(await readings(), before, 'while the detach is pending, the day reads otherwise');

    const said: string[] = [];
    const result = await maintain(db().url, (line) => said.push(line));
    t.deepEqual(result.daysDropped, [], said.join('\n'));
    t.deepEqual(await pendingDetaches(), [], said.join('\n'));
    t.deepEqual(await orphans(), []);
    t.deepEqual(await dayPartitions(kept), ['attempts', 'history', 'results'].map((name) => `delivery_${name}_p${ymd(kept)}`));
    t.deepEqual(await readings(), before);
    // (at its start: the roll-up after it counted the day's failure as one)
    const { rows: counted } = await db().pool.query(
      'select fired::int, succeeded::int, failed::int from webhooks.delivery_day_counts where webhook_id = $1', [webhook.id]);
    t.deepEqual(counted, [{ fired: 1, succeeded: 0, failed: 1 }]);
  });
}

// Its FINALIZE waits for the readers older than it, as the detach did: one that outlasts
// the run's tries does not stop the run (its purges, the days it drops); the run says
// so, leaves the day counts to the next (they would count the hidden failure as a
// success, for good), and the next one finishes the detach and counts.
test.serial('a kept day\'s results left pending detach behind a long reader: the run goes on without the day counts and says so, the next one attaches them back and counts', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const kept = utcDay(-5);
  const at = new Date(kept.getTime() + 900_000);
  const { rows: [{ id: failed }] } = await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'failed', 1, $3, $3) returning id`,
    [webhook.id, company.id, at]);
  const partition = `delivery_results_p${ymd(kept)}`;
  await detachGivenUp('delivery_results', partition);
  const reader = new pg.Client({ connectionString: db().url });
  await reader.connect();
  t.teardown(() => reader.end());
  await reader.query('begin isolation level repeatable read');
  await reader.query('select 1');

  const said: string[] = [];
  const first = await maintain(db().url, (line) => said.push(line));
  t.true(said.some((line) => line.startsWith('left a detach of delivery_results pending: ')), said.join('\n'));
  t.deepEqual(await pendingDetaches(), [partition]);
  const dayCounts = async () => (await db().pool.query(
    'select fired::int, succeeded::int, failed::int from webhooks.delivery_day_counts where webhook_id = $1', [webhook.id])).rows;
  t.is(first.daysRolledUp, 0);
  t.deepEqual(await dayCounts(), []);
  await reader.query('commit');

  const again: string[] = [];
  const second = await maintain(db().url, (line) => again.push(line));
  t.deepEqual(await pendingDetaches(), [], again.join('\n'));
  t.true(second.daysRolledUp > 0);
  t.deepEqual(await dayCounts(), [{ fired: 1, succeeded: 0, failed: 1 }]);
  t.deepEqual(await orphans(), []);
  const { rows: [delivery] } = await db().pool.query('select state from webhooks.deliveries where id = $1', [failed]);
  t.is(delivery.state, 'failed');
});
