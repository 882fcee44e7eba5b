// A slow endpoint holds only its own slots: while one webhook's requests hang until
// they time out, another webhook's deliveries keep arriving.
import test from 'ava';
import { relayScene, testRelay, waitForFinalDeliveries } from '../helpers/relay.ts';

test('a hanging receiver times out and is retried; another webhook is delivered meanwhile', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const slow = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/slow') });
  const fast = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/fast') });
  // the first two requests to /slow never get an answer; later ones do
  receiver.route('/slow', { secret: slow.secret, replies: ['hang', 'hang'], otherwise: 200 });
  receiver.route('/fast', { secret: fast.secret, otherwise: 200 });
  for (let i = 0; i < 3; i++) await f.contact(company.id);

  const relay = testRelay(database.url, {
    RELAY_PER_WEBHOOK_IN_FLIGHT: '2',
    RELAY_REQUEST_TIMEOUT_MS: '3000',
  });
  t.teardown(() => relay.stop());
  await relay.start();

  // both slots of /slow are taken by hanging requests...
  await receiver.waitFor(2, { path: '/slow' });
  // ...and /fast gets all three of its deliveries all the same
  const fastRequests = await receiver.waitFor(3, { path: '/fast' });
  t.true(fastRequests.every((r) => r.verified));
  const { rows: stillHanging } = await database.pool.query(
    `select count(*)::int as n from webhooks.deliveries where webhook_id = $1 and state = 'in_flight'`,
    [slow.id],
  );
  // two hanging, the third claimed ahead and queued behind them, not sent
  t.is(stillHanging[0].n, 3, "the slow webhook's deliveries were still held when the fast ones arrived");
  t.is(receiver.received('/slow').length, 2, 'no more than its two slots were sent to the slow webhook');

  // the hanging attempts time out, are retried, and succeed
  const slowDeliveries = await waitForFinalDeliveries(database.pool, [slow.id], 3);
  t.true(slowDeliveries.every((d) => d.state === 'succeeded'));
  t.deepEqual(slowDeliveries.map((d) => d.attempts).sort(), [1, 2, 2]);
  const { rows: attempts } = await database.pool.query(
    `select error from webhooks.delivery_attempts where webhook_id = $1 and status_code is null`,
    [slow.id],
  );
  t.is(attempts.length, 2);
  for (const a of attempts) t.regex(a.error, /^timeout: no complete response from 127\.0\.0\.1:\d+ within 3000 ms$/);
  const fastDeliveries = await waitForFinalDeliveries(database.pool, [fast.id], 3);
  t.true(fastDeliveries.every((d) => d.state === 'succeeded' && d.attempts === 1));
});
