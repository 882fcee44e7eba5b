// The relay's own metrics (docs/operations.md), counted where the relay learns each
// fact: a claim when the claim call returns, a request while it is open, an outcome
// when settle has written it (SQL decides succeeded, retry or failed). Labels are
// fixed sets: never a company, a webhook or a URL.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** What settle_deliveries says became of an attempt, or a refusal before any request. */
export type Outcome = 'succeeded' | 'retry' | 'failed';

export class RelayMetrics {
  readonly registry: Registry;
  readonly #deliveries: Counter<'outcome'>;
  readonly #duration: Histogram<'outcome'>;
  readonly #inFlight: Gauge;
  readonly #claims: Counter;
  readonly #claimed: Counter;

  /** registry: where the metrics are exposed (a fresh one when not given) */
  constructor(registry: Registry = new Registry()) {
    this.registry = registry;
    this.#deliveries = new Counter({
      name: 'bpd_webhooks_deliveries_total',
      help: 'Delivery attempts settled, by outcome: succeeded, retry (failed, will be tried again), failed (failed for good).',
      labelNames: ['outcome'],
      registers: [registry],
    });
    this.#duration = new Histogram({
      name: 'bpd_webhooks_attempt_duration_seconds',
      help: 'Duration of a delivery attempt (connect, request, response headers, body excerpt), by outcome.',
      labelNames: ['outcome'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    });
    this.#inFlight = new Gauge({
      name: 'bpd_webhooks_requests_in_flight',
      help: 'HTTP requests to receivers open now.',
      registers: [registry],
    });
    this.#claims = new Counter({
      name: 'bpd_webhooks_claims_total',
      help: 'Claim calls made to the database.',
      registers: [registry],
    });
    this.#claimed = new Counter({
      name: 'bpd_webhooks_claimed_total',
      help: 'Deliveries claimed.',
      registers: [registry],
    });
    for (const outcome of ['succeeded', 'retry', 'failed'] as const) {
      // every outcome present from the start: a ratio has a denominator before the first failure
      this.#deliveries.inc({ outcome }, 0);
    }
  }

  claimed(rows: number): void {
    this.#claims.inc();
    this.#claimed.inc(rows);
  }

  requestStarted(): void {
    this.#inFlight.inc();
  }

  requestEnded(): void {
    this.#inFlight.dec();
  }

  /** One attempt settled: state is what settle_deliveries wrote (pending means a retry). */
  settled(state: string, durationMs: number): void {
    const outcome: Outcome = state === 'succeeded' ? 'succeeded' : state === 'pending' ? 'retry' : 'failed';
    this.#deliveries.inc({ outcome });
    this.#duration.observe({ outcome }, durationMs / 1000);
  }
}
