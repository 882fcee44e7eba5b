// A database restored from a whole dump, or copied for staging: its rows come back,
// not its `alter database … set` settings (pg_dump keeps them only with --create).
// What migrate, maintenance and capture do there (docs/operations.md, "Backups and
// copies"). The copy is made by Postgres (create database … template), which leaves
// the settings behind as such a restore does. The retention the original set goes
// with the data (webhooks_private.retention_last_set): until 2026-12-07 the copy's
// first maintenance dropped what the original kept.
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

/** the retention as webhooks.settings shows it */
async function retention(database: TestDatabase): Promise<{ value: string; set_to: string | null; refusal: string | null }> {
  return (await database.pool.query(`select value, set_to, refusal from webhooks.settings where name = 'webhooks.retention'`)).rows[0];
}

/** a delivery written into a day long past (days from today), succeeded, with its attempt */
async function oldDelivery(database: TestDatabase, webhookId: string, companyId: string, day: number, contactId: number): Promise<void> {
  const at = new Date(utcDay(day).getTime() + 3_600_000);
  const { rows: [d] } = await database.pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', $3, '{}', 'succeeded', 1, $4, $4) returning id`, [webhookId, companyId, contactId, at]);
  await database.pool.query(
    `insert into webhooks.delivery_attempts (delivery_id, delivery_created_at, webhook_id, company_id, attempt, attempted_at, duration_ms, status_code)
     values ($1, $2, $3, $4, 1, $2, 5, 204)`, [d.id, at, webhookId, companyId]);
}

async function historyDays(database: TestDatabase, webhookId: string): Promise<string[]> {
  const { rows } = await database.pool.query(
    `select distinct to_char(created_at at time zone 'UTC', 'YYYY-MM-DD') as day from webhooks.deliveries where webhook_id = $1 order by 1`,
    [webhookId]);
  return rows.map((r) => r.day);
}

test.serial('a copy keeps every row and total, and the retention the original set though not the setting: maintenance there keeps what the original keeps; migrate changes nothing and capture announces once', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '400 days'`);
  for (const [i, day] of [-200, -1].entries()) await oldDelivery(db(), webhook.id, company.id, day, 900_000 + i);
  await maintain(db().url);
  t.deepEqual(await historyDays(db(), webhook.id), [iso(-200), iso(-1)]);
  const totals = await daily(db(), webhook.id);
  t.deepEqual(totals.map((r) => [r.day, r.fired, r.succeeded]), [[iso(-200), 1, 1], [iso(-1), 1, 1]]);

  const unset = await copyOfTestDatabase(db());
  t.teardown(() => unset.drop());
  const setAgain = await copyOfTestDatabase(db());
  t.teardown(() => setAgain.drop());
  t.like(await retention(unset), { value: '400 days', set_to: null });
  t.regex((await retention(unset)).refusal ?? '', /^not set in this database: the retention it set last holds/);
  await setAgain.pool.query(`alter database ${setAgain.name} set webhooks.retention = '400 days'`);
  t.like(await retention(setAgain), { value: '400 days', set_to: '400 days', refusal: null });

  for (const copy of [unset, setAgain]) {
    await migrate(copy.url);
    await maintain(copy.url);
    t.deepEqual(await daily(copy, webhook.id), totals, 'the totals outlive the retention');
    const [copied] = (await copy.pool.query(`insert into crm.contacts (company_id, first_name) values ($1, 'Copied') returning id`, [company.id])).rows;
    const { rows: fired } = await copy.pool.query(
      'select action::text from webhooks.deliveries where webhook_id = $1 and contact_id = $2', [webhook.id, copied.id]);
    t.deepEqual(fired, [{ action: 'contact.created' }]);
  }
  t.deepEqual(await historyDays(unset, webhook.id), [iso(-200), iso(-1), iso(0)], 'the 400 days the original set held, not the default 90');
  t.deepEqual(await historyDays(setAgain, webhook.id), [iso(-200), iso(-1), iso(0)]);
});

test.serial('on the database itself, a retention reset keeps the one it set last until one is set again; set, it holds, and a day past it is dropped', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await oldDelivery(db(), webhook.id, company.id, -150, 900_100);
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '200 days'`);
  await maintain(db().url);
  t.true((await historyDays(db(), webhook.id)).includes(iso(-150)));

  await db().pool.query(`alter database ${db().name} reset webhooks.retention`);
  t.like(await retention(db()), { value: '200 days', set_to: null });
  await maintain(db().url);
  t.true((await historyDays(db(), webhook.id)).includes(iso(-150)), 'reset: the 200 days set last held');

  await db().pool.query(`alter database ${db().name} set webhooks.retention = '90 days'`);
  t.like(await retention(db()), { value: '90 days', set_to: '90 days', refusal: null });
  await maintain(db().url);
  t.false((await historyDays(db(), webhook.id)).includes(iso(-150)), 'set to 90 days: day -150 dropped');
  const { rows: [noted] } = await db().pool.query('select retention::text from webhooks_private.retention_last_set');
  t.is(noted.retention, '90 days');
});
