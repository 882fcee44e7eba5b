// Quiet polls: a sleeping relay's poll timer brings a discovery (wakeup.ts, poll_look)
// for what falls due with no NOTIFY, and each walked every lane with deliveries waiting,
// one index probe a lane, even when none could send for an hour: 20,000 webhooks each
// with a retry an hour away cost Postgres a quarter to two fifths of a core, asleep.
// So a poll skips its walk when nothing can have become sendable since the last round
// of discoveries that came round finding nothing (docs/relay.md, "Quiet polls"):
//   - that round began in a look that held relay_idle (the last look, or a poll's):
//     every capture since notified, or holds capturing;
//   - no wake-up since it began (a NOTIFY, a rescue, a release, the listener or the
//     idle connection reconnecting, a webhook changed, a result this relay wrote);
//   - the database says (webhooks_relay.quiet_since before the round,
//     webhooks_relay.poll_may_skip at the poll): no delivery written since it began
//     (their ids' sequence), nobody holds capturing now nor did as it began (a
//     two-phase transaction prepared before it, committed after), and no lane it
//     walked may send yet (due, its breaker's wait over, its pacing within reach);
//   - at most QUIET_POLLS_MAX polls in a row: a walk after them, for what none of the
//     above sees (a DBA's update of the queue itself, a relay that died right after
//     writing a retry).
import type { QuietRound } from './queries.ts';

/** A sleeping relay's poll skips its walk at most this many times in a row: a walk at least every QUIET_POLLS_MAX + 1 polls. */
export const QUIET_POLLS_MAX = 9;

export class QuietPolls {
  /** the last round that came round fruitless, while nothing has disturbed it */
  private round: QuietRound | null = null;
  /** the deliveries written as it began */
  private written = '';
  /** polls skipped since that round */
  private skipped = 0;
  /** wake-ups other than the poll timer's, so far */
  private wakes = 0;
  private asking = false;

  /**
   * A poll's question is on its way: a poll meanwhile does nothing (that question's
   * answer decides). Asked again beside it, the poll found it asking, forgot the round
   * and walked, on a loaded machine whose answers took longer than a poll.
   */
  get deciding(): boolean {
    return this.asking;
  }

  /** A wake-up other than the poll timer's, or anything else that may have made a lane sendable. */
  disturbed(): void {
    this.wakes++;
    this.round = null;
  }

  /** Before a discovery: what ended() compares with. */
  begin(): number {
    return this.wakes;
  }

  /**
   * After a discovery that began at `since` (begin()): `round`, its last claim's round
   * if it came round fruitless; `began`, the rounds its claims began; `look`, it was a
   * look that held relay_idle throughout and the relay is asleep after it; `written`,
   * the deliveries written before its first claim (null: a capture was open, or unknown).
   */
  ended(since: number, round: QuietRound | null, began: ReadonlySet<string>, look: boolean, written: string | null): void {
    this.skipped = 0;
    const quiet = look && written !== null && since === this.wakes && round !== null && began.has(round.token);
    this.round = quiet ? round : null;
    this.written = written ?? '';
  }

  /**
   * The poll timer fired: true when its walk may be skipped (`ask`: the database's
   * part, webhooks_relay.poll_may_skip). Else the round is forgotten, and the poll walks.
   */
  async maySkip(ask: (round: QuietRound, written: string) => Promise<boolean>): Promise<boolean> {
    // (the loop asks no more while a question is on its way: deciding)
    if (this.asking) return true;
    const round = this.round;
    if (round === null || this.skipped >= QUIET_POLLS_MAX) {
      this.round = null;
      return false;
    }
    const wakes = this.wakes;
    this.asking = true;
    let skip = false;
    try {
      skip = await ask(round, this.written);
    } catch {
      // the poll walks: the answer proves nothing
    } finally {
      this.asking = false;
    }
    if (!skip || wakes !== this.wakes || this.round !== round) {
      if (this.round === round) this.round = null;
      return false;
    }
    this.skipped++;
    return true;
  }
}
