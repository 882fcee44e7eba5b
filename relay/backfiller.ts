// The backfiller: drives running backfills (sql/35_backfill.sql) one step at a time,
// on a timer of its own beside the rescuer, never in the claim loop. A step writes at
// most one batch of snapshots per backfill, and only while few of its snapshots are
// still on their way: the pacing is SQL's, the relay only keeps asking. It asks on its
// timer, and again as soon as the relay has settled deliveries of a webhook whose
// backfill the last step left waiting for room (settled()): on the timer alone a
// receiver that answered at once got four times its max_in_flight of snapshots a tick,
// whatever it could take. A step that served its limit of backfills with others left
// is followed by the next at once. A backfill done, paused or held by a CRM writer is
// not waiting for room: the timer alone steps it (every settle of its webhook did).
// Any number of relays may run it at once (a backfill's row is locked during its
// step, SKIP LOCKED).
import type { Logger } from 'pino';
import { RepeatedFailures } from './log.ts';
import { backfillStep } from './queries.ts';

/** How often the backfiller steps by default (RELAY_BACKFILL_INTERVAL_MS). */
export const BACKFILLER_INTERVAL_DEFAULT_MS = 250;

export interface BackfillerOptions {
  db: Parameters<typeof backfillStep>[0];
  log: Logger;
  intervalMs?: number;
}

export class Backfiller {
  readonly intervalMs: number;
  /** steps taken, and of those, the ones a settle asked for */
  readonly stats = { steps: 0, stepsOnSettle: 0 };
  private readonly options: BackfillerOptions;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number | null> | null = null;
  private stopped = false;
  /** the webhooks whose backfill the last step left waiting for room */
  private waiting: ReadonlySet<string> = new Set();
  /** a settle asked for a step while one was under way: one more once it ends */
  private again = false;
  /**
   * the last step served its limit of backfills and left running ones unvisited: the
   * next at once (their receivers may be idle, and no settle of theirs would ask)
   */
  private more = false;
  /** steps failed in a row (a database away): logged once, then once a minute */
  private readonly failures: RepeatedFailures;

  constructor(options: BackfillerOptions) {
    this.options = options;
    this.failures = new RepeatedFailures(options.log, 'backfill step failed; will try again', 'backfill steps work again');
    this.intervalMs = options.intervalMs ?? BACKFILLER_INTERVAL_DEFAULT_MS;
  }

  /** Steps now, then every intervalMs until stop(); a failed step is logged and tried again next time. */
  start(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    void this.tick();
  }

  /** One step of every running backfill with room; resolves with the snapshots written. */
  async runOnce(): Promise<number> {
    const { written, waiting, more } = await backfillStep(this.options.db);
    this.stats.steps++;
    this.waiting = new Set(waiting);
    this.more = more;
    if (written > 0) this.options.log.debug({ written }, 'backfill: snapshots queued');
    return written;
  }

  /**
   * Deliveries were settled (a settle batch): a step now if any is of a webhook whose
   * backfill waits for room. Nothing to look at while no backfill waits (nearly
   * always); else one set lookup a delivery, and no query unless one matched.
   */
  settled(results: readonly { job: { webhookId: string } }[]): void {
    if (this.waiting.size === 0 || this.stopped) return;
    for (const { job } of results) {
      if (this.waiting.has(job.webhookId)) {
        this.stats.stepsOnSettle++;
        this.waiting = new Set();   // (the step says again which wait)
        if (this.running) this.again = true;
        else void this.tick();
        return;
      }
    }
  }

  /** Resolves once no step is under way or asked for (tests count the steps taken). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  /** No further steps; waits for the one under way, if any (it commits or rolls back whole). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private tick(): Promise<number | null> {
    if (this.running || this.stopped) return Promise.resolve(null);
    this.running = this.runOnce()
      .then((written) => {
        this.failures.worked();
        return written;
      }, (error: unknown) => {
        this.failures.failed(error);
        return null;
      })
      .finally(() => {
        this.running = null;
        if (this.again || this.more) {
          this.again = false;
          this.more = false;
          void this.tick();
        }
      });
    return this.running;
  }
}
