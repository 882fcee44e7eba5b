// Slots and the prefetch queue: which claimed delivery is sent now, which waits, and
// how much the next claim may take. Pure bookkeeping (no I/O, no timers: the caller
// passes the clock), so every rule here has a unit test that needs no database.
//
// Words used throughout:
//   in flight  a request is running for the delivery; it holds one request slot of its
//              webhook (perWebhookInFlight) and one of the relay (maxInFlight).
//   queued     claimed ahead of a free slot (prefetch), waiting in its webhook's local
//              queue, oldest first. It holds its lease while it waits.
//   paced      claimed with a rate_limit slot still ahead (sendAt): the loop holds it
//              until then, then admits it like any other.
//   held       in flight, queued or paced: claimed by this relay and not yet finished.
//
// Caps: one webhook's held deliveries ≤ perWebhookInFlight + its queue cap (its claim
// cap); all held ≤ maxInFlight + maxQueued, where the relay-wide queue is as large
// beside maxInFlight as one webhook's queue is beside its slots. And in bytes: the
// bodies held ≤ maxHeldBytes, give or take the last delivery claimed (a claim always
// brings one: sql/30_delivery.sql); the relay does not claim while it holds them all,
// and tells the claim what it holds per webhook, from which the claim gives each
// company its share of the bytes as of the slots (sql/28_lanes.sql). A body's size is
// its length: the claim counts payload_bytes, about the same.
//
// A webhook's queue cap is the prefetch, unless its requests come back fast and
// well: then it may queue what its slots send in PREFETCH_HORIZON_MS (from the mean
// duration of its recent successful requests), up to two claim batches (a refill at
// half the queue then brings a whole batch) and maxQueued. A queued delivery
// then still waits about that long at most, far within its lease, and a fast
// receiver's deliveries come in claims of a useful size: each claim costs the
// database nearly a millisecond whatever it carries (BENCHMARKS.md). A failed
// request puts the webhook back to the prefetch (a failing endpoint is not worth
// claiming ahead for: its circuit breaker may open), as does holding none of it.
//
// Backlogged: a webhook whose last claim filled all the database allowed it (its
// caps, its company's share or the batch ended it), so it likely has more due. It is
// refilled on its own (a claim of its index range only) once its queue runs low, so
// that the refill lands before its slots go idle.
import type { DeliveryJob } from './queries.ts';

/** A healthy, fast webhook may queue what its request slots send in this long. */
export const PREFETCH_HORIZON_MS = 250;
/** The weight of each new request in a webhook's mean request duration. */
const DURATION_WEIGHT = 1 / 8;

export interface SlotLimits {
  /** requests in flight, all webhooks together */
  maxInFlight: number;
  /** requests in flight to one webhook */
  perWebhookInFlight: number;
  /** deliveries of one webhook queued ahead of its free request slots */
  prefetch: number;
  /** deliveries claimed per round trip */
  batchSize: number;
  /** the whole request: a queued delivery whose lease would end sooner is not sent */
  requestTimeoutMs: number;
  /** bodies held (in flight, queued, paced), all webhooks together; absent: no bound */
  maxHeldBytes?: number;
}

/** What the relay held when a claim was asked for: the claim's inputs, kept for its outcome. */
export interface ClaimView {
  /** deliveries the claim may take, all webhooks together (> 0) */
  room: number;
  /** at most this many of one webhook held, counting what is held already */
  perWebhookCap: number;
  /** held webhooks that may hold more than perWebhookCap (their requests are fast), and how many */
  capByWebhook: Map<string, number>;
  /** held per webhook (in flight and queued) when the claim was asked for */
  heldByWebhook: Map<string, number>;
  /** the bytes of the bodies held, per webhook (every key of heldByWebhook) */
  heldBytesByWebhook: Map<string, number>;
  /** the company of each webhook held (every key of heldByWebhook): the claim shares by company */
  companyByWebhook: Map<string, string>;
  /** the most bytes of bodies the relay may hold (null: no bound) */
  byteBudget: number | null;
}

/** What a finished request frees: the deliveries to start now, and those to hand back. */
export interface Freed {
  /** each already holds its slot: send it */
  start: DeliveryJob[];
  /** their lease would run out before their request could end: release them */
  tooLate: DeliveryJob[];
}

export class Slots {
  readonly limits: SlotLimits;
  /** at most this many deliveries queued, all webhooks together */
  readonly maxQueued: number;
  private inFlightCount = 0;
  private queuedCount = 0;
  private pacedCount = 0;
  private heldBytesCount = 0;
  /** the bytes of the bodies held, per webhook */
  private readonly bytesByWebhook = new Map<string, number>();
  /** the company of each webhook held */
  private readonly companyByWebhook = new Map<string, string>();
  /** deliveries waiting for their rate_limit slot, per webhook */
  private readonly pacedByWebhook = new Map<string, number>();
  /** requests in flight, per webhook */
  private readonly inFlightByWebhook = new Map<string, number>();
  /** requests in flight, per company: who a slot freed under the relay-wide cap goes to */
  private readonly inFlightByCompany = new Map<string, number>();
  /** deliveries claimed ahead of the free slots, per webhook, oldest first */
  private readonly queues = new Map<string, DeliveryJob[]>();
  /** when each claimed delivery's lease runs out, on the caller's clock */
  private readonly leaseEnds = new WeakMap<DeliveryJob, number>();
  private readonly backlogged = new Set<string>();
  /** mean duration of recent successful requests (ms), per webhook held */
  private readonly meanMs = new Map<string, number>();

  constructor(limits: SlotLimits) {
    this.limits = limits;
    this.maxQueued = Math.ceil((limits.maxInFlight * limits.prefetch) / limits.perWebhookInFlight);
  }

  get inFlight(): number {
    return this.inFlightCount;
  }

  get queued(): number {
    return this.queuedCount;
  }

  /** the bytes of the bodies held: in flight, queued and paced */
  get heldBytes(): number {
    return this.heldBytesCount;
  }

  /** a webhook's claim cap without a measure of its requests: its request slots and the prefetch */
  get perWebhookCap(): number {
    return this.limits.perWebhookInFlight + this.limits.prefetch;
  }

  /** what one webhook may queue: the prefetch, or more while its requests are fast and succeed */
  queueCap(webhookId: string): number {
    const mean = this.meanMs.get(webhookId);
    if (mean === undefined || this.limits.prefetch === 0) return this.limits.prefetch;
    const sentInHorizon = Math.floor((PREFETCH_HORIZON_MS * this.limits.perWebhookInFlight) / Math.max(mean, 1));
    return Math.min(Math.max(this.limits.prefetch, sentInHorizon), 2 * this.limits.batchSize, this.maxQueued);
  }

  /** one webhook's claim cap: its request slots and its queue cap */
  capOf(webhookId: string): number {
    return this.limits.perWebhookInFlight + this.queueCap(webhookId);
  }

  /** A request of this webhook ended after durationMs: ok when it succeeded. */
  measured(webhookId: string, durationMs: number, ok: boolean): void {
    if (!ok) {
      this.meanMs.delete(webhookId);
      return;
    }
    const mean = this.meanMs.get(webhookId);
    this.meanMs.set(webhookId, mean === undefined ? durationMs : mean + (durationMs - mean) * DURATION_WEIGHT);
  }

  /** deliveries the relay may still claim, all webhooks together */
  room(): number {
    return this.limits.maxInFlight + this.maxQueued - this.inFlightCount - this.queuedCount - this.pacedCount;
  }

  /** bytes of bodies the relay may still claim (Infinity: no bound) */
  byteRoom(): number {
    return (this.limits.maxHeldBytes ?? Infinity) - this.heldBytesCount;
  }

  /** The relay holds all it may, in deliveries or in bytes: no claim until a request finishes. */
  isFull(): boolean {
    return this.room() <= 0 || this.byteRoom() <= 0;
  }

  /** deliveries held of one webhook: in flight and queued */
  heldOf(webhookId: string): number {
    return (
      (this.inFlightByWebhook.get(webhookId) ?? 0) + (this.queues.get(webhookId)?.length ?? 0) + (this.pacedByWebhook.get(webhookId) ?? 0)
    );
  }

  /** A claimed delivery waits for its rate_limit slot (the loop holds it until sendAt). */
  pace(job: DeliveryJob): void {
    this.pacedByWebhook.set(job.webhookId, (this.pacedByWebhook.get(job.webhookId) ?? 0) + 1);
    this.pacedCount++;
    this.holdBytes(job);
  }

  /** Its slot has come (or the relay stops): it is admitted or released next. Returns how many of its webhook still wait. */
  unpace(job: DeliveryJob): number {
    const left = this.pacedByWebhook.get(job.webhookId)! - 1;
    if (left === 0) this.pacedByWebhook.delete(job.webhookId);
    else this.pacedByWebhook.set(job.webhookId, left);
    this.pacedCount--;
    this.letGoBytes(job);
    this.forgetIfNotHeld(job.webhookId);
    return left;
  }

  /** The inputs of the next claim, or null when the relay is full. */
  claimView(): ClaimView | null {
    if (this.isFull()) return null;
    const room = this.room();
    const heldByWebhook = new Map(this.inFlightByWebhook);
    for (const [id, jobs] of this.queues) heldByWebhook.set(id, (heldByWebhook.get(id) ?? 0) + jobs.length);
    for (const [id, n] of this.pacedByWebhook) heldByWebhook.set(id, (heldByWebhook.get(id) ?? 0) + n);
    const capByWebhook = new Map<string, number>();
    for (const id of heldByWebhook.keys()) {
      const cap = this.capOf(id);
      if (cap !== this.perWebhookCap) capByWebhook.set(id, cap);
    }
    return {
      room,
      perWebhookCap: this.perWebhookCap,
      capByWebhook,
      heldByWebhook,
      heldBytesByWebhook: new Map(this.bytesByWebhook),
      companyByWebhook: new Map(this.companyByWebhook),
      byteBudget: this.limits.maxHeldBytes ?? null,
    };
  }

  /**
   * Records what a claim brought: when the leases end, and which webhooks are
   * backlogged (the database says the claim filled all it allowed them, so more is
   * likely due). `only` names the webhooks a refill asked for (null: a discovery).
   */
  claimed(only: string[] | null, claimed: { jobs: DeliveryJob[]; filled: ReadonlySet<string> }, leaseEndsAt: number): void {
    const got = new Set<string>();
    const wallNow = Date.now();
    for (const job of claimed.jobs) {
      // a paced delivery's lease counts from the end of its slot (claim_deliveries)
      this.leaseEnds.set(job, leaseEndsAt + Math.max(0, (job.sendUntil ?? wallNow) - wallNow));
      got.add(job.webhookId);
    }
    for (const id of only ?? got) {
      if (claimed.filled.has(id)) this.backlogged.add(id);
      else this.backlogged.delete(id);
    }
  }

  /**
   * Takes a claimed delivery in: true when it holds a request slot now (send it),
   * false when it waits in its webhook's queue. `mayStart` false (stopping): queue it.
   */
  admit(job: DeliveryJob, mayStart = true): boolean {
    this.holdBytes(job);
    if (mayStart && this.canStart(job.webhookId)) {
      this.occupy(job);
      return true;
    }
    const queue = this.queues.get(job.webhookId);
    if (queue) queue.push(job);
    else this.queues.set(job.webhookId, [job]);
    this.queuedCount++;
    return false;
  }

  /**
   * A request ended: its slot is free. Unless `startNext` is false (stopping), the
   * freed slots go to queued deliveries (nextToStart() says whose). `now` is on the
   * clock of `claimed`.
   */
  finished(job: DeliveryJob, now: number, startNext = true): Freed {
    count(this.inFlightByWebhook, job.webhookId, -1);
    count(this.inFlightByCompany, job.companyId, -1);
    this.inFlightCount--;
    this.letGoBytes(job);
    const freed: Freed = { start: [], tooLate: [] };
    if (startNext) this.startQueued(job.webhookId, now, freed);
    this.forgetIfNotHeld(job.webhookId);
    return freed;
  }

  /**
   * A measure of a webhook no longer held would outlive what it measured: kept, it
   * would size the queue of a later claim from requests long past, and a relay that
   * runs for months would keep one for every webhook it ever sent to. Asked wherever
   * a delivery leaves: its request ended, or it left unsent (paced, then handed back
   * or sent; queued, then handed back).
   */
  private forgetIfNotHeld(webhookId: string): void {
    if (this.heldOf(webhookId) === 0) this.meanMs.delete(webhookId);
  }

  /**
   * Empties every queue (a graceful stop), or one webhook's (it changed since its
   * deliveries were claimed): these deliveries are to be released.
   */
  takeQueued(webhookId?: string): DeliveryJob[] {
    const webhooks = webhookId === undefined ? [...this.queues.keys()] : [webhookId];
    const jobs = webhooks.flatMap((id) => this.queues.get(id) ?? []);
    for (const id of webhooks) this.queues.delete(id);
    this.queuedCount -= jobs.length;
    for (const job of jobs) this.letGoBytes(job);
    for (const id of webhooks) this.forgetIfNotHeld(id);
    return jobs;
  }

  isBacklogged(webhookId: string): boolean {
    return this.backlogged.has(webhookId);
  }

  /** Backlogged webhooks whose queue ran low: the next refill's `only`. */
  refillsDue(): string[] {
    return [...this.backlogged].filter((id) => this.runsLow(id));
  }

  refillDue(): boolean {
    for (const id of this.backlogged) if (this.runsLow(id)) return true;
    return false;
  }

  /**
   * A backlogged webhook is refilled once its queue has run down to half its queue
   * cap (without prefetch: as soon as a slot is free), so that a refill lands before
   * its slots go idle and each claim takes a useful batch.
   */
  private runsLow(webhookId: string): boolean {
    const queueCap = this.queueCap(webhookId);
    return (
      this.heldOf(webhookId) < this.limits.perWebhookInFlight + queueCap &&
      (this.queues.get(webhookId)?.length ?? 0) <= Math.floor(queueCap / 2)
    );
  }

  private holdBytes(job: DeliveryJob): void {
    const bytes = job.body.length;
    this.heldBytesCount += bytes;
    this.bytesByWebhook.set(job.webhookId, (this.bytesByWebhook.get(job.webhookId) ?? 0) + bytes);
    this.companyByWebhook.set(job.webhookId, job.companyId);
  }

  private letGoBytes(job: DeliveryJob): void {
    const bytes = job.body.length;
    this.heldBytesCount -= bytes;
    const left = this.bytesByWebhook.get(job.webhookId)! - bytes;
    if (left === 0) this.bytesByWebhook.delete(job.webhookId);
    else this.bytesByWebhook.set(job.webhookId, left);
    if (this.heldOf(job.webhookId) === 0) this.companyByWebhook.delete(job.webhookId);
  }

  private canStart(webhookId: string): boolean {
    return this.inFlightCount < this.limits.maxInFlight && (this.inFlightByWebhook.get(webhookId) ?? 0) < this.limits.perWebhookInFlight;
  }

  private occupy(job: DeliveryJob): void {
    this.inFlightCount++;
    count(this.inFlightByWebhook, job.webhookId, 1);
    count(this.inFlightByCompany, job.companyId, 1);
  }

  private startQueued(first: string, now: number, freed: Freed): void {
    for (let id = this.nextToStart(first); id !== null; id = this.nextToStart(first)) {
      const queue = this.queues.get(id)!;
      const job = queue.shift()!;
      this.queuedCount--;
      if (queue.length === 0) this.queues.delete(id);
      // a lease that would run out before the request could end: hand it back
      // rather than risk another relay sending it too; likewise a rate_limit slot
      // that has passed
      if (now + this.limits.requestTimeoutMs >= (this.leaseEnds.get(job) ?? 0) || missedSlot(job)) {
        freed.tooLate.push(job);
        this.letGoBytes(job);
      } else {
        this.occupy(job);
        freed.start.push(job);
      }
    }
  }

  /**
   * The queued webhook whose next delivery takes a free slot (null: none may start):
   * of the company with the fewest requests in flight, then the webhook with the
   * fewest, then `first` (whose request just ended), then the queue waiting longest.
   * Under the relay-wide cap, a slot that went back to the webhook whose request
   * ended kept a company's many webhooks with a backlog in every slot: another
   * company's delivery, claimed, waited behind all that was queued before it (2,000
   * webhooks to a receiver answering in 2 s: 600–1,200 ms; test/fleet/many-webhooks.test.ts).
   * One pass over the webhooks with deliveries queued (at most maxQueued).
   */
  private nextToStart(first: string): string | null {
    if (this.queuedCount === 0 || this.inFlightCount >= this.limits.maxInFlight) return null;
    let best: string | null = null;
    let bestCompany = Infinity;
    let bestWebhook = Infinity;
    for (const [id, queue] of this.queues) {
      const webhook = this.inFlightByWebhook.get(id) ?? 0;
      if (webhook >= this.limits.perWebhookInFlight) continue;
      const company = this.inFlightByCompany.get(queue[0]!.companyId) ?? 0;
      if (company < bestCompany || (company === bestCompany && (webhook < bestWebhook || (webhook === bestWebhook && id === first)))) {
        best = id;
        bestCompany = company;
        bestWebhook = webhook;
      }
    }
    return best;
  }
}

/** Adds `by` to a count of a map, which holds no zeros. */
function count(counts: Map<string, number>, key: string, by: number): void {
  const next = (counts.get(key) ?? 0) + by;
  if (next === 0) counts.delete(key);
  else counts.set(key, next);
}

/**
 * A paced delivery whose rate_limit slot has passed is handed back rather than sent
 * late: sent late, it could fall into the next slot's second and break the
 * webhook's rate_limit. (Slots are on this relay's clock: the claim placed them there,
 * database-clock.ts.)
 */
export function missedSlot(job: DeliveryJob, wallNow = Date.now()): boolean {
  return job.sendUntil !== null && wallNow >= job.sendUntil;
}
