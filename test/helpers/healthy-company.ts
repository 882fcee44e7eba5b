// A healthy company beside a noisy one (test/fleet): how many of the relay's claims
// each of its changes waits for, counted, never timed (speed is bench/'s to measure:
// a timed bound fails on a loaded machine, a count of claims does not).
import type { ExecutionContext } from 'ava';
import type { TestDatabase } from './db.ts';
import type { factories } from './factories.ts';
import type { Receiver } from './receiver.ts';
import { testRelay } from './relay.ts';
import type { Relay } from '../../relay/loop.ts';
import type { DeliveryJob } from '../../relay/queries.ts';

type Factories = ReturnType<typeof factories>;

/** What came between a change's commit and the claim that took its delivery. */
export interface ClaimsBetween {
  /** discoveries (claims that walk the queue; not refills) */
  discoveries: number;
  /** claims, discoveries and refills together */
  claims: number;
}

/**
 * Counts, for each claim of the relay that takes a delivery of `webhookId`, the
 * discoveries and claims the relay had made by then, that claim included. Read as
 * the claim's answer is handed to the relay's holdings: the claim is counted in the
 * same turn, so read after it. (Counted up to the delivery's arrival instead, a
 * loaded machine's slow send let more claims in.)
 */
export function claimsTaking(relay: Relay, webhookId: string): ClaimsBetween[] {
  const taken: ClaimsBetween[] = [];
  const holdings = (relay as unknown as { holdings: { claimed(jobs: readonly DeliveryJob[]): void } }).holdings;
  const claimed = holdings.claimed.bind(holdings);
  holdings.claimed = (jobs) => {
    claimed(jobs);
    if (jobs.some((job) => job.webhookId === webhookId)) {
      queueMicrotask(() => taken.push(claimsSoFar(relay)));
    }
  };
  return taken;
}

function claimsSoFar(relay: Relay): ClaimsBetween {
  return { discoveries: relay.stats.claims - relay.stats.refills, claims: relay.stats.claims };
}

/**
 * A healthy company, its webhook to a receiver that answers at once, and a relay
 * (in this process, its claims counted; its settings: `relayEnvironment`, else the
 * tests' defaults). Once the relay has delivered a first change, changes(n) writes n
 * changes one by one, each once the one before has arrived, and says for each how
 * many discoveries and claims came between its commit and the claim that took it.
 * Hanging requests end when the receiver drops them, before the relay stops
 * (teardowns run last first).
 */
export async function healthyCompany(
  t: Pick<ExecutionContext, 'teardown'>,
  scene: { database: TestDatabase; receiver: Receiver; f: Factories },
  options: { relayEnvironment?: Record<string, string> } = {},
) {
  const { database, receiver, f } = scene;
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/healthy') });
  receiver.route('/healthy', { secret: webhook.secret, otherwise: 200 });
  const relay = testRelay(database.url, options.relayEnvironment);
  t.teardown(() => relay.stop());
  t.teardown(() => receiver.close());
  const taken = claimsTaking(relay, webhook.id);
  await relay.start();
  await f.contact(company.id);
  await receiver.waitFor(1, { path: '/healthy', timeoutMs: 60_000 });

  /**
   * Each change's discoveries and claims between its commit and the claim that took
   * it, and whether each request arrived signed with the webhook's secret.
   */
  async function changes(count: number): Promise<{ between: ClaimsBetween[]; verified: boolean[] }> {
    const between: ClaimsBetween[] = [];
    const verified: boolean[] = [];
    for (let i = 0; i < count; i++) {
      const arrived = receiver.received('/healthy').length;
      const claimsBefore = taken.length;
      await f.contact(company.id);
      const before = claimsSoFar(relay);
      const requests = await receiver.waitFor(arrived + 1, { path: '/healthy', timeoutMs: 30_000 });
      verified.push(requests.at(-1)!.verified === true);
      if (taken.length !== claimsBefore + 1) throw new Error(`change ${i + 1}: ${taken.length - claimsBefore} claims took the healthy company's deliveries, not one`);
      const at = taken.at(-1)!;
      between.push({ discoveries: at.discoveries - before.discoveries, claims: at.claims - before.claims });
    }
    return { between, verified };
  }
  return { company, webhook, relay, changes };
}
