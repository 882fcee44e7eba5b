// Settle: attempt results are gathered and written back in batches, one statement
// per batch (webhooks_relay.settle_deliveries; SQL decides success, retry or
// failure). While the database is unreachable, or cannot write at all (cannotWriteNow),
// the results wait here and are tried again; if the relay stops before they are written,
// their leases run out and the deliveries are sent again: at least once, never lost.
import type pg from 'pg';
import type { Logger } from 'pino';
import { backoffMs } from './backoff.ts';
import { isConnectionError } from './database.ts';
import { succeeded, type AttemptResult } from './deliver.ts';
import { RepeatedFailures } from './log.ts';
import type { RelayMetrics, SettledAttempt } from './metrics.ts';
import { settleDeliveries, type AttemptRecord } from './queries.ts';

/** Retrying a batch while the database is unreachable: at most this long between tries. */
const RETRY_CAP_MS = 5_000;

/**
 * A batch short of the batch size waits up to this long for more results. A settle
 * costs the database about a quarter of a millisecond whatever it carries, and under
 * load results came in batches of about 17; the wait holds back only the writing of
 * results (the deliveries have arrived), and drain() cuts it short.
 */
export const SETTLE_GATHER_MS = 20;

/**
 * A settle carries up to this many claims' worth of results (RELAY_BATCH_SIZE each).
 * Its cost to the database is mostly per statement, so one settle of two claims'
 * results costs less than two: in six interleaved pairs of burn-downs (30,000 to one
 * webhook, claims of about 92), 200-result settles took Postgres 0.034 s of CPU per
 * 1,000 deliveries against 0.036 for 100-result settles, and the relay delivered 2 %
 * more. Three or four claims' worth did no better: under load a batch that large is
 * cut by SETTLE_GATHER_MS first (BENCHMARKS.md).
 */
export const SETTLE_BATCH_CLAIMS = 2;

/** The most results one settle writes, for a relay that claims `claimBatchSize` at a time. */
export function settleBatchSize(claimBatchSize: number): number {
  return claimBatchSize * SETTLE_BATCH_CLAIMS;
}

/**
 * The database cannot write now, whatever it is given: a read-only transaction (a
 * standby, default_transaction_read_only), a deadlock or serialization failure (40),
 * disk, memory or connections run out (53), an I/O error (58). A result refused so on
 * its own is kept and tried again after a wait, as when the database is unreachable.
 * It used to be dropped like a result refused for its content: every result in hand
 * was, each delivery went again once its lease ran out, and its history said the
 * lease had expired. (A cancelled statement or a lock not available is left out: a
 * row that another transaction holds can cause either, and only its result should
 * wait for it. But a lock on a whole table of the engine's, which the settle names
 * as settle_table_locked, holds every result alike.)
 */
export function cannotWriteNow(error: unknown): boolean {
  const { code, constraint } = error as { code?: unknown; constraint?: unknown };
  return typeof code === 'string' &&
    (code === '25006' || /^(40|53|58)/.test(code) || (code === '55P03' && constraint === 'settle_table_locked'));
}

/** An attempt as settle_deliveries records it. */
function record(result: AttemptResult): AttemptRecord {
  const { job, outcome } = result;
  return {
    deliveryId: job.deliveryId,
    attempt: job.attempt,
    attemptedAt: result.attemptedAt,
    durationMs: result.durationMs,
    statusCode: outcome.kind === 'response' ? outcome.status : null,
    error: outcome.kind === 'response' ? outcome.note : outcome.error,
    responseBody: outcome.kind === 'response' ? outcome.bodyExcerpt : null,
    retryAfterSeconds: outcome.kind === 'response' ? outcome.retryAfterSeconds : null,
    // (a success is compared only if its webhook changed while it was held: the
    // others' successes send none)
    url: succeeded(outcome) && !job.webhookChanged ? null : job.url,
  };
}

/**
 * A settled attempt's log fields, in one object (a line per settled attempt at info:
 * built once, not copied to add the state).
 */
function attemptFields(result: AttemptResult, state: string, nextAttemptAt: Date | undefined) {
  const { job, outcome } = result;
  return {
    delivery: job.deliveryId,
    message: job.messageId,
    webhook: job.webhookId,
    attempt: job.attempt,
    status: outcome.kind === 'response' ? outcome.status : null,
    error: outcome.kind === 'response' ? outcome.note : outcome.error,
    durationMs: result.durationMs,
    state,
    nextAttemptAt,
  };
}

export class Settler {
  private readonly db: Pick<pg.Pool, 'query'>;
  private readonly relayId: string;
  private readonly log: Logger;
  /** the most results one settle writes */
  readonly batchSize: number;
  private readonly gatherMs: number;
  private queue: AttemptResult[] = [];
  private flushing: Promise<void> | null = null;
  private failures = 0;
  /**
   * Settles that failed in a row, logged as the parts on a timer log theirs: until
   * 2026-12-07 each failed try wrote a line (one every 5 s through an outage, every
   * second behind a lock) and none said when settles worked again.
   */
  private readonly failuresLog: RepeatedFailures;
  /** counters for logs and benchmarks */
  readonly stats = { settles: 0, settled: 0, settleMs: 0 };
  private stopped = false;
  private idle: Array<() => void> = [];
  /** ends the current wait for more results (null: none) */
  private gathered: (() => void) | null = null;
  /** drain() was called: write what waits without gathering more */
  private hurry = false;

  private readonly onSettled: () => void;
  private readonly onWritten: (results: readonly AttemptResult[]) => void;
  private readonly onUnwritten: (results: readonly AttemptResult[]) => void;
  private readonly metrics: RelayMetrics | undefined;

  constructor(options: {
    db: Pick<pg.Pool, 'query'>;
    relayId: string;
    log: Logger;
    batchSize: number;
    /** how long a short batch waits for more results (default SETTLE_GATHER_MS) */
    gatherMs?: number;
    /** called after each batch is written (the relay may claim again) */
    onSettled?: () => void;
    /** the results no longer waiting: written (or, refused on their own, dropped) */
    onWritten?: (results: readonly AttemptResult[]) => void;
    /** of those, the ones the database did not take: left out of a settle (lease lost, row held), or refused */
    onUnwritten?: (results: readonly AttemptResult[]) => void;
    /** counts each settled attempt by the state SQL gave it */
    metrics?: RelayMetrics;
  }) {
    this.metrics = options.metrics;
    this.db = options.db;
    this.relayId = options.relayId;
    this.log = options.log;
    this.failuresLog = new RepeatedFailures(options.log, 'settle failed; will try again', 'settling again after errors');
    this.batchSize = options.batchSize;
    this.gatherMs = options.gatherMs ?? SETTLE_GATHER_MS;
    this.onSettled = options.onSettled ?? (() => {});
    this.onWritten = options.onWritten ?? (() => {});
    this.onUnwritten = options.onUnwritten ?? (() => {});
  }

  get waiting(): number {
    return this.queue.length;
  }

  add(result: AttemptResult): void {
    this.queue.push(result);
    if (this.queue.length >= this.batchSize) this.gathered?.();
    if (!this.flushing) this.flushing = this.flush();
  }

  /** Resolves when every result added so far is written (or the deadline passes: false). */
  async drain(deadlineMs: number): Promise<boolean> {
    if (!this.flushing && this.queue.length === 0) return true;
    this.hurry = true;
    this.gathered?.();
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([
      new Promise<boolean>((resolve) => this.idle.push(() => resolve(true))),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), deadlineMs))),
    ]);
    clearTimeout(timer);
    return done;
  }

  /** Gives up on what is still waiting (its leases will run out and it will be sent again). */
  stop(): void {
    this.stopped = true;
    this.gathered?.();
  }

  private async flush(): Promise<void> {
    while (this.queue.length > 0 && !this.stopped) {
      await this.gather();
      const batch = this.queue.slice(0, this.batchSize);
      try {
        const started = performance.now();
        await this.write(batch);
        this.stats.settleMs += Math.round(performance.now() - started);
        this.done(batch.length);
        this.failures = 0;
        this.failuresLog.worked();
      } catch (refused) {
        let error = refused;
        // a database unreachable, or unable to write at all: the batch waits and goes
        // again; refused for what it holds: written one by one, unless a write finds
        // the database unable to write, which leaves the rest to wait alike
        if (!isConnectionError(error) && !cannotWriteNow(error)) {
          const interruptedBy = await this.isolate(batch, error);
          if (interruptedBy === null) continue;
          error = interruptedBy;
        }
        this.failures++;
        const waitMs = backoffMs(this.failures, { capMs: RETRY_CAP_MS });
        this.failuresLog.failed(error, { results: this.queue.length, retryInMs: waitMs });
        await new Promise((resolve) => setTimeout(resolve, waitMs));
      }
    }
    this.flushing = null;
    this.hurry = false;
    for (const resolve of this.idle.splice(0)) resolve();
  }

  /** Waits for a whole batch, gatherMs at most, unless drain() or stop() hurries. */
  private gather(): Promise<void> {
    if (this.queue.length >= this.batchSize || this.hurry || this.stopped) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.gathered?.(), this.gatherMs);
      this.gathered = () => {
        clearTimeout(timer);
        this.gathered = null;
        resolve();
      };
    });
  }

  private done(count: number): void {
    this.onWritten(this.queue.splice(0, count));
    this.stats.settles++;
    this.stats.settled += count;
    this.onSettled();
  }

  /**
   * The database refused a batch (not a lost connection): write its results one by
   * one, so that one bad result cannot hold back the others. A result refused on its
   * own is dropped with an error log; its lease runs out and the rescue retries the
   * delivery (or fails it once its attempts are used up). Returns the error that
   * stopped it before the end (a lost connection, or the database unable to write:
   * the results not written wait), else null.
   */
  private async isolate(batch: AttemptResult[], batchError: unknown): Promise<unknown> {
    this.log.warn({ err: batchError, results: batch.length }, 'settle refused; writing the results one by one');
    for (const result of batch) {
      try {
        await this.write([result]);
      } catch (error) {
        // the outer loop waits and tries the rest again
        if (isConnectionError(error) || cannotWriteNow(error)) return error;
        this.log.error(
          { err: error, delivery: result.job.deliveryId, webhook: result.job.webhookId, attempt: result.job.attempt },
          'cannot settle this attempt; its lease will run out and the rescue takes it from there',
        );
        this.onUnwritten([result]);
      }
      this.done(1);
    }
    return null;
  }

  private async write(batch: AttemptResult[]): Promise<void> {
    const settled = await settleDeliveries(this.db, this.relayId, batch.map(record));
    // each settled attempt logged at info, a lost lease at warn: the fields are built
    // only for a line that is written
    const logSettled = this.log.isLevelEnabled('info');
    const attempts: SettledAttempt[] = [];
    const unwritten: AttemptResult[] = [];
    for (const result of batch) {
      const row = settled.get(result.job.deliveryId);
      if (row) attempts.push({ state: row.state, durationMs: result.durationMs });
      else unwritten.push(result);
      if (row && !logSettled) continue;
      if (!row) {
        this.log.warn(
          attemptFields(result, 'lease lost', undefined),
          'not settled: its lease had run out (another relay owns the delivery, and the attempt is recorded), ' +
            'or a transaction outside the engine holds it (its lease will run out)',
        );
      } else {
        this.log.info(attemptFields(result, row.state, row.nextAttemptAt ?? undefined), 'settled');
      }
    }
    this.metrics?.settled(attempts);
    if (unwritten.length > 0) this.onUnwritten(unwritten);
  }
}
