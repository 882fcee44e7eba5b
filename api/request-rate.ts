// Each company's rate of GraphQL requests: a bucket of requests for each company,
// holding at most `burst` and filling at `perSecond`; a request takes one, and a
// request that finds its company's bucket empty is refused (api/server.ts: 429, before
// its body is read).
//
// Why: the company's share (api/company-share.ts) bounds how many of its requests run
// at once, and its planning budget (api/planning-budget.ts) what its new texts take of
// the API's one thread; neither bounds how many requests it sends. Each costs the
// thread its headers, its token and its JSON, and a cheap one its answer too: a client
// that sent `{ __typename }` as fast as it could, or sent each refused request again at
// once, took the thread from every other company (test/api/request-rate.test.ts).
// Refused here, a request costs its headers and its token (kept verified: api/auth.ts).
//
// The bucket is the planning budget's, counting requests where that counts milliseconds.
import { PlanningBudget } from './planning-budget.ts';

export interface RequestRateLimits {
  /** requests a company may send in a second, over time */
  perSecond: number;
  /** requests it may send at once, after a quiet spell */
  burst: number;
}

export class RequestRate {
  readonly #buckets: PlanningBudget;

  constructor(limits: RequestRateLimits, now?: () => number) {
    this.#buckets = new PlanningBudget({ msPerSecond: limits.perSecond, burstMs: limits.burst }, now);
  }

  /** Companies that sent requests lately (their bucket is not full): the others are forgotten. */
  get companies(): number {
    return this.#buckets.companies;
  }

  /** 0 when the company's request may run, and it is counted; else how many milliseconds until one may. */
  take(companyId: string): number {
    const waitMs = this.#buckets.waitMs(companyId);
    if (waitMs === 0) this.#buckets.spend(companyId, 1);
    return waitMs;
  }
}
