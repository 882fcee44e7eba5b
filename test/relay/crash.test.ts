// A relay killed while it holds deliveries loses nothing: once the lease runs out,
// another relay sends them again (at least once: the receiver sees each twice,
// under the same webhook-id).
import test from 'ava';
import { once } from 'node:events';
import { relayScene, spawnRelay, testRelay, waitForFinalDeliveries } from '../helpers/relay.ts';
import { inTransaction } from '../helpers/sql.ts';

test('SIGKILL while holding deliveries: another relay delivers them after the lease', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  // the first relay's requests hang, so it is holding all of them when it dies
  receiver.route('/hook', { secret: webhook.secret, replies: ['hang', 'hang', 'hang', 'hang'], otherwise: 200 });
  for (let i = 0; i < 4; i++) await f.contact(company.id);

  const doomed = spawnRelay(database.url, {
    RELAY_ID: 'relay-doomed',
    // long enough that none of its hanging requests times out before it is killed,
    // even on a busy machine; the rescue waits this long
    RELAY_LEASE_MS: '4500',
    RELAY_REQUEST_TIMEOUT_MS: '4000',
  });
  const exited = once(doomed, 'exit');
  t.teardown(() => {
    doomed.kill('SIGKILL');
  });
  const held = await receiver.waitFor(4, { path: '/hook' });
  const { rows: leased } = await database.pool.query(
    `select locked_by from webhooks.deliveries where webhook_id = $1 and state = 'in_flight'`,
    [webhook.id],
  );
  t.deepEqual(leased.map((r) => r.locked_by), ['relay-doomed', 'relay-doomed', 'relay-doomed', 'relay-doomed']);
  doomed.kill('SIGKILL');
  const [, signal] = await exited;
  t.is(signal, 'SIGKILL');

  const rescuer = testRelay(database.url, { RELAY_ID: 'relay-rescuer' });
  t.teardown(() => rescuer.stop());
  await rescuer.start();

  const deliveries = await waitForFinalDeliveries(database.pool, [webhook.id], 4);
  t.true(deliveries.every((d) => d.state === 'succeeded' && d.attempts === 2));
  const again = receiver.received('/hook').slice(4);
  t.is(again.length, 4);
  t.deepEqual(
    again.map((r) => r.headers['webhook-id']).sort(),
    held.map((r) => r.headers['webhook-id']).sort(),
    'the same messages, under the same webhook-id',
  );
  t.true(again.every((r) => r.verified));

  const { rows: attempts } = await database.pool.query(
    `select delivery_id, attempt, status_code, error, relay_id from webhooks.delivery_attempts
     where webhook_id = $1 order by delivery_id, attempt`,
    [webhook.id],
  );
  t.is(attempts.length, 8);
  for (const d of deliveries) {
    const [first, second] = attempts.filter((a) => a.delivery_id === d.id);
    t.is(first.relay_id, 'relay-doomed');
    t.regex(first.error, /^lease expired: the relay did not settle this attempt/);
    t.notRegex(first.error, /relay-doomed/, 'relay ids name hosts: not for the tenant');
    t.like(second, { attempt: 2, status_code: 200, relay_id: 'relay-rescuer' });
  }
});

test('SIGKILL during a test send: the test message goes again after the lease, under the same webhook-id, and counts as a test', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret, replies: ['hang'], otherwise: 200 });
  await inTransaction(database.pool,
    `select set_config('role', 'webhook_admin', true), set_config('jwt.claims.company_id', '${company.id}', true)`,
    (client) => client.query('select webhooks.send_test_webhook($1)', [webhook.id]));

  const doomed = spawnRelay(database.url, { RELAY_ID: 'relay-doomed', RELAY_LEASE_MS: '2500', RELAY_REQUEST_TIMEOUT_MS: '2000' });
  const exited = once(doomed, 'exit');
  t.teardown(() => {
    doomed.kill('SIGKILL');
  });
  const [held] = await receiver.waitFor(1, { path: '/hook' });
  doomed.kill('SIGKILL');
  await exited;

  const rescuer = testRelay(database.url, { RELAY_ID: 'relay-rescuer' });
  t.teardown(() => rescuer.stop());
  await rescuer.start();
  const [delivery] = await waitForFinalDeliveries(database.pool, [webhook.id], 1);
  t.like(delivery, { state: 'succeeded', attempts: 2, action: 'webhook.test', contact_id: '0' });
  const [, again] = receiver.received('/hook');
  t.is(again.headers['webhook-id'], held.headers['webhook-id']);
  t.is(JSON.parse(again.body).type, 'webhook.test');
  t.true(again.verified);
  const { rows: attempts } = await database.pool.query(
    'select attempt, status_code, error, relay_id from webhooks.delivery_attempts where delivery_id = $1 order by attempt',
    [delivery.id]);
  t.is(attempts.length, 2);
  t.like(attempts[0], { attempt: 1, relay_id: 'relay-doomed', status_code: null });
  t.regex(attempts[0].error, /^lease expired/);
  t.like(attempts[1], { attempt: 2, status_code: 200, relay_id: 'relay-rescuer' });
  t.is(receiver.received('/hook').length, 2);
});
