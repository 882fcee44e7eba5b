// A claim whose answer is lost (no answer within RELAY_DB_QUERY_TIMEOUT_MS) may still
// be running on the server, and commit after the relay's hand-back of the unheld
// (relay/holdings.ts, webhooks_relay.release_unheld_leases). Before, the hand-back ran
// at once, found nothing leased yet, and the claim then committed: its deliveries
// stayed leased to the relay, never sent, until their lease ran out (a minute by
// default) and a rescue took them. Now the hand-back waits for the end of every claim
// of the relay's sent before it (the advisory lock relay_claims_lock, sql/00_schemas.sql).
import test, { type ExecutionContext } from 'ava';
import { relayScene, rememberedLog, testRelay, waitForFinalDeliveries } from '../helpers/relay.ts';
import { until } from '../helpers/until.ts';

// Short, so that the test is, yet long enough that a sound statement's answer comes
// within it on a loaded machine (silent-network.test.ts says why 500 ms was not).
const QUERY_TIMEOUT_MS = 2_000;
// Far past this test's bounds: no rescue can send the deliveries and mask the defect.
const LEASE_MS = 600_000;
// How long after the lost claim's end the deliveries must have arrived: the
// hand-back waits for that end, then the claim after it takes them; a minute of
// margin on a loaded machine is still a tenth of the lease.
const SENT_WITHIN_MS = 60_000;

/**
 * A relay (its log kept, shown if the test fails) that has sent one delivery of the
 * company's webhook (its statements planned, its connections warm), and a session
 * holding a table the claim reads once it has chosen its rows (the webhooks' secrets)
 * and the hand-back does not: a claim then waits on the server, past the relay's query
 * timeout, while the hand-back is free to run. `unlock` ends the hold (once).
 */
async function lostClaimScene(t: ExecutionContext) {
  const scene = await relayScene(t);
  const { database, receiver, f, company } = scene;
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret });
  const { log, lines } = rememberedLog(5_000);
  t.teardown(() => {
    if (!t.passed) for (const line of lines()) t.log(line);
  });
  const relay = testRelay(database.url, { RELAY_DB_QUERY_TIMEOUT_MS: String(QUERY_TIMEOUT_MS), RELAY_LEASE_MS: String(LEASE_MS) }, { log });
  t.teardown(() => relay.stop());
  await relay.start();
  await f.contact(company.id, { first_name: 'Before' });
  await receiver.waitFor(1, { path: '/hook' });
  await waitForFinalDeliveries(database.pool, [webhook.id], 1);

  const locker = await database.pool.connect();
  let locked = true;
  const unlock = async () => {
    if (!locked) return;
    locked = false;
    await locker.query('commit');
    locker.release();
  };
  t.teardown(unlock);
  await locker.query('begin');
  await locker.query('lock table webhooks_private.webhook_secrets in access exclusive mode');
  return { ...scene, webhook, relay, lines, locker, unlock };
}

test('a lost claim that commits after the relay gave it up: its deliveries are handed back once it ends, and sent once, not a lease later', async (t) => {
  const { database, receiver, f, company, webhook, relay, lines, locker, unlock } = await lostClaimScene(t);
  const logged = (start: string) => lines().some((line) => (JSON.parse(line) as { msg?: string }).msg?.startsWith(start));
  // two contacts in one statement: the claim that finds them finds both
  await database.pool.query(`insert into crm.contacts (company_id, first_name) values ($1, 'First'), ($1, 'Second')`, [company.id]);
  const thisDatabase = '(select oid from pg_database where datname = current_database())';
  await until('the relay\'s claim waiting for the secrets\' table', async () => (await database.pool.query(
    `select 1 from pg_locks l join pg_stat_activity a on a.pid = l.pid
     where l.database = ${thisDatabase} and not l.granted
       and l.relation = 'webhooks_private.webhook_secrets'::regclass and a.query like '%claim_deliveries%'`)).rowCount! > 0);
  await until('the claim\'s answer given up', async () => logged('claim failed; will try again'));
  // the hand-back of the unheld, the relay in doubt: done (before, at once: it found
  // nothing leased), or waiting for the lost claim's end (an advisory lock)
  await until('the relay\'s hand-back of the unheld run, or waiting', async () =>
    logged('no deliveries leased to this relay that it did not hold') ||
    logged('released deliveries leased to this relay that it did not hold') ||
    (await database.pool.query(
      `select 1 from pg_locks l join pg_stat_activity a on a.pid = l.pid
       where l.database = ${thisDatabase} and l.locktype = 'advisory' and not l.granted
         and a.query like '%release_unheld_leases%'`)).rowCount! > 0);
  t.is(receiver.received('/hook').length, 1, 'nothing of the lost claim sent meanwhile');

  // the lost claim goes on, and commits its leases
  await unlock();
  const requests = await receiver.waitFor(3, { path: '/hook', timeoutMs: SENT_WITHIN_MS });
  const deliveries = await waitForFinalDeliveries(database.pool, [webhook.id], 3);
  t.deepEqual(deliveries.map((d) => [d.state, d.attempts]), [['succeeded', 1], ['succeeded', 1], ['succeeded', 1]],
    'the lost claim\'s attempt taken back: it sent nothing');
  t.is(new Set(requests.map((r) => r.headers['webhook-id'])).size, 3, 'each sent once');
  t.is(receiver.received('/hook').length, 3, 'and none twice');
  // handed back by the relay (its lease far off, no rescue could have): both
  const handedBack = lines()
    .map((line) => JSON.parse(line) as { msg?: string; released?: number })
    .filter((line) => line.msg?.startsWith('released deliveries leased to this relay that it did not hold'))
    .reduce((sum, line) => sum + line.released!, 0);
  t.is(handedBack, 2, 'the lost claim\'s two handed back');
});

// The same lost claim held past settle_lock_wait() (a second): the hand-back gives up
// waiting for it, and the relay, still in doubt, claims nothing and asks again at each
// poll, saying what the lost claim waits for. Claiming beside it would gain nothing
// here: every claim reads the table it waits for. Once it ends, the relay hands back
// what it leased and claims again.
test('a lost claim held past settle_lock_wait(): the relay claims nothing, names the lock the claim waits for, and claims again once it ends', async (t) => {
  const { database, receiver, f, company, webhook, relay, lines, locker, unlock } = await lostClaimScene(t);
  const entries = () => lines().map((line) => JSON.parse(line) as { msg?: string; time: number; err?: { message?: string } });
  const { rows: [{ pid: lockerPid }] } = await locker.query<{ pid: number }>('select pg_backend_pid() as pid');
  await f.contact(company.id, { first_name: 'First' });
  await until('the claim\'s answer given up', async () => entries().some((e) => e.msg === 'claim failed; will try again'));
  // the hand-back gives up after settle_lock_wait(): the relay's claim fails, naming the wait
  const waited = `a claim or release of relay ${relay.settings.relayId} sent before is still running, ` +
    `waiting for a lock on webhooks_private.webhook_secrets (held by pid ${lockerPid})`;
  await until('the hand-back given up, the lock named', async () => entries().some((e) =>
    e.msg?.startsWith('cannot yet hand back deliveries leased to this relay that it does not hold') && e.err?.message?.startsWith(waited)));
  // and asked again at later polls, still in doubt: no claim since the lost one
  const claimsBefore = relay.stats.claims;
  const warnedAt = entries().find((e) => e.err?.message?.startsWith(waited))!.time;
  await until('the hand-back asked again', async () =>
    (await database.pool.query(`select 1 from pg_stat_activity where datname = current_database()
                                and wait_event_type = 'Lock' and query like '%release_unheld_leases%'
                                and query_start > to_timestamp($1 / 1000.0)`, [warnedAt])).rowCount! > 0);
  t.is(relay.stats.claims, claimsBefore, 'no claim while in doubt');
  t.is(receiver.received('/hook').length, 1, 'nothing sent meanwhile');

  await unlock();
  await receiver.waitFor(2, { path: '/hook', timeoutMs: SENT_WITHIN_MS });
  const deliveries = await waitForFinalDeliveries(database.pool, [webhook.id], 2);
  t.deepEqual(deliveries.map((d) => [d.state, d.attempts]), [['succeeded', 1], ['succeeded', 1]]);
  t.true(entries().some((e) => e.msg === 'the lost claim or release ended: handing back again'), 'the relay says the wait is over');
  t.true(entries().some((e) => e.msg === 'claiming again after errors'), 'and that it claims again');
});
