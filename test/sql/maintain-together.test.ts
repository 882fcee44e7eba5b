// Two runs of the outbox's upkeep at once (tools/maintain.ts): `npm start`'s hourly
// run while the last one still waits to detach a day (a long reader of that day holds
// it), or a DBA's `npm run maintain` beside it. Neither fails on the other's work: the
// later one waits for the first, and the day is dropped once, its kept history
// recorded.
import test from 'ava';
import pg from 'pg';
import { maintain } from '../../tools/maintain.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { until } from '../helpers/until.ts';
import { utcDay } from '../helpers/days.ts';

const db = useTestDatabase(test);

test('a second maintenance run while the first waits to detach a day neither fails nor drops twice', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '5 days'`);
  const at = new Date(utcDay(-12).getTime() + 600_000);
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, $3, $3)`,
    [webhook.id, company.id, at]);
  await db().pool.query('call webhooks.roll_up_report_counts()');

  // a reader of the old day holds it open: the first run's detach waits for it
  const reader = new pg.Client({ connectionString: db().url });
  await reader.connect();
  t.teardown(() => reader.end());
  await reader.query('begin');
  await reader.query(`select count(*) from webhooks.deliveries where created_at < now() - interval '10 days'`);
  const waiting = async (filter: string) => (await db().pool.query(
    `select count(*)::int as n from pg_stat_activity where datname = current_database() and ${filter}`)).rows[0].n > 0;

  const first = maintain(db().url);
  await until('the first run waits to detach', () => waiting(`query ilike '%detach partition%concurrently%' and wait_event_type is not null`));
  let secondSettled = false;
  const second = maintain(db().url).finally(() => (secondSettled = true));
  second.catch(() => {});
  // the second run either fails on the first's detach, or waits for the first run
  await until('the second run waits for the first, or ends', async () =>
    secondSettled || waiting(`wait_event_type = 'Lock' and wait_event = 'advisory'`), 20_000);
  await reader.query('commit');

  const results = await Promise.allSettled([first, second]);
  t.deepEqual(results.map((r) => r.status), ['fulfilled', 'fulfilled'],
    results.map((r) => (r.status === 'rejected' ? (r.reason as Error).message : 'ok')).join('; '));
  const dropped = results.flatMap((r) => (r.status === 'fulfilled' ? r.value.daysDropped : []));
  t.deepEqual(dropped, [utcDay(-12).toISOString().slice(0, 10)]);
  const { rows: [kept] } = await db().pool.query('select webhooks.kept_since() as kept');
  t.deepEqual(kept.kept, utcDay(-11));
});
