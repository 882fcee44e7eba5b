// The database's clock as this relay reads it. The claim hands out rate_limit slots as
// times of the database's clock (sql/28_lanes.sql), and the relay's clock need not
// agree with it (another host, a clock not kept in step): a relay whose clock ran
// ahead by more than a slot (50 ms at rate_limit = 20) used to find every slot passed.
//
// Each claim's answer carries the database's time as it was sent (clock_timestamp());
// the relay notes it beside its own time when the answer has arrived. The offset of
// the two clocks is at least that difference, more by the answer's way back (its
// transit and parsing), never less: so the largest difference of the last minute is
// the estimate, as close as the quickest answer came, and steady from one claim to the
// next. (Placing each slot by its own claim's answer instead moved slots by each
// answer's delay: two relays' slots came closer than 1/rate_limit, and 22 requests fell
// within a second at rate_limit = 20.) Clocks drift by parts per million: a minute's
// window follows them.
export const CLOCK_WINDOW_MS = 60_000;

export class DatabaseClock {
  /** recent differences (database − relay), largest first, each newer than the one before it */
  private readonly differences: Array<{ at: number; difference: number }> = [];

  /** Notes the database's time `databaseMs` in an answer that arrived at `localMs` (this relay's clock). */
  observe(databaseMs: number, localMs: number): void {
    const difference = databaseMs - localMs;
    // a difference no larger than a newer one can never be the largest again
    while (this.differences.length > 0 && this.differences.at(-1)!.difference <= difference) this.differences.pop();
    this.differences.push({ at: localMs, difference });
    while (this.differences[0]!.at < localMs - CLOCK_WINDOW_MS) this.differences.shift();
  }

  /** A time of the database's clock on this relay's (as is before anything was observed). */
  toLocal(databaseMs: number): number {
    return databaseMs - (this.differences[0]?.difference ?? 0);
  }
}
