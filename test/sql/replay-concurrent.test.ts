// Replays at the same time put each failed delivery back on its way once: replayFailed
// takes only deliveries still failed, and one another replay took first (its result
// row deleted, its queue row written, not yet committed) is waited for and passed by.
import test from 'ava';
import type pg from 'pg';
import { ownConnection, useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { until } from '../helpers/until.ts';

const db = useTestDatabase(test);

async function failedDeliveries(webhookId: string, companyId: string, count: number): Promise<number[]> {
  const { rows } = await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, last_error, completed_at, created_at)
     select $1, $2, 'contact.created', i, jsonb_build_object('type', 'contact.created', 'n', i),
            'failed', 3, 'HTTP 500', now(), now() - interval '2 days' + i * interval '1 second'
     from generate_series(1, $3::int) i
     returning id`, [webhookId, companyId, count]);
  return rows.map((r) => Number(r.id)).sort((a, b) => a - b);
}

async function waitsForLock(pid: number): Promise<boolean> {
  const { rows } = await db().pool.query(
    `select 1 from pg_stat_activity where pid = $1 and datname = current_database() and wait_event_type = 'Lock'`, [pid]);
  return rows.length === 1;
}

async function asAdmin(client: pg.Client, companyId: string): Promise<number> {
  await client.query('begin');
  await client.query(`select set_config('role', 'webhook_admin', true), set_config('jwt.claims.company_id', $1, true)`, [companyId]);
  const { rows: [{ pid }] } = await client.query('select pg_backend_pid() as pid');
  return pid;
}

/** Each delivery of the webhook: how many queue rows it has, and its state. */
async function queued(webhookId: string) {
  const { rows } = await db().pool.query(
    `select d.id::int as id, d.state, (select count(*)::int from webhooks.delivery_queue q where q.delivery_id = d.id) as rows
     from webhooks.deliveries d where d.webhook_id = $1 order by d.id`, [webhookId]);
  return rows;
}

async function replayedAudit(webhookId: string): Promise<number[]> {
  const { rows } = await db().pool.query(
    `select (details ->> 'deliveries')::int as n from webhooks.audit_log
     where webhook_id = $1 and action = 'webhook.replayed' order by id`, [webhookId]);
  return rows.map((r) => r.n);
}

test('two replayFailed calls at once: each delivery requeued by one of them, once', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const ids = await failedDeliveries(webhook.id, company.id, 1000);
  const first = await ownConnection(db().url, t);
  const second = await ownConnection(db().url, t);
  await asAdmin(first, company.id);
  const secondPid = await asAdmin(second, company.id);
  const { rows: a } = await first.query(`select id from webhooks.replay_failed($1, '2000-01-01', 600)`, [webhook.id]);
  const replaying = second.query(`select id from webhooks.replay_failed($1, '2000-01-01')`, [webhook.id]);
  await until('the second replay waits for the first', () => waitsForLock(secondPid));
  await first.query('commit');
  const { rows: b } = await replaying;
  await second.query('commit');
  const taken = [...a, ...b].map((r) => Number(r.id)).sort((x, y) => x - y);
  t.is(a.length, 600);
  t.is(b.length, 400);
  t.deepEqual(taken, ids);
  t.deepEqual(await queued(webhook.id), ids.map((id) => ({ id, state: 'pending', rows: 1 })));
  t.deepEqual(await replayedAudit(webhook.id), [600, 400]);
});

test('replayFailed meets deliveries a DBA is replaying by hand: those it passes by, the rest it takes, each once', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const ids = await failedDeliveries(webhook.id, company.id, 200);
  const byHand = ids.slice(10, 13);
  const dba = await ownConnection(db().url, t);
  await dba.query('begin');
  await dba.query(
    `update webhooks.deliveries set state = 'pending', completed_at = null, next_attempt_at = now() where id = any ($1::bigint[])`,
    [byHand]);
  const api = await ownConnection(db().url, t);
  const apiPid = await asAdmin(api, company.id);
  // (its choice is made before the DBA commits: the three are still failed to it)
  const replaying = api.query(`select id from webhooks.replay_failed($1, '2000-01-01')`, [webhook.id]);
  await until('the replay waits for the DBA\'s rows', () => waitsForLock(apiPid));
  await dba.query('commit');
  const { rows } = await replaying;
  await api.query('commit');
  t.deepEqual(rows.map((r) => Number(r.id)).sort((x, y) => x - y), ids.filter((id) => !byHand.includes(id)));
  t.deepEqual(await queued(webhook.id), ids.map((id) => ({ id, state: 'pending', rows: 1 })));
  t.deepEqual(await replayedAudit(webhook.id), [3, 197]);
});

test('requeue_failed takes only failed deliveries of the webhook and company named, and only for the request\'s company', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const other = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const sibling = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const stranger = await f.webhook({ companyId: other.id, actions: ['contact.created'] });
  const mine = await failedDeliveries(webhook.id, company.id, 2);
  const siblings = await failedDeliveries(sibling.id, company.id, 2);
  const strangers = await failedDeliveries(stranger.id, other.id, 2);
  const all = [...mine, ...siblings, ...strangers];
  // (the times as Postgres wrote them: microseconds)
  const { rows: [named] } = await db().pool.query(
    `select array_agg(id order by id)::text as ids, array_agg(created_at order by id)::text as times
     from webhooks.delivery_history where id = any ($1::bigint[])`, [all]);
  const client = await ownConnection(db().url, t);
  await asAdmin(client, company.id);
  const { rows } = await client.query(
    `select requeued_id::int as id from webhooks_private.requeue_failed($1, $2, $3::bigint[], $4::timestamptz[])`,
    [webhook.id, company.id, named.ids, named.times]);
  t.deepEqual(rows.map((r) => r.id), mine);
  // another company's webhook, named with its company, by a request of this one: not found
  const refused = await client.query(
    `select requeued_id from webhooks_private.requeue_failed($1, $2, $3::bigint[], $4::timestamptz[])`,
    [stranger.id, other.id, named.ids, named.times]).catch((e) => e);
  t.is(refused.code, 'P0002');
  await client.query('rollback');
  // nor by the admin's role without a company
  await client.query('begin');
  await client.query(`select set_config('role', 'webhook_admin', true)`);
  const unnamed = await client.query(
    `select requeued_id from webhooks_private.requeue_failed($1, $2, $3::bigint[], $4::timestamptz[])`,
    [stranger.id, other.id, named.ids, named.times]).catch((e) => e);
  t.is(unnamed.code, 'P0002');
  await client.query('rollback');
  const { rows: still } = await db().pool.query(
    `select count(*)::int as n from webhooks.deliveries where id = any ($1::bigint[]) and state = 'failed'`, [all]);
  t.is(still[0].n, 6);
});
