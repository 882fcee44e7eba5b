// The claim scheduler: when the relay claims, and what kind of claim. It is always in
// exactly one mode, changed only by setMode(), which refuses a transition not listed
// here. Pure logic: the loop (loop.ts) does the I/O and reports back.
//
// Two kinds of claim (webhooks_relay.claim_deliveries):
//   discovery  "what is due, anywhere?": asked for by wake() (a NOTIFY, the listener
//              (re)connecting, the poll timer, a rescue or a release) and repeated
//              while it finds work (wakeup.ts: how soon, and how a run of them ends).
//   refill     a backlogged webhook's queue runs low: its next rows straight from its
//              own index range, without walking the other webhooks' queues.
//
// Modes:
//   new        built, not started. Enters: at construction. Leaves: start() → waiting.
//              Wake-ups are ignored.
//   waiting    no claim running, nothing to claim. Enters: when a claim round ends with
//              nothing left to ask for, or a claim fails (the poll timer and the
//              listener bring the next try). Leaves: a kick (wake-up, a finished
//              request of a backlogged webhook, a written batch) → claiming, full,
//              held_back or waiting again; stop() → stopping.
//   claiming   one claim on its way. Enters: from waiting, full or held_back when a
//              claim is due. Leaves: when the claim's deliveries are dispatched, for the
//              next claim (claiming again) or whatever nextStep() says. Wake-ups
//              meanwhile only mark a discovery due: it follows this claim at once.
//   full       the relay holds all it may (in flight and queued). Enters: when a claim
//              is due but there is no room. Leaves: a finished request kicks.
//   held_back  back-pressure: more than UNSETTLED_BATCHES_LIMIT batches of results wait
//              to be written, so no claim (each delivery sent meanwhile would be sent
//              again if the relay stopped before writing it). Enters: when a claim is
//              due. Leaves: the next written batch kicks.
//   lanes_busy every webhook the last claim could serve was being claimed by another
//              relay at that moment; the claim did not wait for them (a waiting claim
//              holds its snapshot: sql/28_lanes.sql). No claim until a timer of
//              lanesBusyWait() runs out: 40 ms, twice as long after each claim that
//              finds them busy again, at most LANES_BUSY_RETRY_MAX_MS, back to 40 ms
//              after any other claim (four relays that could also claim again at
//              each finished request made 2,224 empty claims in a burn-down of
//              30,000, against 270–570 with a rest of 10–40 ms). Requests and settles go
//              on meanwhile. Enters: from claiming. Leaves: the timer → waiting, with a
//              discovery due.
//   stopping   stop() was called: no claim starts any more. Enters: from any mode.
//              Leaves: never.

export type LoopMode = 'new' | 'waiting' | 'claiming' | 'full' | 'held_back' | 'lanes_busy' | 'stopping';

/**
 * Back-pressure: no new claim while this many batches of results wait to be written.
 * Sending faster than the database takes the results only grows a queue whose
 * deliveries are sent again if the relay stops before writing them.
 */
export const UNSETTLED_BATCHES_LIMIT = 2;

/**
 * The first wait after a claim found every lane it could serve busy (lanes_busy): a
 * claim holds its lanes a few milliseconds. Doubled while they stay busy, up to the
 * most. The other relays serve those lanes meanwhile, so a longer rest costs the
 * fleet little: with four relays on one webhook, 40–160 ms against 10–40 left half
 * the empty claims and took 12 % less Postgres CPU a delivery, for as many
 * deliveries a second, behind a slow receiver too (BENCHMARKS.md, "A longer rest when
 * another relay is claiming").
 */
export const LANES_BUSY_RETRY_MS = 40;
export const LANES_BUSY_RETRY_MAX_MS = 160;

const TRANSITIONS: Record<LoopMode, readonly LoopMode[]> = {
  new: ['waiting', 'stopping'],
  waiting: ['claiming', 'full', 'held_back', 'waiting', 'stopping'],
  claiming: ['claiming', 'waiting', 'full', 'held_back', 'lanes_busy', 'stopping'],
  full: ['claiming', 'full', 'held_back', 'waiting', 'stopping'],
  held_back: ['claiming', 'full', 'held_back', 'waiting', 'stopping'],
  lanes_busy: ['waiting', 'stopping'],
  stopping: ['stopping'],
};

/** What the loop does next. */
export type Step =
  | { kind: 'discovery' }
  | { kind: 'refill'; webhooks: string[] }
  | { kind: 'rest'; mode: 'waiting' | 'full' | 'held_back' };

/** What nextStep() needs to know of the relay's state. */
export interface SchedulerView {
  /** the relay holds all it may */
  full: boolean;
  /** results waiting to be written */
  unsettled: number;
  /** the most results one settle writes (settle.ts) */
  settleBatchSize: number;
  /** backlogged webhooks whose queue runs low */
  refillsDue: () => string[];
}

export class Scheduler {
  private current: LoopMode = 'new';
  /** a wake-up asked for a discovery that has not run yet */
  private discoveryDue = false;
  /** the next wait in lanes_busy */
  private lanesBusyMs = LANES_BUSY_RETRY_MS;
  private readonly onMode: (from: LoopMode, to: LoopMode) => void;

  constructor(options: { onMode?: (from: LoopMode, to: LoopMode) => void } = {}) {
    this.onMode = options.onMode ?? (() => {});
  }

  get mode(): LoopMode {
    return this.current;
  }

  get wantsDiscovery(): boolean {
    return this.discoveryDue;
  }

  setMode(next: LoopMode): void {
    const from = this.current;
    if (!TRANSITIONS[from].includes(next)) throw new Error(`relay loop: no transition from ${from} to ${next}`);
    this.current = next;
    if (from !== next) this.onMode(from, next);
  }

  /** A discovery is due (a wake-up); it runs with the next claim. */
  requestDiscovery(): void {
    this.discoveryDue = true;
  }

  /** True when a kick may start a claim round now (otherwise it folds into the current one, or is moot). */
  mayStartRound(): boolean {
    return this.current === 'waiting' || this.current === 'full' || this.current === 'held_back';
  }

  /**
   * After a claim: how long to rest in lanes_busy when it found every lane busy
   * (null: it did not), the next such wait doubled; any other claim starts again from
   * LANES_BUSY_RETRY_MS.
   */
  lanesBusyWait(lanesBusy: boolean): number | null {
    if (!lanesBusy) {
      this.lanesBusyMs = LANES_BUSY_RETRY_MS;
      return null;
    }
    const wait = this.lanesBusyMs;
    this.lanesBusyMs = Math.min(wait * 2, LANES_BUSY_RETRY_MAX_MS);
    return wait;
  }

  /** After a claim: is another one due at once? */
  moreToClaim(view: Pick<SchedulerView, 'refillsDue'>): boolean {
    return this.current !== 'stopping' && (this.discoveryDue || view.refillsDue().length > 0);
  }

  /**
   * The next step, from the relay's state: rest (full, held back, nothing to claim),
   * or a claim; taking a discovery clears the request for it.
   */
  nextStep(view: SchedulerView): Step {
    if (view.full) return { kind: 'rest', mode: 'full' };
    if (view.unsettled > UNSETTLED_BATCHES_LIMIT * view.settleBatchSize) return { kind: 'rest', mode: 'held_back' };
    if (this.discoveryDue) {
      this.discoveryDue = false;
      return { kind: 'discovery' };
    }
    const webhooks = view.refillsDue();
    if (webhooks.length > 0) return { kind: 'refill', webhooks };
    return { kind: 'rest', mode: 'waiting' };
  }
}
