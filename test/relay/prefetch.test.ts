// Claiming ahead: the relay leases more of a webhook's deliveries than it has request
// slots for and queues the rest locally. The endpoint still never sees more than
// RELAY_PER_WEBHOOK_IN_FLIGHT requests at once, and a graceful stop hands back what
// was queued but never sent.
import test from 'ava';
import { gatedReplies } from '../helpers/receiver.ts';
import { relayScene, testRelay, waitForFinalDeliveries, waitForRows } from '../helpers/relay.ts';

test('claimed ahead, sent within the cap: the endpoint never has more than its slots in flight', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  const total = 8;
  const { replies, opens } = gatedReplies(total);
  receiver.route('/hook', { secret: webhook.secret, replies });
  for (let i = 0; i < total; i++) await f.contact(company.id);

  const relay = testRelay(database.url, { RELAY_PER_WEBHOOK_IN_FLIGHT: '2', RELAY_PREFETCH: '2' });
  t.teardown(() => relay.stop());
  await relay.start();

  // two requests sent, two more leased and queued behind them
  await receiver.waitFor(2, { path: '/hook' });
  await waitForRows(
    database.pool,
    `select count(*)::int as n from webhooks.deliveries where webhook_id = $1 and state = 'in_flight'`,
    [webhook.id],
    (rows) => rows[0].n === 4,
  );
  t.is(receiver.received('/hook').length, 2, 'queued deliveries wait for a free slot');

  // each answer frees one slot, taken by the next delivery: never more than two open
  for (let answered = 1; answered <= total; answered++) {
    opens[answered - 1]();
    const expected = Math.min(answered + 2, total);
    await receiver.waitFor(expected, { path: '/hook' });
    t.true(receiver.received('/hook').length - answered <= 2, `at most 2 unanswered after ${answered} answers`);
  }
  const deliveries = await waitForFinalDeliveries(database.pool, [webhook.id], total);
  t.true(deliveries.every((d) => d.state === 'succeeded' && d.attempts === 1));
  t.is(receiver.received('/hook').length, total, 'each delivery sent once');
  t.true(receiver.received('/hook').every((r) => r.verified));
});

test('a graceful stop releases what was queued and never sent: pending again, its attempt not counted', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  const { replies, opens } = gatedReplies(2);
  receiver.route('/hook', { secret: webhook.secret, replies });
  for (let i = 0; i < 5; i++) await f.contact(company.id);

  const relay = testRelay(database.url, { RELAY_PER_WEBHOOK_IN_FLIGHT: '2', RELAY_PREFETCH: '2' });
  t.teardown(() => relay.stop());
  await relay.start();
  const sent = await receiver.waitFor(2, { path: '/hook' });
  await waitForRows(
    database.pool,
    `select count(*)::int as n from webhooks.deliveries where webhook_id = $1 and state = 'in_flight'`,
    [webhook.id],
    (rows) => rows[0].n === 4,
  );

  // stopping: the two queued are handed back at once, the two sent finish first
  const stopped = relay.stop();
  const held = await waitForRows(
    database.pool,
    `select id from webhooks.deliveries where webhook_id = $1 and state = 'in_flight'`,
    [webhook.id],
    (rows) => rows.length === 2,
  );
  t.is(held.length, 2);
  for (const open of opens) open();
  await stopped;

  const { rows } = await database.pool.query(
    `select message_id, state, attempts, locked_by, locked_until, last_attempt_at from webhooks.deliveries
     where webhook_id = $1 order by id`,
    [webhook.id],
  );
  const sentIds = new Set(sent.map((r) => r.headers['webhook-id']));
  const delivered = rows.filter((r) => sentIds.has(r.message_id));
  const notSent = rows.filter((r) => !sentIds.has(r.message_id));
  t.is(delivered.length, 2);
  t.true(delivered.every((r) => r.state === 'succeeded' && r.attempts === 1));
  t.is(notSent.length, 3);
  t.deepEqual(
    notSent.map((r) => ({ ...r, message_id: undefined })),
    notSent.map(() => ({ message_id: undefined, state: 'pending', attempts: 0, locked_by: null, locked_until: null, last_attempt_at: null })),
    'released (or never claimed): pending, no attempt counted, no lease',
  );
  const { rows: leased } = await database.pool.query(`select count(*)::int as n from webhooks.deliveries where locked_by = $1`, [
    relay.settings.relayId,
  ]);
  t.is(leased[0].n, 0, 'nothing is leased to the stopped relay');
  const { rows: attempts } = await database.pool.query(`select count(*)::int as n from webhooks.delivery_attempts where webhook_id = $1`, [
    webhook.id,
  ]);
  t.is(attempts[0].n, 2, 'only the two sent are history');
  t.is(receiver.received('/hook').length, 2);
  t.is(relay.stats.released, 2);
});

test('a fast receiver\'s backlog goes in claims of a useful size: its queue deepens while its requests come back fast and well', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret });
  const total = 400;
  for (let i = 0; i < total; i++) await f.contact(company.id);

  // 4 slots and a prefetch of 4: a claim could bring at most 8 of this webhook, were
  // its queue not allowed to deepen (up to two batches of 16 here)
  const relay = testRelay(database.url, {
    RELAY_PER_WEBHOOK_IN_FLIGHT: '4', RELAY_PREFETCH: '4', RELAY_MAX_IN_FLIGHT: '64', RELAY_BATCH_SIZE: '16',
    RELAY_POLL_INTERVAL_MS: '1000', // (a poll's discovery takes whatever is free at the time)
  });
  t.teardown(() => relay.stop());
  await relay.start();
  const deliveries = await waitForFinalDeliveries(database.pool, [webhook.id], total);
  t.true(deliveries.every((d) => d.state === 'succeeded' && d.attempts === 1));
  t.is(receiver.received('/hook').length, total, 'each delivery sent once');
  const { claims, claimed } = relay.stats;
  t.is(claimed, total);
  t.true(claimed / claims > 8, `${claims} claims for ${claimed} deliveries: more than 8 a claim`);
  t.log(`${claims} claims, ${(claimed / claims).toFixed(1)} deliveries a claim`);
});
