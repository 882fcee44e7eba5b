// A discovery keeps where it stands in settings of its database session (sql/28_lanes.sql:
// the company its walk stopped after, the companies' places, the mark of a round of
// fruitless windows and the round's note). Its claims must all run on one connection:
// one that lands on a connection the round's last claim did not use finds that
// connection's marks, or none, and the round walks on past where it began
// (docs/relay-fairness.md). The relay's pool also carries its settles, releases, the
// rescuer's, the backfiller's and the quiet polls' statements: any of them that held
// the connection a claim last used, as the next claim began, sent that claim to
// another connection (11 claims for a round of six windows, until 2026-12-07). The
// claims now run on a connection of their own (relay/database.ts, claimPool).
import test from 'ava';
import type { Claimed } from '../../relay/queries.ts';
import { deadCompanies } from '../helpers/dead-companies.ts';
import { relayAsleepInProcess, relayScene, testRelay } from '../helpers/relay.ts';

const DEAD_COMPANIES = 1_500;
const BATCH = 32; // a discovery's window: 256 webhooks (discovery_window)
const WINDOWS = Math.ceil(DEAD_COMPANIES / 256);

test('a discovery walks the lanes once round while other statements of the relay\'s pool take the connection its last claim ran on', async (t) => {
  const { database } = await relayScene(t);
  await deadCompanies(database.pool, DEAD_COMPANIES);
  // (no poll, rescue nor backfill step comes round during the test: the statements
  // beside the claims are the test's own, one before each claim)
  const relay = testRelay(database.url, {
    RELAY_POLL_INTERVAL_MS: '600000', RELAY_BATCH_SIZE: String(BATCH),
    RELAY_RESCUE_INTERVAL_MS: '600000', RELAY_BACKFILL_INTERVAL_MS: '600000',
  });
  t.teardown(() => relay.stop());
  const internals = relay as unknown as {
    claim(only: string[] | null): Promise<Claimed>;
    discover(): Promise<Claimed>;
  };
  // as each claim begins, another statement holds the pool's connection used last (the
  // pool hands out the one given back last), until the claim has taken its own
  const claim = internals.claim.bind(relay);
  internals.claim = async (only) => {
    const other = await relay.pool.connect();
    try {
      const claimed = claim(only);
      // (the pool hands a waiting caller its connection on the next tick)
      await new Promise((resolve) => setImmediate(resolve));
      other.release();
      return await claimed;
    } catch (error) {
      other.release();
      throw error;
    }
  };
  // the claims of each discovery (a round of windows, up to once round the lanes)
  const claimsOf: number[] = [];
  const discover = internals.discover.bind(relay);
  internals.discover = async () => {
    const before = relay.stats.claims;
    try {
      return await discover();
    } finally {
      claimsOf.push(relay.stats.claims - before);
    }
  };

  await relay.start();
  // its first discovery and the last look: each a round of the lanes, all fruitless
  await relayAsleepInProcess(relay, database.pool, 30_000);
  t.log(`claims of each discovery: ${claimsOf.join(', ')} (${WINDOWS} windows hold every lane)`);
  t.true(claimsOf.length >= 2, `${claimsOf.length} discoveries`);
  for (const claims of claimsOf) t.true(claims >= WINDOWS - 1 && claims <= WINDOWS + 1, `${claims} claims in one discovery`);
});
