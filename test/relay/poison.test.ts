// A result the database refuses to settle cannot hold back the others: the relay
// writes the batch one by one, drops the refused result, and the rescue takes over
// that delivery once its lease runs out.
import test from 'ava';
import { relayScene, testRelay, waitForFinalDeliveries } from '../helpers/relay.ts';

test('a result that cannot be settled is isolated; the other deliveries settle', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const gone = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/gone'), maxAttempts: 1 });
  const fine = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/fine') });
  receiver.route('/gone', { otherwise: 410 });
  receiver.route('/fine', { otherwise: 200 });
  // A configuration that no longer passes validation (as after a schema change):
  // disabling the webhook on its 410 now fails inside the settle statement.
  await database.pool.query(`alter table webhooks.webhooks disable trigger _100_validate`);
  await database.pool.query(`update webhooks.webhooks set fields = '{shoe_size}' where id = $1`, [gone.id]);
  await database.pool.query(`alter table webhooks.webhooks enable trigger _100_validate`);
  for (let i = 0; i < 3; i++) await f.contact(company.id);

  // a short lease, so that the rescue comes soon; the request timeout below it must
  // still leave the receiver ample time to answer on a busy machine
  const relay = testRelay(database.url, { RELAY_LEASE_MS: '3000', RELAY_REQUEST_TIMEOUT_MS: '2500' });
  t.teardown(() => relay.stop());
  await relay.start();

  const settled = await waitForFinalDeliveries(database.pool, [fine.id], 3);
  t.true(settled.every((d) => d.state === 'succeeded'));
  const refused = await waitForFinalDeliveries(database.pool, [gone.id], 3);
  for (const d of refused) {
    t.is(d.state, 'failed');
    t.regex(d.last_error, /^lease expired/);
  }
  const { rows: [hook] } = await database.pool.query('select enabled from webhooks.webhooks where id = $1', [gone.id]);
  t.true(hook.enabled, 'the disable could not be written');
});
