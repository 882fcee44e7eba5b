// JSON logs (pino): one line per settled attempt at level info, problems at warn/error.
import { performance } from 'node:perf_hooks';
import pino, { type DestinationStream, type Logger } from 'pino';

export function relayLogger(relayId: string, level: string): Logger {
  return pino({ name: 'bpd-webhooks-relay', level, base: { relay: relayId } }, stdoutAsBytes());
}

/**
 * Standard output, each line handed over as bytes: written when the write before it
 * is done, as pino's own destination writes (and flushed at exit as it is). That one
 * takes text: it appends each line to the text waiting to be written and measures
 * that text's UTF-8 length at each line, so V8 copies all of it to a flat string
 * again, line after line. Under load, with a line per settled attempt, that was
 * about 5 KB of the relay's heap a delivery, a seventh of all it allocated; as bytes,
 * lines wait in a list and are joined once a write (BENCHMARKS.md, "What the relay
 * allocates per delivery").
 */
function stdoutAsBytes(): DestinationStream {
  const destination = pino.destination({ dest: process.stdout.fd, sync: false, contentMode: 'buffer' });
  return {
    write: (line: string) => destination.write(Buffer.from(line) as unknown as string),
  };
}

/** While a periodic part keeps failing, at most one line this often (with the count so far). */
export const REPEATED_FAILURE_LOG_EVERY_MS = 60_000;

/**
 * The failures in a row of a part that runs on a timer (the claim, the rescue, a
 * backfill step, the read of webhooks.sending) or retries on one (the settle): the
 * first logged at warn, then one
 * line a minute at most while they go on, and a line at info when it works again.
 * Logged at each failure, a database outage wrote a line per part per interval: at
 * the defaults about four a second from the backfill step alone, twenty with the
 * tests' intervals (and the claim's every tenth, a line each 10 s at the default poll).
 */
export class RepeatedFailures {
  private readonly log: Logger;
  private readonly message: string;
  private readonly recovered: string;
  private failures = 0;
  private loggedAt = 0;

  constructor(log: Logger, message: string, recovered: string) {
    this.log = log;
    this.message = message;
    this.recovered = recovered;
  }

  /** `fields`: more of the line's fields (the settle's results waiting, its next try) */
  failed(error: unknown, fields?: Record<string, unknown>): void {
    this.failures++;
    const now = performance.now();
    if (this.failures > 1 && now - this.loggedAt < REPEATED_FAILURE_LOG_EVERY_MS) return;
    this.loggedAt = now;
    this.log.warn({ ...fields, err: error, failures: this.failures }, this.message);
  }

  worked(): void {
    if (this.failures === 0) return;
    this.log.info({ failures: this.failures }, this.recovered);
    this.failures = 0;
  }
}
