// Two relays drain one backlog: every delivery arrives, and none is sent twice
// (no lease runs out here, so no delivery may be claimed by both).
import test from 'ava';
import { relayScene, testRelay, waitForFinalDeliveries } from '../helpers/relay.ts';

test('two relays on one backlog: each delivery arrives exactly once', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhooks = [];
  for (const path of ['/a', '/b', '/c']) {
    const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url(path) });
    receiver.route(path, { secret: webhook.secret });
    webhooks.push(webhook);
  }
  await database.pool.query(
    `insert into crm.contacts (company_id, first_name) select $1, 'Contact ' || n from generate_series(1, 300) n`,
    [company.id],
  );
  const { rows: backlog } = await database.pool.query(
    `select message_id from webhooks.deliveries where webhook_id = any ($1::bigint[])`,
    [webhooks.map((w) => w.id)],
  );
  t.is(backlog.length, 900);

  // on a starved machine a reply can sit unread for seconds: generous timeouts, so
  // that no attempt times out and is retried (a retry arrives twice by design)
  const relays = ['relay-one', 'relay-two'].map((id) =>
    testRelay(database.url, { RELAY_ID: id, RELAY_BATCH_SIZE: '25', RELAY_REQUEST_TIMEOUT_MS: '120000', RELAY_LEASE_MS: '600000' }),
  );
  for (const relay of relays) t.teardown(() => relay.stop());
  await Promise.all(relays.map((relay) => relay.start()));

  const requests = await receiver.waitFor(900, { timeoutMs: 100_000 });
  const deliveries = await waitForFinalDeliveries(database.pool, webhooks.map((w) => w.id), 900, 100_000);

  t.deepEqual(deliveries.filter((d) => !(d.state === 'succeeded' && d.attempts === 1)), []);
  t.true(requests.every((r) => r.verified));
  const ids = requests.map((r) => String(r.headers['webhook-id']));
  t.is(new Set(ids).size, 900, 'no message arrived twice');
  t.deepEqual([...ids].sort(), backlog.map((r) => r.message_id).sort());
  t.is(receiver.requests.length, 900);

  const { rows: byRelay } = await database.pool.query(
    `select relay_id, count(*)::int as n from webhooks.delivery_attempts where webhook_id = any ($1::bigint[]) group by relay_id order by relay_id`,
    [webhooks.map((w) => w.id)],
  );
  t.deepEqual(byRelay.map((r) => r.relay_id), ['relay-one', 'relay-two'], 'both relays took part');
  t.is(byRelay.reduce((sum, r) => sum + r.n, 0), 900, 'one attempt per delivery');
});
