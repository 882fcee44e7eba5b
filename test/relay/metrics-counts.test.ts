// RelayMetrics alone, without a relay or a database: what a scrape reads after a
// settle's outcomes are counted, and the requests in flight as the relay counts them
// at the moment of the scrape.
import test from 'ava';
import { RelayMetrics } from '../../relay/metrics.ts';
import { parsePrometheus } from '../helpers/prometheus.ts';

/** What a scraper reads of these metrics now. */
async function values(metrics: RelayMetrics): Promise<Map<string, number>> {
  return parsePrometheus(await metrics.registry.metrics());
}

test('a settle counts each outcome once per attempt and observes each duration', async (t) => {
  const metrics = new RelayMetrics(() => 0);
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
  const read = await values(new RelayMetrics(() => 0));
  for (const outcome of ['succeeded', 'retry', 'failed']) t.is(read.get(`bpd_webhooks_deliveries_total{outcome="${outcome}"}`), 0);
});

test('requests in flight are read when scraped', async (t) => {
  let open = 3;
  const metrics = new RelayMetrics(() => open);
  t.is((await values(metrics)).get('bpd_webhooks_requests_in_flight'), 3);
  open = 0;
  t.is((await values(metrics)).get('bpd_webhooks_requests_in_flight'), 0);
});
