// docs/outbox.md schedules the retention's drops with psql alone, for a DBA without
// `npm start` or `npm run maintain`: run as written, it drops the expired days and
// records where the kept history starts (webhooks.kept_since(), which the page shows),
// as tools/maintain.ts does.
import test from 'ava';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { noDayDroppedBeforeEachTest, utcDay } from '../helpers/days.ts';
import { steerClock } from '../helpers/steered-clock.ts';
import { until } from '../helpers/until.ts';

const db = useTestDatabase(test);
noDayDroppedBeforeEachTest(test, db);

/** the shell lines docs/outbox.md gives for the drops, as written */
async function documentedDrops(): Promise<string> {
  const docs = await readFile(new URL('../../docs/outbox.md', import.meta.url), 'utf8');
  const block = /```sh\n(\s*# hourly, from the system's cron, as the owner:\n[\s\S]*?)\n\s*```/.exec(docs);
  if (!block) throw new Error("docs/outbox.md: no sh block of the hourly drops");
  return block[1]!;
}

test.serial("the psql drops of docs/outbox.md drop an expired day and record where the kept history starts", async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '5 days'`);
  const at = new Date(utcDay(-10).getTime() + 3_600_000);
  const { rows: [delivery] } = await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, $3, $3) returning id`,
    [webhook.id, company.id, at]);
  await db().pool.query('call webhooks.roll_up_report_counts()');

  await promisify(execFile)('sh', ['-c', await documentedDrops()], {
    env: { ...process.env, DATABASE_URL: db().url, PSQLRC: '/dev/null' },
  }).catch((error) => {
    if (error.code === 'ENOENT') throw new Error('psql is missing: install the Debian package postgresql-client (.ci/run does)');
    throw error;
  });

  const { rows: [gone] } = await db().pool.query('select count(*)::int as n from webhooks.deliveries where id = $1', [delivery.id]);
  t.is(gone.n, 0);
  const { rows: [kept] } = await db().pool.query('select webhooks.kept_since() as kept');
  t.deepEqual(kept.kept, utcDay(-9));
});

test.serial("the psql drops keep a day whose delivery went back on its way while they ran", async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '5 days'`);
  const [first, second] = [utcDay(-14), utcDay(-13)];
  const { rows: [, failed] } = await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, last_error, completed_at, created_at)
     select $1, $2, 'contact.created', 1, '{}', s, 1, 'HTTP 500', t, t
     from unnest(array['succeeded', 'failed'], array[$3::timestamptz, $4::timestamptz]) as x(s, t)
     returning id`,
    [webhook.id, company.id, new Date(first!.getTime() + 600_000), new Date(second!.getTime() + 600_000)]);
  await db().pool.query('call webhooks.roll_up_report_counts()');

  // a reader holds the first day's drop up while the second day's delivery is replayed
  // by a session whose look let it through
  const reader = await db().pool.connect();
  t.teardown(() => reader.release(true));
  await reader.query('begin');
  await reader.query(`select count(*) from webhooks.deliveries where created_at < now() - interval '10 days'`);
  const dropping = promisify(execFile)('sh', ['-c', await documentedDrops()], {
    env: { ...process.env, DATABASE_URL: db().url, PSQLRC: '/dev/null' },
  });
  await until('the drop waits for the reader', async () => (await db().pool.query(
    `select 1 from pg_stat_activity where datname = current_database() and query ilike '%detach partition%' and wait_event_type = 'Lock'`)).rowCount! > 0);
  // (let through: the session's clock ten days behind, as one that looked just before
  // midnight is a moment behind)
  await steerClock(db().pool);
  const admin = await db().pool.connect();
  t.teardown(() => admin.release(true));
  await admin.query(`set bpd_test.clock_shift = '-10 days'`);
  await admin.query(
    `update webhooks.deliveries set state = 'pending', completed_at = null, next_attempt_at = now() where id = $1`, [failed.id]);
  await admin.query('reset bpd_test.clock_shift');
  await reader.query('commit');
  await dropping;

  const { rows } = await db().pool.query(
    `select to_char(first_day, 'YYYY-MM-DD') as day, array_agg(table_name order by table_name) as tables
     from webhooks_private.outbox_partitions() where first_day in ($1::date, $2::date) group by first_day`,
    [first!.toISOString().slice(0, 10), second!.toISOString().slice(0, 10)]);
  t.deepEqual(rows, [{ day: second!.toISOString().slice(0, 10), tables: ['delivery_attempts', 'delivery_history', 'delivery_results'] }]);
  const { rows: [replayed] } = await db().pool.query('select state from webhooks.deliveries where id = $1', [failed.id]);
  t.is(replayed.state, 'pending');
});
