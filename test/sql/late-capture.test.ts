// A capture's delivery takes its time from its transaction's start (now()). A CRM
// transaction that reads, stays open for hours or days without writing, and only
// then writes a contact captures late: into an hour or a day the roll-up may have
// counted already (which the write must mark, may_be_counted: the roll-up cannot see
// a transaction that has written nothing), or into a day the retention has dropped
// since (no partition of history is there any more, and a CRM write must never fail
// because of the engine). The engine's clock is set ahead for these connections
// (steered-clock.ts): now() stays the transaction's real start.
import test from 'ava';
import type pg from 'pg';
import { maintain } from '../../tools/maintain.ts';
import { crmAppRole } from '../helpers/crm-role.ts';
import { ownConnection, useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { hourCounts, rollUpAfter, settlePending } from '../helpers/report-counts.ts';
import { steerClock } from '../helpers/steered-clock.ts';
import { until } from '../helpers/until.ts';

const db = useTestDatabase(test);
// each test's roll-ups as an install's first: another test's clock, days ahead, is
// where the next run would look for new hours from (as roll-up-open-transaction.test.ts)
test.beforeEach(async () => {
  await steerClock(db().pool);
  await db().pool.query('delete from webhooks_private.report_counts_rolled_up; delete from webhooks_private.xid_watermarks');
});

/**
 * A webhook of a company of its own, and a connection whose transaction has only read
 * (as `role`, the CRM's own in a deployment, when given).
 */
async function idleWriter(
  t: { teardown: (fn: () => Promise<void>) => void },
  { fields, role, isolation = 'read committed' }: { fields?: string[]; role?: string; isolation?: string } = {},
) {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], fields });
  const writer: pg.Client = await ownConnection(db().url, t);
  if (role) await writer.query(`set role ${role}`);
  await writer.query(`begin isolation level ${isolation}`);
  const { rows: [{ started }] } = await writer.query('select now() as started, count(*) from crm.contacts');
  return { company, webhook, writer, started: started as Date };
}

/** A delivery of the webhook at `at`, succeeded, committed at once. */
async function deliveredAt(webhook: { id: string; company_id: string }, at: Date): Promise<void> {
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 0, '{}', 'succeeded', 1, now(), $3)`, [webhook.id, webhook.company_id, at]);
}

/** The webhook's day count of the day `at` falls in, as rolled up and as webhooks.daily_counts says. */
async function dayCounts(webhookId: string, at: Date) {
  const { rows: [row] } = await db().pool.query(
    `select (select coalesce(array_agg(c.fired::int), '{}') from webhooks.delivery_day_counts c
             where c.webhook_id = $1 and c.day = webhooks_private.utc_day($2)) as "dayRow",
            (select coalesce(array_agg(d.fired::int), '{}') from webhooks.daily_counts d
             where d.webhook_id = $1 and d.day = webhooks_private.utc_day($2)) as daily`,
    [webhookId, at]);
  return row as { dayRow: number[]; daily: number[] };
}

test.serial('a first capture three hours into a transaction is counted in the hour the transaction began', async (t) => {
  const { company, webhook, writer, started } = await idleWriter(t);
  await deliveredAt(webhook, started);
  // the writer has written nothing: its hour is counted meanwhile
  await rollUpAfter(db().pool, started, '3 hours');
  t.deepEqual(await hourCounts(db().pool, webhook, started), { hourRow: [1], report: 1 });
  await writer.query(`set bpd_test.clock_shift = '3 hours'`);
  const contact = await factories(writer).contact(company.id);
  await writer.query('commit');
  const { rows } = await db().pool.query('select created_at from webhooks.deliveries where webhook_id = $1 and contact_id = $2',
    [webhook.id, contact.id]);
  t.deepEqual(rows, [{ created_at: started }], 'its time is its transaction\'s start');
  await settlePending(db().pool, webhook.id);
  await rollUpAfter(db().pool, started, '3 hours 10 minutes');
  t.deepEqual(await hourCounts(db().pool, webhook, started), { hourRow: [2], report: 2 });
});

test.serial('a first capture three days into a transaction is counted in the day the transaction began', async (t) => {
  const { company, webhook, writer, started } = await idleWriter(t);
  await deliveredAt(webhook, started);
  await rollUpAfter(db().pool, started, '3 days');
  t.deepEqual(await dayCounts(webhook.id, started), { dayRow: [1], daily: [1] });
  await writer.query(`set bpd_test.clock_shift = '3 days'`);
  await factories(writer).contact(company.id);
  await writer.query('commit');
  await settlePending(db().pool, webhook.id);
  t.deepEqual((await dayCounts(webhook.id, started)).daily, [2], 'counted from the rows once its day count is dropped');
  await rollUpAfter(db().pool, started, '3 days 1 hour');
  t.deepEqual(await dayCounts(webhook.id, started), { dayRow: [2], daily: [2] });
});

/**
 * The database's retention set to a day (the least allowed) until the test ends: the
 * one setting of it that counts (a session's own is not read).
 */
async function retentionOfADay(t: { teardown: (fn: () => Promise<void>) => void }): Promise<void> {
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '1 day'`);
  t.teardown(async () => {
    await db().pool.query(`alter database ${db().name} reset webhooks.retention`);
  });
}

/**
 * The engine's own upkeep (tools/maintain.ts) run three days after `started`, with a
 * retention of a day: the writer's day, counted, is dropped. Undone when the test
 * ends: the day taken back from outbox_kept_since, its partitions made again.
 */
async function dropTheDayOf(started: Date, t: { teardown: (fn: () => Promise<void>) => void }): Promise<string[]> {
  t.teardown(async () => {
    await db().pool.query('delete from webhooks_private.outbox_kept_since');
    await db().pool.query('select webhooks.create_partitions()');
  });
  await retentionOfADay(t);
  await rollUpAfter(db().pool, started, '3 days');
  return (await maintainThreeDaysOn()).daysDropped;
}

/** A run of tools/maintain.ts with the engine's clock three days ahead. */
function maintainThreeDaysOn(log?: (line: string) => void) {
  const url = new URL(db().url);
  url.searchParams.set('options', '-c bpd_test.clock_shift=3d');
  return maintain(url.toString(), log);
}

function dayOf(at: Date): string {
  return at.toISOString().slice(0, 10);
}

test.serial('a transaction open since a day the retention dropped captures into a day kept, at the time of its capture', async (t) => {
  const { company, webhook, writer, started } = await idleWriter(t, { role: await crmAppRole(db().pool) });
  await deliveredAt(webhook, started);
  t.true((await dropTheDayOf(started, t)).includes(dayOf(started)));
  await writer.query(`set bpd_test.clock_shift = '3 days'`);
  const contact = await factories(writer).contact(company.id);
  // (the writer's clock, three days ahead, just after the capture)
  const { rows: [{ captured }] } = await writer.query(`select clock_timestamp() + interval '3 days' as captured`);
  await writer.query('commit');
  const { rows } = await db().pool.query(
    `select state, created_at >= $3::timestamptz + interval '3 days' and created_at <= $4 as "atItsCapture",
            h.tableoid::regclass::text as partition
     from webhooks.deliveries d join webhooks.delivery_history h using (id, created_at)
     where d.webhook_id = $1 and d.contact_id = $2`,
    [webhook.id, contact.id, started, captured]);
  t.deepEqual(rows, [{
    state: 'pending', atItsCapture: true,
    partition: `webhooks_partitions.delivery_history_p${dayOf(captured).replaceAll('-', '')}`,
  }]);
  // the dropped day's count stays, the new delivery counts in the day it landed in
  t.deepEqual((await dayCounts(webhook.id, started)).daily, [1]);
  t.deepEqual((await dayCounts(webhook.id, captured)).daily, [1]);
  const { rows: [report] } = await db().pool.query(
    `select fired::int from webhooks_private.count_deliveries($1, $2, webhooks_private.utc_day_start(webhooks_private.utc_day($3)),
                                                                webhooks_private.utc_day_start(webhooks_private.utc_day($3) + 5))`,
    [webhook.id, company.id, started]);
  t.is(report.fired, 2);
});

test.serial('a payload over the limit, captured by a transaction open since a day the retention dropped, is written failed in a day kept', async (t) => {
  const { company, webhook, writer, started } = await idleWriter(t, { fields: ['custom'] });
  await deliveredAt(webhook, started);
  t.true((await dropTheDayOf(started, t)).includes(dayOf(started)));
  // (this writer's own retention is the default: the drop is known from webhooks.kept_since())
  await writer.query(`set bpd_test.clock_shift = '3 days'; set webhooks.max_payload_bytes = 65536`);
  const contact = await factories(writer).contact(company.id, { custom: { notes: 'x'.repeat(70_000) } });
  await writer.query('commit');
  const { rows } = await db().pool.query(
    `select state, last_error ~ 'max_payload_bytes' as "overTheLimit", created_at >= $3::timestamptz + interval '3 days' as "atItsCapture"
     from webhooks.deliveries where webhook_id = $1 and contact_id = $2`,
    [webhook.id, contact.id, started]);
  t.deepEqual(rows, [{ state: 'failed', overTheLimit: true, atItsCapture: true }]);
});

test.serial('a writer in REPEATABLE READ whose own webhooks.retention is longer captures into a day kept, not the day dropped', async (t) => {
  // its snapshot, taken before the drop, shows no kept_since(); its own setting keeps
  // its day: only the database's retention, which maintenance dropped by, can tell
  await retentionOfADay(t);
  const { company, webhook, writer, started } = await idleWriter(t, { isolation: 'repeatable read' });
  await deliveredAt(webhook, started);
  t.true((await dropTheDayOf(started, t)).includes(dayOf(started)));
  await writer.query(`set bpd_test.clock_shift = '3 days'; set webhooks.retention = '30 days'`);
  const contact = await factories(writer).contact(company.id);
  await writer.query('commit');
  const { rows } = await db().pool.query(
    `select state, created_at >= $3::timestamptz + interval '3 days' as "atItsCapture"
     from webhooks.deliveries where webhook_id = $1 and contact_id = $2`,
    [webhook.id, contact.id, started]);
  t.deepEqual(rows, [{ state: 'pending', atItsCapture: true }]);
});

/**
 * Late captures stopped just after capture_time decided their day (steered by an
 * advisory lock that `gate` holds, the engine's function renamed and wrapped until the
 * test ends): what maintenance does between that decision and the insert.
 */
async function pauseLateCaptures(t: { teardown: (fn: () => Promise<void>) => void }) {
  const KEY = 7_700_770;
  const gate = await ownConnection(db().url, t);
  await gate.query('select pg_advisory_lock($1)', [KEY]);
  await db().pool.query(`
    alter function webhooks_private.capture_time(timestamptz) rename to capture_time_decided;
    create function webhooks_private.capture_time(p_started timestamptz)
    returns timestamptz
    language plpgsql
    volatile
    as $$
    declare
      v_at constant timestamptz := webhooks_private.capture_time_decided(p_started);
    begin
      perform pg_advisory_lock_shared(${KEY});
      perform pg_advisory_unlock_shared(${KEY});
      return v_at;
    end;
    $$`);
  t.teardown(async () => {
    await db().pool.query(`
      drop function webhooks_private.capture_time(timestamptz);
      alter function webhooks_private.capture_time_decided(timestamptz) rename to capture_time`);
  });
  return {
    paused: () => until('a late capture waits at the gate', async () => (await db().pool.query(
      `select exists (select 1 from pg_locks where locktype = 'advisory' and objid = $1 and not granted
                       and database = (select oid from pg_database where datname = current_database())) as waiting`,
      [KEY])).rows[0].waiting),
    release: () => gate.query('select pg_advisory_unlock($1)', [KEY]),
  };
}

test.serial('a day a late capture has just found kept is not dropped before its insert', async (t) => {
  const { company, webhook, writer, started } = await idleWriter(t);
  await deliveredAt(webhook, started);
  await retentionOfADay(t);
  await rollUpAfter(db().pool, started, '3 days');
  t.teardown(async () => {
    await db().pool.query('delete from webhooks_private.outbox_kept_since');
    await db().pool.query('select webhooks.create_partitions()');
  });
  const gate = await pauseLateCaptures(t);
  // a day on: with a retention of a day, the writer's day is the first kept
  await writer.query(`set bpd_test.clock_shift = '1 day'`);
  const writing = factories(writer).contact(company.id);
  writing.catch(() => {});
  await gate.paused();
  // two days later by maintenance's clock, the day is past the retention
  const said: string[] = [];
  const { daysDropped } = await maintainThreeDaysOn((line) => said.push(line));
  await gate.release();
  const contact = await writing;
  await writer.query('commit');
  t.false(daysDropped.includes(dayOf(started)), said.join('\n'));
  t.true(said.includes(`kept the history of ${dayOf(started)}: a capture late in its transaction found it kept and has not written yet`),
    said.join('\n'));
  const { rows } = await db().pool.query(
    `select state, created_at from webhooks.deliveries where webhook_id = $1 and contact_id = $2`, [webhook.id, contact.id]);
  t.deepEqual(rows, [{ state: 'pending', created_at: started }]);
});

// A REPEATABLE READ writer reads the subscriptions as of its snapshot: a webhook
// deleted since is still there for it, and its capture writes a delivery the purge
// removes later (22_outbox.sql, recheck_deleted_webhooks). Written an hour or more
// after its transaction began, that capture also marks the delivery's hour: the hour
// count's key to the webhook failed the CRM's write until 2026-12-07 (migration 0082).
test.serial('a late capture for a webhook deleted since its transaction\'s snapshot does not fail the CRM\'s write', async (t) => {
  const { company, webhook, writer } = await idleWriter(t, { isolation: 'repeatable read' });
  await db().pool.query('select webhooks.delete_webhook($1)', [webhook.id]);
  await writer.query(`set bpd_test.clock_shift = '3 hours'`);
  const contact = await factories(writer).contact(company.id);
  await writer.query('commit');
  const { rows } = await db().pool.query('select id from crm.contacts where id = $1', [contact.id]);
  t.is(rows.length, 1, 'the contact is written');
  const { rows: daily } = await db().pool.query('select * from webhooks.daily_counts where webhook_id = $1', [webhook.id]);
  t.deepEqual(daily, [], 'in no total');
  // the hour it marked goes with the delivery, at maintenance's purge
  await maintain(db().url);
  const { rows: [left] } = await db().pool.query(
    `select (select count(*) from webhooks.delivery_hour_counts where webhook_id = $1)::int as hours,
            (select count(*) from webhooks.delivery_history where webhook_id = $1)::int as history`, [webhook.id]);
  t.deepEqual(left, { hours: 0, history: 0 });
});
