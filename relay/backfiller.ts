// The backfiller: drives running backfills (sql/35_backfill.sql) one step at a time,
// on a timer of its own beside the rescuer, never in the claim loop. A step writes at
// most one batch of snapshots per backfill, and only while few of its snapshots are
// still on their way: the pacing is SQL's, the relay only keeps asking. Any number of
// relays may run it at once (a backfill's row is locked during its step, SKIP LOCKED).
import type { Logger } from 'pino';
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
  private readonly options: BackfillerOptions;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number | null> | null = null;
  private stopped = false;

  constructor(options: BackfillerOptions) {
    this.options = options;
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
    const written = await backfillStep(this.options.db);
    if (written > 0) this.options.log.debug({ written }, 'backfill: snapshots queued');
    return written;
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
      .catch((error: unknown) => {
        this.options.log.warn({ err: error }, 'backfill step failed; will try again');
        return null;
      })
      .finally(() => {
        this.running = null;
      });
    return this.running;
  }
}
