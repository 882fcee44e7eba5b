// A transaction left open on one webhook's rows (a DBA's session in psql, an app's
// script that writes webhooks.webhooks directly) holds up nothing but that webhook's
// own bookkeeping: the relay's settles, which write every company's results in one
// statement, never wait for it.
import test from 'ava';
import { relayScene, testRelay, waitForFinalDeliveries, waitForRows } from '../helpers/relay.ts';

/** A session that runs `statements` and stays open until it ends (commit or rollback), or the test does. */
async function openTransaction(t: { teardown(fn: () => Promise<void>): void }, pool: import('pg').Pool, ...statements: Array<[string, unknown[]]>) {
  const session = await pool.connect();
  let open = true;
  const end = async (how: 'commit' | 'rollback') => {
    if (!open) return;
    open = false;
    await session.query(how);
    session.release();
  };
  t.teardown(() => end('rollback'));
  await session.query('begin');
  for (const [sql, values] of statements) await session.query(sql, values);
  return { commit: () => end('commit'), rollback: () => end('rollback') };
}

test('410 Gone from a webhook whose row a session holds: other webhooks\' results are written at once; the webhook is disabled after that session ends', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const other = await f.company();
  const gone = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/gone') });
  receiver.route('/gone', { secret: gone.secret, otherwise: 410 });
  const healthy = await f.webhook({ companyId: other.id, actions: ['contact.created'], url: receiver.url('/healthy') });
  receiver.route('/healthy', { secret: healthy.secret, otherwise: 200 });

  // a DBA renames the webhook and leaves the transaction open
  const dba = await openTransaction(t, database.pool, ['update webhooks.webhooks set name = $2 where id = $1', [gone.id, 'Renamed']]);

  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  await f.contact(company.id);
  await receiver.waitFor(1, { path: '/gone' });
  // the 410's settle does not wait for the DBA: the gone delivery is recorded, and
  // the other company's deliveries after it go and are recorded as they come
  const [failed] = await waitForFinalDeliveries(database.pool, [gone.id], 1, 5_000);
  t.is(failed.state, 'failed');
  t.is(failed.last_status_code, 410);
  for (let i = 0; i < 3; i++) await f.contact(other.id);
  const done = await waitForFinalDeliveries(database.pool, [healthy.id], 3, 5_000);
  t.deepEqual(done.map((d) => d.state), ['succeeded', 'succeeded', 'succeeded']);

  // the webhook stays enabled while the DBA's change is open; once it ends, the next
  // 410 disables it
  const { rows: [before] } = await database.pool.query('select enabled from webhooks.webhooks where id = $1', [gone.id]);
  t.true(before.enabled);
  await dba.commit();
  await f.contact(company.id);
  const [hook] = await waitForRows(
    database.pool,
    'select enabled, disabled_by, name from webhooks.webhooks where id = $1',
    [gone.id],
    (rows) => rows[0].enabled === false,
  );
  t.deepEqual(hook, { enabled: false, disabled_by: 'relay', name: 'Renamed' });
});

test('a session that deletes a webhook while its request is in flight, and stays open: other webhooks\' results are written within about a second; rolled back, the delivery is sent again', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const other = await f.company();
  let answer!: () => void;
  const answered = new Promise<void>((resolve) => (answer = resolve));
  const doomed = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/doomed') });
  receiver.route('/doomed', { secret: doomed.secret, replies: [{ status: 500, after: answered }], otherwise: 200 });
  const healthy = await f.webhook({ companyId: other.id, actions: ['contact.created'], url: receiver.url('/healthy') });
  receiver.route('/healthy', { secret: healthy.secret, otherwise: 200 });

  // a lease short enough to see it run out
  const relay = testRelay(database.url, { RELAY_REQUEST_TIMEOUT_MS: '2000', RELAY_LEASE_MS: '4000', RELAY_RESCUE_INTERVAL_MS: '200' });
  t.teardown(() => relay.stop());
  await relay.start();
  await f.contact(company.id);
  await receiver.waitFor(1, { path: '/doomed' });
  // the webhook deleted in a transaction left open (its queue rows and its lane with
  // it), then its request answered: the settle cannot have that delivery's row
  const dba = await openTransaction(t, database.pool, ['delete from webhooks.webhooks where id = $1', [doomed.id]]);
  answer();
  for (let i = 0; i < 3; i++) await f.contact(other.id);
  const done = await waitForFinalDeliveries(database.pool, [healthy.id], 3, 5_000);
  t.deepEqual(done.map((d) => d.state), ['succeeded', 'succeeded', 'succeeded']);
  // the held delivery's result was left out: no attempt recorded, still in flight
  const { rows: attempts } = await database.pool.query('select 1 from webhooks.delivery_attempts where webhook_id = $1', [doomed.id]);
  t.is(attempts.length, 0);

  // the delete rolled back: the lease runs out, and the delivery goes again, as the
  // same message
  await dba.rollback();
  const [delivery] = await waitForFinalDeliveries(database.pool, [doomed.id], 1, 15_000);
  t.is(delivery.state, 'succeeded');
  const requests = receiver.received('/doomed');
  t.is(requests.length, 2);
  t.true(requests.every((r) => r.headers['webhook-id'] === delivery.message_id && r.verified));
});

test('a session that disables and enables a webhook while its request is in flight, and stays open: the failure is recorded, its count left to the enable, and other webhooks\' results are written within about a second', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const other = await f.company();
  let answer!: () => void;
  const answered = new Promise<void>((resolve) => (answer = resolve));
  const flaky = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/flaky') });
  receiver.route('/flaky', { secret: flaky.secret, replies: [{ status: 500, after: answered }], otherwise: 200 });
  const healthy = await f.webhook({ companyId: other.id, actions: ['contact.created'], url: receiver.url('/healthy') });
  receiver.route('/healthy', { secret: healthy.secret, otherwise: 200 });

  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  await f.contact(company.id);
  await receiver.waitFor(1, { path: '/flaky' });
  // enabled again in a transaction left open: its lane, reset, is held by it, and the
  // settle that counts the failure cannot have it
  const dba = await openTransaction(t, database.pool,
    ['update webhooks.webhooks set enabled = false where id = $1', [flaky.id]],
    ['update webhooks.webhooks set enabled = true where id = $1', [flaky.id]]);
  answer();
  const [attempt] = await waitForRows(
    database.pool,
    'select attempt, status_code from webhooks.delivery_attempts where webhook_id = $1',
    [flaky.id],
    (rows) => rows.length === 1,
    5_000,
  );
  t.deepEqual(attempt, { attempt: 1, status_code: 500 });
  for (let i = 0; i < 3; i++) await f.contact(other.id);
  const done = await waitForFinalDeliveries(database.pool, [healthy.id], 3, 5_000);
  t.deepEqual(done.map((d) => d.state), ['succeeded', 'succeeded', 'succeeded']);

  // the enable committed: its lane starts clean, and the retry goes
  await dba.commit();
  const { rows: [lane] } = await database.pool.query('select failures, failing_since from webhooks_private.lanes where webhook_id = $1', [flaky.id]);
  t.deepEqual(lane, { failures: 0, failing_since: null });
});
