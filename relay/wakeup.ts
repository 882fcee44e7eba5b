// The relay's side of the wake-up protocol (sql/20_wakeup.sql): how a run of
// discoveries ends in sleep without missing a delivery whose capture skipped its
// NOTIFY. While discoveries find work the relay is awake and captures need not
// notify it. A discovery that finds nothing makes it announce that it is going idle
// (from then on captures notify); once every capture that skipped its NOTIFY has
// ended, one last discovery, and if that finds nothing too, the relay sleeps until
// a NOTIFY or the poll timer.
//
// Phases (one at a time, changed only here):
//   awake          relay_idle not held. Enters: before any discovery that is not the
//                  last look. Leaves: an empty discovery → last_look or captures_open.
//   last_look      relay_idle held and no capture that skipped its NOTIFY is open: one
//                  more discovery. Leaves: it finds work → awake; it finds none → asleep.
//   captures_open  relay_idle held, but a capture that skipped its NOTIFY is still
//                  open: look again in a moment (a wake-up after IDLE_RECHECK_MS).
//                  Leaves: that discovery → awake.
//   asleep         relay_idle held: captures notify. Leaves: the next discovery → awake.
import type { Logger } from 'pino';
import type { IdleAnnouncer } from './idle.ts';

export type WakePhase = 'awake' | 'last_look' | 'captures_open' | 'asleep';

/** Going idle while a capturing transaction is still open: look again this soon. */
export const IDLE_RECHECK_MS = 2;

export class WakeUp {
  private current: WakePhase = 'awake';
  private recheck: NodeJS.Timeout | undefined;
  private readonly idle: IdleAnnouncer;
  private readonly log: Logger;
  private readonly wake: () => void;

  /** `wake`: ask the loop for a discovery (after IDLE_RECHECK_MS in captures_open). */
  constructor(options: { idle: IdleAnnouncer; log: Logger; wake: () => void }) {
    this.idle = options.idle;
    this.log = options.log;
    this.wake = options.wake;
  }

  get phase(): WakePhase {
    return this.current;
  }

  /** Before a discovery: wakes up (gives relay_idle back) unless this is the last look. */
  async beforeDiscovery(): Promise<void> {
    if (this.current === 'last_look') return;
    await this.idle.awake().catch((error) => this.log.warn({ err: error }, 'cannot announce waking'));
    this.current = 'awake';
  }

  /**
   * After a discovery: true when another discovery is due at once (it found work, or
   * it is time for the last look). `stopping`: no going idle.
   */
  async afterDiscovery(found: boolean, stopping: boolean): Promise<boolean> {
    if (found) {
      this.current = 'awake';
      return true;
    }
    if (this.current === 'last_look') {
      this.current = 'asleep';
      return false;
    }
    if (stopping) return false;
    if (await this.goingIdle()) {
      this.current = 'last_look';
      return true;
    }
    this.current = 'captures_open';
    this.recheck ??= setTimeout(() => {
      this.recheck = undefined;
      this.wake();
    }, IDLE_RECHECK_MS);
    return false;
  }

  async close(): Promise<void> {
    clearTimeout(this.recheck);
    this.recheck = undefined;
    await this.idle.close();
  }

  private async goingIdle(): Promise<boolean> {
    try {
      return await this.idle.goingIdle();
    } catch (error) {
      this.log.warn({ err: error }, 'cannot announce idleness; polling meanwhile');
      return false;
    }
  }
}
