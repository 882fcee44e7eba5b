// The relay loop: wake → claim a batch → send each delivery → settle in batches.
//
// Wake-ups come from NOTIFY, from (re)connecting the listener, from a poll timer
// (retries falling due, missed notifications), and from finished requests while
// there may be more work. A claim that found work is followed by another at once;
// only a claim that comes back empty lets the relay wait. One claim runs at a time;
// wake-ups during a claim fold into one more claim after it.
//
// Isolation: the relay keeps at most perWebhookInFlight requests in flight to any
// one webhook and tells the claim so; the claim then leaves that webhook's rows
// alone, so a slow endpoint holds its own slots and nothing else.
import type pg from 'pg';
import type { Logger } from 'pino';
import { claimDeliveries, type DeliveryJob } from './claim.ts';
import { isConnectionError, relayPool } from './database.ts';
import { Sender } from './deliver.ts';
import { startListener, type Listener } from './listener.ts';
import { relayLogger } from './log.ts';
import type { RelaySettings } from './settings.ts';
import { Settler } from './settle.ts';

/** How long stop() waits for results to be written before leaving them to lease expiry. */
const SETTLE_GRACE_MS = 10_000;

export class Relay {
  readonly settings: RelaySettings;
  readonly log: Logger;
  private readonly pool: pg.Pool;
  private readonly sender: Sender;
  private readonly settler: Settler;
  private listener: Listener | null = null;
  private timers: NodeJS.Timeout[] = [];
  private started = false;
  private stopping = false;
  private stopped: Promise<void> | null = null;

  private claiming: Promise<void> | null = null;
  private wakeAgain = false;
  /** the last claim found work, or was held back by capacity: look again when a slot frees */
  private moreMayBeDue = false;
  private inFlight = 0;
  private readonly busy = new Map<string, number>();
  private whenNoneInFlight: Array<() => void> = [];
  private rescuing = false;
  private claimErrors = 0;

  constructor(settings: RelaySettings, options: { log?: Logger } = {}) {
    this.settings = settings;
    this.log = options.log ?? relayLogger(settings.relayId, settings.logLevel);
    this.pool = relayPool({ databaseUrl: settings.databaseUrl, role: settings.databaseRole, log: this.log });
    this.sender = new Sender(settings);
    this.settler = new Settler({ db: this.pool, relayId: settings.relayId, log: this.log, batchSize: settings.batchSize });
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
        leaseMs: this.settings.leaseMs,
        allowNetworks: this.settings.allowNetworks.cidrs,
      },
      'relay started',
    );
    void this.rescue();
    this.wake();
  }

  /** Looks for due work now (a NOTIFY, a timer, a freed slot). */
  wake(): void {
    if (!this.started || this.stopping) return;
    if (this.claiming) {
      this.wakeAgain = true;
      return;
    }
    this.claiming = this.claimWhileWorkIsFound().finally(() => {
      this.claiming = null;
    });
  }

  /**
   * One claim, every delivery of it sent and settled. For tests and scripts that
   * want to step the relay by hand (without start()).
   */
  async runOnce(): Promise<{ claimed: number }> {
    const jobs = await this.claimBatch();
    await Promise.all(jobs.map((job) => this.dispatch(job)));
    await this.settler.drain(SETTLE_GRACE_MS);
    return { claimed: jobs.length };
  }

  /** Expired leases back to pending; runs on its own timer, never in the claim loop. */
  async rescue(): Promise<number> {
    if (this.rescuing || this.stopping) return 0;
    this.rescuing = true;
    try {
      const { rows } = await this.pool.query('select webhooks_private.rescue_expired_leases() as rescued');
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
   * Graceful stop: no new claims; requests in flight finish (each within the
   * request timeout) and their results are written; then connections close.
   */
  stop(): Promise<void> {
    this.stopped ??= this.shutdown();
    return this.stopped;
  }

  private async shutdown(): Promise<void> {
    this.stopping = true;
    for (const timer of this.timers) clearInterval(timer);
    await this.listener?.close();
    await this.claiming;
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
    await this.sender.close();
    await this.pool.end();
    this.log.info('relay stopped');
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
      this.wakeAgain = false;
      let jobs: DeliveryJob[];
      try {
        jobs = await this.claimBatch();
        if (this.claimErrors > 0) this.log.info('claiming again after errors');
        this.claimErrors = 0;
      } catch (error) {
        // the poll timer and the listener's reconnect bring the next try
        if (this.claimErrors++ === 0 || this.claimErrors % 10 === 0) {
          this.log.warn({ err: error, failures: this.claimErrors }, 'claim failed; will try again');
        }
        return;
      }
      for (const job of jobs) void this.dispatch(job);
      if (jobs.length > 0) this.wakeAgain = true;
    } while (this.wakeAgain && !this.stopping);
  }

  private async claimBatch(): Promise<DeliveryJob[]> {
    const capacity = this.settings.maxInFlight - this.inFlight;
    const saturated = [...this.busy.values()].some((n) => n >= this.settings.perWebhookInFlight);
    if (capacity <= 0) {
      this.moreMayBeDue = true;
      return [];
    }
    const jobs = await claimDeliveries(this.pool, {
      relayId: this.settings.relayId,
      limit: Math.min(this.settings.batchSize, capacity),
      leaseMs: this.settings.leaseMs,
      perWebhookInFlight: this.settings.perWebhookInFlight,
      busy: this.busy,
    });
    this.moreMayBeDue = jobs.length > 0 || saturated;
    return jobs;
  }

  private async dispatch(job: DeliveryJob): Promise<void> {
    this.inFlight++;
    this.busy.set(job.webhookId, (this.busy.get(job.webhookId) ?? 0) + 1);
    const result = await this.sender.send(job);
    this.settler.add(result);
    const left = this.busy.get(job.webhookId)! - 1;
    if (left === 0) this.busy.delete(job.webhookId);
    else this.busy.set(job.webhookId, left);
    this.inFlight--;
    if (this.inFlight === 0) for (const resolve of this.whenNoneInFlight.splice(0)) resolve();
    if (this.moreMayBeDue) this.wake();
  }
}
