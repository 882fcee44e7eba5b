// With the poll timer out of the picture, the wake-up protocol alone must bring every
// delivery (sql/20_wakeup.sql): an idle relay is woken by the NOTIFY of the next
// capturing transaction, and a relay that is awake finds new work without one.
import test, { type ExecutionContext } from 'ava';
import { LOCK_CLASS, LOCK_KEYS } from '../../relay/engine-names.ts';
import { relayAsleep, relayScene, testRelay, waitForFinalDeliveries } from '../helpers/relay.ts';
import { inTransaction } from '../helpers/sql.ts';

const HOUR = String(60 * 60 * 1000);

test('a sleeping relay is woken by NOTIFY, and a busy one needs none', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret });
  const relay = testRelay(database.url, { RELAY_POLL_INTERVAL_MS: HOUR });
  await relay.start();
  try {
    await relayAsleep(database.pool);
    await f.contact(company.id);
    await receiver.waitFor(1, { path: '/hook', timeoutMs: 10_000 });

    // one change after another, each its own transaction: whether each finds the relay
    // asleep (and notifies) or awake (and does not), every one arrives
    for (let i = 0; i < 30; i++) await f.contact(company.id);
    const arrived = await receiver.waitFor(31, { path: '/hook', timeoutMs: 10_000 });
    t.is(new Set(arrived.map((r) => r.headers['webhook-id'])).size, 31);

    await relayAsleep(database.pool);
    await f.contact(company.id);
    const all = await receiver.waitFor(32, { path: '/hook', timeoutMs: 10_000 });
    t.is(new Set(all.map((r) => r.headers['webhook-id'])).size, 32);
  } finally {
    await relay.stop();
  }
});

test('a replay and a test send wake a sleeping relay: written through the view, due now', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret });
  const relay = testRelay(database.url, { RELAY_POLL_INTERVAL_MS: HOUR });
  await relay.start();
  const asAdmin = (sql: string, values: unknown[]) => inTransaction(database.pool,
    `select set_config('role', 'webhook_admin', true), set_config('jwt.claims.company_id', '${company.id}', true)`,
    (client) => client.query(sql, values));
  try {
    await relayAsleep(database.pool);
    await f.contact(company.id);
    const [delivery] = await waitForFinalDeliveries(database.pool, [webhook.id], 1);

    await relayAsleep(database.pool);
    await asAdmin('select webhooks.replay_delivery($1)', [delivery.id]);
    const [first, replayed] = await receiver.waitFor(2, { path: '/hook', timeoutMs: 10_000 });
    t.is(replayed.headers['webhook-id'], first.headers['webhook-id']);

    await relayAsleep(database.pool);
    await asAdmin('select webhooks.send_test_webhook($1)', [webhook.id]);
    const [, , test] = await receiver.waitFor(3, { path: '/hook', timeoutMs: 10_000 });
    t.is(JSON.parse(test.body).type, 'webhook.test');
  } finally {
    await relay.stop();
  }
});

test('an open capturing transaction costs an idle relay nothing while it stays open, and its delivery arrives once it commits', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret });

  // captured while no relay sleeps: this transaction skips its NOTIFY and holds
  // "capturing" until it ends (a long import, a session idle in transaction)
  const writer = await database.pool.connect();
  t.teardown(() => writer.release());
  await writer.query('begin');
  await writer.query('insert into crm.contacts (company_id) values ($1)', [company.id]);

  const relay = testRelay(database.url, { RELAY_POLL_INTERVAL_MS: HOUR });
  await relay.start();
  try {
    await new Promise((resolve) => setTimeout(resolve, 2_000)); // the transaction stays open this long
    // a few claims as the relay starts (its start, its listener connecting), then none:
    // today's relay claims again every few milliseconds, hundreds of times
    t.true(relay.stats.claims <= 10, `${relay.stats.claims} claims while one transaction stayed open`);
    t.is(receiver.received('/hook').length, 0);

    // no NOTIFY comes (it was skipped) and polling is out of the picture: the relay
    // must still find the delivery once the transaction has ended
    await writer.query('commit');
    await receiver.waitFor(1, { path: '/hook', timeoutMs: 10_000 });
  } finally {
    await writer.query('rollback').catch(() => {});
    await relay.stop();
  }
});

test('a capture that skipped its NOTIFY and committed while another stays open is delivered within seconds, not when the open one ends', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const other = await f.company();
  const held = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/held') });
  receiver.route('/held', { secret: held.secret });
  const free = await f.webhook({ companyId: other.id, actions: ['contact.created'], url: receiver.url('/free') });
  receiver.route('/free', { secret: free.secret });

  // both captured while no relay sleeps, so both skip their NOTIFY; one stays open (a
  // long import, a prepared transaction), the other commits once the relay is idle
  const writers = await Promise.all([database.pool.connect(), database.pool.connect()]);
  t.teardown(() => writers.forEach((writer) => writer.release()));
  const [longOne, shortOne] = writers;
  await longOne.query('begin');
  await longOne.query('insert into crm.contacts (company_id) values ($1)', [company.id]);
  await shortOne.query('begin');
  await shortOne.query('insert into crm.contacts (company_id) values ($1)', [other.id]);

  const relay = testRelay(database.url, { RELAY_POLL_INTERVAL_MS: HOUR });
  await relay.start();
  try {
    // relay_idle held, and "capturing" too: the relay waits for the captures to end
    await relayAsleep(database.pool);
    await shortOne.query('commit');
    // no NOTIFY comes, and the long transaction keeps "capturing" held
    await receiver.waitFor(1, { path: '/free', timeoutMs: 5_000 });
    t.is(receiver.received('/held').length, 0);
    t.true(relay.stats.claims <= 10, `${relay.stats.claims} claims while one transaction stayed open`);
  } finally {
    await longOne.query('rollback').catch(() => {});
    await relay.stop();
  }
});

/**
 * A webhook with five contacts created, relay_idle held exclusively by another
 * session (`holder`), and a relay started that polls once an hour and sends two of
 * the webhook's deliveries at a time, without prefetching: its first discovery fills
 * the webhook, and it goes on to announce idleness, which cannot finish meanwhile.
 */
async function relayWhileIdleHeld(t: ExecutionContext) {
  const scene = await relayScene(t);
  const { database, receiver, f, company } = scene;
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret });
  for (let i = 0; i < 5; i++) await f.contact(company.id);
  const holder = await database.pool.connect();
  t.teardown(() => holder.release());
  await holder.query('select pg_advisory_lock($1, $2)', [LOCK_CLASS, LOCK_KEYS.relayIdle]);
  t.teardown(() => holder.query('select pg_advisory_unlock_all()'));
  const relay = testRelay(database.url, { RELAY_POLL_INTERVAL_MS: HOUR, RELAY_PER_WEBHOOK_IN_FLIGHT: '2', RELAY_PREFETCH: '0' });
  t.teardown(() => relay.stop());
  await relay.start();
  return { ...scene, holder, relay };
}

test("a discovery's deliveries are sent before the relay announces it is going idle: that answer may take a round trip", async (t) => {
  // A first discovery that fills its webhook (a backlog beyond the relay's room for it)
  // finds no work for a second discovery, so the relay goes on to announce idleness
  // (relay_idle, on a connection of its own: at start, one it has yet to open). What it
  // claimed must not wait for that: here the announcement cannot finish, as another
  // session holds relay_idle exclusively, and the claimed deliveries still arrive.
  const { receiver, holder } = await relayWhileIdleHeld(t);
  const first = await receiver.waitFor(2, { path: '/hook', timeoutMs: 10_000 });
  t.is(new Set(first.map((r) => r.headers['webhook-id'])).size, 2, 'the first discovery took two (the room for the webhook), both sent');

  await holder.query('select pg_advisory_unlock($1, $2)', [LOCK_CLASS, LOCK_KEYS.relayIdle]);
  const all = await receiver.waitFor(5, { path: '/hook', timeoutMs: 10_000 });
  t.is(new Set(all.map((r) => r.headers['webhook-id'])).size, 5);
});

test('an announcement of idleness that gets no answer stops nothing: refills and new captures go on while going_idle() waits', async (t) => {
  // going_idle() waits for relay_idle, which another session holds exclusively here
  // (a stalled idle connection does the same: a proxy, a lock). Until it answers (at
  // most RELAY_DB_QUERY_TIMEOUT_MS, 30 s, then again on a new connection) the relay
  // must go on claiming: its backlog's refills, and a capture that notifies it.
  const { database, receiver, f, company, holder } = await relayWhileIdleHeld(t);

  const backlog = await receiver.waitFor(5, { path: '/hook', timeoutMs: 5_000 });
  t.is(new Set(backlog.map((r) => r.headers['webhook-id'])).size, 5, 'the backlog went out in refills while going_idle() waited');
  const waiting = await database.pool.query(
    `select count(*)::int as n from pg_stat_activity
      where datname = current_database() and application_name = 'bpd-webhooks-relay-idle'
        and wait_event_type = 'Lock' and query like '%going_idle%'`);
  t.is(waiting.rows[0].n, 1, 'going_idle() still waits');

  // the capture finds relay_idle taken (by the other session) and notifies
  const captured = performance.now();
  await f.contact(company.id);
  const all = await receiver.waitFor(6, { path: '/hook', timeoutMs: 5_000 });
  t.log(`delivered ${Math.round(performance.now() - captured)} ms after the capture`);
  t.is(new Set(all.map((r) => r.headers['webhook-id'])).size, 6, 'a new capture delivered while going_idle() waited');
});

test('an idle connection that hangs while the relay sleeps: a NOTIFY still brings the delivery at once, without waiting for relay_idle to be given back', async (t) => {
  // the idle connection's server process stopped (SIGSTOP): the connection stays open
  // and answers nothing, as over a path gone silent or a stalled proxy, until the
  // question's timeout (RELAY_DB_QUERY_TIMEOUT_MS, 30 s). Its relay_idle stays held, so
  // a capture notifies; the discovery that follows must not wait on that connection.
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret });
  const relay = testRelay(database.url, { RELAY_POLL_INTERVAL_MS: HOUR });
  t.teardown(() => relay.stop());
  await relay.start();
  await relayAsleep(database.pool);
  const { rows: [idle] } = await database.pool.query(
    // (this database's: the other test files' relays sleep on the same server)
    "select pid from pg_stat_activity where datname = current_database() and application_name = 'bpd-webhooks-relay-idle'");
  process.kill(idle.pid, 'SIGSTOP');
  try {
    const captured = performance.now();
    await f.contact(company.id);
    await receiver.waitFor(1, { path: '/hook', timeoutMs: 5_000 });
    t.log(`delivered ${Math.round(performance.now() - captured)} ms after the capture`);
    await f.contact(company.id);
    const both = await receiver.waitFor(2, { path: '/hook', timeoutMs: 5_000 });
    t.is(new Set(both.map((r) => r.headers['webhook-id'])).size, 2);
  } finally {
    process.kill(idle.pid, 'SIGCONT');
  }
});
