// Each company's budget of the API's one thread for query texts the API has not seen.
//
// Why: a text the API has no plan for is parsed, validated and planned on the one
// thread that answers every company, 40 to 250 ms for a text within every other limit
// (api/limits.ts), and every other request waits meanwhile. The company's share
// (api/company-share.ts) bounds how many of its requests run at once, not how much of
// the thread their planning takes: a company that sent a stream of texts, each a
// comment apart, kept the thread busy and every other company's requests waited behind
// it (test/api/planning-budget.test.ts). A text already planned costs a map lookup.
//
// A bucket of milliseconds for each company: it holds at most `burstMs` and fills at
// `msPerSecond`; the time each new text took of the thread (threadClock, below) is taken from it, and may take it below
// zero (a plan's time is known once it is made). While a company's bucket is empty, its
// texts the API has not planned are refused before they are parsed; its texts already
// planned still run.
//
// Pure bookkeeping, no I/O: api/preset.ts asks before a text is parsed and says what
// each new text took.

/**
 * The thread's time a text's parse, validation or plan took, as it is charged: the
 * wall clock's, but no more than the thread's CPU time over the same span plus one
 * tick of the clock that counts it. On a loaded machine (another process's burst, a
 * CI run) the thread waits for a core, and the time it waited is nobody's planning:
 * by the wall clock alone the Reports page's own texts, new to a fresh API, took 0.2 s
 * on a quiet machine and 1.5 s on a loaded one. The CPU time alone will not do either:
 * the kernel counts it by its ticks (4 ms on this machine, 10 ms on a kernel of 100 Hz),
 * so a text of a millisecond was charged nothing, or a tick.
 */
export function threadClock(): () => number {
  const wall = performance.now();
  const cpu = threadCpuMs();
  return () => Math.min(performance.now() - wall, threadCpuMs() - cpu + CPU_CLOCK_TICK_MS);
}

/** The coarsest tick by which a Linux kernel counts a thread's CPU time (HZ=100). */
const CPU_CLOCK_TICK_MS = 10;

/** Milliseconds of CPU this thread has used, by the kernel's ticks (threadClock, above). */
export function threadCpuMs(): number {
  const { user, system } = process.threadCpuUsage();
  return (user + system) / 1000;
}

export interface PlanningBudgetLimits {
  /** milliseconds of the thread a company's new texts may take in a second, over time */
  msPerSecond: number;
  /** milliseconds they may take at once, from a full bucket */
  burstMs: number;
}

interface Bucket {
  /** milliseconds left at `at` (below zero: owed) */
  level: number;
  /** when `level` was counted, in ms of `now` */
  at: number;
}

export class PlanningBudget {
  readonly #limits: PlanningBudgetLimits;
  readonly #now: () => number;
  /**
   * Only companies whose bucket is not full: a full bucket is one never used. In the
   * order of their last spending, the longest ago first (forgotten once full again).
   */
  readonly #buckets = new Map<string, Bucket>();
  /** the most buckets kept: past it, the one that spent longest ago is forgotten (its owner starts full again) */
  readonly #size: number;

  constructor(limits: PlanningBudgetLimits, now: () => number = () => performance.now(), size = Infinity) {
    this.#limits = limits;
    this.#now = now;
    this.#size = size;
  }

  /** Companies whose bucket is not full (those that spent recently): the others are forgotten. */
  get companies(): number {
    return this.#buckets.size;
  }

  /**
   * 0 when the company may have a new text planned now; else how many milliseconds
   * until it may.
   */
  waitMs(companyId: string): number {
    const bucket = this.#buckets.get(companyId);
    if (bucket === undefined) return 0;
    const level = this.#levelNow(bucket, this.#now());
    return level > 0 ? 0 : Math.ceil(((-level + 1) * 1000) / this.#limits.msPerSecond);
  }

  /** Takes what a new text of the company took, in milliseconds, from its bucket. */
  spend(companyId: string, ms: number): void {
    const now = this.#now();
    const bucket = this.#buckets.get(companyId);
    const level = bucket === undefined ? this.#limits.burstMs : this.#levelNow(bucket, now);
    // (moved to the end: the order of last spending)
    this.#buckets.delete(companyId);
    this.#buckets.set(companyId, { level: level - ms, at: now });
    this.#forgetFull(now);
    if (this.#buckets.size > this.#size) this.#buckets.delete(this.#buckets.keys().next().value!);
  }

  #levelNow(bucket: Bucket, now: number): number {
    return Math.min(this.#limits.burstMs, bucket.level + ((now - bucket.at) * this.#limits.msPerSecond) / 1000);
  }

  /**
   * Forgets the companies whose bucket is full again, from the one that spent longest
   * ago, up to the first that is not: each spending forgets at most what it finds, and
   * a company is kept at most as long as its bucket takes to fill after its last spending.
   */
  #forgetFull(now: number): void {
    for (const [companyId, bucket] of this.#buckets) {
      if (this.#levelNow(bucket, now) < this.#limits.burstMs) return;
      this.#buckets.delete(companyId);
    }
  }
}

/**
 * The query texts the API has parsed, validated and kept (grafserv keeps the latest
 * `size` of them, api/preset.ts CACHED_DOCUMENTS): the latest used, as grafserv's
 * cache holds them. A text here is not charged to anyone's budget before it runs.
 */
export class KnownTexts {
  readonly #size: number;
  readonly #texts = new Set<string>();

  constructor(size: number) {
    this.#size = size;
  }

  /** Whether the text is kept; if it is, it is now the latest used. */
  use(text: string): boolean {
    if (!this.#texts.delete(text)) return false;
    this.#texts.add(text);
    return true;
  }

  /** The text is kept now, the latest used; the one used longest ago goes past `size`. */
  add(text: string): void {
    this.#texts.delete(text);
    this.#texts.add(text);
    if (this.#texts.size > this.#size) this.#texts.delete(this.#texts.values().next().value!);
  }

  /** The text is no longer kept (it is planned anew for its variables: api/preset.ts). */
  forget(text: string): void {
    this.#texts.delete(text);
  }

  get size(): number {
    return this.#texts.size;
  }
}
