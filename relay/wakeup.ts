// The relay's side of the wake-up protocol (sql/20_wakeup.sql): how a run of
// discoveries ends in sleep without missing a delivery whose capture skipped its
// NOTIFY. While discoveries find work the relay is awake and captures need not
// notify it. A discovery that finds nothing makes it announce that it is going idle
// (from then on captures notify); once every capture that skipped its NOTIFY has
// ended, one last discovery, and if that finds nothing too, the relay sleeps until
// a NOTIFY or the poll timer.
//
// How soon an awake relay looks again depends on what it found: a full batch (more is
// due) or a few deliveries or more, at once; fewer than TRICKLE_BELOW (a trickle: it
// took all that was due, and little comes between claims), after LINGER_MS, so that a
// trickle is taken a few at a time rather than by a claim that finds one and another
// that finds none for each delivery. Where changes come faster, claims carry more and
// follow each other at once, as the latency wants. A discovery that finds nothing
// right after one that found work is followed by one more look, LINGER_MS later,
// before the relay announces that it is going idle: while changes keep coming, a
// claim now and then that finds nothing need not make captures notify. Each NOTIFY
// costs its writer a place in a queue: Postgres commits the transactions that notify
// one at a time, each through its WAL flush. At 1,000 changes a second this took
// the relay's idle announcements from about 200 to 27 in a window of 20 s, and the
// captures' NOTIFYs from about 1,290 to 430 (BENCHMARKS.md).
//
// Phases (one at a time, changed only by setPhase()):
//   awake          relay_idle not held. Enters: before any discovery that is not the
//                  last look. Leaves: a discovery that found a trickle → lingering;
//                  an empty one right after one that found work → lingering; any
//                  other empty one → announcing.
//   lingering      relay_idle not held (captures need not notify): the next discovery
//                  comes after LINGER_MS. Enters: from awake, as above. Leaves: that
//                  discovery, or any sooner one (a finished request, the poll timer)
//                  → awake.
//   announcing     going_idle() asked on the idle connection, its answer not back:
//                  relay_idle may or may not be held yet. The loop goes on meanwhile
//                  (refills, a finished request's next delivery), and any discovery
//                  (a NOTIFY, the poll timer) → awake, as if it had never asked: a
//                  stalled idle connection (a lock, a slow path) holds up nothing
//                  but the relay's sleep. Leaves: the answer → last_look (a
//                  discovery asked of the loop) or captures_open; a failure →
//                  awake, and a discovery a moment later. One question at a time: a
//                  relay that goes idle again while one is unanswered waits for that
//                  answer, which serves it as well (relay_idle taken, then captures
//                  checked, then the last look); an answer that finds the relay
//                  awake again gives relay_idle back.
//   last_look      relay_idle held and no capture that skipped its NOTIFY is open: one
//                  more discovery. Leaves: it finds work (a trickle too) → awake, the
//                  next discovery at once; it finds none → asleep.
//   captures_open  relay_idle held, but a capture that skipped its NOTIFY is still
//                  open (a long import, a session idle in transaction, a prepared
//                  transaction). The relay asks again, backing off from
//                  RECHECK_FIRST_MS to RECHECK_CAP_MS, on its idle connection only: no
//                  claim, no unlock. Leaves: the captures have ended → last_look; still
//                  open once the wait has reached RECHECK_CAP_MS → open_look; any
//                  discovery meanwhile (a NOTIFY of a newer capture, the poll timer)
//                  → awake.
//   open_look      relay_idle held, a capture that skipped its NOTIFY still open: one
//                  discovery, for the captures that also skipped theirs and have
//                  committed since (the question says only that *some* capture is
//                  open: one that stays open must not hold back the others). Leaves:
//                  it finds work → awake, the next discovery at once; none →
//                  captures_open, asking again after RECHECK_CAP_MS.
//   asleep         relay_idle held: captures notify. Leaves: the poll timer, relay_idle
//                  still held → poll_look, unless nothing can have become sendable
//                  since the last round that found nothing (quiet.ts: the poll skips
//                  its walk, at most QUIET_POLLS_MAX times in a row); any other
//                  discovery (a NOTIFY, a rescue, the idle connection lost) → awake.
//   poll_look      relay_idle held: the poll timer's discovery, for what falls due
//                  with no NOTIFY (a retry, a paced or coalesced delivery, a two-phase
//                  writer's). Captures notify throughout, so it needs no announcement:
//                  asleep, a poll walked every lane with deliveries waiting twice (a
//                  discovery awake, then the last look) and asked the idle connection
//                  twice (awake(), going_idle()). Leaves: it finds work → awake, the
//                  next discovery at once (which gives relay_idle back); none → asleep.
//
// So an open transaction costs the relay a handful of cheap questions, then one and a
// claim a second, however long it stays open; its deliveries come at most
// RECHECK_CAP_MS after it commits (sooner if anything else wakes the relay), and those
// of the captures beside it that have committed at most about two seconds after.
import type { Logger } from 'pino';
import { backoffMs } from './backoff.ts';
import type { IdleAnnouncer } from './idle.ts';

export type WakePhase = 'awake' | 'lingering' | 'announcing' | 'last_look' | 'captures_open' | 'open_look' | 'asleep' | 'poll_look';

/** What a discovery found: how many deliveries only a discovery brings, and whether its batch was full. */
export interface Found {
  deliveries: number;
  full: boolean;
}

/** A discovery that found fewer deliveries than this (and not a full batch) found a trickle. */
export const TRICKLE_BELOW = 4;

/**
 * After a trickle, an awake relay looks again this much later. Deliveries committed
 * meanwhile wait at most this long more; a relay taking 250 changes a second made
 * about 1.5 claims a delivery without it (a claim that found one, then one that found
 * none, for most of them), each near a millisecond of Postgres time (BENCHMARKS.md).
 */
export const LINGER_MS = 5;

/** A capture that skipped its NOTIFY is still open: ask again this soon, */
export const RECHECK_FIRST_MS = 2;
/** then twice as long each time, up to this. */
export const RECHECK_CAP_MS = 1_000;

type Idle = Pick<IdleAnnouncer, 'goingIdle' | 'capturesDone' | 'awake' | 'close' | 'holding'>;

export class WakeUp {
  private current: WakePhase = 'awake';
  /** changes with every phase change: an answer that comes back after one is stale */
  private epoch = 0;
  /** the phase's timer: the lingering relay's next look, or the next recheck of open captures */
  private timer: NodeJS.Timeout | undefined;
  /** rechecks since the relay last found work or found the captures done */
  private rechecks = 0;
  /** the discovery before this one found work */
  private foundWork = false;
  /** a going_idle() is on its way (its answer not back) */
  private asking = false;
  private closed = false;
  private readonly idle: Idle;
  private readonly log: Logger;
  private readonly wake: () => void;

  /** `wake`: ask the loop for a discovery. */
  constructor(options: { idle: Idle; log: Logger; wake: () => void }) {
    this.idle = options.idle;
    this.log = options.log;
    this.wake = options.wake;
  }

  get phase(): WakePhase {
    return this.current;
  }

  /**
   * Before a discovery: wakes up unless this is the last look. relay_idle is given back
   * without waiting for the answer: held a little longer, it only makes captures
   * notify, and a stalled idle connection must not hold up the claim.
   */
  beforeDiscovery(): void {
    if (this.current === 'last_look' || this.current === 'open_look' || this.current === 'poll_look') return;
    this.setPhase('awake');
    this.giveBack();
  }

  /**
   * After a discovery: true when another discovery is due at once (it found plenty,
   * or it is time for the last look); after a trickle the next comes after LINGER_MS
   * by itself. `stopping`: no linger and no going idle.
   */
  async afterDiscovery(found: Found, stopping: boolean): Promise<boolean> {
    const foundWork = found.full || found.deliveries > 0;
    const foundWorkBefore = this.foundWork;
    this.foundWork = foundWork;
    if (foundWork) {
      this.rechecks = 0;
      // a trickle found awake; one found by the last look goes on at once, so that
      // the next discovery gives relay_idle back without waiting
      if (!found.full && found.deliveries < TRICKLE_BELOW && this.current === 'awake') {
        if (stopping) return false;
        this.linger();
        return false;
      }
      this.setPhase('awake');
      return true;
    }
    if (this.current === 'last_look' || this.current === 'poll_look') {
      this.setPhase('asleep');
      return false;
    }
    if (this.current === 'open_look') {
      this.waitForCaptures();
      return false;
    }
    if (stopping) return false;
    if (this.current === 'awake' && foundWorkBefore) {
      // one more look before going idle (see the top of this file)
      this.linger();
      return false;
    }
    this.setPhase('announcing');
    if (!this.asking) void this.announce();
    return false;
  }

  /**
   * The poll timer fired; its discovery follows. Asleep with relay_idle still held, that
   * discovery is a look that keeps it (poll_look); otherwise (awake, or the lock lost
   * with its connection) a discovery like any other, which announces idleness again.
   */
  polled(): void {
    if (this.current === 'asleep' && this.idle.holding) this.setPhase('poll_look');
  }

  async close(): Promise<void> {
    this.closed = true;
    this.setPhase('awake');
    await this.idle.close();
  }

  private setPhase(next: WakePhase): void {
    if (next === this.current) return;
    this.current = next;
    this.epoch++;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /**
   * going_idle() on the idle connection, its answer read in whatever phase the relay
   * is in by then (see 'announcing' at the top of this file).
   */
  private async announce(): Promise<void> {
    this.asking = true;
    let safe: boolean;
    try {
      safe = await this.idle.goingIdle();
    } catch (error) {
      this.asking = false;
      if (this.closed || this.current !== 'announcing') return;
      // whether relay_idle was taken is unknown: a whole discovery again, a moment later
      this.log.warn({ err: error }, 'cannot announce idleness; polling meanwhile');
      this.setPhase('awake');
      this.schedule(() => this.wake());
      return;
    }
    this.asking = false;
    if (this.closed) return;
    if (this.current !== 'announcing') {
      // a discovery meanwhile woke the relay (awake or lingering now): relay_idle was
      // taken for nothing
      this.giveBack();
      return;
    }
    if (safe) {
      this.rechecks = 0;
      this.setPhase('last_look');
      this.wake();
      return;
    }
    this.waitForCaptures();
  }

  /** captures_open: ask again whether the open captures have ended, after the next backoff step. */
  private waitForCaptures(): void {
    this.setPhase('captures_open');
    const epoch = this.epoch;
    this.schedule(() => void this.checkCaptures(epoch));
  }

  /** relay_idle given back, as often as it was taken so far (the answer not waited for). */
  private giveBack(): void {
    void this.idle.awake().catch((error) => this.log.warn({ err: error }, 'cannot announce waking'));
  }

  /** The next discovery LINGER_MS from now, by itself. */
  private linger(): void {
    this.setPhase('lingering');
    this.timer = setTimeout(() => this.wake(), LINGER_MS);
  }

  /** Runs `then` after the next backoff step. */
  private schedule(then: () => void): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(then, this.recheckMs(this.rechecks++));
  }

  private recheckMs(recheck: number): number {
    return backoffMs(recheck, { baseMs: RECHECK_FIRST_MS, capMs: RECHECK_CAP_MS });
  }

  private async checkCaptures(epoch: number): Promise<void> {
    let done: boolean | null = null;
    try {
      done = await this.idle.capturesDone();
    } catch (error) {
      this.log.warn({ err: error }, 'cannot ask whether captures have ended; looking again');
    }
    // a discovery meanwhile gave relay_idle back: this answer no longer means "safe"
    if (this.closed || epoch !== this.epoch) return;
    if (done === null) {
      // relay_idle is not held (the connection was lost, or the question failed): the
      // answer proves nothing, so a whole discovery, which announces idleness again
      this.setPhase('awake');
      this.wake();
      return;
    }
    if (!done) {
      if (this.recheckMs(this.rechecks - 1) < RECHECK_CAP_MS) {
        this.schedule(() => void this.checkCaptures(epoch));
        return;
      }
      // open this long: a look for the captures beside it that have committed
      this.setPhase('open_look');
      this.wake();
      return;
    }
    this.rechecks = 0;
    this.setPhase('last_look');
    this.wake();
  }
}
