// Two relays given the same RELAY_ID (one environment copied to two replicas) took
// each other's leases for their own: one's release of what it did not hold handed
// back what the other was sending, to be claimed and sent again. A relay holds its
// id in the database while it runs; a second one with that id refuses to start.
import test from 'ava';
import { relayScene, testRelay, waitForRows } from '../helpers/relay.ts';

test('a second relay with a RELAY_ID a running relay holds refuses to start, naming it; the first sends on; once it stops the id is free', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret, replies: [{ status: 204 }] });

  const first = testRelay(database.url, { RELAY_ID: 'relay-twin' });
  t.teardown(() => first.stop());
  await first.start();
  const second = testRelay(database.url, { RELAY_ID: 'relay-twin' });
  t.teardown(() => second.stop());
  const refused = await t.throwsAsync(second.start());
  t.regex(refused?.message ?? '', /^another relay runs with RELAY_ID relay-twin in this database/);

  const contact = await f.contact(company.id);
  const [row] = await waitForRows(database.pool,
    'select state from webhooks.deliveries where webhook_id = $1 and contact_id = $2', [webhook.id, contact.id],
    (rows) => rows[0]?.state === 'succeeded');
  t.is(row!.state, 'succeeded');
  t.is(receiver.requests.length, 1);

  await first.stop();
  const third = testRelay(database.url, { RELAY_ID: 'relay-twin' });
  t.teardown(() => third.stop());
  await t.notThrowsAsync(third.start());
});
