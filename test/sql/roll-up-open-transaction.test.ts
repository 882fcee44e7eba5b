// A capture's delivery takes its time from its transaction's start (now()), so a CRM
// transaction open for hours writes into an hour, or a day, the report's roll-up
// (sql/50_report_counts.sql) may have counted and taken as final already: counted
// without it, and kept so. The roll-up counts no period such a transaction may still
// write into while it is open (roll_up_bounds). Its clock is passed in (p_now): the
// tests run it hours or days after the writer began.
import test from 'ava';
import type pg from 'pg';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { prepareTransaction, rollBackPrepared, transactionName, twoPhaseTest } from '../helpers/two-phase.ts';

const db = useTestDatabase(test);
const twoPhase = twoPhaseTest(test);
test.afterEach.always(() => rollBackPrepared(db().url));
// each test's roll-ups as an install's first: the clock of another test's, hours
// ahead, is where the next run would look for new hours from
test.beforeEach(() => db().pool.query('delete from webhooks_private.report_counts_rolled_up'));

/** A webhook of a company of its own, and a connection that writes its contacts in a transaction left open. */
async function openWriter(t: { teardown: (fn: () => void) => void }) {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const writer: pg.PoolClient = await db().pool.connect();
  t.teardown(() => writer.release(true));
  await writer.query('begin');
  const { rows: [{ started }] } = await writer.query('select now() as started');
  return { company, webhook, writer, started: started as Date };
}

/** Every delivery of the webhook on its way marked succeeded (as the relay settles them). */
async function settle(webhookId: string): Promise<void> {
  await db().pool.query(
    `update webhooks.deliveries set state = 'succeeded', attempts = 1, completed_at = now()
     where webhook_id = $1 and state = 'pending'`, [webhookId]);
}

/** A roll-up whose clock is `later` after `started`. */
async function rollUp(started: Date, later: string): Promise<void> {
  await db().pool.query('call webhooks.roll_up_report_counts(p_now => $1::timestamptz + $2::interval)', [started, later]);
}

/** The webhook's true hour row of the hour `at` falls in (its fired), and the report's count of that hour. */
async function hourCounts(webhook: { id: string; company_id: string }, at: Date) {
  const { rows: [row] } = await db().pool.query(
    `select (select coalesce(array_agg(c.fired::int), '{}') from webhooks.delivery_hour_counts c
             where c.webhook_id = $1 and c.hour = webhooks_private.utc_hour($3) and not c.stale) as "hourRow",
            (select r.fired::int from webhooks_private.count_deliveries($1, $2, webhooks_private.utc_hour($3),
                                                                          webhooks_private.utc_hour($3) + interval '1 hour') r) as report`,
    [webhook.id, webhook.company_id, at]);
  return row as { hourRow: number[]; report: number };
}

test.serial('a delivery captured early in a transaction that commits three hours later is counted in its hour', async (t) => {
  const { company, webhook, writer, started } = await openWriter(t);
  await factories(writer).contact(company.id);   // captured now, created at the transaction's start
  // (one more delivery of the same hour, committed at once)
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, now(), $3)`, [webhook.id, company.id, started]);
  await rollUp(started, '3 hours');
  t.deepEqual((await hourCounts(webhook, started)).hourRow, [], 'the hour is not counted while the writer is open');
  await writer.query('commit');
  await settle(webhook.id);
  await rollUp(started, '3 hours');
  t.deepEqual(await hourCounts(webhook, started), { hourRow: [2], report: 2 });
});

test.serial('a delivery captured three hours into a transaction is counted in the hour it began', async (t) => {
  const { company, webhook, writer, started } = await openWriter(t);
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, now(), $3)`, [webhook.id, company.id, started]);
  await rollUp(started, '3 hours');
  // the writer captures only now, and commits
  await factories(writer).contact(company.id);
  await writer.query('commit');
  await settle(webhook.id);
  await rollUp(started, '3 hours 10 minutes');
  t.deepEqual(await hourCounts(webhook, started), { hourRow: [2], report: 2 });
});

// A prepared transaction has no connection, and Postgres keeps no start for it: its
// deliveries' time may be any before its PREPARE.
twoPhase('nothing is counted while a transaction is prepared; its delivery is counted in its hour once it commits', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const name = transactionName();
  let started = new Date();
  await prepareTransaction(db().pool, name, 'set local webhooks.two_phase = on', async (client) => {
    started = (await client.query('select now() as started')).rows[0].started as Date;
    await factories(client).contact(company.id);
  });
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, now(), $3)`, [webhook.id, company.id, started]);
  await rollUp(started, '3 hours');
  t.deepEqual((await hourCounts(webhook, started)).hourRow, [], 'the hour is not counted while the writer is prepared');
  await db().pool.query(`commit prepared '${name}'`);
  await settle(webhook.id);
  await rollUp(started, '3 hours');
  t.deepEqual(await hourCounts(webhook, started), { hourRow: [2], report: 2 });
});

test.serial('a delivery of a transaction open for three days is counted in its day', async (t) => {
  const { company, webhook, writer, started } = await openWriter(t);
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, now(), $3)`, [webhook.id, company.id, started]);
  await rollUp(started, '3 days');
  await factories(writer).contact(company.id);
  await writer.query('commit');
  await settle(webhook.id);
  await rollUp(started, '3 days 1 hour');
  const { rows } = await db().pool.query(
    `select fired::int from webhooks.delivery_day_counts where webhook_id = $1 and day = webhooks_private.utc_day($2)
     union all
     select fired::int from webhooks.daily_counts where webhook_id = $1 and day = webhooks_private.utc_day($2)`,
    [webhook.id, started]);
  t.deepEqual(rows, [{ fired: 2 }, { fired: 2 }]);
});
