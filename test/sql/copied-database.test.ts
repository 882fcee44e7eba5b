// A database restored from a whole dump, or copied for staging: its rows come back,
// not its `alter database … set` settings (pg_dump keeps them only with --create).
// What migrate, maintenance and capture do there (docs/operations.md, "Backups and
// copies"). The copy is made by Postgres (create database … template), which leaves
// the settings behind as such a restore does.
import test from 'ava';
import { maintain } from '../../tools/maintain.ts';
import { migrate } from '../../tools/migrate.ts';
import { copyOfTestDatabase, useTestDatabase, type TestDatabase } from '../helpers/db.ts';
import { utcDay } from '../helpers/days.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);
const iso = (day: number) => utcDay(day).toISOString().slice(0, 10);

async function daily(database: TestDatabase, webhookId: string) {
  const { rows } = await database.pool.query(
    `select to_char(day, 'YYYY-MM-DD') as day, fired::int, succeeded::int, failed::int, pending::int
     from webhooks.daily_counts where webhook_id = $1 order by day`, [webhookId]);
  return rows;
}

async function historyDays(database: TestDatabase, webhookId: string): Promise<string[]> {
  const { rows } = await database.pool.query(
    `select distinct to_char(created_at at time zone 'UTC', 'YYYY-MM-DD') as day from webhooks.deliveries where webhook_id = $1 order by 1`,
    [webhookId]);
  return rows.map((r) => r.day);
}

test('a copy keeps every row and total but not the retention set on the original: maintenance there drops what the original keeps, unless it is set again first; migrate changes nothing and capture announces once', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '400 days'`);
  for (const [i, day] of [-200, -1].entries()) {
    const at = new Date(utcDay(day).getTime() + 3_600_000);
    const { rows: [d] } = await db().pool.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
       values ($1, $2, 'contact.created', $3, '{}', 'succeeded', 1, $4, $4) returning id`, [webhook.id, company.id, 900_000 + i, at]);
    await db().pool.query(
      `insert into webhooks.delivery_attempts (delivery_id, delivery_created_at, webhook_id, company_id, attempt, attempted_at, duration_ms, status_code)
       values ($1, $2, $3, $4, 1, $2, 5, 204)`, [d.id, at, webhook.id, company.id]);
  }
  await maintain(db().url);
  t.deepEqual(await historyDays(db(), webhook.id), [iso(-200), iso(-1)]);
  const totals = await daily(db(), webhook.id);
  t.deepEqual(totals.map((r) => [r.day, r.fired, r.succeeded]), [[iso(-200), 1, 1], [iso(-1), 1, 1]]);

  const unset = await copyOfTestDatabase(db());
  t.teardown(() => unset.drop());
  const setAgain = await copyOfTestDatabase(db());
  t.teardown(() => setAgain.drop());
  const retention = async (database: TestDatabase) =>
    (await database.pool.query(`select value from webhooks.settings where name = 'webhooks.retention'`)).rows[0].value;
  t.is(await retention(unset), '90 days');
  await setAgain.pool.query(`alter database ${setAgain.name} set webhooks.retention = '400 days'`);
  t.is(await retention(setAgain), '400 days');

  for (const copy of [unset, setAgain]) {
    await migrate(copy.url);
    await maintain(copy.url);
    t.deepEqual(await daily(copy, webhook.id), totals, 'the totals outlive the retention');
    const [copied] = (await copy.pool.query(`insert into crm.contacts (company_id, first_name) values ($1, 'Copied') returning id`, [company.id])).rows;
    const { rows: fired } = await copy.pool.query(
      'select action::text from webhooks.deliveries where webhook_id = $1 and contact_id = $2', [webhook.id, copied.id]);
    t.deepEqual(fired, [{ action: 'contact.created' }]);
  }
  t.deepEqual(await historyDays(unset, webhook.id), [iso(-1), iso(0)], 'the default 90 days held: day -200 dropped');
  t.deepEqual(await historyDays(setAgain, webhook.id), [iso(-200), iso(-1), iso(0)]);
});
