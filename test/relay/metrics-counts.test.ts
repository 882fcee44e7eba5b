// RelayMetrics alone, without a relay or a database: what a scrape reads after a
// settle's outcomes are counted; the requests in flight as the relay counts them
// at the moment of the scrape, and the bytes of payloads held.
import test from 'ava';
import { RelayMetrics } from '../../relay/metrics.ts';
import { parsePrometheus } from '../helpers/prometheus.ts';

const NOTHING_HELD = {
  inFlight: () => 0, heldBytes: () => 0, byteBudget: 1_048_576,
  receivers: () => ({ kept: 0, connections: 0 }), keptMax: 1_000, keptConnectionsMax: 2_000,
};

/** What a scraper reads of these metrics now. */
async function values(metrics: RelayMetrics): Promise<Map<string, number>> {
  return parsePrometheus(await metrics.registry.metrics());
}

test('a settle counts each outcome once per attempt and observes each duration', async (t) => {
  const metrics = new RelayMetrics(NOTHING_HELD);
  metrics.settled([
    { state: 'succeeded', durationMs: 5 },
    { state: 'pending', durationMs: 40 },
    { state: 'succeeded', durationMs: 7 },
    { state: 'failed', durationMs: 3_000 },
  ]);
  metrics.settled([{ state: 'succeeded', durationMs: 9 }]);
  metrics.settled([]);
  const read = await values(metrics);
  t.is(read.get('bpd_webhooks_deliveries_total{outcome="succeeded"}'), 3);
  t.is(read.get('bpd_webhooks_deliveries_total{outcome="retry"}'), 1);
  t.is(read.get('bpd_webhooks_deliveries_total{outcome="failed"}'), 1);
  t.is(read.get('bpd_webhooks_attempt_duration_seconds_count{outcome="succeeded"}'), 3);
  t.is(read.get('bpd_webhooks_attempt_duration_seconds_bucket{le="0.01",outcome="succeeded"}'), 3);
  t.is(read.get('bpd_webhooks_attempt_duration_seconds_bucket{le="2.5",outcome="failed"}'), 0);
  t.is(read.get('bpd_webhooks_attempt_duration_seconds_bucket{le="5",outcome="failed"}'), 1);
  t.is(read.get('bpd_webhooks_attempt_duration_seconds_sum{outcome="retry"}'), 0.04);
});

test('every outcome is there at zero before the first settle', async (t) => {
  const read = await values(new RelayMetrics(NOTHING_HELD));
  for (const outcome of ['succeeded', 'retry', 'failed']) t.is(read.get(`bpd_webhooks_deliveries_total{outcome="${outcome}"}`), 0);
});

test('requests in flight and the bytes of payloads held are read when scraped, beside the byte budget', async (t) => {
  let open = 3;
  let bytes = 70_000;
  const metrics = new RelayMetrics({ ...NOTHING_HELD, inFlight: () => open, heldBytes: () => bytes });
  const first = await values(metrics);
  t.is(first.get('bpd_webhooks_requests_in_flight'), 3);
  t.is(first.get('bpd_webhooks_payload_bytes_held'), 70_000);
  t.is(first.get('bpd_webhooks_payload_bytes_budget'), 1_048_576);
  open = 0;
  bytes = 0;
  const then = await values(metrics);
  t.is(then.get('bpd_webhooks_requests_in_flight'), 0);
  t.is(then.get('bpd_webhooks_payload_bytes_held'), 0);
});

test('the origins kept alive and the connections open to receivers are read when scraped, beside the most origins and connections kept', async (t) => {
  let receivers = { kept: 12, connections: 40 };
  const metrics = new RelayMetrics({ ...NOTHING_HELD, receivers: () => receivers, keptMax: 1_000, keptConnectionsMax: 2_000 });
  const first = await values(metrics);
  t.is(first.get('bpd_webhooks_receiver_origins_kept'), 12);
  t.is(first.get('bpd_webhooks_receiver_origins_kept_max'), 1_000);
  t.is(first.get('bpd_webhooks_receiver_connections'), 40);
  t.is(first.get('bpd_webhooks_receiver_connections_kept_max'), 2_000);
  receivers = { kept: 0, connections: 0 };
  const then = await values(metrics);
  t.is(then.get('bpd_webhooks_receiver_origins_kept'), 0);
  t.is(then.get('bpd_webhooks_receiver_connections'), 0);
});
