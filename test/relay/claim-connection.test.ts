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
import test, { type ExecutionContext } from 'ava';
import type { Relay } from '../../relay/loop.ts';
import type { Claimed } from '../../relay/queries.ts';
import type { TestDatabase } from '../helpers/db.ts';
import { deadCompanies } from '../helpers/dead-companies.ts';
import { relayAsleepInProcess, relayScene, testRelay } from '../helpers/relay.ts';
import { until } from '../helpers/until.ts';

const DEAD_COMPANIES = 1_500;
const BATCH = 32; // a discovery's window: 256 webhooks (discovery_window)
const WINDOWS = Math.ceil(DEAD_COMPANIES / 256);

/**
 * A relay in this process beside DEAD_COMPANIES companies each with a retry waiting, its
 * claims of BATCH; `beforeClaim` runs as each claim begins (n: 1 for the first), and
 * `claimsOf` lists the claims of each discovery (a round of windows) once it ends.
 */
async function relayBesideDeadCompanies(
  t: ExecutionContext, database: TestDatabase, beforeClaim: (n: number, claim: () => Promise<Claimed>) => Promise<Claimed>,
): Promise<{ relay: Relay; claimsOf: number[] }> {
  await deadCompanies(database.pool, DEAD_COMPANIES);
  // (no poll, rescue nor backfill step comes round during the test: the statements
  // beside the claims are the test's own)
  const relay = testRelay(database.url, {
    RELAY_POLL_INTERVAL_MS: '600000', RELAY_BATCH_SIZE: String(BATCH),
    RELAY_RESCUE_INTERVAL_MS: '600000', RELAY_BACKFILL_INTERVAL_MS: '600000',
  });
  t.teardown(() => relay.stop());
  const internals = relay as unknown as {
    claim(only: string[] | null): Promise<Claimed>;
    discover(): Promise<Claimed>;
  };
  const claim = internals.claim.bind(relay);
  let claims = 0;
  internals.claim = (only) => beforeClaim(++claims, () => claim(only));
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
  return { relay, claimsOf };
}

test('a discovery walks the lanes once round while other statements of the relay\'s pool take the connection its last claim ran on', async (t) => {
  const { database } = await relayScene(t);
  // as each claim begins, another statement holds the pool's connection used last (the
  // pool hands out the one given back last), until the claim has taken its own
  const { relay, claimsOf } = await relayBesideDeadCompanies(t, database, async (_n, claim) => {
    const other = await relay.pool.connect();
    try {
      const claimed = claim();
      // (the pool hands a waiting caller its connection on the next tick)
      await new Promise((resolve) => setImmediate(resolve));
      other.release();
      return await claimed;
    } catch (error) {
      other.release();
      throw error;
    }
  });

  await relay.start();
  // its first discovery and the last look: each a round of the lanes, all fruitless
  await relayAsleepInProcess(relay, database.pool, 30_000);
  t.log(`claims of each discovery: ${claimsOf.join(', ')} (${WINDOWS} windows hold every lane)`);
  t.true(claimsOf.length >= 2, `${claimsOf.length} discoveries`);
  for (const claims of claimsOf) t.true(claims >= WINDOWS - 1 && claims <= WINDOWS + 1, `${claims} claims in one discovery`);
});

test('the claims\' connection ended between two claims of a round: the next claim opens another, whose walk starts afresh and comes round once', async (t) => {
  const { database } = await relayScene(t);
  // ended by a DBA (pg_terminate_backend) as the third claim begins, and gone from the
  // relay (its loss heard) before that claim is sent
  const LOST_BEFORE = 3;
  const pids: number[] = [];
  const { relay, claimsOf } = await relayBesideDeadCompanies(t, database, async (n, claim) => {
    const { rows: [{ pid }] } = await relay.claimPool.query('select pg_backend_pid() as pid');
    pids.push(pid);
    if (n === LOST_BEFORE) {
      await database.pool.query('select pg_terminate_backend($1)', [pid]);
      await until('the relay hears that its claims\' connection is lost', async () => relay.claimPool.totalCount === 0);
    }
    return claim();
  });

  await relay.start();
  await relayAsleepInProcess(relay, database.pool, 30_000);
  t.log(`claims of each discovery: ${claimsOf.join(', ')} (${WINDOWS} windows hold every lane)`);
  // the claims before the loss, then a round of the new connection's from its first
  // window (no mark of the round, no place: as a new relay's)
  const [first, ...later] = claimsOf;
  const afterLoss = first! - (LOST_BEFORE - 1);
  t.true(afterLoss >= WINDOWS - 1 && afterLoss <= WINDOWS + 1, `${first} claims in the discovery the loss came in`);
  t.true(later.length >= 1);
  for (const claims of later) t.true(claims >= WINDOWS - 1 && claims <= WINDOWS + 1, `${claims} claims in one discovery`);
  // one connection before the loss, one after it
  t.is(new Set(pids.slice(0, LOST_BEFORE)).size, 1);
  t.is(new Set(pids.slice(LOST_BEFORE)).size, 1);
  t.not(pids[LOST_BEFORE], pids[0]);
});
