// The deliveries this relay holds, and the doubt a lost claim answer leaves.
//
// A claim commits on the server and its answer travels back. When the connection
// breaks or goes silent on the way back (a query without an answer within
// RELAY_DB_QUERY_TIMEOUT_MS), the relay cannot tell whether the claim ran; if it did,
// it leased deliveries the relay never heard of. They used to wait for their lease to
// run out (RELAY_LEASE_MS, a minute by default). Now a claim that fails so leaves the
// relay in doubt, and before its next claim (one claim runs at a time) it hands back
// every delivery leased to it that it does not hold (webhooks_relay.release_unheld_leases).
// A release that fails so leaves the same doubt: what it handed back may still be
// leased to the relay, which no longer holds it. The lost statement may still be
// running on the server: the hand-back waits for its end (an advisory lock each
// claim and release holds shared, sql/30_delivery.sql), else a claim that committed
// after it left its deliveries leased, unsent, until their lease ran out.
//
// Held: from the claim that leased it until its result is written (settle.ts) or it
// is released (handed back unsent). In flight, queued and paced deliveries all are.
// Counted by claim, not by delivery: a delivery may be claimed again while the result
// of its earlier attempt still waits to be written (that settle's answer was lost),
// and writing that result must not make the relay forget the attempt in flight (a
// release of the unheld would hand its lease back, and it would go twice at once).
import type { DeliveryJob } from './queries.ts';

export class Holdings {
  /** each claim's job, until it ends */
  private readonly jobs = new Set<DeliveryJob>();
  /**
   * Deliveries whose request was made and whose result could not be written (the
   * settle left it out, or refused it on its own), by id, until (Date.now()) their
   * lease has run out: still leased to this relay, and the rescue is to record that
   * attempt. Handed back as unsent, the attempt went missing from its history and
   * its count, and the delivery went again at once.
   */
  private readonly unwritten = new Map<string, number>();
  private doubt = false;

  /** A claim or a release whose connection failed before its answer came: leases the relay does not hold may exist. */
  get inDoubt(): boolean {
    return this.doubt;
  }

  get size(): number {
    return this.jobs.size;
  }

  claimed(jobs: readonly DeliveryJob[]): void {
    for (const job of jobs) this.jobs.add(job);
  }

  /**
   * A webhook changed (its URL, secret or state): each of its deliveries held now is
   * marked so, and its result, a success's too, tells the settle the URL it went to
   * (DeliveryJob.webhookChanged). A look at every held job: the notices are rare.
   */
  webhookChanged(webhookId: string): void {
    for (const job of this.jobs) if (job.webhookId === webhookId) job.webhookChanged = true;
  }

  /** The webhooks of the deliveries held now. */
  webhookIds(): Set<string> {
    return new Set([...this.jobs].map((job) => job.webhookId));
  }

  /** No longer held: its result is written, or it was handed back. */
  ended(jobs: Iterable<DeliveryJob>): void {
    for (const job of jobs) this.jobs.delete(job);
  }

  /** A request made whose result was not written: its delivery is this relay's until `until` (its lease's end, or later). */
  unwrittenUntil(job: DeliveryJob, until: number, now = Date.now()): void {
    this.forgetUnwritten(now);
    this.unwritten.set(job.deliveryId, Math.max(until, this.unwritten.get(job.deliveryId) ?? 0));
  }

  /** Those whose lease is over, from the oldest noted (their ends come in about that order). */
  private forgetUnwritten(now: number): void {
    for (const [id, until] of this.unwritten) {
      if (until > now) break;
      this.unwritten.delete(id);
    }
  }

  /** A claim or a release got no answer (its connection failed): it may or may not have run. */
  answerLost(): void {
    this.doubt = true;
  }

  /**
   * Ends the doubt: `release` is given every delivery held now and hands back the
   * others leased to this relay. Resolves with what it released; rejects (the doubt
   * remains) if it does.
   */
  async endDoubt(release: (heldIds: string[]) => Promise<number>, now = Date.now()): Promise<number> {
    this.forgetUnwritten(now);
    const released = await release([...new Set([...Array.from(this.jobs, (job) => job.deliveryId), ...this.unwritten.keys()])]);
    this.doubt = false;
    return released;
  }
}
