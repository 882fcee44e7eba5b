// A transaction left open on one webhook's rows (a DBA's session in psql, an app's
// script that writes webhooks.webhooks directly) holds up nothing but that webhook's
// own bookkeeping: the relay's settles, which write every company's results in one
// statement, never wait for it. A writer's transaction left open on a contact holds
// nothing but that contact's own change, not yet there to send.
import test from 'ava';
import { relayScene, rememberedLog, testRelay, waitForFinalDeliveries, waitForRows } from '../helpers/relay.ts';
import { inTransaction } from '../helpers/sql.ts';
import { until } from '../helpers/until.ts';

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

test('a session that writes a webhook\'s old deliveries and stays open holds that hour\'s count: other webhooks\' results are written within seconds; once it ends, the held failure is recorded', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const other = await f.company();
  const contact = await f.contact(company.id);
  let answer!: () => void;
  const answered = new Promise<void>((resolve) => (answer = resolve));
  // one attempt: its failure is final, and a final failure's row changes its hour's count
  const old = await f.webhook({ companyId: company.id, actions: ['contact.updated'], url: receiver.url('/old'), maxAttempts: 1 });
  receiver.route('/old', { secret: old.secret, replies: [{ status: 500, after: answered }], otherwise: 200 });
  const healthy = await f.webhook({ companyId: other.id, actions: ['contact.created'], url: receiver.url('/healthy') });
  receiver.route('/healthy', { secret: healthy.secret, otherwise: 200 });
  // a delivery made two hours ago and due now: its failure changes a counted hour
  const oldDelivery = (state: string) => [
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, created_at,
                                      next_attempt_at, completed_at)
     values ($1, $2, 'contact.updated', $3, '{}', $4, case when $4 = 'succeeded' then 1 else 0 end,
             date_trunc('hour', now()) - interval '2 hours', now(), case when $4 = 'succeeded' then now() end)`,
    [old.id, company.id, contact.id, state],
  ] as [string, unknown[]];
  await database.pool.query(...oldDelivery('pending'));

  // a lease short enough to see it run out
  const relay = testRelay(database.url, { RELAY_REQUEST_TIMEOUT_MS: '2000', RELAY_LEASE_MS: '4000', RELAY_RESCUE_INTERVAL_MS: '200' });
  t.teardown(() => relay.stop());
  await relay.start();
  await receiver.waitFor(1, { path: '/old' });
  // a DBA writes another delivery of that webhook into the same hour, and stays open:
  // the hour's count row is theirs until they end
  const dba = await openTransaction(t, database.pool, oldDelivery('succeeded'));
  answer();
  for (let i = 0; i < 3; i++) await f.contact(other.id);
  const done = await waitForFinalDeliveries(database.pool, [healthy.id], 3, 8_000);
  t.deepEqual(done.map((d) => d.state), ['succeeded', 'succeeded', 'succeeded']);

  // the held failure was left out; once the DBA ends, its lease runs out and it is
  // recorded as failed after its one attempt
  await dba.commit();
  const [failed] = await waitForRows(
    database.pool,
    `select state, attempts from webhooks.deliveries where webhook_id = $1 and state <> 'succeeded'`,
    [old.id],
    (rows) => rows[0]?.state === 'failed',
    15_000,
  );
  t.deepEqual(failed, { state: 'failed', attempts: 1 });
  t.is(receiver.received('/old').length, 1);
});

test('the same session beside leases that ran out: the rescue returns other webhooks\' deliveries within seconds; the held one is failed once it ends', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const other = await f.company();
  const [contact, otherContact] = [await f.contact(company.id), await f.contact(other.id)];
  const old = await f.webhook({ companyId: company.id, actions: ['contact.updated'], url: receiver.url('/old'), maxAttempts: 1 });
  receiver.route('/old', { secret: old.secret, otherwise: 200 });
  const healthy = await f.webhook({ companyId: other.id, actions: ['contact.updated'], url: receiver.url('/healthy') });
  receiver.route('/healthy', { secret: healthy.secret, otherwise: 200 });
  // a relay that died holding two deliveries: the old webhook's last attempt (its
  // failure changes a counted hour) and the other company's first
  const delivery = (webhook: { id: string; company_id: string }, contactId: string, state: string, age: string) => [
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, created_at,
                                      next_attempt_at, locked_by, locked_until, completed_at)
     values ($1, $2, 'contact.updated', $3, '{}', $4, 1, date_trunc('hour', now()) - $5::interval, now() - interval '1 minute',
             case when $4 = 'in_flight' then 'relay-gone' end, case when $4 = 'in_flight' then now() - interval '1 second' end,
             case when $4 = 'succeeded' then now() end)`,
    [webhook.id, webhook.company_id, contactId, state, age],
  ] as [string, unknown[]];
  await database.pool.query(...delivery(old, contact.id, 'in_flight', '2 hours'));
  await database.pool.query(...delivery(healthy, otherContact.id, 'in_flight', '0 hours'));
  // a DBA writes another delivery of the old webhook into the same hour, and stays open
  const dba = await openTransaction(t, database.pool, delivery(old, contact.id, 'succeeded', '2 hours'));

  const relay = testRelay(database.url, { RELAY_RESCUE_INTERVAL_MS: '200' });
  t.teardown(() => relay.stop());
  await relay.start();
  const [done] = await waitForFinalDeliveries(database.pool, [healthy.id], 1, 8_000);
  t.deepEqual([done.state, done.attempts], ['succeeded', 2]);

  await dba.commit();
  const [failed] = await waitForRows(
    database.pool,
    `select state, attempts, last_error from webhooks.deliveries where webhook_id = $1 and state <> 'succeeded'`,
    [old.id],
    (rows) => rows[0]?.state === 'failed',
    8_000,
  );
  t.deepEqual(failed, { state: 'failed', attempts: 1, last_error: 'lease expired: the relay did not settle attempt 1' });
  t.is(receiver.received('/old').length, 0);
});

test('a session that deletes a webhook while deliveries of it wait in the relay, and stays open: handing them back passes over the held rows, and other companies\' deliveries keep being claimed', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const other = await f.company();
  const slow = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/slow') });
  receiver.route('/slow', { secret: slow.secret, otherwise: 'hang' });
  const healthy = await f.webhook({ companyId: other.id, actions: ['contact.created'], url: receiver.url('/healthy') });
  receiver.route('/healthy', { secret: healthy.secret, otherwise: 200 });
  // two deliveries of the slow webhook: one request slot, so the second waits in the
  // relay's queue; the first times out when the second's lease could no longer cover
  // a request, and the second is handed back unsent
  await f.contact(company.id);
  await f.contact(company.id);

  // (the database query bound left at its default, 30 s: a release that waited for the
  // held rows is given up then, as a lost answer, and said so ('cannot release …'),
  // within the wait below. It was 2 s, for every query of the relay: on a loaded
  // machine a first claim ran past it, its answer given up while the claim went on
  // and committed, after the relay had handed back what it did not hold; both
  // deliveries then stayed leased to this relay, unsent, until a rescue, a minute
  // away here, and /slow got no request.)
  const { log, lines } = rememberedLog();
  const relay = testRelay(database.url, {
    RELAY_PER_WEBHOOK_IN_FLIGHT: '1', RELAY_PREFETCH: '1', RELAY_REQUEST_TIMEOUT_MS: '2000', RELAY_LEASE_MS: '3000',
    RELAY_RESCUE_INTERVAL_MS: '60000',
  }, { log });
  t.teardown(() => relay.stop());
  await relay.start();
  await receiver.waitFor(1, { path: '/slow' });
  // the webhook deleted in a transaction left open: its queue rows are the session's
  const dba = await openTransaction(t, database.pool, ['delete from webhooks.webhooks where id = $1', [slow.id]]);

  // the queued delivery's release ends, whatever it could release
  const released = () => lines().map((line) => JSON.parse(line)).find((entry) =>
    /^(released deliveries claimed but not sent|cannot release deliveries claimed but not sent)/.test(entry.msg));
  await until('the relay hands back the queued delivery', async () => released() !== undefined);
  t.like(released(), { msg: 'released deliveries claimed but not sent', queued: 1, released: 0 });

  // the other company's deliveries are claimed and sent meanwhile
  for (let i = 0; i < 3; i++) await f.contact(other.id);
  const done = await waitForFinalDeliveries(database.pool, [healthy.id], 3, 8_000);
  t.deepEqual(done.map((d) => d.state), ['succeeded', 'succeeded', 'succeeded']);
  t.is(receiver.received('/slow').length, 1, 'the queued delivery was never sent');
  await dba.rollback();
});

test('the same session on a disabled webhook\'s hour: the claim that fails its due deliveries unsent does not wait for it, and other companies\' deliveries are claimed meanwhile', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const other = await f.company();
  const contact = await f.contact(company.id);
  const old = await f.webhook({ companyId: company.id, actions: ['contact.updated'], url: receiver.url('/old') });
  receiver.route('/old', { secret: old.secret, otherwise: 200 });
  const healthy = await f.webhook({ companyId: other.id, actions: ['contact.created'], url: receiver.url('/healthy') });
  receiver.route('/healthy', { secret: healthy.secret, otherwise: 200 });
  const oldDelivery = (state: string) => [
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, created_at,
                                      next_attempt_at, completed_at)
     values ($1, $2, 'contact.updated', $3, '{}', $4, case when $4 = 'succeeded' then 1 else 0 end,
             date_trunc('hour', now()) - interval '2 hours', now(), case when $4 = 'succeeded' then now() end)`,
    [old.id, company.id, contact.id, state],
  ] as [string, unknown[]];
  // a delivery made two hours ago, due now, of a webhook since disabled: the next
  // claim fails it unsent, which changes its hour's count
  await database.pool.query(...oldDelivery('pending'));
  await database.pool.query('update webhooks.webhooks set enabled = false where id = $1', [old.id]);
  // a DBA writes another delivery of that webhook into the same hour, and stays open
  const dba = await openTransaction(t, database.pool, oldDelivery('succeeded'));

  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  for (let i = 0; i < 3; i++) await f.contact(other.id);
  const done = await waitForFinalDeliveries(database.pool, [healthy.id], 3, 8_000);
  t.deepEqual(done.map((d) => d.state), ['succeeded', 'succeeded', 'succeeded']);

  // once the DBA ends, the disabled webhook's delivery is failed unsent (by a claim
  // after its put-off)
  await dba.commit();
  const [failed] = await waitForRows(
    database.pool,
    `select state, attempts, last_error from webhooks.deliveries where webhook_id = $1 and state <> 'succeeded'`,
    [old.id],
    (rows) => rows[0]?.state === 'failed',
    15_000,
  );
  t.deepEqual(failed, { state: 'failed', attempts: 0, last_error: 'not sent: the webhook is disabled' });
  t.is(receiver.received('/old').length, 0);
});

test('a writer\'s transaction left open on a contact of an ordered webhook: that contact can have no later change meanwhile; its other contacts and another company\'s are delivered; the held change goes once committed', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const pool = database.pool;
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'], url: receiver.url('/sync') });
  receiver.route('/sync', { secret: hook.secret });
  await pool.query(`select webhooks.set_webhook_delivery($1, null, true)`, [hook.id]);
  const other = await f.company();
  const otherHook = await f.webhook({ companyId: other.id, actions: ['contact.updated'], fields: ['city'], url: receiver.url('/other') });
  receiver.route('/other', { secret: otherHook.secret });
  const held = await f.contact(company.id, { city: 'held 0' });
  const free = await f.contact(company.id, { city: 'free 0' });
  const elsewhere = await f.contact(other.id, { city: 'elsewhere 0' });

  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();

  // the writer's change captured, its delivery not committed, the transaction open
  const writer = await openTransaction(t, pool, [`update crm.contacts set city = 'held 1' where id = $1`, [held.id]]);
  // no later change of that contact can be written meanwhile: another writer waits
  // for the row (here refused after a short lock_timeout), so none can overtake it
  const error = await inTransaction(pool, `set local lock_timeout = '300ms'`,
    (client) => client.query(`update crm.contacts set city = 'held 2' where id = $1`, [held.id])).catch((e: unknown) => e);
  t.is((error as { code?: string }).code, '55P03');

  await pool.query(`update crm.contacts set city = 'free 1' where id = $1`, [free.id]);
  await pool.query(`update crm.contacts set city = 'elsewhere 1' where id = $1`, [elsewhere.id]);
  const [sync] = await receiver.waitFor(1, { path: '/sync' });
  const [away] = await receiver.waitFor(1, { path: '/other' });
  t.is(JSON.parse(sync!.body).data.contact.city, 'free 1');
  t.is(JSON.parse(away!.body).data.contact.city, 'elsewhere 1');
  await waitForFinalDeliveries(pool, [hook.id, otherHook.id], 2);

  await writer.commit();
  const requests = await receiver.waitFor(2, { path: '/sync' });
  t.deepEqual(requests.map((r) => JSON.parse(r.body).data.contact.city), ['free 1', 'held 1']);
  t.true(requests.every((r) => r.verified));
  const deliveries = await waitForFinalDeliveries(pool, [hook.id, otherHook.id], 3);
  t.true(deliveries.every((d) => d.state === 'succeeded' && d.attempts === 1));
});
