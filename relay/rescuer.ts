// The rescuer: returns deliveries whose lease ran out (their relay died, hung, or lost
// its database connection before settling) to pending, or fails those out of
// attempts (webhooks_relay.rescue_expired_leases decides). It runs on its own timer,
// never in the claim loop, one run at a time; any relay may rescue any relay's rows.
import type { Logger } from 'pino';
import { RepeatedFailures } from './log.ts';
import { rescueExpiredLeases } from './queries.ts';

/** How often the rescuer runs by default (RELAY_RESCUE_INTERVAL_MS). */
export const RESCUER_INTERVAL_DEFAULT_MS = 5_000;

export interface RescueResult {
  /** deliveries returned to pending or failed */
  rescued: number;
}

export interface RescuerOptions {
  db: Parameters<typeof rescueExpiredLeases>[0];
  log: Logger;
  intervalMs?: number;
  /** called after a run that rescued something: those deliveries are due again */
  onRescued?: (result: RescueResult) => void;
  /** more work on the same timer, after each run (the relay's read of webhooks.sending,
   * loop.ts): one interval to set, one timer to stop; it handles its own errors */
  eachRun?: () => Promise<void>;
}

export class Rescuer {
  readonly intervalMs: number;
  private readonly options: RescuerOptions;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<RescueResult | null> | null = null;
  private stopped = false;
  /** rescues failed in a row (a database away): logged once, then once a minute */
  private readonly failures: RepeatedFailures;

  constructor(options: RescuerOptions) {
    this.options = options;
    this.failures = new RepeatedFailures(options.log, 'rescue of expired leases failed; will try again', 'rescues of expired leases work again');
    this.intervalMs = options.intervalMs ?? RESCUER_INTERVAL_DEFAULT_MS;
  }

  /** Runs now, then every intervalMs until stop(); a failed run is logged and retried next time. */
  start(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    void this.tick();
  }

  /** One rescue; rejects if the database does. */
  async runOnce(): Promise<RescueResult> {
    const rescued = await rescueExpiredLeases(this.options.db);
    if (rescued > 0) this.options.log.warn({ rescued }, 'returned deliveries whose lease ran out to pending');
    return { rescued };
  }

  /** No further runs; waits for the one under way, if any. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private tick(): Promise<RescueResult | null> {
    if (this.running || this.stopped) return Promise.resolve(null);
    this.running = this.runOnce()
      .then((result) => {
        this.failures.worked();
        if (result.rescued > 0) this.options.onRescued?.(result);
        return result;
      })
      .catch((error: unknown) => {
        this.failures.failed(error);
        return null;
      })
      .then(async (result) => {
        await this.options.eachRun?.();
        return result;
      })
      .finally(() => {
        this.running = null;
      });
    return this.running;
  }
}
