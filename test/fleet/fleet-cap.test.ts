// A webhook's max_in_flight holds for the whole fleet: three relays, each allowed 32
// requests to one webhook by its own settings, together never have more than the
// webhook's four open at a slow receiver.
import test from 'ava';
import { relayScene, testRelay, waitForFinalDeliveries } from '../helpers/relay.ts';

test('three relays and a slow receiver with max_in_flight = 4: never more than four requests at once', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/slow') });
  await database.pool.query('update webhooks.webhooks set max_in_flight = 4 where id = $1', [webhook.id]);
  receiver.route('/slow', { secret: webhook.secret, otherwise: { status: 200, delayMs: 60 } });
  await database.pool.query(
    `insert into crm.contacts (company_id, first_name) select $1, 'Contact ' || n from generate_series(1, 60) n`,
    [company.id],
  );

  const relays = ['relay-a', 'relay-b', 'relay-c'].map((id) => testRelay(database.url, { RELAY_ID: id }));
  for (const relay of relays) t.teardown(() => relay.stop());
  await Promise.all(relays.map((relay) => relay.start()));

  const deliveries = await waitForFinalDeliveries(database.pool, [webhook.id], 60, 60_000);
  t.true(deliveries.every((d) => d.state === 'succeeded' && d.attempts === 1));
  const requests = receiver.received('/slow');
  t.is(requests.length, 60, 'each delivery arrived once');
  t.true(requests.every((r) => r.verified));
  t.log(`most requests open at once: ${receiver.maxConcurrent('/slow')}`);
  t.true(receiver.maxConcurrent('/slow') <= 4, `the receiver saw ${receiver.maxConcurrent('/slow')} requests at once`);
  t.true(requests.every((r) => r.concurrent <= 4));
});

test('without max_in_flight the database setting webhooks.max_in_flight caps every relay together', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  await database.pool.query(`alter database ${database.name} set webhooks.max_in_flight = 3`);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/slow') });
  receiver.route('/slow', { secret: webhook.secret, otherwise: { status: 200, delayMs: 60 } });
  await database.pool.query(
    `insert into crm.contacts (company_id, first_name) select $1, 'Contact ' || n from generate_series(1, 30) n`,
    [company.id],
  );
  const relays = ['relay-a', 'relay-b'].map((id) => testRelay(database.url, { RELAY_ID: id }));
  for (const relay of relays) t.teardown(() => relay.stop());
  await Promise.all(relays.map((relay) => relay.start()));

  await waitForFinalDeliveries(database.pool, [webhook.id], 30, 60_000);
  t.is(receiver.received('/slow').length, 30);
  t.true(receiver.maxConcurrent('/slow') <= 3, `the receiver saw ${receiver.maxConcurrent('/slow')} requests at once`);
});
