// What replaying many deliveries writes: replayFailed's 1,000 make one audit row,
// written once, not an update of it per delivery (each update left a version of the
// row that the next one read past: 127,000 of the call's 154,000 buffer reads at
// the third call of a session, 2 to 4 s, near the API's 5 s statement timeout).
import test from 'ava';
import { ownConnection, useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

async function failedDeliveries(webhookId: string, companyId: string, count: number) {
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, last_error, completed_at)
     select $1, $2, 'contact.created', i, jsonb_build_object('type', 'contact.created', 'data', jsonb_build_object('contact', jsonb_build_object('id', i))),
            'failed', 3, 'HTTP 500', now()
     from generate_series(1, $3::int) i`, [webhookId, companyId, count]);
  const { rows } = await db().pool.query(
    'select id from webhooks.deliveries where webhook_id = $1 order by created_at, id', [webhookId]);
  return rows.map((r) => Number(r.id));
}

test('replayFailed of 1,000 deliveries writes its audit row once, and a statement replaying two webhooks\' one row each', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const ids = await failedDeliveries(webhook.id, company.id, 1000);

  // (a connection of its own: the counts of this transaction's writes, and no
  // earlier transaction's not yet reported)
  const client = await ownConnection(db().url, t);
  await client.query('begin');
  await client.query(`select set_config('role', 'webhook_admin', true), set_config('jwt.claims.company_id', $1, true)`, [company.id]);
  const { rows: [replayed] } = await client.query(`select count(*)::int as n from webhooks.replay_failed($1, '2000-01-01')`, [webhook.id]);
  await client.query('reset role');
  const { rows: [writes] } = await client.query(
    `select n_tup_ins::int as inserted, n_tup_upd::int as updated from pg_stat_xact_user_tables where relid = 'webhooks.audit_log'::regclass`);
  await client.query('commit');
  t.is(replayed.n, 1000);
  t.deepEqual(writes, { inserted: 1, updated: 0 });
  const { rows: audit } = await db().pool.query(
    `select details from webhooks.audit_log where webhook_id = $1 and action = 'webhook.replayed'`, [webhook.id]);
  t.deepEqual(audit.map((r) => r.details), [{ deliveries: 1000, delivery_ids: ids.slice(0, 20) }]);

  // a DBA's update of two webhooks' deliveries: a row for each, counted apart; a
  // second statement of the same transaction adds to them
  const other = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const a = await failedDeliveries(other.id, company.id, 3);
  const third = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const b = await failedDeliveries(third.id, company.id, 2);
  await client.query('begin');
  await client.query(
    `update webhooks.deliveries set state = 'pending', completed_at = null, next_attempt_at = now()
     where id = any ($1::bigint[])`, [[a[0], a[1], b[0], b[1]]]);
  await client.query(
    `update webhooks.deliveries set state = 'pending', completed_at = null, next_attempt_at = now() where id = $1`, [a[2]]);
  await client.query('commit');
  const { rows: dba } = await db().pool.query(
    `select webhook_id::text, details from webhooks.audit_log where webhook_id = any ($1::bigint[]) and action = 'webhook.replayed'
     order by webhook_id`, [[other.id, third.id]]);
  t.deepEqual(dba, [
    { webhook_id: other.id, details: { deliveries: 3, delivery_ids: a } },
    { webhook_id: third.id, details: { deliveries: 2, delivery_ids: b } },
  ]);
});

test('replayFailed of 1,000 deliveries of five past hours: a trigger call and a recount an hour, not four calls a delivery', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  // (two days old: each replayed delivery's hour and day are noted to count again)
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, last_error, completed_at, created_at)
     select $1, $2, 'contact.created', i, jsonb_build_object('type', 'contact.created', 'data', jsonb_build_object('contact', jsonb_build_object('id', i))),
            'failed', 3, 'HTTP 500', now(), date_trunc('hour', now()) - interval '2 days' - (i % 5) * interval '1 hour' + i * interval '1 ms'
     from generate_series(1, 1000) i`, [webhook.id, company.id]);

  const client = await ownConnection(db().url, t);
  await client.query(`set track_functions = 'all'`);
  await client.query('begin');
  await client.query(`select set_config('role', 'webhook_admin', true), set_config('jwt.claims.company_id', $1, true)`, [company.id]);
  const { rows: [replayed] } = await client.query(`select count(*)::int as n from webhooks.replay_failed($1, '2000-01-01')`, [webhook.id]);
  await client.query('reset role');
  const { rows: [calls] } = await client.query(
    `select coalesce(sum(s.calls) filter (where p.prorettype = 'trigger'::regtype), 0)::int as triggers,
            coalesce(sum(s.calls) filter (where s.funcname = 'recount_day'), 0)::int as recounts
     from pg_stat_xact_user_functions s join pg_proc p on p.oid = s.funcid`);
  const { rows: [hours] } = await client.query(
    `select (n_tup_ins + n_tup_upd)::int as written from pg_stat_xact_user_tables where relid = 'webhooks.delivery_hour_counts'::regclass`);
  const { rows: noted } = await client.query(
    `select day::text from webhooks_private.delivery_days_to_count where webhook_id = $1 order by day`, [webhook.id]);
  await client.query('commit');
  t.is(replayed.n, 1000);
  // (through the view's row triggers: 4,000 trigger calls, 1,000 recounts and 1,000
  // writes of five hour rows)
  t.true(calls.triggers <= 2, `trigger calls: ${calls.triggers}`);
  t.is(calls.recounts, 5);
  t.is(hours.written, 5);
  t.true(noted.length >= 1 && noted.length <= 2);
});
