// A capture's delivery takes its time from its transaction's start (now()), so a CRM
// transaction open for hours writes into an hour, or a day, the report's roll-up
// (sql/50_report_counts.sql) may have counted and taken as final already: counted
// without it, and kept so. The roll-up counts no period a transaction that has
// written may still write into while it is open (roll_up_bounds); one that only reads
// holds nothing back. Its clock is passed in (p_now): the tests run it hours or days
// after the writer began. (A transaction that writes for the first time an hour or
// more after it began says so itself, by the engine's clock: may_be_counted, tested
// with that clock set ahead in late-capture.test.ts.)
import test from 'ava';
import type pg from 'pg';
import { useTestDatabase } from '../helpers/db.ts';
import { crmAppRole } from '../helpers/crm-role.ts';
import { factories } from '../helpers/factories.ts';
import { hourCounts, rollUpAfter, settlePending } from '../helpers/report-counts.ts';
import { prepareTransaction, rollBackPrepared, transactionName, twoPhaseTest } from '../helpers/two-phase.ts';

const db = useTestDatabase(test);
const twoPhase = twoPhaseTest(test);
test.afterEach.always(() => rollBackPrepared(db().url));
// each test's roll-ups as an install's first: the clock of another test's, hours
// ahead, is where the next run would look for new hours from, and the time its
// transaction ids were noted at (xid_watermarks)
test.beforeEach(() => db().pool.query(
  'delete from webhooks_private.report_counts_rolled_up; delete from webhooks_private.xid_watermarks'));

/**
 * A webhook of a company of its own, and a connection that writes its contacts in a
 * transaction left open, which has written already (a company of its own).
 */
async function openWriter(t: { teardown: (fn: () => void) => void }) {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const writer: pg.PoolClient = await db().pool.connect();
  t.teardown(() => writer.release(true));
  await writer.query('begin');
  const { rows: [{ started }] } = await writer.query('select now() as started');
  await factories(writer).company();
  return { company, webhook, writer, started: started as Date };
}

test.serial('a delivery captured early in a transaction that commits three hours later is counted in its hour', async (t) => {
  const { company, webhook, writer, started } = await openWriter(t);
  await factories(writer).contact(company.id);   // captured now, created at the transaction's start
  // (one more delivery of the same hour, committed at once)
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, now(), $3)`, [webhook.id, company.id, started]);
  await rollUpAfter(db().pool, started, '3 hours');
  t.deepEqual((await hourCounts(db().pool, webhook, started)).hourRow, [], 'the hour is not counted while the writer is open');
  await writer.query('commit');
  await settlePending(db().pool, webhook.id);
  await rollUpAfter(db().pool, started, '3 hours');
  t.deepEqual(await hourCounts(db().pool, webhook, started), { hourRow: [2], report: 2 });
});

test.serial('a delivery captured three hours into a transaction that wrote before is counted in the hour it began', async (t) => {
  const { company, webhook, writer, started } = await openWriter(t);
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, now(), $3)`, [webhook.id, company.id, started]);
  await rollUpAfter(db().pool, started, '3 hours');
  // the writer captures only now, and commits
  await factories(writer).contact(company.id);
  await writer.query('commit');
  await settlePending(db().pool, webhook.id);
  await rollUpAfter(db().pool, started, '3 hours 10 minutes');
  t.deepEqual(await hourCounts(db().pool, webhook, started), { hourRow: [2], report: 2 });
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
  await rollUpAfter(db().pool, started, '3 hours');
  t.deepEqual((await hourCounts(db().pool, webhook, started)).hourRow, [], 'the hour is not counted while the writer is prepared');
  await db().pool.query(`commit prepared '${name}'`);
  await settlePending(db().pool, webhook.id);
  await rollUpAfter(db().pool, started, '3 hours');
  t.deepEqual(await hourCounts(db().pool, webhook, started), { hourRow: [2], report: 2 });
});

test.serial('a delivery of a transaction open for three days, which wrote before, is counted in its day', async (t) => {
  const { company, webhook, writer, started } = await openWriter(t);
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, now(), $3)`, [webhook.id, company.id, started]);
  await rollUpAfter(db().pool, started, '3 days');
  await factories(writer).contact(company.id);
  await writer.query('commit');
  await settlePending(db().pool, webhook.id);
  await rollUpAfter(db().pool, started, '3 days 1 hour');
  const { rows } = await db().pool.query(
    `select fired::int from webhooks.delivery_day_counts where webhook_id = $1 and day = webhooks_private.utc_day($2)
     union all
     select fired::int from webhooks.daily_counts where webhook_id = $1 and day = webhooks_private.utc_day($2)`,
    [webhook.id, started]);
  t.deepEqual(rows, [{ fired: 2 }, { fired: 2 }]);
});

// A pg_dump, a session left idle in transaction after reads: it has no transaction id,
// and writes nothing unseen (its first write an hour or more after its start marks
// what it writes: may_be_counted). Until 2026-12-06 the roll-up read the start of
// every open transaction (pg_stat_activity), and such a reader of three hours held
// every hour of them back, the report counting them from the rows meanwhile.
test.serial('a transaction of another role that only reads, open for hours, holds no hour back', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const reader: pg.PoolClient = await db().pool.connect();
  t.teardown(() => reader.release(true));
  await reader.query(`set role ${await crmAppRole(db().pool)}`);
  await reader.query('begin isolation level repeatable read read only');
  const { rows: [{ started, contacts }] } = await reader.query('select now() as started, count(*)::int as contacts from crm.contacts');
  t.true(contacts >= 0);
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, now(), $3)`, [webhook.id, company.id, started]);
  await rollUpAfter(db().pool, started, '3 hours');
  t.deepEqual(await hourCounts(db().pool, webhook, started), { hourRow: [1], report: 1 }, 'counted while the reader is open');
  await reader.query('commit');
});

test.serial('a transaction that wrote before the last run holds back only the hours from an hour before that run', async (t) => {
  // a run an hour before the writer began noted the next transaction id (hours are
  // counted two hours after they end: it counted none of these)
  await db().pool.query(`call webhooks.roll_up_report_counts(p_now => now() - interval '1 hour')`);
  const { company, webhook, writer, started } = await openWriter(t);
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, now(), $3::timestamptz - interval '3 hours'),
            ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, now(), $3)`, [webhook.id, company.id, started]);
  await rollUpAfter(db().pool, started, '3 hours');
  const threeHoursBefore = new Date(started.getTime() - 3 * 3600_000);
  t.deepEqual(await hourCounts(db().pool, webhook, threeHoursBefore), { hourRow: [1], report: 1 }, 'before the run\'s hour less one: counted');
  t.deepEqual((await hourCounts(db().pool, webhook, started)).hourRow, [], 'the writer\'s hour is not counted while it is open');
  await writer.query('rollback');
});
