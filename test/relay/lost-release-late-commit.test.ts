// A release whose answer is lost (no answer within RELAY_DB_QUERY_TIMEOUT_MS) may still
// be running on the server, and commit after the relay's hand-back of the unheld
// (relay/holdings.ts, webhooks_relay.release_unheld_leases). Without the wait for it
// (the advisory lock relay_claims_lock each release holds shared, and the hand-back
// takes exclusively), the hand-back released its delivery, the relay's next claim
// leased it again, and the release, committing then, handed that lease back too: the
// delivery went twice under one webhook-id (this test, the lock commented out of
// release_deliveries). Now the hand-back waits for the release's end, and claims wait
// with it.
import test from 'ava';
import { gatedReplies } from '../helpers/receiver.ts';
import { relayScene, rememberedLog, testRelay, waitForFinalDeliveries } from '../helpers/relay.ts';
import { until } from '../helpers/until.ts';

// as in lost-claim-late-commit.test.ts: short, yet long enough for a sound answer on a loaded machine
const QUERY_TIMEOUT_MS = 2_000;
// far past this test's bounds: no rescue can send or hand back a delivery and mask the defect
const LEASE_MS = 600_000;
// the advisory key the test holds, and the release's update of the queue waits for
const HOLD_KEY = 815_001;

test('a lost release that commits after the relay gave it up: the hand-back waits for it, and its delivery is sent once', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/a') });
  // the first request answered at once (warming up), the second held until the test opens it
  const gate = gatedReplies(1);
  receiver.route('/a', { secret: webhook.secret, replies: [200, ...gate.replies] });
  receiver.route('/b', { secret: webhook.secret });
  const { log, lines } = rememberedLog(5_000);
  t.teardown(() => {
    gate.opens[0]!();
    if (!t.passed) for (const line of lines()) t.log(line);
  });
  const logged = (start: string) => lines().some((line) => (JSON.parse(line) as { msg?: string }).msg?.startsWith(start));
  // one request at a time to the webhook, one more delivery claimed ahead: the second
  // of two waits in the relay, and is released when the webhook changes
  const relay = testRelay(database.url, {
    RELAY_DB_QUERY_TIMEOUT_MS: String(QUERY_TIMEOUT_MS), RELAY_LEASE_MS: String(LEASE_MS),
    RELAY_PER_WEBHOOK_IN_FLIGHT: '1', RELAY_PREFETCH: '1',
  }, { log });
  t.teardown(() => relay.stop());
  await relay.start();
  await f.contact(company.id, { first_name: 'Before' });
  await receiver.waitFor(1, { path: '/a' });
  await waitForFinalDeliveries(database.pool, [webhook.id], 1);

  // The release is held on the server after it has read which rows to release and
  // before it writes them, where a statement slow under load would be. No lock of a
  // table or row does that alone: the hand-back runs the same function on the same
  // rows. So a statement trigger of this test's, on the release's statement alone
  // (by its text), waits for a key the test holds.
  await database.pool.query(`
    create function public.hold_release() returns trigger language plpgsql as $$
    begin
      if current_query() like '%release_deliveries(%' then
        -- (past the release's own lock_timeout: it would give up its first pass
        -- after settle_lock_wait() and wait again in its second, holding the rows)
        perform set_config('lock_timeout', '0', true);
        perform pg_advisory_xact_lock_shared(${HOLD_KEY});
      end if;
      return null;
    end;
    $$`);
  await database.pool.query(`create trigger hold_release before update on webhooks.delivery_queue
                             for each statement execute function public.hold_release()`);
  const holder = await database.pool.connect();
  let held = true;
  const letGo = async () => {
    if (!held) return;
    held = false;
    await holder.query('select pg_advisory_unlock($1)', [HOLD_KEY]);
    holder.release();
  };
  t.teardown(letGo);
  await holder.query('select pg_advisory_lock($1)', [HOLD_KEY]);

  // two deliveries: the first in flight (its answer held), the second waiting in the relay
  await f.contact(company.id, { first_name: 'First' });
  await f.contact(company.id, { first_name: 'Second' });
  await receiver.waitFor(2, { path: '/a' });
  const second = async () => (await database.pool.query<{ locked_by: string | null }>(
    `select q.locked_by from webhooks.delivery_queue q
     where q.webhook_id = $1 order by q.delivery_id desc limit 1`, [webhook.id])).rows[0];
  await until('the second delivery claimed, waiting in the relay', async () => (await second())?.locked_by != null);

  // the webhook changes: the relay releases the waiting delivery, and its release waits
  await database.pool.query('update webhooks.webhooks set url = $2 where id = $1', [webhook.id, receiver.url('/b')]);
  const thisDatabase = '(select oid from pg_database where datname = current_database())';
  const waiting = async (query: string) => (await database.pool.query(
    `select 1 from pg_locks l join pg_stat_activity a on a.pid = l.pid
     where l.database = ${thisDatabase} and l.locktype = 'advisory' and not l.granted and a.query like $1`, [`%${query}%`])).rowCount! > 0;
  await until('the release waiting on the server', () => waiting('release_deliveries('));
  await until('the release\'s answer given up', async () => logged('cannot release deliveries claimed but not sent'));
  // the hand-back of the unheld, the relay in doubt: waiting for the lost release's
  // end (an advisory lock), or (without that lock) done, and the delivery leased again
  await until('the hand-back waiting, or the delivery handed back and claimed again', async () =>
    (await waiting('release_unheld_leases')) ||
    (logged('released deliveries leased to this relay that it did not hold') && (await second())?.locked_by != null));

  // the lost release goes on, and commits
  await letGo();
  gate.opens[0]!();
  const deliveries = await waitForFinalDeliveries(database.pool, [webhook.id], 3);
  await until('nothing of the webhook left in the queue', async () =>
    (await database.pool.query('select 1 from webhooks.delivery_queue where webhook_id = $1', [webhook.id])).rowCount === 0);
  t.deepEqual(deliveries.map((d) => [d.state, d.attempts]), [['succeeded', 1], ['succeeded', 1], ['succeeded', 1]]);
  const sent = [...receiver.received('/a'), ...receiver.received('/b')];
  t.is(new Set(sent.map((r) => r.headers['webhook-id'])).size, 3, 'each sent');
  t.is(sent.length, 3, 'and none twice');
  t.is(receiver.received('/b').length, 1, 'the released one sent once, to the webhook\'s new URL');
});
