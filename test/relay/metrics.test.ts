// The relay's /metrics, /healthz and /readyz on RELAY_METRICS_PORT (relay/metrics.ts,
// ops/): outcomes counted as settle wrote them, claims, requests in flight, the
// backlog, the transactions that hold the relays awake, and the process.
import type { ChildProcess } from 'node:child_process';
import test from 'ava';
import type pg from 'pg';
import { EXPECTED_MIGRATION } from '../../ops/operations.ts';
import { freePort } from '../../tools/embedded-postgres.ts';
import { scrape } from '../helpers/prometheus.ts';
import { relayScene, spawnRelay, waitForFinalDeliveries } from '../helpers/relay.ts';
import { prepareTransaction, rollBackPrepared, transactionName, twoPhaseTest } from '../helpers/two-phase.ts';

const twoPhase = twoPhaseTest(test);

/** A relay process serving its metrics; resolves with their address once /healthz answers. */
async function relayWithMetrics(t: { teardown: (fn: () => void) => void }, databaseUrl: string): Promise<{ relay: ChildProcess; url: string }> {
  const port = await freePort();
  const relay = spawnRelay(databaseUrl, { RELAY_METRICS_PORT: String(port) });
  t.teardown(() => void relay.kill('SIGKILL'));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    const up = await fetch(`${url}/healthz`).then((r) => r.ok, () => false);
    if (up) return { relay, url };
    if (i > 300) throw new Error('the relay\'s metrics port did not answer within a minute');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Scrapes until `done` holds of the samples (the database's answer serves a second's scrapes). */
async function scrapeUntil(url: string, done: (metrics: Map<string, number>) => boolean): Promise<Map<string, number>> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const metrics = await scrape(url);
    if (done(metrics) || Date.now() > deadline) return metrics;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const CAPTURING = ['bpd_webhooks_capturing_transactions', 'bpd_webhooks_capturing_prepared_transactions',
  'bpd_webhooks_oldest_capturing_transaction_seconds', 'bpd_webhooks_oldest_prepared_capturing_transaction_seconds',
  'bpd_webhooks_capturing_transactions_of_unknown_age', 'bpd_webhooks_oldest_capturing_transaction_xid_age'];

/** The capturing gauges of a scrape, by name. */
function capturing(metrics: Map<string, number>): Record<string, number | undefined> {
  return Object.fromEntries(CAPTURING.map((name) => [name, metrics.get(name)]));
}

/** A transaction left open after capturing a new contact's delivery (a session idle in transaction). */
async function openCapture(pool: pg.Pool, companyId: string): Promise<() => Promise<void>> {
  const client = await pool.connect();
  try {
    await client.query('begin');
    await client.query('insert into crm.contacts (company_id) values ($1)', [companyId]);
  } catch (error) {
    await client.query('rollback').catch(() => {});
    client.release();
    throw error;
  }
  let ended = false;
  return async () => {
    if (ended) return;
    ended = true;
    try {
      await client.query('commit');
    } finally {
      client.release();
    }
  };
}

test('a relay with RELAY_METRICS_PORT counts each outcome, claims and requests, and answers health and readiness', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const ok = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/ok') });
  const bad = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/bad'), maxAttempts: 2 });
  receiver.route('/ok', { secret: ok.secret, otherwise: 200 });
  receiver.route('/bad', { secret: bad.secret, otherwise: 500 });

  const { relay, url } = await relayWithMetrics(t, database.url);
  const ready = await fetch(`${url}/readyz`);
  t.is(ready.status, 200);
  t.deepEqual(await ready.json(), { status: 'ready', migration: EXPECTED_MIGRATION });

  // one change: /ok succeeds; /bad fails, is retried, and fails for good (2 attempts)
  await f.contact(company.id);
  await waitForFinalDeliveries(database.pool, [ok.id, bad.id], 2);

  const metrics = await scrape(url);
  t.is(metrics.get('bpd_webhooks_deliveries_total{outcome="succeeded"}'), 1);
  t.is(metrics.get('bpd_webhooks_deliveries_total{outcome="retry"}'), 1);
  t.is(metrics.get('bpd_webhooks_deliveries_total{outcome="failed"}'), 1);
  t.is(metrics.get('bpd_webhooks_attempt_duration_seconds_count{outcome="succeeded"}'), 1);
  t.is(metrics.get('bpd_webhooks_attempt_duration_seconds_count{outcome="retry"}'), 1);
  t.true(metrics.get('bpd_webhooks_claims_total')! >= 2);
  t.is(metrics.get('bpd_webhooks_claimed_total'), 3);
  t.is(metrics.get('bpd_webhooks_unheld_leases_released_total'), 0, 'no answer lost');
  t.is(metrics.get('bpd_webhooks_requests_in_flight'), 0);
  t.is(metrics.get('bpd_webhooks_payload_bytes_held'), 0);
  t.is(metrics.get('bpd_webhooks_payload_bytes_budget'), 50_331_648, 'RELAY_MAX_HELD_BYTES at its default');
  t.is(metrics.get('bpd_webhooks_due'), 0);
  t.is(metrics.get('bpd_webhooks_oldest_due_seconds'), 0);
  t.is(metrics.get('bpd_webhooks_database_up'), 1);
  t.deepEqual(capturing(metrics), Object.fromEntries(CAPTURING.map((name) => [name, 0])), 'no transaction holds capturing');
  t.true(metrics.has('process_cpu_seconds_total'));
  for (const series of metrics.keys()) t.notRegex(series, /company|webhook_id|url=/);

  relay.kill('SIGTERM');
  const [code] = await new Promise<[number | null]>((resolve) => relay.once('exit', (c) => resolve([c])));
  t.is(code, 0);
});

test('a transaction left open after a capture shows on the relay\'s /metrics, with its age, until it ends; its delivery then goes', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/ok') });
  receiver.route('/ok', { secret: hook.secret, otherwise: 200 });
  const { url } = await relayWithMetrics(t, database.url);

  const end = await openCapture(database.pool, company.id);
  t.teardown(end);
  const held = await scrapeUntil(url, (m) => m.get('bpd_webhooks_capturing_transactions') === 1);
  t.like(capturing(held), { bpd_webhooks_capturing_transactions: 1, bpd_webhooks_capturing_prepared_transactions: 0,
    bpd_webhooks_oldest_prepared_capturing_transaction_seconds: 0, bpd_webhooks_capturing_transactions_of_unknown_age: 0 });
  t.true(held.get('bpd_webhooks_oldest_capturing_transaction_seconds')! > 0, 'its age, as the relay\'s role is told it');
  t.true(held.get('bpd_webhooks_oldest_capturing_transaction_xid_age')! > 0, 'and in transaction ids');

  await end();
  await waitForFinalDeliveries(database.pool, [hook.id], 1);
  const ended = await scrapeUntil(url, (m) => m.get('bpd_webhooks_capturing_transactions') === 0);
  t.deepEqual(capturing(ended), Object.fromEntries(CAPTURING.map((name) => [name, 0])));
});

twoPhase('a transaction left prepared holding capturing shows on the relay\'s /metrics as prepared, with its age, until COMMIT PREPARED; its delivery then goes', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  t.teardown(async () => void (await rollBackPrepared(database.url)));
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/ok') });
  receiver.route('/ok', { secret: hook.secret, otherwise: 200 });
  const { url } = await relayWithMetrics(t, database.url);

  const name = transactionName();
  await prepareTransaction(database.pool, name, 'set local webhooks.two_phase = on', (writer) =>
    writer.query('insert into crm.contacts (company_id) values ($1)', [company.id]));
  const held = await scrapeUntil(url, (m) => m.get('bpd_webhooks_capturing_prepared_transactions') === 1);
  t.like(capturing(held), { bpd_webhooks_capturing_transactions: 1, bpd_webhooks_capturing_prepared_transactions: 1 });
  const age = held.get('bpd_webhooks_oldest_prepared_capturing_transaction_seconds')!;
  t.true(age > 0, 'prepared for a while already');
  t.is(held.get('bpd_webhooks_oldest_capturing_transaction_seconds'), age, 'the only holder is the oldest');

  await database.pool.query(`commit prepared '${name}'`);
  await waitForFinalDeliveries(database.pool, [hook.id], 1);
  const ended = await scrapeUntil(url, (m) => m.get('bpd_webhooks_capturing_transactions') === 0);
  t.deepEqual(capturing(ended), Object.fromEntries(CAPTURING.map((name) => [name, 0])));
});
