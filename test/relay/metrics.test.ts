// The relay's /metrics, /healthz and /readyz on RELAY_METRICS_PORT (relay/metrics.ts,
// ops/): outcomes counted as settle wrote them, claims, requests in flight, the
// backlog and the process.
import test from 'ava';
import { EXPECTED_MIGRATION } from '../../ops/operations.ts';
import { freePort } from '../../tools/embedded-postgres.ts';
import { scrape } from '../helpers/prometheus.ts';
import { relayScene, spawnRelay, waitForFinalDeliveries } from '../helpers/relay.ts';

test('a relay with RELAY_METRICS_PORT counts each outcome, claims and requests, and answers health and readiness', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const ok = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/ok') });
  const bad = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/bad'), maxAttempts: 2 });
  receiver.route('/ok', { secret: ok.secret, otherwise: 200 });
  receiver.route('/bad', { secret: bad.secret, otherwise: 500 });

  const port = await freePort();
  const relay = spawnRelay(database.url, { RELAY_METRICS_PORT: String(port) });
  t.teardown(() => void relay.kill('SIGKILL'));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    const up = await fetch(`${url}/healthz`).then((r) => r.ok, () => false);
    if (up) break;
    if (i > 300) throw new Error('the relay\'s metrics port did not answer within a minute');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
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
  t.true(metrics.has('process_cpu_seconds_total'));
  for (const series of metrics.keys()) t.notRegex(series, /company|webhook_id|url=/);

  relay.kill('SIGTERM');
  const [code] = await new Promise<[number | null]>((resolve) => relay.once('exit', (c) => resolve([c])));
  t.is(code, 0);
});
