// The admin API's own metrics, beside the shared ones of ops/operations.ts: HTTP
// requests by route (a fixed set) and status, their duration, those in flight, those
// waiting for their company's turn, statements waiting for a database connection, the
// operations planned, and the new texts refused for their company's budget.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type pg from 'pg';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { CompanyShare } from './company-share.ts';

export type Route = 'graphql' | 'graphiql' | 'page' | 'operations';

export function apiMetrics(registry: Registry, share: CompanyShare, pool: Pick<pg.Pool, 'waitingCount'>) {
  new Gauge({
    name: 'bpd_webhooks_api_requests_waiting',
    help: 'GraphQL requests waiting for a turn of their company (API_COMPANY_MAX_IN_FLIGHT).',
    registers: [registry],
    collect() {
      this.set(share.waiting);
    },
  });
  // above 0 for long, the pool is what the API waits on: past API_POOL_WAIT_MS a
  // statement is refused (DATABASE_BUSY)
  new Gauge({
    name: 'bpd_webhooks_api_connections_waiting',
    help: 'Statements of the API waiting for one of its database connections (each at most API_POOL_WAIT_MS).',
    registers: [registry],
    collect() {
      this.set(pool.waitingCount);
    },
  });
  const inFlight = new Gauge({
    name: 'bpd_webhooks_api_requests_in_flight',
    help: 'Admin API HTTP requests being answered now.',
    registers: [registry],
  });
  const requests = new Counter({
    name: 'bpd_webhooks_api_requests_total',
    help: 'Admin API HTTP requests answered, by route and status code.',
    labelNames: ['route', 'code'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'bpd_webhooks_api_request_duration_seconds',
    help: 'Time to answer an admin API HTTP request, by route.',
    labelNames: ['route'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  // a plan grafast did not have cached (api/preset.ts, PlanCache): each holds the
  // API's one thread for as long as it takes, for every company
  const planning = new Histogram({
    name: 'bpd_webhooks_api_planning_seconds',
    help: 'Time to plan a GraphQL operation the API had no plan for (its count: plans made).',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [registry],
  });
  // 429s of TOO_MANY_NEW_QUERIES, apart from the company share's (api/planning-budget.ts)
  const newTextsRefused = new Counter({
    name: 'bpd_webhooks_api_new_texts_refused_total',
    help: 'GraphQL requests refused before parsing: their company\'s new query texts had spent its time to plan them (API_COMPANY_PLANNING_MS_PER_SECOND).',
    registers: [registry],
  });
  return {
    /** One operation planned, in ms. */
    planned(ms: number): void {
      planning.observe(ms / 1000);
    },
    /** One new text refused for its company's budget. */
    newTextRefused(): void {
      newTextsRefused.inc();
    },
    /** Counts one request from now until its response is finished (or the connection closes). */
    track(_req: IncomingMessage, res: ServerResponse, route: Route): void {
      inFlight.inc();
      const started = performance.now();
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        inFlight.dec();
        requests.inc({ route, code: String(res.statusCode) });
        duration.observe({ route }, (performance.now() - started) / 1000);
      };
      res.once('finish', finish);
      res.once('close', finish);
    },
  };
}
