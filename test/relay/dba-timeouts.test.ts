// A DBA's timeouts for the database (or the user the relay connects as), set for the
// CRM's own sessions: statement_timeout, idle_session_timeout,
// idle_in_transaction_session_timeout. The relay's sessions bound their own statements
// (RELAY_DB_QUERY_TIMEOUT_MS) and keep connections open however long idle
// (relay/database.ts); the database's values must neither cut every claim nor churn
// the relay's connections while it sleeps.
import test, { type ExecutionContext } from 'ava';
import { ownConnection } from '../helpers/db.ts';
import { until } from '../helpers/until.ts';
import { relayAsleep, relayScene, rememberedLog, testRelay, waitForFinalDeliveries } from '../helpers/relay.ts';

/** The webhook's 50 deliveries all succeeded, each sent once (its first warnings told if not). */
async function fiftySucceededOnce(t: ExecutionContext, db: Parameters<typeof waitForFinalDeliveries>[0], webhookId: string,
  receiver: { received: (path: string) => Array<{ headers: Record<string, unknown> }> }, lines: () => string[]): Promise<void> {
  const done = await waitForFinalDeliveries(db, [webhookId], 50, 20_000).catch((error: Error) => {
    t.log(lines().filter((line) => line.includes('"level":40')).slice(0, 3).join('\n'));
    throw error;
  });
  t.true(done.every((d) => d.state === 'succeeded'));
  const ids = receiver.received('/hook').map((r) => r.headers['webhook-id']);
  t.is(ids.length, 50);
  t.is(new Set(ids).size, 50);
}

test('statement_timeout of 1 ms for the database: the relay still claims, sends and settles, each delivery once', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  await database.pool.query(`alter database ${database.name} set statement_timeout = '1ms'`);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret, otherwise: 204 });
  await database.pool.query(`insert into crm.contacts (company_id, first_name) select $1, 'C' || n from generate_series(1, 50) n`,
    [company.id]);

  const { log, lines } = rememberedLog(2_000);
  const relay = testRelay(database.url, { RELAY_ID: 'relay-timeouts' }, { log });
  t.teardown(() => relay.stop());
  await relay.start();
  await fiftySucceededOnce(t, database.pool, webhook.id, receiver, lines);
  t.deepEqual(lines().filter((line) => line.includes('57014')), [], 'no statement cancelled');
});

test('idle_session_timeout for the database: a sleeping relay keeps its connections, and a change wakes it', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  await database.pool.query(`alter database ${database.name} set idle_session_timeout = '200ms'`);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret, otherwise: 204 });

  const { log, lines } = rememberedLog(2_000);
  // no polling to fall back on: only a notification wakes it
  const relay = testRelay(database.url, { RELAY_ID: 'relay-idle', RELAY_POLL_INTERVAL_MS: '3600000',
    RELAY_RESCUE_INTERVAL_MS: '3600000', RELAY_BACKFILL_INTERVAL_MS: '3600000' }, { log });
  t.teardown(() => relay.stop());
  await relay.start();
  await relayAsleep(database.pool);
  // asleep for five of the database's timeouts; then the sleeping relay's connections are asked for
  const { rows: [before] } = await database.pool.query(
    `select array_agg(pid order by pid) as pids from pg_stat_activity where application_name like 'bpd-webhooks-relay%' and datname = current_database()`);
  await database.pool.query('select pg_sleep(1)');
  const { rows: [after] } = await database.pool.query(
    `select array_agg(pid order by pid) as pids from pg_stat_activity where application_name like 'bpd-webhooks-relay%' and datname = current_database()`);
  // (it may open more meanwhile: its pool grows as it needs)
  t.deepEqual(before.pids.filter((pid: number) => !after.pids.includes(pid)), [], 'none of its connections closed');

  const contact = await f.contact(company.id);
  const [request] = await receiver.waitFor(1, { path: '/hook' });
  t.is(JSON.parse(request!.body).data.contact.id, Number(contact.id));
  t.deepEqual(lines().filter((line) => /connection lost|idle-session/.test(line)), []);
});

test('transaction_timeout of 1 ms for the database (Postgres 17): the relay still claims, sends and settles, each delivery once', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  // the test's own reads, on a connection opened before the database's setting
  const own = await ownConnection(database.url, t);
  await own.query(`alter database ${database.name} set transaction_timeout = '1ms'`);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret, otherwise: 204 });
  await own.query(`insert into crm.contacts (company_id, first_name) select $1, 'C' || n from generate_series(1, 50) n`,
    [company.id]);

  const { log, lines } = rememberedLog(2_000);
  // the idle connection and the listener too: asleep, then woken by a change
  const relay = testRelay(database.url, { RELAY_ID: 'relay-transaction-timeout' }, { log });
  t.teardown(() => relay.stop());
  await relay.start();
  await fiftySucceededOnce(t, own, webhook.id, receiver, lines);
  t.deepEqual(lines().filter((line) => /25P04|connection lost/.test(line)), [], 'no transaction ended by the timeout');
});

test('lock_timeout for the database: a backfill step cut by a lock the CRM holds is tried again on its timer, each snapshot sent once', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret, otherwise: 204 });
  await database.pool.query(`insert into crm.contacts (company_id, first_name) select $1, 'C' || n from generate_series(1, 20) n`,
    [company.id]);
  // batches of 5: the steps after the first are the relay's
  await database.pool.query(`alter database ${database.name} set webhooks.backfill_batch = '5'`);
  await database.pool.query(`alter database ${database.name} set lock_timeout = '200ms'`);
  // the test's own connections, opened before the setting
  const own = await ownConnection(database.url, t);
  const holder = await ownConnection(database.url, t);
  const { rows: [{ id: backfillId }] } = await own.query('select webhooks.backfill($1) as id', [webhook.id]);
  // a DBA's (or the CRM's) lock on the contacts, held until the relay's step has waited for it and given up
  await holder.query('begin');
  await holder.query('lock table crm.contacts in access exclusive mode');
  const relayWaits = async () => (await own.query(
    `select 1 from pg_locks l join pg_stat_activity a on a.pid = l.pid
     where l.relation = 'crm.contacts'::regclass and not l.granted and a.application_name = 'bpd-webhooks-relay'`)).rows.length > 0;

  const relay = testRelay(database.url, { RELAY_ID: 'relay-lock-timeout' }, { log: rememberedLog(2_000).log });
  t.teardown(() => relay.stop());
  await relay.start();
  await until('the relay\'s backfill step waits for the lock', relayWaits);
  await until('the step gives up waiting', async () => !(await relayWaits()));
  await holder.query('rollback');

  const backfillRow = async () => (await own.query('select state, error from webhooks.backfills where id = $1', [backfillId])).rows[0];
  await until('the backfill ended', async () => (await backfillRow()).state !== 'running');
  t.deepEqual(await backfillRow(), { state: 'done', error: null });
  const done = await waitForFinalDeliveries(own, [webhook.id], 20, 20_000);
  t.true(done.every((d) => d.state === 'succeeded'));
  const ids = receiver.received('/hook').map((r) => r.headers['webhook-id']);
  t.is(ids.length, 20);
  t.is(new Set(ids).size, 20);
});
