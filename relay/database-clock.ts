// The database's clock as this relay reads it. The claim hands out rate_limit slots as
// times of the database's clock (sql/28_lanes.sql), and the relay's clock need not
// agree with it (another host, a clock not kept in step): a relay whose clock ran
// ahead by more than a slot (50 ms at rate_limit = 20) used to find every slot passed.
//
// Each claim's answer carries the database's time as it was sent (clock_timestamp()).
// The relay's clock read when it asked and when the answer had arrived bound the
// offset of the two clocks, as NTP does: the database's time less the arrival is at
// most the offset, less the asking at least. The bounds of the last minute together
// say where it lies.
//   - Where it may be nil (the clocks agree within the quickest round trip, as on
//     hosts that keep time), the relay's own clock is taken: every relay then places
//     the slots exactly where the database does, and a second holds at most
//     rate_limit + 1 of them however the relays' answers were delayed. (An estimate
//     per relay moves each relay's slots by its own error: two relays' slots came
//     closer than 1/rate_limit, and 22 requests fell within a second at 20.)
//   - Else the lower bound: never earlier than a slot, as late as the quickest answer
//     took to come back.
// Clocks drift by parts per million: a minute's window follows them.
//   - The offset in use moves later at once (slots placed later are never early),
//     and earlier by OFFSET_SLEW of the time between answers at most: a quicker answer
//     than any before moves the estimate earlier by what the slower ones took, and
//     every slot after it with it, closer to the slots placed before it. Under load the
//     first answers took 100 ms more than the next, and a second held 23 requests of a
//     webhook paced at 20 (test/fleet/rate-limit.test.ts).
export const CLOCK_WINDOW_MS = 60_000;

/** How fast the offset in use may move earlier: 50 ms a second, a slot more a second at most at rate_limit 20. */
export const OFFSET_SLEW = 0.05;

type Bound = { at: number; value: number };

/** Appends to a window kept in order of time whose first entry is its largest (sign 1) or smallest (-1). */
function keep(window: Bound[], bound: Bound, sign: 1 | -1): void {
  // an entry no better than a newer one can never be the best again
  while (window.length > 0 && sign * window.at(-1)!.value <= sign * bound.value) window.pop();
  window.push(bound);
  while (window[0]!.at < bound.at - CLOCK_WINDOW_MS) window.shift();
}

export class DatabaseClock {
  /** database − arrival: the offset is at least each (their largest first) */
  private readonly lower: Bound[] = [];
  /** database − asking: the offset is at most each (their smallest first) */
  private readonly upper: Bound[] = [];

  /** The offset in use (undefined: no answer yet), and the arrival it was set at. */
  private used: number | undefined;
  private usedAt = 0;

  /** Notes the database's time `databaseMs` in an answer asked for at `askedMs` and arrived at `arrivedMs` (this relay's clock). */
  observe(databaseMs: number, askedMs: number, arrivedMs: number): void {
    keep(this.lower, { at: arrivedMs, value: databaseMs - arrivedMs }, 1);
    keep(this.upper, { at: arrivedMs, value: databaseMs - askedMs }, -1);
    const atLeast = this.lower[0]!.value;
    const atMost = this.upper[0]!.value;
    const estimate = atLeast <= 0 && atMost >= 0 ? 0 : atLeast;
    this.used = this.used === undefined || estimate <= this.used
      ? estimate
      : Math.min(estimate, this.used + Math.max(0, arrivedMs - this.usedAt) * OFFSET_SLEW);
    this.usedAt = arrivedMs;
  }

  /** The database's clock less this relay's, as far as the answers of the last minute tell (see the top). */
  offset(): number {
    return this.used ?? 0;
  }

  /** A time of the database's clock on this relay's. */
  toLocal(databaseMs: number): number {
    return databaseMs - this.offset();
  }

  /** A time of this relay's clock on the database's. */
  toDatabase(localMs: number): number {
    return localMs + this.offset();
  }
}
