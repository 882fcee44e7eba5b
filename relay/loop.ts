// The relay loop: wake → claim a batch → send each delivery → settle in batches, over
// named parts (docs/relay.md draws the whole):
//   scheduler.ts  when to claim and what kind of claim; the loop's one mode
//   wakeup.ts     how a run of discoveries ends in sleep without missing a capture
//   slots.ts      which claimed delivery is sent now and which waits (prefetch)
//   queries.ts    every statement (claim, settle, release, rescue, wake-up)
//   deliver.ts    one signed POST per attempt; settle.ts writes the results in batches
//   rescuer.ts    expired leases back to pending, on a timer of its own
//   backfiller.ts the next batch of running backfills, on a timer of its own
//   listener.ts   LISTEN for wake-ups; idle.ts the connection that says "asleep"
// One claim runs at a time; wake-ups during a claim fold into the next one.
//
// Isolation: the relay keeps at most perWebhookInFlight requests in flight to any one
// webhook and tells the claim so; a slow endpoint holds its own slots (and its
// queue) and nothing else. The claim decides the rest for the whole fleet (sql/28_lanes.sql,
// docs/relay-fairness.md): each company's share of this relay's slots, each webhook's
// max_in_flight across all relays, its rate_limit slots, its circuit breaker.
import type pg from 'pg';
import type { Logger } from 'pino';
import { claimPool, closeWithin, databaseRefusal, isConnectionError, RelayIdHold, RelayIdTaken, relayPool } from './database.ts';
import { KEPT_CONNECTIONS_MAX, KEPT_ORIGINS_MAX, Sender, succeeded } from './deliver.ts';
import { IdleAnnouncer } from './idle.ts';
import { startListener, type Listener } from './listener.ts';
import { relayLogger, RepeatedFailures } from './log.ts';
import { RelayMetrics } from './metrics.ts';
import { Holdings } from './holdings.ts';
import { claimDeliveries, databaseSending, ping, pollMaySkip, quietSince, refusedSettings, SENDING_SETTING, sendingAllowed, sendingRefusal, releaseDeliveries, releaseUnheldLeases, type Claimed, type DeliveryJob } from './queries.ts';
import { Backfiller } from './backfiller.ts';
import { DatabaseClock } from './database-clock.ts';
import { QuietPolls } from './quiet.ts';
import { Rescuer } from './rescuer.ts';
import { Scheduler, type LoopMode, type SchedulerView } from './scheduler.ts';
import type { RelaySettings } from './settings.ts';
import { settleBatchSize, Settler } from './settle.ts';
import { missedSlot, Slots } from './slots.ts';
import { WakeUp, type Found, type WakePhase } from './wakeup.ts';

/** How often a relay started before its database answers tries again to check it. */
const UNREACHABLE_RECHECK_MS = 1_000;

/** How long stop() waits for results to be written before leaving them to lease expiry. */
const SETTLE_GRACE_MS = 10_000;

/**
 * At start the first claim goes alone, on the connection the check of the database
 * opened: the rescuer, the backfiller and the check of the settings begin this long
 * after it is asked for (or after the shorter of their intervals). Each of them on a
 * connection of its own opens it and compiles and plans its functions (40–70 ms of
 * Postgres time at a cold start). When they went first, the first claim waited for a
 * connection of its own and for the CPU (docs/relay.md, "Start", has the figures).
 */
const SIDE_WORK_AFTER_MS = 250;

export class Relay {
  readonly settings: RelaySettings;
  readonly log: Logger;
  /** counters for logs and benchmarks */
  readonly stats = { claims: 0, claimed: 0, emptyClaims: 0, emptyLanesBusy: 0, emptyAtCap: 0, refills: 0, emptyRefills: 0, claimMs: 0, released: 0 };

  /** the settler's counts: settles, results settled, their time */
  get settleStats(): Readonly<Settler['stats']> {
    return this.settler.stats;
  }
  /** Prometheus metrics (relay/metrics.ts); exposed by main.ts on RELAY_METRICS_PORT */
  readonly metrics: RelayMetrics;
  /** Settles, once the relay has stopped, when it stopped of its own accord (webhooks.sending
   * turned off while it ran), with the reason: main.ts exits 1 then, as at start. */
  readonly halted: Promise<Error>;
  private halt!: (reason: Error) => void;
  /** the relay's connections (as its role) but its claims': /readyz and the backlog gauges ask through them too */
  readonly pool: pg.Pool;
  /**
   * the connection its claims run on (database.ts claimPool): a discovery keeps where
   * it stands in settings of its session; the check of the database at start opens it
   */
  readonly claimPool: pg.Pool;
  private readonly sender: Sender;
  private readonly settler: Settler;
  private readonly slots: Slots;
  /** what this relay holds, and whether a lost answer may have left leases it does not hold */
  private readonly holdings = new Holdings();
  private readonly scheduler = new Scheduler();
  private readonly wakeUp: WakeUp;
  /** whether a sleeping relay's poll may skip its walk (quiet.ts) */
  readonly quiet = new QuietPolls();
  private readonly rescuer: Rescuer;
  private readonly backfiller: Backfiller;
  private listener: Listener | null = null;
  /** this relay's RELAY_ID, held while it runs, taken again before a claim if lost (database.ts RelayIdHold) */
  private readonly relayId: RelayIdHold;
  private pollTimer: NodeJS.Timeout | undefined;
  /** the start of the rescuer, the backfiller and the settings check (SIDE_WORK_AFTER_MS) */
  private sideWorkTimer: NodeJS.Timeout | undefined;
  /** the end of lanes_busy (scheduler.ts) */
  private lanesBusyTimer: NodeJS.Timeout | undefined;
  /** the claim round under way, if any (stop() waits for it) */
  private round: Promise<void> | null = null;
  private stopped: Promise<void> | null = null;
  /** claims failed in a row (a database away): logged once, then once a minute */
  private readonly claimFailures: RepeatedFailures;
  /** reads of SENDING_SETTING failed in a row (a database away): logged once, then once a minute */
  private readonly sendingReadFailures: RepeatedFailures;
  /** the hand-back of the unheld refused: a lost claim or release still runs (its first refusal logged at once, not a minute later with the claim's) */
  private readonly handBackFailures: RepeatedFailures;
  private whenNoneInFlight: Array<() => void> = [];
  /** deliveries waiting for their rate_limit slot, by their timer */
  private readonly pacing = new Map<NodeJS.Timeout, DeliveryJob>();
  /** a claim is under way (claims run one at a time) */
  private claiming = false;
  /** a discovery (its run of claims, up to once round the lanes) is under way */
  private discovering = false;
  /** webhooks that changed while it was: what it brings of them is handed back */
  private readonly changedWhileClaiming = new Set<string>();
  /** the listening connection came (back) while it was: every webhook it brings may have changed unheard */
  private claimUnheard = false;
  /** a claim found a webhook at its fleet-wide cap (max_in_flight): look again after a settle */
  private capHeldBack = false;
  /** the database's clock as this relay reads it: where rate_limit slots fall */
  private readonly databaseClock = new DatabaseClock();

  constructor(settings: RelaySettings, options: { log?: Logger } = {}) {
    this.settings = settings;
    this.metrics = new RelayMetrics({
      inFlight: () => this.slots.inFlight,
      heldBytes: () => this.slots.heldBytes,
      byteBudget: settings.maxHeldBytes,
      receivers: () => this.sender.receivers(),
      keptMax: KEPT_ORIGINS_MAX,
      keptConnectionsMax: KEPT_CONNECTIONS_MAX,
    });
    this.log = options.log ?? relayLogger(settings.relayId, settings.logLevel);
    this.claimFailures = new RepeatedFailures(this.log, 'claim failed; will try again', 'claiming again after errors');
    this.handBackFailures = new RepeatedFailures(this.log,
      'cannot yet hand back deliveries leased to this relay that it does not hold: it claims nothing until it can, and asks again each poll',
      'the lost claim or release ended: handing back again');
    this.sendingReadFailures = new RepeatedFailures(this.log, `cannot read ${SENDING_SETTING}; will read it again`,
                                                    `${SENDING_SETTING} read again`);
    const connections = { databaseUrl: settings.databaseUrl, role: settings.databaseRole, log: this.log, queryTimeoutMs: settings.databaseQueryTimeoutMs,
      lifetimeMs: settings.databaseConnectionLifetimeMs };
    this.pool = relayPool(connections);
    this.relayId = new RelayIdHold({ ...connections, relayId: settings.relayId });
    this.claimPool = claimPool(connections);
    this.sender = new Sender(settings, this.log, () => this.databaseClock.toDatabase(Date.now()));
    this.slots = new Slots(settings);
    this.settler = new Settler({
      db: this.pool,
      relayId: settings.relayId,
      log: this.log,
      batchSize: settleBatchSize(settings.batchSize),
      metrics: this.metrics,
      onWritten: (results) => {
        // a retry written: its lane was not walked by the last round (quiet.ts)
        this.quiet.disturbed();
        this.holdings.ended(results.map((result) => result.job));
        this.backfiller.settled(results);
      },
      // still leased to this relay: not to be handed back as never sent while the
      // lease holds (a lease from its claim, or from a paced one's slot end: at most
      // a lease from now, or from that slot end)
      onUnwritten: (results) => {
        for (const { job } of results) this.holdings.unwrittenUntil(job, Math.max(Date.now(), job.sendUntil ?? 0) + settings.leaseMs);
      },
      onSettled: () => {
        if (this.mode === 'held_back') this.kick();
        // settled deliveries free their webhook's fleet-wide slots (max_in_flight):
        // look again for what the cap held back
        if (this.capHeldBack) {
          this.capHeldBack = false;
          this.wake();
        }
      },
    });
    this.wakeUp = new WakeUp({
      idle: new IdleAnnouncer({
        databaseUrl: settings.databaseUrl,
        role: settings.databaseRole,
        log: this.log,
        queryTimeoutMs: settings.databaseQueryTimeoutMs,
        onLost: () => this.wake(),
      }),
      log: this.log,
      wake: () => this.wake(),
    });
    this.rescuer = new Rescuer({
      db: this.pool,
      log: this.log,
      intervalMs: settings.rescueIntervalMs,
      onRescued: () => this.wake(),
      eachRun: () => this.stopIfSendingTurnedOff(),
    });
    this.halted = new Promise((resolve) => (this.halt = resolve));
    this.backfiller = new Backfiller({ db: this.pool, log: this.log, intervalMs: settings.backfillIntervalMs });
  }

  /** The claim loop's mode (scheduler.ts says what each means). */
  get mode(): LoopMode {
    return this.scheduler.mode;
  }

  /** Checks the database role, then runs until stop(). */
  async start(): Promise<void> {
    if (this.mode !== 'new') throw new Error('relay already started');
    this.scheduler.setMode('waiting');
    await this.checkDatabaseOnceReachable();
    if (this.stopped) return;
    await this.relayId.take();
    if (this.stopped) return;
    // listening before the first claim: a webhook change committed once start() has
    // resolved reaches this relay (or, if the first try failed, the relay polls, and
    // treats what it holds as changed when it listens: listening())
    this.listener = startListener({
      databaseUrl: this.settings.databaseUrl,
      log: this.log,
      onWake: () => this.wake(),
      onWebhookChanged: (webhookId) => this.webhookChanged(webhookId),
      onListening: () => this.listening(),
    });
    await this.listener.ready;
    if (this.stopped) return;
    this.pollTimer = setInterval(() => this.poll(), this.settings.pollIntervalMs);
    this.log.info(
      {
        batchSize: this.settings.batchSize,
        maxInFlight: this.settings.maxInFlight,
        perWebhookInFlight: this.settings.perWebhookInFlight,
        prefetch: this.settings.prefetch,
        maxHeldBytes: this.settings.maxHeldBytes,
        leaseMs: this.settings.leaseMs,
        allowNetworks: this.settings.allowNetworks.cidrs,
      },
      'relay started',
    );
    this.wake();
    this.sideWorkTimer = setTimeout(
      () => {
        this.rescuer.start();
        this.backfiller.start();
        void this.warnOfRefusedSettings();
      },
      Math.min(SIDE_WORK_AFTER_MS, this.settings.rescueIntervalMs, this.settings.backfillIntervalMs),
    );
  }

  /**
   * The poll timer: a discovery for what falls due without a NOTIFY (wakeup.ts,
   * poll_look), unless nothing can have become sendable since the last round that
   * found nothing (quiet.ts).
   */
  private poll(): void {
    // a discovery under way is this poll's look already: it walks every lane with
    // deliveries waiting (a poll that asked for another beside it, one a poll, kept a
    // relay whose polls were shorter than a round from ever falling asleep)
    if (this.discovering || this.quiet.deciding) return;
    void this.quiet.maySkip((round, written) => pollMaySkip(this.pool, round, written)).then((skip) => {
      if (skip || this.stopped) return;
      this.wakeUp.polled();
      this.scheduler.requestDiscovery();
      this.kick();
    });
  }

  /** Looks for due work now, anywhere (a NOTIFY, a timer, a reconnect, a rescue). */
  wake(): void {
    this.quiet.disturbed();
    this.scheduler.requestDiscovery();
    this.kick();
  }

  /**
   * One discovery claim, every delivery of it sent and settled. For tests and
   * scripts that step the relay by hand (without start()).
   */
  async runOnce(): Promise<{ claimed: number }> {
    const { jobs } = await this.claim(null);
    this.dispatchAll(jobs);
    await this.noneInFlight();
    await this.settler.drain(SETTLE_GRACE_MS);
    return { claimed: jobs.length };
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

  /** Starts a claim round unless one is under way (it then sees what is due when its claim returns). */
  private kick(): void {
    if (!this.scheduler.mayStartRound()) return;
    const round = this.claimRound();
    this.round = round;
    void round.finally(() => {
      if (this.round === round) this.round = null;
    });
  }

  /** Claims while work is found and there is room, then rests in the mode the scheduler names. */
  private async claimRound(): Promise<void> {
    const view: SchedulerView = {
      full: false,
      unsettled: 0,
      settleBatchSize: this.settler.batchSize,
      refillsDue: () => this.slots.refillsDue(),
    };
    do {
      view.full = this.slots.isFull();
      view.unsettled = this.settler.waiting;
      const step = this.scheduler.nextStep(view);
      if (step.kind === 'rest') {
        this.scheduler.setMode(step.mode); // a finished request or a written batch kicks again
        return;
      }
      this.scheduler.setMode('claiming');
      let claimed: Claimed;
      try {
        claimed = step.kind === 'discovery' ? await this.discover() : await this.refill(step.webhooks);
        this.claimFailures.worked();
      } catch (error) {
        if (error instanceof RelayIdTaken) {
          this.stopFor(error);
          return;
        }
        // the poll timer and the listener's reconnect bring the next try
        this.claimFailures.failed(error);
        if (this.mode !== 'stopping') this.scheduler.setMode('waiting');
        return;
      }
      const lanesBusyMs = this.scheduler.lanesBusyWait(claimed.lanesBusy);
      if (lanesBusyMs !== null && this.mode !== 'stopping') {
        this.restWhileLanesBusy(lanesBusyMs);
        return;
      }
    } while (this.scheduler.moreToClaim(view));
    if (this.mode !== 'stopping') this.scheduler.setMode('waiting');
  }

  /**
   * A webhook changed its URL, was disabled or deleted, or had its secret rotated
   * (sql/20_wakeup.sql): what the relay holds of it and has not sent (queued, paced)
   * was claimed with the webhook as it was, and is handed back, to be claimed again
   * as it is now. So is what a claim under way brings of it: that claim may have read
   * the webhook before the change. Requests already sent finish, and their results,
   * successes too, tell the settle the URL they went to: one to a URL the webhook no
   * longer has counts towards nothing of its breaker (holdings.ts).
   */
  private webhookChanged(webhookId: string): void {
    this.quiet.disturbed();
    if (this.claiming) this.changedWhileClaiming.add(webhookId);
    this.holdings.webhookChanged(webhookId);
    const jobs = [...this.slots.takeQueued(webhookId), ...this.takePaced(webhookId)];
    if (jobs.length > 0) void this.release(jobs, 'their webhook changed after they were claimed');
  }

  /**
   * The listening connection LISTENs, a new one after one lost (or the first, after a
   * first try failed): a webhook_changed notice sent while none listened reached
   * nobody. Every webhook this relay holds deliveries of is treated as changed, and so
   * is what a claim under way brings. (At start nothing is held yet: start() waits.)
   */
  private listening(): void {
    if (this.claiming) this.claimUnheard = true;
    for (const webhookId of this.holdings.webhookIds()) this.webhookChanged(webhookId);
  }

  /**
   * A discovery claim, between the wake-up protocol's two steps (wakeup.ts), its
   * deliveries dispatched before the second: when the claim found no work for another
   * discovery, that step announces idleness, a round trip on a connection of its own
   * (at start, one still to be opened; docs/relay.md, the wake-up's phases), whose
   * answer the round does not wait for.
   */
  private async discover(): Promise<Claimed> {
    this.discovering = true;
    try {
      return await this.discoverRound();
    } finally {
      this.discovering = false;
    }
  }

  private async discoverRound(): Promise<Claimed> {
    this.wakeUp.beforeDiscovery();
    // a look that holds relay_idle (the last look, a poll's): a round of fruitless
    // discoveries it begins and ends lets the next polls skip their walk (quiet.ts)
    const look = this.wakeUp.phase === 'last_look' || this.wakeUp.phase === 'poll_look';
    const since = this.quiet.begin();
    const began = new Set<string>();
    // (read before the round's first claim: quiet_since, sql/20_wakeup.sql)
    const written = look ? await quietSince(this.claimPool).catch(() => null) : null;
    let claimed = await this.claim(null);
    if (claimed.roundBegan) began.add(claimed.roundBegan);
    // a window of lanes walked without one that may send now, and lanes beyond it not
    // walked since (more_due without deliveries, sql/28_lanes.sql discovery_walks_on):
    // the next window at once, up to once round, all one discovery to the wake-up
    // protocol. Left to the next poll, a company whose lane lay windows away waited a
    // poll a window (test/fleet/retrying-companies.test.ts)
    while (claimed.jobs.length === 0 && claimed.moreDue && this.mode !== 'stopping') {
      claimed = await this.claim(null);
      if (claimed.roundBegan) began.add(claimed.roundBegan);
    }
    // found: due work that only another discovery would bring (full: more than this
    // claim could take). A webhook this claim filled to its cap (backlogged) is
    // refilled on its own as its queue runs low, in claims of a useful size;
    // discovering again at once would only take the few slots each finished request
    // frees, one costly claim after another.
    const found: Found = {
      deliveries: claimed.jobs.filter((job) => !this.slots.isBacklogged(job.webhookId)).length,
      full: claimed.moreDue,
    };
    this.dispatchAll(claimed.jobs);
    if (await this.wakeUp.afterDiscovery(found, this.mode === 'stopping')) this.scheduler.requestDiscovery();
    this.quiet.ended(since, claimed.roundQuiet, began, look && (this.wakeUp.phase as WakePhase) === 'asleep', written);
    return claimed;
  }

  /** A refill of those webhooks, its deliveries dispatched. */
  private async refill(webhooks: string[]): Promise<Claimed> {
    const claimed = await this.claim(webhooks);
    this.dispatchAll(claimed.jobs);
    return claimed;
  }

  private dispatchAll(jobs: readonly DeliveryJob[]): void {
    for (const job of jobs) this.dispatch(job);
  }

  /** Claims (discovery when `only` is null, else a refill of those webhooks). */
  private async claim(only: string[] | null): Promise<Claimed> {
    const view = this.slots.claimView();
    if (!view) return { jobs: [], filled: new Set(), moreDue: false, atCap: false, lanesBusy: false, roundBegan: null, roundQuiet: null };
    // (its RELAY_ID's connection lost: held again first, or the relay stops, RelayIdTaken)
    await this.relayId.ensure();
    if (this.holdings.inDoubt) await this.releaseUnheld();
    const started = performance.now();
    this.claiming = true;
    this.changedWhileClaiming.clear();
    this.claimUnheard = false;
    const claimed = await claimDeliveries(this.claimPool, {
      relayId: this.settings.relayId,
      limit: Math.min(this.settings.batchSize, view.room),
      leaseMs: this.settings.leaseMs,
      perWebhookCap: view.perWebhookCap,
      capByWebhook: view.capByWebhook,
      heldByWebhook: view.heldByWebhook,
      only,
      slots: this.settings.maxInFlight,
      heldBytesByWebhook: view.heldBytesByWebhook,
      companyByWebhook: view.companyByWebhook,
      byteBudget: view.byteBudget,
    }, this.databaseClock).catch((error: unknown) => {
      // the claim may have run and leased what its answer would have said (the
      // connection is dropped: the next claim's, new, starts its walk afresh)
      if (isConnectionError(error)) this.holdings.answerLost();
      throw error;
    }).finally(() => {
      this.claiming = false;
    });
    this.holdings.claimed(claimed.jobs);
    if (this.changedWhileClaiming.size > 0 || this.claimUnheard) {
      const changed = (job: DeliveryJob) => this.claimUnheard || this.changedWhileClaiming.has(job.webhookId);
      const stale = claimed.jobs.filter(changed);
      if (stale.length > 0) {
        claimed.jobs = claimed.jobs.filter((job) => !changed(job));
        void this.release(stale, 'their webhook changed while they were claimed');
      }
    }
    if (claimed.atCap) this.capHeldBack = true;
    // the lease counts from the claim's statement, a little after `started`
    this.slots.claimed(only, claimed, started + this.settings.leaseMs);
    this.metrics.claimed(claimed.jobs.length);
    this.stats.claims++;
    this.stats.claimMs += Math.round(performance.now() - started);
    this.stats.claimed += claimed.jobs.length;
    if (claimed.jobs.length === 0) this.stats.emptyClaims++;
    if (claimed.jobs.length === 0 && claimed.lanesBusy) this.stats.emptyLanesBusy++;
    if (claimed.jobs.length === 0 && claimed.atCap) this.stats.emptyAtCap++;
    if (only) this.stats.refills++;
    if (only && claimed.jobs.length === 0) this.stats.emptyRefills++;
    return claimed;
  }

  /**
   * Another relay was claiming from every webhook this claim could serve, and the
   * claim did not wait for them (sql/28_lanes.sql says why): no claim for `waitMs`,
   * then a discovery.
   */
  private restWhileLanesBusy(waitMs: number): void {
    this.scheduler.setMode('lanes_busy');
    this.lanesBusyTimer = setTimeout(() => {
      this.lanesBusyTimer = undefined;
      if (this.mode !== 'lanes_busy') return;
      this.scheduler.setMode('waiting');
      this.wake();
    }, waitMs);
  }

  /**
   * Sends a claimed delivery now if its webhook has a free slot, else queues it; a
   * paced one waits for its rate_limit slot first, and one whose slot has passed is
   * handed back.
   */
  private dispatch(job: DeliveryJob): void {
    const wait = job.sendAt === null ? 0 : job.sendAt - Date.now();
    if (wait > 0 && this.mode !== 'stopping') {
      this.pace(job, wait);
      return;
    }
    if (missedSlot(job)) {
      void this.release([job], 'their rate_limit slot passed before they could be sent');
      return;
    }
    if (this.slots.admit(job, this.mode !== 'stopping')) void this.send(job);
  }

  /**
   * Holds a delivery until its rate_limit slot (decided by the claim for the whole
   * fleet). When the last one held for a webhook is due, the relay looks for more:
   * the claim hands out slots at most a second ahead.
   */
  private pace(job: DeliveryJob, waitMs: number): void {
    this.slots.pace(job);
    this.paceFor(job, waitMs);
  }

  /** The timer of a paced delivery (pace() counted it held). */
  private paceFor(job: DeliveryJob, waitMs: number): void {
    const timer = setTimeout(() => {
      this.pacing.delete(timer);
      // a timer may fire a little before its time (it counts from the event loop's
      // clock, which lags the wall clock): never send before the slot opens, or a
      // second could hold rate_limit + 2 requests
      const early = job.sendAt! - Date.now();
      if (early > 0) {
        this.paceFor(job, early);
        return;
      }
      const left = this.slots.unpace(job);
      job.sendAt = null;
      this.dispatch(job);
      if (left === 0) this.wake();
    }, waitMs);
    this.pacing.set(timer, job);
  }

  /** Stops the timers of the paced deliveries (of one webhook, or all): these are to be released. */
  private takePaced(webhookId?: string): DeliveryJob[] {
    const taken: DeliveryJob[] = [];
    for (const [timer, job] of this.pacing) {
      if (webhookId !== undefined && job.webhookId !== webhookId) continue;
      clearTimeout(timer);
      this.pacing.delete(timer);
      this.slots.unpace(job);
      taken.push(job);
    }
    return taken;
  }

  /** One attempt, its slot already held; the freed slot goes to a queued delivery. */
  private async send(job: DeliveryJob): Promise<void> {
    const result = await this.sender.send(job); // never throws: a failure is a result
    this.settler.add(result);
    this.slots.measured(job.webhookId, result.durationMs, succeeded(result.outcome));
    const freed = this.slots.finished(job, performance.now(), this.mode !== 'stopping');
    for (const next of freed.start) void this.send(next);
    if (freed.tooLate.length > 0) void this.release(freed.tooLate, 'their lease would run out before the request, or their rate_limit slot passed');
    if (this.slots.inFlight === 0) for (const resolve of this.whenNoneInFlight.splice(0)) resolve();
    // a queue running low: refill this webhook if it has more, or resume a
    // discovery that was waiting for room
    if (this.slots.isBacklogged(job.webhookId) || this.scheduler.wantsDiscovery) this.kick();
  }

  private noneInFlight(): Promise<void> {
    if (this.slots.inFlight === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.whenNoneInFlight.push(resolve));
  }

  /**
   * After a claim or a release whose answer was lost: hands back every delivery
   * leased to this relay that it does not hold, before the next claim.
   */
  private async releaseUnheld(): Promise<void> {
    const released = await this.holdings.endDoubt((heldIds) => releaseUnheldLeases(this.pool, this.settings.relayId, heldIds))
      .catch((error: unknown) => {
        // (lock_not_available: the lost statement is still running, its message says on what it waits)
        if ((error as { code?: string }).code === '55P03') this.handBackFailures.failed(error);
        throw error;
      });
    this.handBackFailures.worked();
    this.stats.released += released;
    this.metrics.unheldReleased(released);
    if (released > 0) {
      this.log.warn({ released, held: this.holdings.size }, 'released deliveries leased to this relay that it did not hold (a claim or release whose answer was lost)');
    } else {
      this.log.debug({ held: this.holdings.size }, 'no deliveries leased to this relay that it did not hold (a claim or release whose answer was lost had leased none)');
    }
  }

  /** Back to pending, attempt not counted; what fails to be released goes back before the next claim, or when its lease runs out. */
  private async release(jobs: DeliveryJob[], why: string): Promise<void> {
    // (one that fails to be released is no longer held either: a later release of
    // the unheld hands it back, else its lease runs out)
    this.holdings.ended(jobs);
    try {
      const released = await releaseDeliveries(this.pool, this.settings.relayId, jobs.map((job) => job.deliveryId));
      this.stats.released += released;
      // (which ones, the first hundred: an operator can follow a delivery through the log)
      this.log.info({ queued: jobs.length, released, why, deliveries: jobs.slice(0, 100).map((job) => job.deliveryId) },
        'released deliveries claimed but not sent');
      if (this.mode !== 'stopping') this.wake(); // they are due again
    } catch (error) {
      // handed back before the next claim if the database answers by then (holdings.ts)
      if (isConnectionError(error)) this.holdings.answerLost();
      this.log.warn({ err: error, queued: jobs.length, why }, 'cannot release deliveries claimed but not sent: they return to pending before the next claim, or when their lease runs out');
    }
  }

  private async shutdown(): Promise<void> {
    this.scheduler.setMode('stopping');
    clearInterval(this.pollTimer);
    clearTimeout(this.lanesBusyTimer);
    clearTimeout(this.sideWorkTimer);
    const rescuerStopped = this.rescuer.stop();
    const backfillerStopped = this.backfiller.stop();
    if (this.listener) await closeWithin('the notification connection', this.listener.close(), this.log);
    await this.round;
    const queued = [...this.slots.takeQueued(), ...this.takePaced()];
    if (queued.length > 0) await this.release(queued, 'stopping');
    if (this.slots.inFlight > 0) {
      this.log.info({ inFlight: this.slots.inFlight }, 'stopping: waiting for requests in flight');
      await this.noneInFlight();
    }
    if (!(await this.settler.drain(SETTLE_GRACE_MS))) {
      this.log.error(
        { unsettled: this.settler.waiting },
        'stopping with results not written: those deliveries will be sent again once their lease runs out',
      );
    }
    this.settler.stop();
    await closeWithin('the idle-announcement connection', this.wakeUp.close(), this.log);
    await this.sender.close();
    await rescuerStopped;
    await backfillerStopped;
    await Promise.all([
      closeWithin('the connection pool', this.pool.end(), this.log),
      closeWithin('the claims\' connection', this.claimPool.end(), this.log),
    ]);
    // (last: the id is this relay's until nothing of it is left to settle)
    await closeWithin('the connection holding RELAY_ID', this.relayId.end(), this.log);
    this.log.info({ ...this.stats, ...this.settler.stats }, 'relay stopped');
  }

  /**
   * No claim comes before checkDatabase has read the database: a relay started before
   * its database answers (a copy still being restored) tries again every
   * UNREACHABLE_RECHECK_MS until it does, or until stop(). (Until 2026-12-07 it went on
   * to claim unchecked, and sent from a copy whose webhooks.sending was off.)
   */
  private async checkDatabaseOnceReachable(): Promise<void> {
    for (let tries = 0; !(await this.checkDatabase(tries === 0)); tries++) {
      if (this.stopped) return;
      await new Promise((resolve) => setTimeout(resolve, UNREACHABLE_RECHECK_MS));
      if (this.stopped) return;
    }
  }

  /** Whether the database was reached (and fit to work in: else it throws). */
  private async checkDatabase(sayUnreachable: boolean): Promise<boolean> {
    let readOnly: boolean;
    let sending: string | null;
    try {
      // (on the claims' connection: the first claim follows on it, warm)
      ({ readOnly, sending } = await ping(this.claimPool));
    } catch (error) {
      if (isConnectionError(error)) {
        if (sayUnreachable) this.log.warn({ err: error }, 'database not reachable yet; the relay keeps trying');
        return false;
      }
      throw new Error(databaseRefusal(error, this.settings.databaseRole), { cause: error });
    }
    if (readOnly) {
      // every claim and settle writes: without this, each poll's claim failed (25006) for as long as it ran
      throw new Error(
        'the relay cannot work in this database: its transactions are read-only (default_transaction_read_only = on ' +
          'for the database or the user of DATABASE_URL, or a standby): point DATABASE_URL at the primary, or reset the setting ' +
          '(alter database … reset default_transaction_read_only, alter role … reset default_transaction_read_only)',
      );
    }
    const allowed = sendingAllowed(sending);
    // a copy's relay would send the original's unsent deliveries a second time, under the same message ids
    if (allowed !== true) throw new Error(sendingRefusal(sending, allowed));
    return true;
  }

  /**
   * SENDING_SETTING turned off (or to a value neither on nor off) while the relay runs,
   * on a copy or on the original during an incident: the setting reaches only new
   * sessions, and the relay keeps its own, so it reads the setting as its next session
   * would have it (the database's, or its login role's: databaseSending) on the
   * rescuer's timer (one small query each RELAY_RESCUE_INTERVAL_MS, nothing per
   * delivery). Then it stops as on SIGTERM: no more claims, what it holds and has not
   * sent handed back, requests in flight finished and settled; `halted` says why
   * (main.ts exits 1). A read that fails changes nothing: the next interval reads again.
   */
  private async stopIfSendingTurnedOff(): Promise<void> {
    let sending: string | null;
    try {
      sending = await databaseSending(this.pool);
    } catch (error) {
      this.sendingReadFailures.failed(error);
      return;
    }
    this.sendingReadFailures.worked();
    const allowed = sendingAllowed(sending);
    if (allowed === true || this.stopped) return;
    const reason = new Error(sendingRefusal(sending, allowed));
    this.log.warn({ setting: SENDING_SETTING, value: sending }, `stopping, once what the relay holds is settled: ${reason.message}`);
    this.haltAfterStop(reason);
  }

  /** Stops as on SIGTERM, then says why through `halted` (main.ts exits 1). */
  private haltAfterStop(reason: Error): void {
    const halt = () => this.halt(reason);
    void this.stop().then(halt, halt);
  }

  /** Another relay took this one's RELAY_ID while its connection holding it was lost: it claims no more and stops. */
  private stopFor(reason: RelayIdTaken): void {
    if (this.stopped) return;
    this.log.error(`stopping, once what the relay holds is settled: ${reason.message}`);
    this.haltAfterStop(reason);
  }

  /**
   * A DBA's typo in an engine setting stops nothing (the default or a bound holds,
   * sql/02_settings.sql), so it would go unseen: each one is said once, at start.
   */
  private async warnOfRefusedSettings(): Promise<void> {
    try {
      for (const { name, set_to: setTo, value, refusal } of await refusedSettings(this.pool)) {
        this.log.warn({ setting: name, setTo, inForce: value }, `setting ${name} = '${setTo}' is not used: ${refusal}`);
      }
    } catch (error) {
      this.log.warn({ err: error }, 'cannot read which engine settings are in force');
    }
  }
}
