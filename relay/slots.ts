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
// Caps: one webhook's held deliveries ≤ perWebhookInFlight + prefetch (its claim
// cap); all held ≤ maxInFlight + maxQueued, where the relay-wide queue is as large
// beside maxInFlight as one webhook's queue is beside its slots.
//
// Backlogged: a webhook whose last claim filled all it could take, so it likely has
// more due. It is refilled on its own (a claim of its index range only) once its
// queue runs low, so that the refill lands before its slots go idle.
import type { DeliveryJob } from './queries.ts';

export interface SlotLimits {
  /** requests in flight, all webhooks together */
  maxInFlight: number;
  /** requests in flight to one webhook */
  perWebhookInFlight: number;
  /** deliveries of one webhook queued ahead of its free request slots */
  prefetch: number;
  /** the whole request: a queued delivery whose lease would end sooner is not sent */
  requestTimeoutMs: number;
}

/** What the relay held when a claim was asked for: the claim's inputs, kept for its outcome. */
export interface ClaimView {
  /** deliveries the claim may take, all webhooks together (> 0) */
  room: number;
  /** at most this many of one webhook held, counting what is held already */
  perWebhookCap: number;
  /** held per webhook (in flight and queued) when the claim was asked for */
  heldByWebhook: Map<string, number>;
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
  /** deliveries waiting for their rate_limit slot, per webhook */
  private readonly pacedByWebhook = new Map<string, number>();
  /** requests in flight, per webhook */
  private readonly inFlightByWebhook = new Map<string, number>();
  /** deliveries claimed ahead of the free slots, per webhook, oldest first */
  private readonly queues = new Map<string, DeliveryJob[]>();
  /** when each claimed delivery's lease runs out, on the caller's clock */
  private readonly leaseEnds = new WeakMap<DeliveryJob, number>();
  private readonly backlogged = new Set<string>();

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

  /** one webhook's claim cap: its request slots and its queue */
  get perWebhookCap(): number {
    return this.limits.perWebhookInFlight + this.limits.prefetch;
  }

  /** deliveries the relay may still claim, all webhooks together */
  room(): number {
    return this.limits.maxInFlight + this.maxQueued - this.inFlightCount - this.queuedCount - this.pacedCount;
  }

  /** The relay holds all it may: no claim until a request finishes. */
  isFull(): boolean {
    return this.room() <= 0;
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
  }

  /** Its slot has come (or the relay stops): it is admitted or released next. Returns how many of its webhook still wait. */
  unpace(job: DeliveryJob): number {
    const left = this.pacedByWebhook.get(job.webhookId)! - 1;
    if (left === 0) this.pacedByWebhook.delete(job.webhookId);
    else this.pacedByWebhook.set(job.webhookId, left);
    this.pacedCount--;
    return left;
  }

  /** The inputs of the next claim, or null when the relay is full. */
  claimView(): ClaimView | null {
    const room = this.room();
    if (room <= 0) return null;
    const heldByWebhook = new Map(this.inFlightByWebhook);
    for (const [id, jobs] of this.queues) heldByWebhook.set(id, (heldByWebhook.get(id) ?? 0) + jobs.length);
    for (const [id, n] of this.pacedByWebhook) heldByWebhook.set(id, (heldByWebhook.get(id) ?? 0) + n);
    return { room, perWebhookCap: this.perWebhookCap, heldByWebhook };
  }

  /**
   * Records what a claim brought: when the leases end, and which webhooks filled all
   * they could take (backlogged: likely more due). `only` names the webhooks a refill
   * asked for (null: a discovery); `moreDue`: a discovery was cut off at its limit.
   */
  claimed(view: ClaimView, only: string[] | null, claimed: { jobs: DeliveryJob[]; moreDue: boolean }, leaseEndsAt: number): void {
    const got = new Map<string, number>();
    for (const job of claimed.jobs) {
      this.leaseEnds.set(job, leaseEndsAt);
      got.set(job.webhookId, (got.get(job.webhookId) ?? 0) + 1);
    }
    for (const id of only ?? got.keys()) {
      const free = view.perWebhookCap - (view.heldByWebhook.get(id) ?? 0);
      if ((got.get(id) ?? 0) >= free) this.backlogged.add(id);
      // a discovery cut off at its limit says nothing about the webhooks it reached
      else if (only || !claimed.moreDue) this.backlogged.delete(id);
    }
  }

  /**
   * Takes a claimed delivery in: true when it holds a request slot now (send it),
   * false when it waits in its webhook's queue. `mayStart` false (stopping): queue it.
   */
  admit(job: DeliveryJob, mayStart = true): boolean {
    if (mayStart && this.canStart(job.webhookId)) {
      this.occupy(job.webhookId);
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
   * freed slots go to queued deliveries, this webhook's first, then any webhook's
   * that the relay-wide cap held back. `now` is on the clock of `claimed`.
   */
  finished(job: DeliveryJob, now: number, startNext = true): Freed {
    const left = this.inFlightByWebhook.get(job.webhookId)! - 1;
    if (left === 0) this.inFlightByWebhook.delete(job.webhookId);
    else this.inFlightByWebhook.set(job.webhookId, left);
    this.inFlightCount--;
    const freed: Freed = { start: [], tooLate: [] };
    if (startNext) this.startQueued(job.webhookId, now, freed);
    return freed;
  }

  /** Empties every queue (a graceful stop): these deliveries are to be released. */
  takeQueued(): DeliveryJob[] {
    const jobs = [...this.queues.values()].flat();
    this.queues.clear();
    this.queuedCount = 0;
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
   * A backlogged webhook is refilled once its queue has run down to half the
   * prefetch (without prefetch: as soon as a slot is free), so that a refill lands
   * before its slots go idle and each claim takes a useful batch.
   */
  private runsLow(webhookId: string): boolean {
    return (
      this.heldOf(webhookId) < this.perWebhookCap &&
      (this.queues.get(webhookId)?.length ?? 0) <= Math.floor(this.limits.prefetch / 2)
    );
  }

  private canStart(webhookId: string): boolean {
    return this.inFlightCount < this.limits.maxInFlight && (this.inFlightByWebhook.get(webhookId) ?? 0) < this.limits.perWebhookInFlight;
  }

  private occupy(webhookId: string): void {
    this.inFlightCount++;
    this.inFlightByWebhook.set(webhookId, (this.inFlightByWebhook.get(webhookId) ?? 0) + 1);
  }

  private startQueued(first: string, now: number, freed: Freed): void {
    if (this.queuedCount === 0) return;
    const order = this.queues.has(first) ? [first, ...this.queues.keys()] : this.queues.keys();
    for (const id of order) {
      const queue = this.queues.get(id);
      while (queue && queue.length > 0 && this.canStart(id)) {
        const job = queue.shift()!;
        this.queuedCount--;
        // a lease that would run out before the request could end: hand it back
        // rather than risk another relay sending it too; likewise a rate_limit slot
        // that has passed
        if (now + this.limits.requestTimeoutMs >= (this.leaseEnds.get(job) ?? 0) || missedSlot(job)) {
          freed.tooLate.push(job);
        } else {
          this.occupy(id);
          freed.start.push(job);
        }
      }
      if (queue && queue.length === 0) this.queues.delete(id);
      if (this.inFlightCount >= this.limits.maxInFlight) break;
    }
  }
}

/**
 * A paced delivery whose rate_limit slot has passed is handed back rather than sent
 * late: sent late, it could fall into the next slot's second and break the
 * webhook's rate_limit. (Slots are on the wall clock, as the database hands them out.)
 */
export function missedSlot(job: DeliveryJob, wallNow = Date.now()): boolean {
  return job.sendUntil !== null && wallNow >= job.sendUntil;
}
