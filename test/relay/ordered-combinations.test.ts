// An ordered webhook beside the other delivery features a tenant turns on with it: the
// circuit breaker, replays. What the receiver gets, in what order, and the rows' states.
import test from 'ava';
import { relayScene, testRelay, waitForFinalDeliveries, waitForRows } from '../helpers/relay.ts';

const cityOf = (body: string) => JSON.parse(body).data.contact.city as string;

test('ordered: an endpoint down long enough to open the breaker, then back: each contact\'s changes arrive in order, none skipped, each succeeded once', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const pool = database.pool;
  await pool.query(`alter database ${database.name} set webhooks.breaker_after = 2`);
  await pool.query(`alter database ${database.name} set webhooks.breaker_probe_interval = '200 milliseconds'`);
  await pool.query(`alter database ${database.name} set webhooks.breaker_probe_max_interval = '400 milliseconds'`);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'], url: receiver.url('/sync') });
  // down for its first 8 requests: the breaker opens, probes fail, then one succeeds
  receiver.route('/sync', { secret: hook.secret, replies: Array.from({ length: 8 }, () => 500) });
  await pool.query(`select webhooks.set_webhook_delivery($1, null, true)`, [hook.id]);
  const contacts = await Promise.all(['a', 'b', 'c'].map((name) => f.contact(company.id, { city: `${name}0` })));
  for (let i = 1; i <= 5; i++) {
    for (const [n, contact] of contacts.entries()) {
      await pool.query(`update crm.contacts set city = $2 where id = $1`, [contact.id, `${'abc'[n]}${i}`]);
    }
  }

  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  await waitForRows(pool, `select 1 from webhooks_private.lanes where webhook_id = $1 and open_until is not null`, [hook.id],
    (open) => open.length === 1, 30_000);
  const rows = await waitForFinalDeliveries(pool, [hook.id], 15, 60_000);
  t.true(rows.every((r) => r.state === 'succeeded'), JSON.stringify(rows.map((r) => [r.id, r.state, r.attempts])));
  const { rows: [lane] } = await pool.query(`select failures, open_until from webhooks_private.lanes where webhook_id = $1`, [hook.id]);
  t.deepEqual(lane, { failures: 0, open_until: null }, 'closed again');
  const { rows: [opened] } = await pool.query(
    `select count(*)::int as failed from webhooks.delivery_attempts where webhook_id = $1 and status_code = 500`, [hook.id]);
  t.is(opened.failed, 8);

  const answered = receiver.requests.filter((r) => r.path === '/sync');
  for (const name of ['a', 'b', 'c']) {
    const mine = answered.filter((r) => cityOf(r.body).startsWith(name));
    // retries repeat a message; the successes are each change once, in order
    const succeeded = mine.filter((r) => r.reply !== 500);
    const cities = mine.map((r) => cityOf(r.body));
    t.deepEqual([...new Set(cities)], [1, 2, 3, 4, 5].map((i) => `${name}${i}`), `${name}: in order: ${cities.join(' ')}`);
    t.true(cities.every((c, i) => i === 0 || c >= cities[i - 1]!), `${name}: never back: ${cities.join(' ')}`);
    t.deepEqual(succeeded.map((r) => cityOf(r.body)), [1, 2, 3, 4, 5].map((i) => `${name}${i}`), `${name}: each change answered 200 once`);
    t.is(new Set(succeeded.map((r) => r.headers['webhook-id'])).size, 5);
  }
});

test('ordered: a failed delivery replayed after its contact\'s later ones succeeded goes again, as the same message, before the contact\'s pending ones', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const pool = database.pool;
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'], url: receiver.url('/sync'), maxAttempts: 1 });
  receiver.route('/sync', { secret: hook.secret, replies: [500] });
  await pool.query(`select webhooks.set_webhook_delivery($1, null, true)`, [hook.id]);
  const contact = await f.contact(company.id, { city: 'v0' });
  for (let i = 1; i <= 3; i++) await pool.query(`update crm.contacts set city = $2 where id = $1`, [contact.id, `v${i}`]);

  const relay = testRelay(database.url);
  await relay.start();
  const first = await waitForFinalDeliveries(pool, [hook.id], 3, 30_000);
  t.deepEqual(first.map((r) => r.state), ['failed', 'succeeded', 'succeeded'], 'v1 failed for good, v2 and v3 went after it');
  await relay.stop();

  // v4 waits while v1 is replayed: the replay keeps v1's place, before v4
  await pool.query(`update crm.contacts set city = 'v4' where id = $1`, [contact.id]);
  await pool.query('select webhooks.replay_delivery($1)', [first[0]!.id]);
  const again = testRelay(database.url);
  t.teardown(() => again.stop());
  await again.start();
  const requests = await receiver.waitFor(5, { path: '/sync', timeoutMs: 30_000 });
  t.deepEqual(requests.map((r) => cityOf(r.body)), ['v1', 'v2', 'v3', 'v1', 'v4']);
  t.is(requests[3]!.headers['webhook-id'], requests[0]!.headers['webhook-id'], 'the replay is the same message');
  t.is(requests[3]!.body, requests[0]!.body, 'with the body it had, the change\'s own time in it');
  const rows = await waitForFinalDeliveries(pool, [hook.id], 4, 30_000);
  t.deepEqual(rows.map((r) => [r.state, r.attempts]), [['succeeded', 2], ['succeeded', 1], ['succeeded', 1], ['succeeded', 1]]);
});
