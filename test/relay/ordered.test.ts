// Ordered webhooks (webhooks.webhooks.ordered): a contact's deliveries one at a time,
// in the order of its changes; a retry holds back only the later ones of its contact.
import test, { type ExecutionContext } from 'ava';
import { relayScene, testRelay, waitForRows } from '../helpers/relay.ts';

const cityOf = (body: string) => JSON.parse(body).data.contact.city as string;

/** An ordered webhook of the scene's company, posting to /sync, whose first request is answered only once release() is called. */
async function orderedWithHeldAnswer(t: ExecutionContext) {
  const scene = await relayScene(t);
  const { database, receiver, f, company } = scene;
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'], url: receiver.url('/sync') });
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  receiver.route('/sync', { secret: hook.secret, replies: [{ status: 200, after: held }] });
  await database.pool.query(`select webhooks.set_webhook_delivery($1, null, true)`, [hook.id]);
  return { ...scene, pool: database.pool, hook, release };
}

test('20 quick updates arrive in order although the receiver fails the 3rd twice', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const pool = database.pool;
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'], url: receiver.url('/sync') });
  receiver.route('/sync', { secret: hook.secret, replies: [200, 200, 500, 500] });
  await pool.query(`select webhooks.set_webhook_delivery($1, null, true)`, [hook.id]);
  const contact = await f.contact(company.id, { city: 'v0' });
  for (let i = 1; i <= 20; i++) await pool.query(`update crm.contacts set city = $2 where id = $1`, [contact.id, `v${i}`]);

  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  const requests = await receiver.waitFor(22, { path: '/sync', timeoutMs: 60_000 });
  t.deepEqual(requests.map((r) => cityOf(r.body)),
    ['v1', 'v2', 'v3', 'v3', 'v3', ...Array.from({ length: 17 }, (_, i) => `v${i + 4}`)]);
  t.true(requests.every((r) => r.verified));
});

test('a contact whose delivery is stuck holds back its own later ones only: other contacts flow', async (t) => {
  const { database, pool, receiver, f, company, release } = await orderedWithHeldAnswer(t);
  const slow = await f.contact(company.id, { city: 'slow 0' });
  const others = await Promise.all([1, 2, 3].map((n) => f.contact(company.id, { city: `c${n} 0` })));

  // the held answer must not time out while the others flow
  const relay = testRelay(database.url, { RELAY_REQUEST_TIMEOUT_MS: '120000', RELAY_LEASE_MS: '240000' });
  t.teardown(() => relay.stop());
  await relay.start();
  await pool.query(`update crm.contacts set city = 'slow 1' where id = $1`, [slow.id]);
  await receiver.waitFor(1, { path: '/sync' });   // slow 1: in flight, its answer held
  await pool.query(`update crm.contacts set city = 'slow 2' where id = $1`, [slow.id]);
  for (let i = 1; i <= 5; i++) {
    for (const other of others) await pool.query(`update crm.contacts set city = $2 where id = $1`, [other.id, `${other.city!.split(' ')[0]} ${i}`]);
  }
  const flowed = await receiver.waitFor(16, { path: '/sync', timeoutMs: 60_000 });
  t.false(flowed.some((r) => cityOf(r.body) === 'slow 2'), 'slow 2 waits for slow 1');
  for (const other of others) {
    const name = other.city!.split(' ')[0];
    t.deepEqual(flowed.map((r) => cityOf(r.body)).filter((c) => c.startsWith(`${name} `)), [1, 2, 3, 4, 5].map((i) => `${name} ${i}`));
  }
  release();
  const all = await receiver.waitFor(17, { path: '/sync', timeoutMs: 60_000 });
  t.is(cityOf(all[16]!.body), 'slow 2');
});

test('order holds with two relays', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const pool = database.pool;
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'], url: receiver.url('/sync') });
  receiver.route('/sync', { secret: hook.secret });
  await pool.query(`select webhooks.set_webhook_delivery($1, null, true)`, [hook.id]);
  const contacts = await Promise.all([1, 2, 3, 4, 5].map((n) => f.contact(company.id, { city: `k${n}:0` })));
  const relays = [testRelay(database.url, { RELAY_BATCH_SIZE: '3' }), testRelay(database.url, { RELAY_BATCH_SIZE: '3' })];
  t.teardown(() => Promise.all(relays.map((r) => r.stop())));
  await Promise.all(relays.map((r) => r.start()));
  for (let i = 1; i <= 20; i++) {
    for (const [n, contact] of contacts.entries()) await pool.query(`update crm.contacts set city = $2 where id = $1`, [contact.id, `k${n + 1}:${i}`]);
  }
  const requests = await receiver.waitFor(100, { path: '/sync', timeoutMs: 90_000 });
  for (const n of [1, 2, 3, 4, 5]) {
    const seen = requests.map((r) => cityOf(r.body)).filter((c) => c.startsWith(`k${n}:`)).map((c) => Number(c.split(':')[1]));
    t.deepEqual(seen, Array.from({ length: 20 }, (_, i) => i + 1), `contact ${n}`);
  }
  await waitForRows(pool, `select state from webhooks.deliveries where webhook_id = $1`, [hook.id],
    (rows) => rows.length === 100 && rows.every((r) => r.state === 'succeeded'), 60_000);
  const { rows } = await pool.query(`select count(distinct relay_id)::int as relays from webhooks.delivery_attempts where webhook_id = $1`, [hook.id]);
  t.log(`attempts made by ${rows[0].relays} relays`);
});

test('a delivery that fails for good lets the next of its contact go', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const pool = database.pool;
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'], url: receiver.url('/sync'), maxAttempts: 2 });
  receiver.route('/sync', { secret: hook.secret, replies: [500, 500] });
  await pool.query(`select webhooks.set_webhook_delivery($1, null, true)`, [hook.id]);
  const contact = await f.contact(company.id, { city: 'v0' });
  for (let i = 1; i <= 3; i++) await pool.query(`update crm.contacts set city = $2 where id = $1`, [contact.id, `v${i}`]);

  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  const requests = await receiver.waitFor(4, { path: '/sync', timeoutMs: 60_000 });
  t.deepEqual(requests.map((r) => cityOf(r.body)), ['v1', 'v1', 'v2', 'v3']);
  const rows = await waitForRows(pool, `select state, attempts from webhooks.deliveries where webhook_id = $1 order by id`, [hook.id],
    (r) => r.length === 3 && r.every((d) => d.state !== 'pending' && d.state !== 'in_flight'), 60_000);
  t.deepEqual(rows, [{ state: 'failed', attempts: 2 }, { state: 'succeeded', attempts: 1 }, { state: 'succeeded', attempts: 1 }]);
});

// A claim looks at no more than ordered_scan_rows() of an ordered webhook's oldest due
// deliveries (sql/28_lanes.sql). Until 2026-12-04, 300 updates of one contact behind
// its delivery in flight filled that window, and every other contact of the webhook
// waited behind them for as long as that delivery took (hours, for one being
// retried). Now a claim puts the held-back ones off until their contact's delivery
// ends, and that delivery's settle lets the next one go at once.
test('hundreds of a contact\'s deliveries held back behind one in flight do not hold back the other contacts', async (t) => {
  const STUCK = 300;
  const { database, pool, receiver, f, company, hook, release } = await orderedWithHeldAnswer(t);
  const slow = await f.contact(company.id, { city: 'slow 0' });
  const other = await f.contact(company.id, { city: 'other 0' });

  const relay = testRelay(database.url, { RELAY_REQUEST_TIMEOUT_MS: '120000', RELAY_LEASE_MS: '240000' });
  t.teardown(() => relay.stop());
  await relay.start();
  await pool.query(`update crm.contacts set city = 'slow 1' where id = $1`, [slow.id]);
  await receiver.waitFor(1, { path: '/sync' });   // slow 1: in flight, its answer held
  await pool.query(`do $$ begin for i in 2..${STUCK + 1} loop
                      update crm.contacts set city = 'slow ' || i where id = ${Number(slow.id)};
                    end loop; end $$`);
  await pool.query(`update crm.contacts set city = 'other 1' where id = $1`, [other.id]);

  const flowed = await receiver.waitFor(2, { path: '/sync', timeoutMs: 20_000 });
  t.is(cityOf(flowed[1]!.body), 'other 1', 'the other contact\'s update goes while slow 1 is in flight');
  release();
  const all = await receiver.waitFor(STUCK + 2, { path: '/sync', timeoutMs: 90_000 });
  t.deepEqual(all.map((r) => cityOf(r.body)).filter((c) => c.startsWith('slow ')),
    Array.from({ length: STUCK + 1 }, (_, i) => `slow ${i + 1}`), 'the contact\'s updates in order, each once');
  const rows = await waitForRows(pool, `select state from webhooks.deliveries where webhook_id = $1`, [hook.id],
    (r) => r.length === STUCK + 2 && r.every((d) => d.state === 'succeeded'), 60_000);
  t.is(rows.length, STUCK + 2);
});

test('hundreds of a contact\'s deliveries behind one waiting an hour for its retry: the other contacts flow, the held-back ones wait for it', async (t) => {
  const STUCK = 300;
  const { database, receiver, f, company } = await relayScene(t, { retryBase: '1 hour' });
  const pool = database.pool;
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'], url: receiver.url('/sync') });
  receiver.route('/sync', { secret: hook.secret, replies: [500] });
  await pool.query(`select webhooks.set_webhook_delivery($1, null, true)`, [hook.id]);
  const slow = await f.contact(company.id, { city: 'slow 0' });
  const other = await f.contact(company.id, { city: 'other 0' });

  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  await pool.query(`update crm.contacts set city = 'slow 1' where id = $1`, [slow.id]);
  const [head] = await waitForRows(pool,
    `select next_attempt_at from webhooks.delivery_queue where webhook_id = $1 and attempts = 1 and locked_by is null`, [hook.id],
    (rows) => rows.length === 1, 20_000);   // slow 1 failed once: its retry an hour away
  await pool.query(`do $$ begin for i in 2..${STUCK + 1} loop
                      update crm.contacts set city = 'slow ' || i where id = ${Number(slow.id)};
                    end loop; end $$`);
  await pool.query(`update crm.contacts set city = 'other 1' where id = $1`, [other.id]);

  const requests = await receiver.waitFor(2, { path: '/sync', timeoutMs: 20_000 });
  t.is(cityOf(requests[1]!.body), 'other 1');
  const { rows: [held] } = await pool.query(
    `select count(*)::int as n, min(next_attempt_at) as soonest from webhooks.delivery_queue
     where webhook_id = $1 and attempts = 0`, [hook.id]);
  t.is(held.n, STUCK);
  t.true(held.soonest >= head.next_attempt_at, 'none is looked at again before slow 1\'s retry');
});

// docs/relay.md: a 410 Gone fails its delivery and disables the webhook; docs/api.md:
// the deliveries still queued then end "not sent: the webhook is disabled", and after
// enableWebhook, replayFailed sends them, since the time the first of them fired
// (test/sql/ordered-put-off.test.ts: the claim that fails one unsent lets the next go).
test('a 410 in the middle of a contact\'s ordered changes: the later ones are not sent and the history says why; enabled and replayed since the first one gone, they go in order', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const pool = database.pool;
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'], url: receiver.url('/sync') });
  let answer410!: () => void;
  const held = new Promise<void>((resolve) => (answer410 = resolve));
  receiver.route('/sync', { secret: hook.secret, replies: [200, { status: 410, after: held }] });
  await pool.query(`select webhooks.set_webhook_delivery($1, null, true)`, [hook.id]);
  const contact = await f.contact(company.id, { city: 'v0' });
  for (let i = 1; i <= 5; i++) await pool.query(`update crm.contacts set city = $2 where id = $1`, [contact.id, `v${i}`]);

  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  // v2 on its way, its answer held: the claims put v3..v5 off behind it
  await receiver.waitFor(2, { path: '/sync' });
  await waitForRows(pool, `select held_due from webhooks.delivery_queue where webhook_id = $1 and locked_by is null`, [hook.id],
    (r) => r.length === 3 && r.every((d) => d.held_due !== null));
  answer410();
  const rows = await waitForRows(pool, `select state, last_status_code, last_error from webhooks.deliveries where webhook_id = $1 order by id`, [hook.id],
    // (well within the minute's lease that v3..v5 were put off to)
    (r) => r.length === 5 && r.every((d) => d.state === 'succeeded' || d.state === 'failed'), 10_000);
  t.deepEqual(receiver.received('/sync').map((r) => cityOf(r.body)), ['v1', 'v2']);
  t.deepEqual(rows.map((r) => [r.state, r.last_status_code]), [['succeeded', 200], ['failed', 410], ['failed', null], ['failed', null], ['failed', null]]);
  t.true(rows.slice(2).every((r) => r.last_error === 'not sent: the webhook is disabled'), JSON.stringify(rows));
  const { rows: [disabled] } = await pool.query('select enabled, disabled_by, disabled_at from webhooks.webhooks where id = $1', [hook.id]);
  t.like(disabled, { enabled: false, disabled_by: 'relay' });

  await pool.query('update webhooks.webhooks set enabled = true where id = $1', [hook.id]);
  // replay_failed picks the failed by the time they fired: each of these fired before
  // the disable, so since the disable finds none of them; since the first one gone, all
  const none = await pool.query('select id from webhooks.replay_failed($1, $2)', [hook.id, disabled.disabled_at]);
  t.is(none.rows.length, 0);
  const { rows: [gone] } = await pool.query(`select created_at from webhooks.deliveries where webhook_id = $1 and state = 'failed' order by id limit 1`, [hook.id]);
  const replayed = await pool.query('select id from webhooks.replay_failed($1, $2)', [hook.id, gone.created_at]);
  t.is(replayed.rows.length, 4, 'the one gone and the three not sent');
  const requests = await receiver.waitFor(6, { path: '/sync', timeoutMs: 30_000 });
  t.deepEqual(requests.map((r) => cityOf(r.body)), ['v1', 'v2', 'v2', 'v3', 'v4', 'v5']);
});
