// Each company's share of the API: at most `maxInFlight` GraphQL requests of one
// company run at once; up to `maxQueued` more wait for a turn, first come first
// served, each for at most `maxWaitMs`; a request beyond those is refused at once.
//
// Why: every request holds one of the pool's database connections while it runs,
// for up to the statement timeout (a lock wait included). Without a share, one
// company's burst of slow requests, a careless script or a hostile one, held every
// connection of the pool and every other company's requests waited behind it
// (test/api/company-share.test.ts). With it, one company holds at most maxInFlight
// connections and backends, whatever it sends.
//
// Pure bookkeeping, no I/O: the server admits a request after it has checked the
// token (the company is the token's) and releases it when the request's work has
// ended, whether its client is still there or not, and its answer is taken (or its
// client cut off: api/server.ts).

export interface CompanyShareLimits {
  maxInFlight: number;
  maxQueued: number;
  maxWaitMs: number;
}

export type Admission =
  | { admitted: true; release: () => void }
  | { admitted: false; why: 'queue_full' | 'waited_too_long' | 'gone' };

interface Waiter {
  admit: (admission: Admission) => void;
}

interface Company {
  running: number;
  waiting: Waiter[];
}

export class CompanyShare {
  readonly #limits: CompanyShareLimits;
  /** only companies with a request running or waiting: the map stays as small as the load */
  readonly #companies = new Map<string, Company>();
  #waiting = 0;

  constructor(limits: CompanyShareLimits) {
    this.#limits = limits;
  }

  /** Requests waiting for a turn, all companies together (a metric). */
  get waiting(): number {
    return this.#waiting;
  }

  /** Companies with a request running or waiting now: the others are forgotten. */
  get companies(): number {
    return this.#companies.size;
  }

  /** Requests of a company running now. */
  running(companyId: string): number {
    return this.#companies.get(companyId)?.running ?? 0;
  }

  /**
   * A turn for one request of the company: at once when it has fewer than maxInFlight
   * running, else when one of them ends, if no more than maxQueued wait before it and
   * its turn comes within maxWaitMs. `gone` (the client went away while it waited)
   * gives up its place.
   */
  admit(companyId: string, gone?: AbortSignal): Promise<Admission> {
    const company = this.#companies.get(companyId) ?? { running: 0, waiting: [] };
    this.#companies.set(companyId, company);
    if (company.running < this.#limits.maxInFlight) {
      company.running++;
      return Promise.resolve({ admitted: true, release: this.#releaser(companyId, company) });
    }
    if (company.waiting.length >= this.#limits.maxQueued) {
      return Promise.resolve({ admitted: false, why: 'queue_full' });
    }
    return new Promise<Admission>((resolve) => {
      const leave = (why: 'waited_too_long' | 'gone') => {
        const at = company.waiting.indexOf(waiter);
        if (at < 0) return;
        company.waiting.splice(at, 1);
        this.#waiting--;
        this.#forgetIfIdle(companyId, company);
        settle({ admitted: false, why });
      };
      const timer = setTimeout(() => leave('waited_too_long'), this.#limits.maxWaitMs);
      const onGone = () => leave('gone');
      const settle = (admission: Admission) => {
        clearTimeout(timer);
        gone?.removeEventListener('abort', onGone);
        resolve(admission);
      };
      const waiter: Waiter = { admit: settle };
      company.waiting.push(waiter);
      this.#waiting++;
      if (gone?.aborted) onGone();
      else gone?.addEventListener('abort', onGone, { once: true });
    });
  }

  /** Ends a running request's turn once, handing it to the company's next waiter. */
  #releaser(companyId: string, company: Company): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = company.waiting.shift();
      if (next) {
        this.#waiting--;
        // the turn passes on: running stays as it is
        next.admit({ admitted: true, release: this.#releaser(companyId, company) });
        return;
      }
      company.running--;
      this.#forgetIfIdle(companyId, company);
    };
  }

  #forgetIfIdle(companyId: string, company: Company): void {
    if (company.running === 0 && company.waiting.length === 0) this.#companies.delete(companyId);
  }
}
