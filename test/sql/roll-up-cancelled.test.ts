// The report's roll-up (webhooks.roll_up_report_counts, sql/50_report_counts.sql) and
// `npm run maintain` cancelled half way by a DBA (pg_cancel_backend): the batches
// committed before stay counted, the one cancelled is rolled back whole, and the next
// run counts the rest. Nothing is counted twice or left out. The cancel is steered: the
// test holds one webhook's day-counts lock, and cancels the run once pg_locks shows it
// waiting there.
import test from 'ava';
import type pg from 'pg';
import { ownConnection, useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { insertFinished } from '../helpers/report-counts.ts';
import { waitForRows } from '../helpers/relay.ts';
import { maintain } from '../../tools/maintain.ts';

const db = useTestDatabase(test);

const DAYS_AGO = [3, 3, 4, 5];
const STATES = ['succeeded', 'failed', 'succeeded', 'succeeded'];

/** Three webhooks of a company of its own, each with deliveries finished days ago. */
async function scene() {
  const f = factories(db().pool);
  const company = await f.company();
  const webhooks = [];
  for (let i = 0; i < 3; i++) {
    const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
    const { rows: [{ times }] } = await db().pool.query(
      `select array_agg(now() - make_interval(days => d) order by o) as times from unnest($1::int[]) with ordinality as a(d, o)`, [DAYS_AGO]);
    await insertFinished(db().pool, webhook.id, company.id, times, STATES);
    webhooks.push(webhook);
  }
  return webhooks;
}

/** Each webhook's day counts as rolled up, and as its rows say. */
async function counts(webhookIds: string[]) {
  const { rows: [{ rolled, raw }] } = await db().pool.query(
    `select (select coalesce(jsonb_agg(jsonb_build_array(c.webhook_id, c.day, c.fired, c.succeeded, c.failed) order by c.webhook_id, c.day), '[]')
               from webhooks.delivery_day_counts c where c.webhook_id = any ($1::bigint[])) as rolled,
            (select coalesce(jsonb_agg(jsonb_build_array(r.webhook_id, r.day, r.fired, r.succeeded, r.failed) order by r.webhook_id, r.day), '[]')
               from (select d.webhook_id, (d.created_at at time zone 'UTC')::date as day, count(*) as fired,
                            count(*) filter (where d.state = 'succeeded') as succeeded, count(*) filter (where d.state = 'failed') as failed
                     from webhooks.deliveries d where d.webhook_id = any ($1::bigint[]) group by 1, 2) r) as raw`,
    [webhookIds]);
  return { rolled: rolled as unknown[][], raw: raw as unknown[][] };
}

/** Runs `run` on a connection of its own, holding the second webhook's lock, and cancels it once it waits there. */
async function cancelWhileWaiting(t: { teardown: (fn: () => Promise<void>) => void }, webhookId: string,
  run: () => Promise<unknown>, applicationName: string): Promise<unknown> {
  const holder = await ownConnection(db().url, t);
  await holder.query('begin');
  await holder.query('select pg_advisory_xact_lock(webhooks_private.day_counts_lock($1))', [webhookId]);
  const running = run().then(() => null, (error: unknown) => error);
  const [{ pid }] = await waitForRows<{ pid: number }>(db().pool,
    `select a.pid from pg_stat_activity a join pg_locks l on l.pid = a.pid
     where a.datname = current_database() and a.application_name = $1 and l.locktype = 'advisory' and not l.granted`,
    [applicationName], (rows) => rows.length > 0, 10_000);
  await db().pool.query('select pg_cancel_backend($1)', [pid]);
  const error = await running;
  await holder.query('rollback');
  return error;
}

test.serial('the roll-up cancelled at its second webhook: the first stays counted, the next run counts the rest, nothing twice', async (t) => {
  const webhooks = await scene();
  const ids = webhooks.map((w) => w.id);
  const runner: pg.Client = await ownConnection(`${db().url}?application_name=bpd-roll-up-cancelled`, t);
  const error = await cancelWhileWaiting(t, ids[1]!,
    () => runner.query('call webhooks.roll_up_report_counts(p_webhooks_per_batch => 1)'), 'bpd-roll-up-cancelled');
  t.is((error as { code?: string } | null)?.code, '57014');

  const cut = await counts(ids);
  t.deepEqual(cut.rolled, cut.raw.filter(([id]) => String(id) === ids[0]), 'the first webhook counted, the others not yet');
  await db().pool.query('call webhooks.roll_up_report_counts()');
  const after = await counts(ids);
  t.is(after.raw.length, 9);
  t.deepEqual(after.rolled, after.raw);
});

test.serial('npm run maintain cancelled in its roll-up: the next run finishes it, nothing counted twice', async (t) => {
  const webhooks = await scene();
  const ids = webhooks.map((w) => w.id);
  const url = `${db().url}?application_name=bpd-maintain-cancelled`;
  const error = await cancelWhileWaiting(t, ids[1]!, () => maintain(url), 'bpd-maintain-cancelled');
  t.is((error as { code?: string } | null)?.code, '57014');
  const result = await maintain(db().url);
  t.true(result.daysRolledUp > 0);
  const after = await counts(ids);
  t.is(after.raw.length, 9);
  t.deepEqual(after.rolled, after.raw);
  // and a run after it finds nothing more to count
  t.is((await maintain(db().url)).daysRolledUp, 0);
  t.deepEqual((await counts(ids)).rolled, after.raw);
});

test.serial('npm run maintain under a statement_timeout of 1 ms for its user: it runs to the end all the same', async (t) => {
  const webhooks = await scene();
  const ids = webhooks.map((w) => w.id);
  const { rows: [{ user }] } = await db().pool.query('select current_user as user');
  await db().pool.query(`alter role ${user} in database ${db().name} set statement_timeout = '1ms'`);
  t.teardown(async () => {
    await db().pool.query(`alter role ${user} in database ${db().name} reset statement_timeout`);
  });
  await maintain(db().url);
  const after = await counts(ids);
  t.deepEqual(after.rolled, after.raw);
});

test.serial('npm run maintain under a transaction_timeout of 1 ms for its user (Postgres 17): it runs to the end all the same', async (t) => {
  const webhooks = await scene();
  const ids = webhooks.map((w) => w.id);
  const { rows: [{ user }] } = await db().pool.query('select current_user as user');
  const reset = () => db().pool.query(`alter role ${user} in database ${db().name} reset transaction_timeout`);
  await db().pool.query(`alter role ${user} in database ${db().name} set transaction_timeout = '1ms'`);
  t.teardown(reset);
  await maintain(db().url);
  // (before the test's own reads, which a new connection of its pool would make under it)
  await reset();
  const after = await counts(ids);
  t.deepEqual(after.rolled, after.raw);
});
