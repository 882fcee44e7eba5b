// The retention (sql/29_retention.sql, tools/maintain.ts) beside partitions a DBA made
// by hand: it drops only the partitions the engine made (in webhooks_partitions, bounded
// as their names say), and says by name why it cannot drop any day while a DEFAULT
// partition is attached, which makes Postgres refuse DETACH … CONCURRENTLY.
import test from 'ava';
import { maintain } from '../../tools/maintain.ts';
import { ownConnection, useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { insertFinished, rawCounts } from '../helpers/report-counts.ts';
import { noDayDroppedBeforeEachTest, utcDay } from '../helpers/days.ts';
import { until } from '../helpers/until.ts';

const db = useTestDatabase(test);
noDayDroppedBeforeEachTest(test, db);
test.beforeEach(() => db().pool.query(`alter database ${db().name} set webhooks.retention = '5 days'`));

const compact = (day: Date) => day.toISOString().slice(0, 10).replaceAll('-', '');

/** Where each partition of delivery_history of the given names is (schema.name), attached or not. */
async function attached(names: string[]): Promise<string[]> {
  const { rows } = await db().pool.query(
    `select c.relnamespace::regnamespace::text || '.' || c.relname as partition
     from pg_inherits i join pg_class c on c.oid = i.inhrelid
     where i.inhparent = 'webhooks.delivery_history'::regclass and c.relname = any ($1) order by 1`, [names]);
  return rows.map((r) => r.partition as string);
}

test.serial('a partition of another schema named as a day is not the retention\'s: it stays, and no day is said dropped', async (t) => {
  const name = `delivery_history_p${compact(utcDay(-200))}`;
  await db().pool.query(
    `create table public.${name} partition of webhooks.delivery_history for values from ($$${utcDay(-200).toISOString()}$$) to ($$${utcDay(-199).toISOString()}$$)`);
  t.teardown(() => db().pool.query(`drop table if exists public.${name}`));
  const result = await maintain(db().url);
  t.deepEqual(result.daysDropped, []);
  t.deepEqual(await attached([name]), [`public.${name}`]);
  const { rows: [{ kept_since }] } = await db().pool.query('select webhooks.kept_since() as kept_since');
  t.is(kept_since, null);
});

test.serial('a partition named as a day but bounded wider is not the retention\'s: the days kept in it stay', async (t) => {
  const name = `delivery_history_p${compact(utcDay(-200))}`;
  await db().pool.query(
    `create table webhooks_partitions.${name} partition of webhooks.delivery_history for values from ($$${utcDay(-200).toISOString()}$$) to ($$${utcDay(-1).toISOString()}$$)`);
  t.teardown(() => db().pool.query(`drop table if exists webhooks_partitions.${name}`));
  // a message of two days ago, within the retention (of a webhook gone: no count to wait for)
  await db().pool.query(
    `insert into webhooks.delivery_history (webhook_id, company_id, action, contact_id, payload, created_at)
     values (0, 0, 'contact.created', 1, '{}', $1)`, [utcDay(-2)]);
  const result = await maintain(db().url);
  t.deepEqual(result.daysDropped, []);
  t.deepEqual(await attached([name]), [`webhooks_partitions.${name}`]);
  const { rows: [{ n }] } = await db().pool.query(
    `select count(*)::int as n from webhooks.delivery_history where created_at = $1`, [utcDay(-2)]);
  t.is(n, 1);
});

test.serial('a day whose history a DBA detached is left whole: its history, results and attempts stay', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const day = utcDay(-10);
  await db().pool.query('select webhooks_private.ensure_day($1::date)', [day]);
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, last_error, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'failed', 3, 'refused', $3, $3)`, [webhook.id, company.id, day]);
  await db().pool.query('call webhooks.roll_up_report_counts()');
  // archived by hand: its history detached, the rest left as it was
  const history = `delivery_history_p${compact(day)}`;
  await db().pool.query(`alter table webhooks.delivery_history detach partition webhooks_partitions.${history}`);
  t.teardown(() => db().pool.query(`drop table if exists webhooks_partitions.${history}`));
  for (let run = 0; run < 2; run++) {
    t.deepEqual((await maintain(db().url)).daysDropped, [], `run ${run + 1}`);
  }
  const { rows } = await db().pool.query(
    `select c.relname::text as partition, exists (select 1 from pg_inherits i where i.inhrelid = c.oid) as attached
     from pg_class c where c.relname = any ($1) order by 1`,
    [['delivery_attempts', 'delivery_history', 'delivery_results'].map((table) => `${table}_p${compact(day)}`)]);
  t.deepEqual(rows, [
    { partition: `delivery_attempts_p${compact(day)}`, attached: true },
    { partition: history, attached: false },
    { partition: `delivery_results_p${compact(day)}`, attached: true },
  ]);
  const { rows: [{ kept_since }] } = await db().pool.query('select webhooks.kept_since() as kept_since');
  t.is(kept_since, null);
});

// (attached back before the run's roll-up, which counts it then: its day past the
// retention is dropped by the same run, its failure in its day count; until 2026-12-07
// the roll-up came first, and a later run counted and dropped it)
test.serial('a day not counted yet whose history a DBA detached is attached back whole and counted: its failures stay failures', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const day = utcDay(-12);
  await db().pool.query('select webhooks_private.ensure_day($1::date)', [day]);
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, last_error, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'failed', 3, 'refused', $3, $3) returning id`, [webhook.id, company.id, day]);
  const history = `delivery_history_p${compact(day)}`;
  await db().pool.query(`alter table webhooks.delivery_history detach partition webhooks_partitions.${history}`);
  const said: string[] = [];
  const result = await maintain(db().url, (line) => said.push(line));
  t.true(said.includes(`attached back the history of ${day.toISOString().slice(0, 10)}, left detached by hand: a delivery of it is on its way`), said.join('\n'));
  t.true(result.daysDropped.includes(day.toISOString().slice(0, 10)), 'counted, and past the retention');
  const { rows } = await db().pool.query(
    `select fired::int, succeeded::int, failed::int from webhooks.delivery_day_counts where webhook_id = $1 and day = $2::date`,
    [webhook.id, day.toISOString().slice(0, 10)]);
  t.deepEqual(rows, [{ fired: 1, succeeded: 0, failed: 1 }]);
});

/** which of a day's partitions of the outbox exist, and whether each is attached */
async function dayTables(day: Date): Promise<{ partition: string; attached: boolean }[]> {
  const { rows } = await db().pool.query(
    `select c.relname::text as partition, exists (select 1 from pg_inherits i where i.inhrelid = c.oid) as attached
     from pg_class c where c.relname = any ($1) order by 1`,
    [['delivery_attempts', 'delivery_history', 'delivery_results'].map((table) => `${table}_p${compact(day)}`)]);
  return rows;
}

// (until 2026-12-07 no run looked at results or attempts attached to nothing: a kept
// day's failures read as successes, for good)
test.serial('a kept day whose results a DBA detached gets them back from the next run: its failures read failed again', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const day = utcDay(-2);
  const { rows: [failed] } = await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, last_error, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'failed', 3, 'refused', $3, $3) returning id`,
    [webhook.id, company.id, new Date(day.getTime() + 600_000)]);
  const results = `delivery_results_p${compact(day)}`;
  await db().pool.query(`alter table webhooks.delivery_results detach partition webhooks_partitions.${results}`);
  const state = async () => (await db().pool.query('select id, state from webhooks.deliveries where webhook_id = $1', [webhook.id])).rows;
  t.deepEqual(await state(), [{ id: failed.id, state: 'succeeded' }]);
  const said: string[] = [];
  await maintain(db().url, (line) => said.push(line));
  t.true(said.includes(`attached ${results} back, left detached: its day's history is kept`), said.join('\n'));
  t.deepEqual(await state(), [{ id: failed.id, state: 'failed' }]);
  t.deepEqual((await dayTables(day)).map((p) => p.attached), [true, true, true]);
});

// A kept day's results detached (a DBA's, or a run stopped after their detach), and the
// day not rolled up yet: the next run attaches them back and rolls up; its day counts
// must be the rows'. Until 2026-12-07 the run rolled up first and attached them back
// after, and the day was counted with its failures as successes, for good.
test.serial('a day not rolled up whose results were left detached: the next run counts it as its rows are, failures failed', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const day = utcDay(-3);
  const at = (minutes: number) => new Date(day.getTime() + minutes * 60_000).toISOString();
  await insertFinished(db().pool, webhook.id, company.id, [at(10), at(20), at(70), at(80), at(90)],
    ['failed', 'succeeded', 'failed', 'failed', 'succeeded']);
  const results = `delivery_results_p${compact(day)}`;
  await db().pool.query(`alter table webhooks.delivery_results detach partition webhooks_partitions.${results}`);
  const said: string[] = [];
  await maintain(db().url, (line) => said.push(line));
  t.true(said.includes(`attached ${results} back, left detached: its day's history is kept`), said.join('\n'));
  const rows = await rawCounts(db().pool, webhook.id, at(0), at(24 * 60));
  t.deepEqual(rows, { fired: '5', succeeded: '2', failed: '3' });
  const { rows: counted } = await db().pool.query(
    `select fired::text, succeeded::text, failed::text from webhooks.delivery_day_counts where webhook_id = $1 and day = $2::date`,
    [webhook.id, day.toISOString().slice(0, 10)]);
  t.deepEqual(counted, [rows], 'the day counts are the rows\'');
});

test.serial('a kept day\'s results a DBA detached and replaced by a table of their own: said each run, the run goes on', async (t) => {
  const day = utcDay(-3);
  await db().pool.query('select webhooks_private.ensure_day($1::date)', [day]);
  const results = `delivery_results_p${compact(day)}`;
  await db().pool.query(`alter table webhooks.delivery_results detach partition webhooks_partitions.${results}`);
  await db().pool.query(`create table public.results_copy (like webhooks.delivery_results including constraints)`);
  const bound = `for values from ('${day.toISOString()}') to ('${new Date(day.getTime() + 86_400_000).toISOString()}')`;
  await db().pool.query(`alter table webhooks.delivery_results attach partition public.results_copy ${bound}`);
  t.teardown(async () => {
    await db().pool.query('alter table webhooks.delivery_results detach partition public.results_copy');
    await db().pool.query('drop table public.results_copy');
    await db().pool.query(`alter table webhooks.delivery_results attach partition webhooks_partitions.${results} ${bound}`);
  });
  const said: string[] = [];
  await maintain(db().url, (line) => said.push(line));
  t.true(said.some((line) => line.startsWith(`left ${results} detached, its day kept: `)), said.join('\n'));
  t.deepEqual(await dayTables(day), ['attempts', 'history', 'results'].map((table) => ({
    partition: `delivery_${table}_p${compact(day)}`, attached: table !== 'results' })));
});

test.serial('a day a DBA archived whole (history, results and attempts detached) is left to the DBA', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const day = utcDay(-11);
  await db().pool.query('select webhooks_private.ensure_day($1::date)', [day]);
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, last_error, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'failed', 3, 'refused', $3, $3)`, [webhook.id, company.id, day]);
  await db().pool.query('call webhooks.roll_up_report_counts()');
  for (const table of ['delivery_history', 'delivery_results', 'delivery_attempts']) {
    await db().pool.query(`alter table webhooks.${table} detach partition webhooks_partitions.${table}_p${compact(day)}`);
    t.teardown(() => db().pool.query(`drop table if exists webhooks_partitions.${table}_p${compact(day)}`));
  }
  for (let run = 0; run < 2; run++) {
    t.deepEqual((await maintain(db().url)).daysDropped, [], `run ${run + 1}`);
  }
  t.deepEqual(await dayTables(day), ['attempts', 'history', 'results'].map((table) => ({
    partition: `delivery_${table}_p${compact(day)}`, attached: false })));
});

test.serial('a table a DBA made in webhooks_partitions, named as a dropped day\'s results but not shaped as them, is not dropped', async (t) => {
  const day = utcDay(-40);
  await db().pool.query('select webhooks.forget_day($1::date)', [day]);
  const name = `delivery_results_p${compact(day)}`;
  await db().pool.query(`create table webhooks_partitions.${name} (note text)`);
  t.teardown(() => db().pool.query(`drop table if exists webhooks_partitions.${name}`));
  await maintain(db().url);
  const { rows } = await db().pool.query('select to_regclass($1)::text as t', [`webhooks_partitions.${name}`]);
  t.deepEqual(rows, [{ t: `webhooks_partitions.${name}` }]);
});

test.serial('a day ahead whose partition a DBA detached is attached back by the next run: its deliveries have a partition', async (t) => {
  // (the day after tomorrow: today's and tomorrow's are not detached at all, below)
  const name = `delivery_history_p${compact(utcDay(2))}`;
  await db().pool.query(`alter table webhooks.delivery_history detach partition webhooks_partitions.${name}`);
  await maintain(db().url);
  t.deepEqual(await attached([name]), [`webhooks_partitions.${name}`]);
  const { rows } = await db().pool.query(
    `insert into webhooks.delivery_history (webhook_id, company_id, action, contact_id, payload, created_at)
     values (0, 0, 'contact.created', 1, '{}', $1::timestamptz + interval '1 hour') returning tableoid::regclass::text as partition`,
    [utcDay(2)]);
  t.deepEqual(rows, [{ partition: `webhooks_partitions.${name}` }]);
});

test.serial('a DEFAULT partition stops the retention with a named error while a day is past it', async (t) => {
  await db().pool.query(`create table webhooks_partitions.history_by_hand partition of webhooks.delivery_history default`);
  t.teardown(() => db().pool.query('drop table if exists webhooks_partitions.history_by_hand'));
  await db().pool.query('select webhooks_private.ensure_day($1::date)', [utcDay(-200)]);
  const error = await t.throwsAsync(maintain(db().url));
  t.like(error, { code: '55000', constraint: 'outbox_default_partition' });
  t.regex(error!.message, /DEFAULT partition \(webhooks_partitions\.history_by_hand\)/);
  // the day stays, named again by the next run once the DEFAULT partition is gone
  t.deepEqual(await attached([`delivery_history_p${compact(utcDay(-200))}`]),
    [`webhooks_partitions.delivery_history_p${compact(utcDay(-200))}`]);
  await db().pool.query('drop table webhooks_partitions.history_by_hand');
  t.true((await maintain(db().url)).daysDropped.includes(utcDay(-200).toISOString().slice(0, 10)));
});

test.serial('a DEFAULT partition stops the tail\'s move ahead with a named error', async (t) => {
  // history's tail starting on the last day to be made ahead, as it does a day after a run
  const day = `delivery_history_p${compact(utcDay(14))}`;
  const { rows: [{ tail }] } = await db().pool.query(
    `select tail_name as tail from webhooks_private.outbox_tail('delivery_history')`);
  await db().pool.query(`alter table webhooks.delivery_history detach partition webhooks_partitions.${tail}`);
  await db().pool.query(`drop table webhooks_partitions.${tail}; drop table webhooks_partitions.${day}`);
  await db().pool.query(`select webhooks_private.attach_tail('delivery_history')`);
  await db().pool.query(`create table webhooks_partitions.history_by_hand partition of webhooks.delivery_history default`);
  t.teardown(async () => {
    await db().pool.query('drop table if exists webhooks_partitions.history_by_hand');
    await maintain(db().url);
  });
  const error = await t.throwsAsync(maintain(db().url));
  t.like(error, { code: '55000', constraint: 'outbox_default_partition' });
  t.regex(error!.message, /^the tail moves no further ahead while webhooks\.delivery_history has a DEFAULT partition/);
});

test.serial('a partition a DBA made over a day ahead is named by maintenance, and the days and the tail around it are made', async (t) => {
  // history's days 13 and 14 and its tail gone, a DBA's partition of day 13 in their place
  const { rows: [{ tail }] } = await db().pool.query(
    `select tail_name as tail from webhooks_private.outbox_tail('delivery_history')`);
  await db().pool.query(`alter table webhooks.delivery_history detach partition webhooks_partitions.${tail}`);
  await db().pool.query(`drop table webhooks_partitions.${tail}`);
  for (const day of [13, 14]) {
    await db().pool.query(`drop table webhooks_partitions.delivery_history_p${compact(utcDay(day))}`);
  }
  await db().pool.query(
    `create table webhooks_partitions.history_by_hand partition of webhooks.delivery_history
     for values from ($$${utcDay(13).toISOString()}$$) to ($$${utcDay(14).toISOString()}$$)`);
  t.teardown(async () => {
    await db().pool.query('drop table if exists webhooks_partitions.history_by_hand');
    await db().pool.query('select webhooks.create_partitions()');
  });
  const error = await t.throwsAsync(maintain(db().url));
  t.like(error, { code: '55000', constraint: 'outbox_partition_in_the_way' });
  t.regex(error!.message, /webhooks_partitions\.history_by_hand/);
  // every other day made, and the tail after the DBA's partition
  t.deepEqual(await attached([`delivery_history_p${compact(utcDay(14))}`, `delivery_history_from_${compact(utcDay(15))}`]),
    [`webhooks_partitions.delivery_history_from_${compact(utcDay(15))}`, `webhooks_partitions.delivery_history_p${compact(utcDay(14))}`]);
});

test.serial('a partition named as a day but bounded wider is named by maintenance as the DBA\'s to drop, and counted past the retention until then', async (t) => {
  const pastRetention = async () =>
    (await db().pool.query('select days_past_retention as past from webhooks_ops.upkeep()')).rows[0].past as number;
  // (days an earlier test's DBA left whole stay counted: what this one adds is asked)
  await maintain(db().url);
  const before = await pastRetention();
  const name = `delivery_history_p${compact(utcDay(-200))}`;
  await db().pool.query(
    `create table webhooks_partitions.${name} partition of webhooks.delivery_history for values from ($$${utcDay(-200).toISOString()}$$) to ($$${utcDay(-100).toISOString()}$$)`);
  t.teardown(() => db().pool.query(`drop table if exists webhooks_partitions.${name}`));
  const said: string[] = [];
  await maintain(db().url, (line) => said.push(line));
  // (the gauge goes by names: telling the DBA's by its bounds would open the partitioned
  // table, and wait behind any lock of it)
  t.is(await pastRetention(), before + 1);
  t.true(said.some((line) => line.includes(`webhooks_partitions.${name}`) && /not the engine's/.test(line)), said.join('\n'));
});

test.serial('a DBA\'s detach of today\'s or tomorrow\'s partition is refused by name: captures keep their partition', async (t) => {
  t.teardown(() => db().pool.query('select webhooks.create_partitions()'));
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  for (const day of [0, 1]) {
    for (const table of ['delivery_history', 'delivery_attempts']) {
      const name = `${table}_p${compact(utcDay(day))}`;
      const error = await t.throwsAsync(db().pool.query(`alter table webhooks.${table} detach partition webhooks_partitions.${name}`));
      t.like(error, { code: '55000', constraint: 'outbox_day_in_use' }, `${name}`);
      t.regex(error!.message, new RegExp(name));
    }
  }
  const error = await t.throwsAsync(db().pool.query(`drop table webhooks_partitions.delivery_results_p${compact(utcDay(0))}`));
  t.like(error, { code: '55000', constraint: 'outbox_day_in_use' });
  await f.contact(company.id);
  const { rows } = await db().pool.query(
    `select h.tableoid::regclass::text as partition from webhooks.delivery_history h where h.webhook_id = $1`, [webhook.id]);
  t.deepEqual(rows, [{ partition: `webhooks_partitions.delivery_history_p${compact(utcDay(0))}` }]);
});

test.serial('a DBA\'s concurrent detach of today\'s partition is undone at once, and said', async (t) => {
  t.teardown(() => db().pool.query('select webhooks.create_partitions()'));
  const name = `delivery_history_p${compact(utcDay(0))}`;
  const client = await ownConnection(db().url, t);
  const notices: Array<{ code?: string; message?: string }> = [];
  client.on('notice', (notice) => notices.push(notice));
  await client.query(`alter table webhooks.delivery_history detach partition webhooks_partitions.${name} concurrently`);
  t.like(notices.find((n) => n.code === '55000'), { message: `webhooks_partitions.${name} is where captures of ${utcDay(0).toISOString().slice(0, 10)} go: attached back` });
  const { rows } = await db().pool.query(
    `select i.inhdetachpending as pending from pg_inherits i where i.inhrelid = $1::regclass`, [`webhooks_partitions.${name}`]);
  t.deepEqual(rows, [{ pending: false }]);
});

// An old script's session, with standard_conforming_strings off, read the pattern that
// tells a concurrent detach ('\\mconcurrently\\M') as "mconcurrentlyM": the detach was
// refused after its first step had committed, and the partition was left detach
// pending, today's captures failing.
test.serial('a DBA\'s concurrent detach of today\'s partition in a session with standard_conforming_strings off is undone at once too', async (t) => {
  t.teardown(() => db().pool.query('select webhooks.create_partitions()'));
  const name = `delivery_history_p${compact(utcDay(0))}`;
  const client = await ownConnection(db().url, t);
  await client.query('set standard_conforming_strings = off; set escape_string_warning = off');
  const notices: Array<{ code?: string; message?: string }> = [];
  client.on('notice', (notice) => notices.push(notice));
  await client.query(`alter table webhooks.delivery_history detach partition webhooks_partitions.${name} concurrently`);
  t.like(notices.find((n) => n.code === '55000'), { message: `webhooks_partitions.${name} is where captures of ${utcDay(0).toISOString().slice(0, 10)} go: attached back` });
  const { rows } = await db().pool.query(
    `select i.inhdetachpending as pending from pg_inherits i where i.inhrelid = $1::regclass`, [`webhooks_partitions.${name}`]);
  t.deepEqual(rows, [{ pending: false }]);
});

test.serial('a DBA\'s concurrent detach of today\'s partition cancelled half way (detach pending) is finished and attached back by create_partitions: captures have it again', async (t) => {
  t.teardown(() => db().pool.query('select webhooks.create_partitions()'));
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const name = `delivery_history_p${compact(utcDay(0))}`;
  // a reader of the outbox holds the detach's second step, which waits for it
  const reader = await ownConnection(db().url, t);
  await reader.query('begin isolation level repeatable read');
  await reader.query('select count(*) from webhooks.delivery_history');
  const dba = await ownConnection(db().url, t);
  const { rows: [{ pid }] } = await dba.query('select pg_backend_pid() as pid');
  const detach = dba.query(`alter table webhooks.delivery_history detach partition webhooks_partitions.${name} concurrently`)
    .then(() => 'done', (error) => error.code as string);
  await until('the detach waits for the reader', async () => (await db().pool.query(
    `select 1 from pg_locks where pid = $1 and not granted`, [pid])).rowCount === 1);
  await db().pool.query('select pg_cancel_backend($1)', [pid]);
  t.is(await detach, '57014');
  await reader.query('rollback');
  const pending = async () => (await db().pool.query(
    `select i.inhdetachpending as pending from pg_inherits i where i.inhrelid = $1::regclass`, [`webhooks_partitions.${name}`])).rows;
  t.deepEqual(await pending(), [{ pending: true }], 'left detach pending');
  const finalize = await t.throwsAsync(db().pool.query(`alter table webhooks.delivery_history detach partition webhooks_partitions.${name} finalize`));
  t.like(finalize, { code: '55000', constraint: 'outbox_day_in_use' });
  t.deepEqual(await pending(), [{ pending: true }], 'the DBA\'s finish undone');

  await db().pool.query('select webhooks.create_partitions()');
  t.deepEqual(await pending(), [{ pending: false }]);
  await f.contact(company.id);
  const { rows } = await db().pool.query(
    `select h.tableoid::regclass::text as partition from webhooks.delivery_history h where h.webhook_id = $1`, [webhook.id]);
  t.deepEqual(rows, [{ partition: `webhooks_partitions.${name}` }]);
});

test.serial('a DBA\'s partition far ahead, of one day or up to MAXVALUE: every day before it gets a partition, not only the days ahead', async (t) => {
  const dropTail = async () => {
    const { rows } = await db().pool.query(`select tail_name as tail from webhooks_private.outbox_tail('delivery_history')`);
    for (const { tail } of rows) {
      await db().pool.query(`alter table webhooks.delivery_history detach partition webhooks_partitions.${tail}`);
      await db().pool.query(`drop table webhooks_partitions.${tail}`);
    }
  };
  t.teardown(async () => {
    await db().pool.query('drop table if exists public.history_far_ahead');
    await db().pool.query('select webhooks.create_partitions()');
  });
  const reader = await ownConnection(db().url, t);
  await reader.query(`set timezone = 'UTC'`);
  /** The days from today to `last` that no partition of history holds (a capture then would fail). */
  const uncovered = async (last: number) => (await reader.query(
    `select d from generate_series(0, $2::int) d
     where not exists (
       select 1 from pg_inherits i join pg_class c on c.oid = i.inhrelid
       cross join lateral (select pg_get_expr(c.relpartbound, c.oid) as bound) b
       where i.inhparent = 'webhooks.delivery_history'::regclass and not i.inhdetachpending
         and coalesce(substring(b.bound from $r$FROM \\('([^']+)'\\)$r$)::timestamptz, '-infinity') <= $1::timestamptz + d * interval '1 day'
         and coalesce(substring(b.bound from $r$TO \\('([^']+)'\\)$r$)::timestamptz, 'infinity') > $1::timestamptz + d * interval '1 day')
     order by d`, [utcDay(0).toISOString(), last])).rows.map((r) => r.d as number);

  await dropTail();
  await db().pool.query(
    `create table public.history_far_ahead partition of webhooks.delivery_history
     for values from ($$${utcDay(40).toISOString()}$$) to ($$${utcDay(41).toISOString()}$$)`);
  await db().pool.query('select webhooks.create_partitions()');
  t.deepEqual(await uncovered(60), [], 'one day far ahead');

  await dropTail();
  await db().pool.query('drop table public.history_far_ahead');
  await db().pool.query(
    `create table public.history_far_ahead partition of webhooks.delivery_history
     for values from ($$${utcDay(60).toISOString()}$$) to (maxvalue)`);
  await db().pool.query('select webhooks.create_partitions()');
  t.deepEqual(await uncovered(70), [], 'up to MAXVALUE');
});
