// The relay's connection ended by a DBA (pg_terminate_backend) in the middle of a
// settle: the settle's statement is steered to wait (the test holds the webhook's lane,
// which a settle counts a failure into, sql/28_lanes.sql) and its backend is ended
// while pg_locks shows it waiting. Nothing of that settle was written; the relay
// writes the result again on a new connection. Each attempt was sent once and is
// recorded once: no lease runs out, nothing is sent twice. And every connection of the
// pool ended while a send waits for its answer: settled once they are back, sent once;
// or kept out until the lease runs out: rescued, sent again once, never a third time.
import test from 'ava';
import { ownConnection } from '../helpers/db.ts';
import { relayScene, rememberedLog, testRelay, waitForFinalDeliveries, waitForRows } from '../helpers/relay.ts';

test('the relay\'s connection ended while its settle waits: the result is written again, each attempt sent and recorded once', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  let answer!: () => void;
  receiver.route('/hook', { secret: webhook.secret, replies: [{ status: 500, after: new Promise<void>((resolve) => (answer = resolve)) }], otherwise: 200 });
  const { log, lines } = rememberedLog(2_000);
  const relay = testRelay(database.url, { RELAY_ID: 'relay-settle-ended' }, { log });
  t.teardown(() => relay.stop());
  await relay.start();
  await f.contact(company.id);
  await receiver.waitFor(1, { path: '/hook' });

  const holder = await ownConnection(database.url, t);
  await holder.query('begin');
  await holder.query('select 1 from webhooks_private.lanes where webhook_id = $1 for update', [webhook.id]);
  answer();
  const [{ pid }] = await waitForRows<{ pid: number }>(database.pool,
    `select a.pid from pg_stat_activity a join pg_locks l on l.pid = a.pid
     where a.datname = $1 and a.application_name = 'bpd-webhooks-relay' and not l.granted and a.query ~ 'settle'`,
    [database.name], (rows) => rows.length > 0, 10_000);
  await database.pool.query('select pg_terminate_backend($1)', [pid]);
  await waitForRows(database.pool, 'select 1 from pg_stat_activity where pid = $1', [pid], (rows) => rows.length === 0);
  await holder.query('rollback');

  const [delivery] = await waitForFinalDeliveries(database.pool, [webhook.id], 1, 20_000);
  t.like(delivery, { state: 'succeeded', attempts: 2, last_status_code: 200 });
  const { rows } = await database.pool.query(
    'select attempt, status_code from webhooks.delivery_attempts where webhook_id = $1 order by attempt', [webhook.id]);
  t.deepEqual(rows, [{ attempt: 1, status_code: 500 }, { attempt: 2, status_code: 200 }]);
  const requests = receiver.received('/hook');
  t.is(requests.length, 2, 'the failure and the retry, each once');
  t.is(new Set(requests.map((r) => r.headers['webhook-id'])).size, 1);
  t.true(lines().some((line) => line.includes('settle failed; will try again')), 'the lost settle said so');
});

test('the relay\'s connections ended between its claim and the answer to its send: the attempt is settled once they are back, sent once', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  let answer!: () => void;
  receiver.route('/hook', { secret: webhook.secret, replies: [{ status: 204, after: new Promise<void>((resolve) => (answer = resolve)) }], otherwise: 204 });
  const relay = testRelay(database.url, { RELAY_ID: 'relay-claim-ended' });
  t.teardown(() => relay.stop());
  await relay.start();
  await f.contact(company.id);
  // the request is at the receiver, unanswered: every connection of the relay's pool, and the claims' own, is ended
  await receiver.waitFor(1, { path: '/hook' });
  const { rows: [{ pids }] } = await database.pool.query(
    `select array_agg(pid) as pids from pg_stat_activity where datname = $1 and application_name = 'bpd-webhooks-relay'`, [database.name]);
  await database.pool.query('select pg_terminate_backend(pid) from unnest($1::int[]) pid', [pids]);
  await waitForRows(database.pool, 'select 1 from pg_stat_activity where pid = any ($1::int[])', [pids], (rows) => rows.length === 0);
  answer();

  const [delivery] = await waitForFinalDeliveries(database.pool, [webhook.id], 1, 20_000);
  t.like(delivery, { state: 'succeeded', attempts: 1, last_status_code: 204 });
  const { rows } = await database.pool.query(
    'select attempt, status_code from webhooks.delivery_attempts where webhook_id = $1 order by attempt', [webhook.id]);
  t.deepEqual(rows, [{ attempt: 1, status_code: 204 }]);
  t.is(receiver.received('/hook').length, 1, 'sent once');
});

test('the relay\'s connections ended and refused until its lease has run out, its send answered meanwhile: settled or rescued, never lost, sent at most twice', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  let answer!: () => void;
  receiver.route('/hook', { secret: webhook.secret, replies: [{ status: 204, after: new Promise<void>((resolve) => (answer = resolve)) }], otherwise: 204 });
  const own = await ownConnection(database.url, t);
  // (a database refuses new connections only when told from another)
  const server = new URL(database.url);
  server.pathname = '/postgres';
  const dba = await ownConnection(server.toString(), t);
  const relay = testRelay(database.url, { RELAY_ID: 'relay-lease-ended', RELAY_LEASE_MS: '2000', RELAY_REQUEST_TIMEOUT_MS: '1500' });
  t.teardown(() => relay.stop());
  await relay.start();
  await f.contact(company.id);
  await receiver.waitFor(1, { path: '/hook' });
  await dba.query(`alter database ${database.name} with allow_connections false`);
  t.teardown(() => dba.query(`alter database ${database.name} with allow_connections true`).then(() => {}));
  await own.query(`select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and application_name like 'bpd-webhooks-relay%'`,
    [database.name]);
  answer();
  // answered, its settle refused, until the lease has run out: then connections are let in again
  await waitForRows(own, 'select 1 from webhooks.delivery_queue where webhook_id = $1 and locked_until < now()', [webhook.id],
    (rows) => rows.length > 0);
  await dba.query(`alter database ${database.name} with allow_connections true`);

  const [delivery] = await waitForFinalDeliveries(own, [webhook.id], 1, 20_000);
  t.like(delivery, { state: 'succeeded', last_status_code: 204 });
  const requests = receiver.received('/hook').length;
  t.true(requests === 1 || requests === 2, `sent ${requests} times`);
  const { rows } = await own.query('select attempt from webhooks.delivery_attempts where webhook_id = $1 order by attempt', [webhook.id]);
  t.true(rows.length <= requests, 'no attempt recorded that was not sent');
  t.is(delivery.attempts, rows.length);
});
