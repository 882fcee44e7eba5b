// replayFailed puts a webhook's failed deliveries back on their way set by set (one
// statement for their results and queue rows, their counts noted by the statement:
// webhooks_private.requeue_failed, 47_audit.sql), where it wrote each through the view
// webhooks.deliveries, whose row triggers did it one delivery at a time
// (webhooks_private.requeue_deliveries, which replayDelivery still uses). Every total
// must come out as it did: the same replay both ways, from the same rows, compared.
import test from 'ava';
import type pg from 'pg';
import { ownConnection, useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

/** Everything a total is made from or reads, as this transaction sees it. */
async function totals(client: pg.Client, companyIds: string[]) {
  const q = async (sql: string, params: unknown[] = []) => (await client.query(sql, params)).rows;
  const report: Record<string, unknown> = {};
  for (const companyId of companyIds) {
    await client.query(`select set_config('role', 'webhook_viewer', true), set_config('jwt.claims.company_id', $1, true)`, [companyId]);
    report[companyId] = await q(
      `select webhooks.webhook_report_counts(null, null) as whole,
              webhooks.webhook_report_counts(now() - interval '3 days', now()) as three_days,
              webhooks.webhook_report_counts(now() - interval '2 hours', null) as two_hours,
              (select jsonb_agg(to_jsonb(r) order by r.webhook_id) from webhooks.webhook_report() r) as rows`);
    await client.query(`select set_config('role', 'none', true), set_config('jwt.claims.company_id', '', true)`);
    await client.query('reset role');
  }
  return {
    report,
    dailyCounts: await q('select * from webhooks.daily_counts order by webhook_id, day'),
    dayCounts: await q('select * from webhooks.delivery_day_counts order by webhook_id, day'),
    daysToCount: await q('select * from webhooks_private.delivery_days_to_count order by webhook_id, day'),
    toRollUp: await q('select * from webhooks_private.webhooks_to_roll_up order by webhook_id'),
    // (version is a change mark: a row per delivery moved it once per delivery)
    hourCounts: await q(`select webhook_id, company_id, hour, fired, succeeded, failed, stale
                         from webhooks.delivery_hour_counts order by webhook_id, hour`),
    deliveries: await q(`select id, webhook_id, state, attempts, last_attempt_at, last_status_code, last_error, completed_at,
                                next_attempt_at = now() as due_now, held_back
                         from webhooks.deliveries order by id`),
    queue: await q(`select delivery_id, created_at, webhook_id, company_id, action, contact_id, attempts, locked_by,
                           locked_until, last_attempt_at, last_status_code, last_error, payload_bytes, held_due,
                           next_attempt_at = now() as due_now
                    from webhooks.delivery_queue order by delivery_id`),
    results: await q('select * from webhooks.delivery_results order by delivery_id'),
    attempts: await q('select * from webhooks.delivery_attempts order by id'),
    fireHistory: await q('select * from webhooks.fire_history order by delivery_id'),
    audit: await q(`select company_id, webhook_id, action, details from webhooks.audit_log
                    where action = 'webhook.replayed' order by webhook_id`),
  };
}

test.serial('replayFailed set by set leaves every total as the replay row by row did: days, hours, report, attempts, fire history', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const elsewhere = await f.company();
  const replayed = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const sibling = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const stranger = await f.webhook({ companyId: elsewhere.id, actions: ['contact.created'] });
  // each webhook: failed and succeeded deliveries over six days (counted days, days
  // not counted yet, the last hours), some with attempts of their own
  for (const w of [replayed, sibling, stranger]) {
    await db().pool.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, last_attempt_at,
                                        last_status_code, last_error, completed_at, created_at)
       select $1, $2, 'contact.created', i % 7 + 1, jsonb_build_object('type', 'contact.created', 'n', i),
              case when i % 3 = 0 then 'succeeded' else 'failed' end, i % 4 + 1, t + interval '1 minute',
              case when i % 3 = 0 then 200 else 500 end, case when i % 3 = 0 then null else 'HTTP 500' end,
              t + interval '2 minutes', t
       from generate_series(1, 120) i, lateral (select now() - (i * interval '71 minutes') - interval '10 minutes' as t) g`,
      [w.id, w.company_id]);
    await db().pool.query(
      `insert into webhooks.delivery_attempts (delivery_id, delivery_created_at, webhook_id, company_id, attempt, attempted_at, status_code, duration_ms, error)
       select d.id, d.created_at, d.webhook_id, d.company_id, 1, d.created_at + interval '1 minute', 500, 12, 'HTTP 500'
       from webhooks.deliveries d where d.webhook_id = $1 and d.state = 'failed' and d.id % 2 = 0`, [w.id]);
  }
  await db().pool.query('call webhooks.roll_up_report_counts()');
  const companies = [company.id, elsewhere.id];

  const client = await ownConnection(db().url, t);
  await client.query('begin');
  const before = await totals(client, companies);
  await client.query('rollback');
  t.true(before.dayCounts.some((r) => r.webhook_id === replayed.id), 'days of the webhook counted before');
  t.true(before.hourCounts.some((r) => r.webhook_id === replayed.id && !r.stale), 'hours of the webhook counted before');

  // row by row: the failed ones replayFailed takes, written pending through the view
  await client.query('begin');
  await client.query(`select set_config('role', 'webhook_admin', true), set_config('jwt.claims.company_id', $1, true)`, [company.id]);
  const returnedColumns = `id, state, attempts, locked_by, last_attempt_at, last_status_code, last_error, completed_at,
                           created_at, held_back, next_attempt_at = now() as due_now`;
  const { rows: returnedByRow } = await client.query(
    `select ${returnedColumns} from webhooks_private.requeue_deliveries(
       (select array_agg(r.delivery_id order by r.created_at, r.delivery_id) from webhooks.delivery_results r
        where r.webhook_id = $1 and r.state = 'failed'),
       (select array_agg(r.created_at order by r.created_at, r.delivery_id) from webhooks.delivery_results r
        where r.webhook_id = $1 and r.state = 'failed'))`, [replayed.id]);
  const byRow = returnedByRow.length;
  await client.query('reset role');
  const rowByRow = await totals(client, companies);
  await client.query('rollback');

  await client.query('begin');
  await client.query(`select set_config('role', 'webhook_admin', true), set_config('jwt.claims.company_id', $1, true)`, [company.id]);
  const { rows: returned } = await client.query(
    `select ${returnedColumns} from webhooks.replay_failed($1, '2000-01-01')`, [replayed.id]);
  const bySet = returned.length;
  await client.query('reset role');
  const setBySet = await totals(client, companies);
  await client.query('commit');

  t.is(byRow, 80);
  t.is(bySet, 80);
  // the audit row: as many, the first listed now those the call returns first (the
  // oldest; row by row, those its plan met first)
  // what each returned: the deliveries, pending, oldest first
  t.deepEqual(returned, returnedByRow);
  t.true(returned.every((r) => r.state === 'pending' && r.due_now));
  t.deepEqual(setBySet.audit, [{ company_id: company.id, webhook_id: replayed.id, action: 'webhook.replayed',
    details: { deliveries: 80, delivery_ids: returned.slice(0, 20).map((r) => Number(r.id)) } }]);
  t.deepEqual(rowByRow.audit.map((r: any) => r.details.deliveries), [80]);
  t.deepEqual({ ...setBySet, audit: null }, { ...rowByRow, audit: null });
  // (it did replay: the webhook's deliveries and counts moved, its siblings' did not)
  t.notDeepEqual(setBySet.dayCounts, before.dayCounts);
  t.is(setBySet.queue.length, 80);
  for (const key of ['deliveries', 'dailyCounts', 'hourCounts', 'dayCounts', 'attempts', 'fireHistory'] as const) {
    const others = (rows: any[]) => rows.filter((r) => String(r.webhook_id) !== replayed.id);
    t.deepEqual(others(setBySet[key]), others(before[key]), key);
  }
});
