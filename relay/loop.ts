// The relay loop: wake → claim a batch → send each delivery → settle in batches.
//
// Two kinds of claim (see webhooks_relay.claim_deliveries):
//   discovery: "what is due, anywhere?" on NOTIFY, on (re)connecting the listener,
//     on the poll timer (retries falling due, missed notifications) and after a
//     rescue; repeated at once while it finds work. Captures notify only a relay
//     that has said it is idle, so a busy relay finds new work by itself
//     (discover() and sql/36_wakeup.sql).
//   refill: when a webhook whose last claim filled all it could take runs low on
//     deliveries queued locally, its next rows are claimed straight from its own
//     index range, without walking the other webhooks' queues.
// One claim runs at a time; wake-ups during a claim fold into the next one.
//
// Claiming ahead (prefetch): a claim takes up to perWebhookInFlight + prefetch rows
// of a webhook, counting what the relay holds of it (in flight and queued) as busy.
// A delivery beyond the free request slots waits in that webhook's local queue, and
// a finished request starts the next one at once, without a round trip to the
// database: the slots stay busy while the refill claim is on its way. A queued
// delivery holds its lease while it waits; with prefetch ≤ perWebhookInFlight it
// waits about one request at most, and one whose lease would run out before its
// request could end is handed back instead of sent. On a graceful stop everything
// still queued is released (webhooks_relay.release_deliveries): pending again, its
// attempt not counted.
//
// Isolation: the relay keeps at most perWebhookInFlight requests in flight to any
// one webhook and tells the claim so; a slow endpoint holds its own slots (and its
// queue) and nothing else.
import type pg from 'pg';
import type { Logger } from 'pino';
import { claimDeliveries, type Claimed, type DeliveryJob } from './claim.ts';
import { isConnectionError, relayPool } from './database.ts';
import { Sender } from './deliver.ts';
import { startListener, type Listener } from './listener.ts';
import { IdleAnnouncer } from './idle.ts';
import { relayLogger } from './log.ts';
import type { RelaySettings } from './settings.ts';
import { Settler } from './settle.ts';

/** How long stop() waits for results to be written before leaving them to lease expiry. */
const SETTLE_GRACE_MS = 10_000;
/**
 * Back-pressure: no new claim while this many batches of results wait to be written.
 * Sending faster than the database takes the results only grows a queue whose
 * deliveries are sent again if the relay stops before writing them.
 */
const UNSETTLED_BATCHES_LIMIT = 2;
/** Going idle while a capturing transaction is still open: look again this soon. */
const IDLE_RECHECK_MS = 2;

export class Relay {
  readonly settings: RelaySettings;
  readonly log: Logger;
  private readonly pool: pg.Pool;
  private readonly sender: Sender;
  private readonly settler: Settler;
  private readonly idle: IdleAnnouncer;
  private listener: Listener | null = null;
  private recheck: NodeJS.Timeout | undefined;
  private timers: NodeJS.Timeout[] = [];
  private started = false;
  private stopping = false;
  private stopped: Promise<void> | null = null;

  private claiming: Promise<void> | null = null;
  private claimAgain = false;
  private discoveryWanted = false;
  /** the next discovery is the last look before sleeping (sql/36_wakeup.sql) */
  private lastLook = false;
  /** a claim was skipped because results wait to be written: claim when they are */
  private heldBackBySettles = false;
  /** webhooks whose last claim filled every free slot: they likely have more due */
  private readonly backlogged = new Set<string>();
  private inFlight = 0;
  /** requests in flight, per webhook */
  private readonly busy = new Map<string, number>();
  /** deliveries claimed ahead of the free slots, per webhook, oldest first */
  private readonly queued = new Map<string, DeliveryJob[]>();
  /** when each claimed delivery's lease runs out (performance.now() clock) */
  private readonly leaseEnds = new WeakMap<DeliveryJob, number>();
  private queuedCount = 0;
  /** claimed deliveries waiting for their send time (rate_limit pacing), per webhook */
  private readonly paced = new Map<string, number>();
  private pacedCount = 0;
  private readonly pacingTimers = new Map<NodeJS.Timeout, DeliveryJob>();
  /** a claim found a webhook at its fleet-wide cap (max_in_flight): look again after a settle */
  private capHeldBack = false;
  /** at most this many deliveries queued, all webhooks together */
  private readonly maxQueued: number;
  private whenNoneInFlight: Array<() => void> = [];
  private rescuing = false;
  private claimErrors = 0;
  /** counters for logs and benchmarks */
  readonly stats = { claims: 0, claimed: 0, emptyClaims: 0, refills: 0, emptyRefills: 0, claimMs: 0, released: 0 };

  constructor(settings: RelaySettings, options: { log?: Logger } = {}) {
    this.settings = settings;
    // as large beside maxInFlight as one webhook's queue is beside its slots
    this.maxQueued = Math.ceil((settings.maxInFlight * settings.prefetch) / settings.perWebhookInFlight);
    this.log = options.log ?? relayLogger(settings.relayId, settings.logLevel);
    this.pool = relayPool({ databaseUrl: settings.databaseUrl, role: settings.databaseRole, log: this.log });
    this.sender = new Sender(settings);
    this.settler = new Settler({
      db: this.pool,
      relayId: settings.relayId,
      log: this.log,
      batchSize: settings.batchSize,
      onSettled: () => {
        if (this.heldBackBySettles && !this.settlesBacklogged()) {
          this.heldBackBySettles = false;
          this.kick();
        }
        // settled deliveries free their webhook's fleet-wide slots (max_in_flight):
        // look again for what the cap held back
        if (this.capHeldBack) {
          this.capHeldBack = false;
          this.wake();
        }
      },
    });
    this.idle = new IdleAnnouncer({
      databaseUrl: settings.databaseUrl,
      role: settings.databaseRole,
      log: this.log,
      onLost: () => this.wake(),
    });
  }

  /** Checks the database role, then runs until stop(). */
  async start(): Promise<void> {
    if (this.started) throw new Error('relay already started');
    this.started = true;
    await this.checkDatabase();
    const { pollIntervalMs, rescueIntervalMs } = this.settings;
    this.timers.push(setInterval(() => this.wake(), pollIntervalMs));
    this.timers.push(setInterval(() => void this.rescue(), rescueIntervalMs));
    this.listener = startListener({ databaseUrl: this.settings.databaseUrl, log: this.log, onWake: () => this.wake() });
    this.log.info(
      {
        batchSize: this.settings.batchSize,
        maxInFlight: this.settings.maxInFlight,
        perWebhookInFlight: this.settings.perWebhookInFlight,
        prefetch: this.settings.prefetch,
        leaseMs: this.settings.leaseMs,
        allowNetworks: this.settings.allowNetworks.cidrs,
      },
      'relay started',
    );
    void this.rescue();
    this.wake();
  }

  /** True while claims wait for results to be written (back-pressure). */
  get heldBack(): boolean {
    return this.heldBackBySettles;
  }

  /** Looks for due work now, anywhere (a NOTIFY, a timer, a reconnect). */
  wake(): void {
    this.discoveryWanted = true;
    this.kick();
  }

  private kick(): void {
    if (!this.started || this.stopping) return;
    if (this.claiming) {
      this.claimAgain = true;
      return;
    }
    this.claiming = this.claimWhileWorkIsFound().finally(() => {
      this.claiming = null;
    });
  }

  /**
   * One discovery claim, every delivery of it sent and settled. For tests and
   * scripts that step the relay by hand (without start()).
   */
  async runOnce(): Promise<{ claimed: number }> {
    const { jobs } = await this.claim(null);
    for (const job of jobs) this.dispatch(job);
    if (this.inFlight > 0) await new Promise<void>((resolve) => this.whenNoneInFlight.push(resolve));
    await this.settler.drain(SETTLE_GRACE_MS);
    return { claimed: jobs.length };
  }

  /** Expired leases back to pending; runs on its own timer, never in the claim loop. */
  async rescue(): Promise<number> {
    if (this.rescuing || this.stopping) return 0;
    this.rescuing = true;
    try {
      const { rows } = await this.pool.query('select webhooks_relay.rescue_expired_leases() as rescued');
      const rescued = rows[0].rescued as number;
      if (rescued > 0) {
        this.log.warn({ rescued }, 'returned deliveries whose lease ran out to pending');
        this.wake();
      }
      return rescued;
    } catch (error) {
      this.log.warn({ err: error }, 'rescue of expired leases failed; will try again');
      return 0;
    } finally {
      this.rescuing = false;
    }
  }

  /**
   * Graceful stop: no new claims; deliveries queued but not sent are released;
   * requests in flight finish (each within the request timeout) and their results
   * are written; then connections close.
   */
  stop(): Promise<void> {
    this.stopped ??= this.shutdown();
    return this.stopped;
  }

  private async shutdown(): Promise<void> {
    this.stopping = true;
    for (const timer of this.timers) clearInterval(timer);
    clearTimeout(this.recheck);
    await this.listener?.close();
    await this.claiming;
    await this.releaseQueued();
    if (this.inFlight > 0) {
      this.log.info({ inFlight: this.inFlight }, 'stopping: waiting for requests in flight');
      await new Promise<void>((resolve) => this.whenNoneInFlight.push(resolve));
    }
    if (!(await this.settler.drain(SETTLE_GRACE_MS))) {
      this.log.error(
        { unsettled: this.settler.waiting },
        'stopping with results not written: those deliveries will be sent again once their lease runs out',
      );
    }
    this.settler.stop();
    await this.idle.close();
    await this.sender.close();
    await this.pool.end();
    this.log.info({ ...this.stats, ...this.settler.stats }, 'relay stopped');
  }

  private async checkDatabase(): Promise<void> {
    try {
      await this.pool.query('select 1');
    } catch (error) {
      if (isConnectionError(error)) {
        this.log.warn({ err: error }, 'database not reachable yet; the relay keeps trying');
        return;
      }
      const role = this.settings.databaseRole;
      throw new Error(
        `the relay cannot work in this database: ${(error as Error).message}` +
          (role ? ` (it runs as role ${role}: run npm run migrate, and GRANT ${role} TO the user of DATABASE_URL, or set RELAY_DB_ROLE= to use that user as is)` : ''),
        { cause: error },
      );
    }
  }

  private async claimWhileWorkIsFound(): Promise<void> {
    do {
      this.claimAgain = false;
      if (this.held() >= this.capacity()) return; // a finishing request kicks again
      if (this.settlesBacklogged()) {
        this.heldBackBySettles = true; // the next written batch kicks again
        return;
      }
      let claimed: Claimed;
      try {
        if (this.discoveryWanted) {
          this.discoveryWanted = false;
          claimed = await this.discover();
        } else {
          const refill = [...this.backlogged].filter((id) => this.runsLow(id));
          if (refill.length === 0) return;
          claimed = await this.claim(refill);
        }
        if (this.claimErrors > 0) this.log.info('claiming again after errors');
        this.claimErrors = 0;
      } catch (error) {
        // the poll timer and the listener's reconnect bring the next try
        if (this.claimErrors++ === 0 || this.claimErrors % 10 === 0) {
          this.log.warn({ err: error, failures: this.claimErrors }, 'claim failed; will try again');
        }
        return;
      }
      for (const job of claimed.jobs) this.dispatch(job);
    } while (!this.stopping && (this.claimAgain || this.discoveryWanted || this.refillDue()));
  }

  /**
   * A discovery claim, and what follows from it for wake-ups (sql/36_wakeup.sql).
   * While discoveries find work the relay is awake: it looks again at once, and
   * capturing transactions need not notify it. A discovery that finds nothing makes
   * it announce that it is going idle (from then on captures notify); once every
   * capture that skipped its NOTIFY has ended, one last discovery, and if that finds
   * nothing too, the relay sleeps until a NOTIFY or the poll timer.
   */
  private async discover(): Promise<Claimed> {
    if (!this.lastLook) await this.idle.awake().catch((error) => this.log.warn({ err: error }, 'cannot announce waking'));
    const wasLastLook = this.lastLook;
    this.lastLook = false;
    const claimed = await this.claim(null);
    if (claimed.moreDue || claimed.jobs.length > 0) {
      this.discoveryWanted = true;
    } else if (!wasLastLook && !this.stopping) {
      this.lastLook = await this.fallAsleep();
      if (this.lastLook) this.discoveryWanted = true;
    }
    return claimed;
  }

  /**
   * Announces that this relay is going idle, and tells whether every capturing
   * transaction that skipped its NOTIFY has ended. If not, looks again in a moment.
   */
  private async fallAsleep(): Promise<boolean> {
    let safe = false;
    try {
      safe = await this.idle.goingIdle();
    } catch (error) {
      this.log.warn({ err: error }, 'cannot announce idleness; polling meanwhile');
    }
    if (!safe) {
      this.recheck ??= setTimeout(() => {
        this.recheck = undefined;
        this.wake();
      }, IDLE_RECHECK_MS);
    }
    return safe;
  }

  private settlesBacklogged(): boolean {
    return this.settler.waiting > UNSETTLED_BATCHES_LIMIT * this.settings.batchSize;
  }

  /** deliveries the relay holds: in flight and queued */
  private held(): number {
    return this.inFlight + this.queuedCount + this.pacedCount;
  }

  private capacity(): number {
    return this.settings.maxInFlight + this.maxQueued;
  }

  /** what the relay holds of one webhook, in flight and queued */
  private heldOf(webhookId: string): number {
    return (this.busy.get(webhookId) ?? 0) + (this.queued.get(webhookId)?.length ?? 0) + (this.paced.get(webhookId) ?? 0);
  }

  /** one webhook's claim cap: its request slots and its queue */
  private perWebhookCap(): number {
    return this.settings.perWebhookInFlight + this.settings.prefetch;
  }

  /**
   * A backlogged webhook is refilled once its queue has run down to half the
   * prefetch (without prefetch: as soon as a slot is free), so that a refill
   * lands before its slots go idle and each claim takes a useful batch.
   */
  private runsLow(webhookId: string): boolean {
    return (
      this.heldOf(webhookId) < this.perWebhookCap() &&
      (this.queued.get(webhookId)?.length ?? 0) <= Math.floor(this.settings.prefetch / 2)
    );
  }

  private refillDue(): boolean {
    for (const id of this.backlogged) if (this.runsLow(id)) return true;
    return false;
  }

  /** Claims (discovery when `only` is null, else a refill of those webhooks). */
  private async claim(only: string[] | null): Promise<Claimed> {
    const capacity = this.capacity() - this.held();
    if (capacity <= 0) return { jobs: [], moreDue: false, atCap: false };
    const busy = new Map<string, number>(); // as the claim sees it: in flight and queued
    for (const [id, n] of this.busy) busy.set(id, n);
    for (const [id, jobs] of this.queued) busy.set(id, (busy.get(id) ?? 0) + jobs.length);
    for (const [id, n] of this.paced) busy.set(id, (busy.get(id) ?? 0) + n);
    const free = (id: string) => this.perWebhookCap() - (busy.get(id) ?? 0);
    const started = performance.now();
    const claimed = await claimDeliveries(this.pool, {
      relayId: this.settings.relayId,
      limit: Math.min(this.settings.batchSize, capacity),
      leaseMs: this.settings.leaseMs,
      perWebhookInFlight: this.perWebhookCap(),
      busy,
      only,
      slots: this.settings.maxInFlight,
    });
    if (claimed.atCap) this.capHeldBack = true;
    // the lease counts from the claim's statement, a little after `started`
    const leaseEnds = started + this.settings.leaseMs;
    for (const job of claimed.jobs) this.leaseEnds.set(job, leaseEnds);
    this.stats.claims++;
    this.stats.claimMs += Math.round(performance.now() - started);
    this.stats.claimed += claimed.jobs.length;
    if (claimed.jobs.length === 0) this.stats.emptyClaims++;
    if (only) this.stats.refills++;
    if (only && claimed.jobs.length === 0) this.stats.emptyRefills++;

    // which webhooks filled their free slots (they likely have more due)
    const got = new Map<string, number>();
    for (const job of claimed.jobs) got.set(job.webhookId, (got.get(job.webhookId) ?? 0) + 1);
    for (const id of only ?? got.keys()) {
      if ((got.get(id) ?? 0) >= free(id)) this.backlogged.add(id);
      else if (only || !claimed.moreDue) this.backlogged.delete(id);
    }
    return claimed;
  }

  /** Sends a claimed delivery now if its webhook has a free slot, else queues it. */
  private dispatch(job: DeliveryJob): void {
    const wait = job.sendAt === null ? 0 : job.sendAt - Date.now();
    if (wait > 0 && !this.stopping) {
      this.pace(job, wait);
      return;
    }
    if (!this.stopping && this.canSend(job.webhookId)) {
      if (missedSlot(job)) void this.release([job], 'their rate_limit slot passed before they could be sent');
      else void this.send(job);
      return;
    }
    const queue = this.queued.get(job.webhookId);
    if (queue) queue.push(job);
    else this.queued.set(job.webhookId, [job]);
    this.queuedCount++;
  }

  /**
   * Holds a delivery until its send time (the webhook's rate_limit, decided by the
   * claim for the whole fleet). When the last one held for a webhook is due, the
   * relay looks for more: the claim hands out send times at most a second ahead.
   */
  private pace(job: DeliveryJob, waitMs: number): void {
    this.paced.set(job.webhookId, (this.paced.get(job.webhookId) ?? 0) + 1);
    this.pacedCount++;
    const timer = setTimeout(() => {
      this.pacingTimers.delete(timer);
      const left = this.paced.get(job.webhookId)! - 1;
      if (left === 0) this.paced.delete(job.webhookId);
      else this.paced.set(job.webhookId, left);
      this.pacedCount--;
      job.sendAt = null;
      this.dispatch(job);
      if (left === 0) this.wake();
    }, waitMs);
    this.pacingTimers.set(timer, job);
  }

  private canSend(webhookId: string): boolean {
    return this.inFlight < this.settings.maxInFlight && (this.busy.get(webhookId) ?? 0) < this.settings.perWebhookInFlight;
  }

  private async send(job: DeliveryJob): Promise<void> {
    this.inFlight++;
    this.busy.set(job.webhookId, (this.busy.get(job.webhookId) ?? 0) + 1);
    const result = await this.sender.send(job);
    this.settler.add(result);
    const left = this.busy.get(job.webhookId)! - 1;
    if (left === 0) this.busy.delete(job.webhookId);
    else this.busy.set(job.webhookId, left);
    this.inFlight--;
    // the freed slot goes to the next queued delivery of this webhook, else of any
    // webhook with a free slot (when the relay-wide cap held that one back)
    if (!this.stopping) this.sendQueued(job.webhookId);
    if (this.inFlight === 0) for (const resolve of this.whenNoneInFlight.splice(0)) resolve();
    // a queue running low: refill this webhook if it has more, or resume a
    // discovery that was waiting for capacity
    if (this.backlogged.has(job.webhookId) || this.discoveryWanted) this.kick();
  }

  /** Starts queued deliveries while slots are free, this webhook's first. */
  private sendQueued(first: string): void {
    if (this.queuedCount === 0) return;
    const order = this.queued.has(first) ? [first, ...this.queued.keys()] : this.queued.keys();
    const tooLate: DeliveryJob[] = [];
    for (const id of order) {
      const queue = this.queued.get(id);
      while (queue && queue.length > 0 && this.canSend(id)) {
        const job = queue.shift()!;
        this.queuedCount--;
        // a lease that would run out before the request could end: hand it back
        // rather than risk another relay sending it too
        if (performance.now() + this.settings.requestTimeoutMs >= (this.leaseEnds.get(job) ?? 0) || missedSlot(job)) tooLate.push(job);
        else void this.send(job);
      }
      if (queue && queue.length === 0) this.queued.delete(id);
      if (this.inFlight >= this.settings.maxInFlight) break;
    }
    if (tooLate.length > 0) void this.release(tooLate, 'their lease would run out before the request, or their rate_limit slot passed');
  }

  /** Hands every queued delivery back (a graceful stop). */
  private async releaseQueued(): Promise<void> {
    const jobs = [...this.queued.values()].flat();
    for (const [timer, job] of this.pacingTimers) {
      clearTimeout(timer);
      jobs.push(job);
    }
    this.pacingTimers.clear();
    this.paced.clear();
    this.pacedCount = 0;
    this.queued.clear();
    this.queuedCount = 0;
    if (jobs.length > 0) await this.release(jobs, 'stopping');
  }

  /** Back to pending, attempt not counted; what fails to be released waits for its lease. */
  private async release(jobs: DeliveryJob[], why: string): Promise<void> {
    try {
      const { rows } = await this.pool.query('select webhooks_relay.release_deliveries($1, $2::bigint[]) as released', [
        this.settings.relayId,
        jobs.map((job) => job.deliveryId),
      ]);
      this.stats.released += rows[0].released as number;
      this.log.info({ queued: jobs.length, released: rows[0].released, why }, 'released deliveries claimed but not sent');
      if (!this.stopping) this.wake(); // they are due again
    } catch (error) {
      this.log.warn({ err: error, queued: jobs.length, why }, 'cannot release deliveries claimed but not sent: they return to pending when their lease runs out');
    }
  }
}

/**
 * A paced delivery whose slot has passed is handed back rather than sent late: sent
 * late, it could fall into the next slot's second and break the webhook's rate_limit.
 */
function missedSlot(job: DeliveryJob): boolean {
  return job.sendUntil !== null && Date.now() >= job.sendUntil;
}
