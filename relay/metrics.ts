// The relay's own metrics (docs/operations.md), counted where the relay learns each
// fact: a claim when the claim call returns, the outcomes of a settle when it has
// written them (SQL decides succeeded, retry or failed), and the requests open when
// /metrics is read (the relay counts them anyway). Nothing is counted per request
// that a batch can count once: at 13,000 deliveries/s, updating the counters per
// delivery was about 2 % of the relay's throughput (BENCHMARKS.md, 2026-12-04).
// Labels are fixed sets: never a company, a webhook or a URL.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** What settle_deliveries says became of an attempt, or a refusal before any request. */
export type Outcome = 'succeeded' | 'retry' | 'failed';

/** Each outcome's label set, built once. */
const OUTCOME_LABELS: Readonly<Record<Outcome, { outcome: Outcome }>> = {
  succeeded: { outcome: 'succeeded' },
  retry: { outcome: 'retry' },
  failed: { outcome: 'failed' },
};

/** One attempt a settle wrote: its state as settle_deliveries wrote it (pending means a retry), and its duration. */
export interface SettledAttempt {
  state: string;
  durationMs: number;
}

export class RelayMetrics {
  readonly registry: Registry;
  readonly #deliveries: Counter<'outcome'>;
  readonly #duration: Histogram<'outcome'>;
  readonly #claims: Counter;
  readonly #claimed: Counter;
  readonly #unheldReleased: Counter;

  /**
   * now: what the relay holds, read at each scrape (requests open, bytes of bodies
   * held), and the most bytes it may hold; registry: where the metrics are exposed
   * (a fresh one when not given)
   */
  constructor(
    now: {
      inFlight: () => number;
      heldBytes: () => number;
      byteBudget: number;
      /** the origins kept alive and the connections open to receivers (deliver.ts), and the most origins and connections kept */
      receivers: () => { kept: number; connections: number };
      keptMax: number;
      keptConnectionsMax: number;
    },
    registry: Registry = new Registry(),
  ) {
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
    // registered, and read at each scrape: nothing to keep
    new Gauge({
      name: 'bpd_webhooks_requests_in_flight',
      help: 'HTTP requests to receivers open now.',
      registers: [registry],
      collect() {
        this.set(now.inFlight());
      },
    });
    new Gauge({
      name: 'bpd_webhooks_payload_bytes_held',
      help: 'Bytes of payloads the relay holds now: in flight, queued and paced (RELAY_MAX_HELD_BYTES bounds them).',
      registers: [registry],
      collect() {
        this.set(now.heldBytes());
      },
    });
    new Gauge({
      name: 'bpd_webhooks_payload_bytes_budget',
      help: 'RELAY_MAX_HELD_BYTES: the most bytes of payloads the relay holds; at it, the relay claims nothing more.',
      registers: [registry],
    }).set(now.byteBudget);
    new Gauge({
      name: 'bpd_webhooks_receiver_origins_kept',
      help: 'Origins of receivers whose connections the relay keeps alive now (KEPT_ORIGINS_MAX bounds them: past it, a connection per request).',
      registers: [registry],
      collect() {
        this.set(now.receivers().kept);
      },
    });
    new Gauge({
      name: 'bpd_webhooks_receiver_origins_kept_max',
      help: 'KEPT_ORIGINS_MAX: the most origins whose connections the relay keeps alive at once.',
      registers: [registry],
    }).set(now.keptMax);
    new Gauge({
      name: 'bpd_webhooks_receiver_connections',
      help: 'Connections to receivers open now, in use or idle (a file descriptor each).',
      registers: [registry],
      collect() {
        this.set(now.receivers().connections);
      },
    });
    new Gauge({
      name: 'bpd_webhooks_receiver_connections_kept_max',
      help: 'KEPT_CONNECTIONS_MAX: past this many connections to kept origins, one that opens closes idle ones, the most recently opened first.',
      registers: [registry],
    }).set(now.keptConnectionsMax);
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
    this.#unheldReleased = new Counter({
      name: 'bpd_webhooks_unheld_leases_released_total',
      help: 'Deliveries leased to this relay that it did not hold, handed back after a claim or a release whose answer was lost (relay/holdings.ts).',
      registers: [registry],
    });
    for (const labels of Object.values(OUTCOME_LABELS)) {
      // every outcome present from the start: a ratio has a denominator before the first failure
      this.#deliveries.inc(labels, 0);
    }
  }

  claimed(rows: number): void {
    this.#claims.inc();
    this.#claimed.inc(rows);
  }

  /** Deliveries a release of the unheld handed back. */
  unheldReleased(count: number): void {
    this.#unheldReleased.inc(count);
  }

  /** The attempts one settle wrote. */
  settled(attempts: readonly SettledAttempt[]): void {
    let succeeded = 0;
    let retry = 0;
    let failed = 0;
    for (const { state, durationMs } of attempts) {
      const outcome: Outcome = state === 'succeeded' ? 'succeeded' : state === 'pending' ? 'retry' : 'failed';
      if (outcome === 'succeeded') succeeded++;
      else if (outcome === 'retry') retry++;
      else failed++;
      this.#duration.observe(OUTCOME_LABELS[outcome], durationMs / 1000);
    }
    if (succeeded > 0) this.#deliveries.inc(OUTCOME_LABELS.succeeded, succeeded);
    if (retry > 0) this.#deliveries.inc(OUTCOME_LABELS.retry, retry);
    if (failed > 0) this.#deliveries.inc(OUTCOME_LABELS.failed, failed);
  }
}
