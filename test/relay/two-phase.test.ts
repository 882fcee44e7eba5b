// A writer that commits in two phases (webhooks.two_phase = on, docs/relay.md#two-phase-writers)
// sends no NOTIFY: a sleeping relay finds its deliveries at its poll timer's next claim, a relay
// going idle once the prepared transaction's capturing lock is gone, and a prepared
// transaction left open holds up no other company's deliveries.
import test from 'ava';
import pg from 'pg';
import { LOCK_CLASS, LOCK_KEYS } from '../../relay/engine-names.ts';
import { RECHECK_CAP_MS } from '../../relay/wakeup.ts';
import { factories } from '../helpers/factories.ts';
import { startReceiver } from '../helpers/receiver.ts';
import { restartablePostgres } from '../helpers/restartable-postgres.ts';
import { relayAsleep, relayScene, testRelay, waitForRows } from '../helpers/relay.ts';
import { prepareTransaction, rollBackPrepared, transactionName, twoPhaseTest } from '../helpers/two-phase.ts';

const twoPhase = twoPhaseTest(test);
const HOUR = String(60 * 60 * 1000);

/** Runs `sql` in a two-phase writer's transaction and prepares it as `name`. */
const prepareCapture = (pool: pg.Pool, name: string, sql: string, values: unknown[]) =>
  prepareTransaction(pool, name, 'set local webhooks.two_phase = on', (client) => client.query(sql, values));

twoPhase('a relay asleep: a two-phase capture is delivered by the poll timer\'s next claim after COMMIT PREPARED', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  t.teardown(async () => void (await rollBackPrepared(database.url)));
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret });
  const pollMs = 500;
  const relay = testRelay(database.url, { RELAY_POLL_INTERVAL_MS: String(pollMs) });
  t.teardown(() => relay.stop());
  await relay.start();
  for (let round = 1; round <= 3; round++) {
    await relayAsleep(database.pool);
    const name = transactionName();
    await prepareCapture(database.pool, name, 'insert into crm.contacts (company_id) values ($1)', [company.id]);
    const claims = relay.stats.claims;
    await database.pool.query(`commit prepared '${name}'`);
    await receiver.waitFor(round, { path: '/hook', timeoutMs: 10_000 });
    // Brought by the poll timer's next claim, counted in claims, not in milliseconds (a
    // loaded machine runs the timer late, not more often): asleep, the relay claims
    // only on its timer, so that a capture the relay missed would wait tick after tick.
    // At most a claim under way as it committed, the one that found it, and the
    // discovery after it that found none.
    t.log(`round ${round}: delivered at claim ${relay.stats.claims - claims} after COMMIT PREPARED`);
    t.true(relay.stats.claims - claims <= 3, `round ${round}: delivered at claim ${relay.stats.claims - claims} after COMMIT PREPARED`);
  }
});

twoPhase('a prepared transaction left open: other companies\' deliveries go at once, the relay does not spin, and its own delivery comes at its next recheck, a second apart at most, after COMMIT PREPARED', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  t.teardown(async () => void (await rollBackPrepared(database.url)));
  const other = await f.company();
  const held = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/held') });
  receiver.route('/held', { secret: held.secret });
  const free = await f.webhook({ companyId: other.id, actions: ['contact.created'], url: receiver.url('/free') });
  receiver.route('/free', { secret: free.secret });

  // prepared before the relay starts, and left in doubt (a transaction manager that
  // has not decided yet): it holds "capturing" the whole time, as a prepared
  // transaction does across connections and restarts
  const name = transactionName();
  await prepareCapture(database.pool, name, 'insert into crm.contacts (company_id) values ($1)', [company.id]);

  // the poll timer out of the picture: the wake-up protocol alone must bring everything
  const relay = testRelay(database.url, { RELAY_POLL_INTERVAL_MS: HOUR });
  t.teardown(() => relay.stop());
  await relay.start();
  for (let i = 0; i < 3; i++) await f.contact(other.id);
  await receiver.waitFor(3, { path: '/free', timeoutMs: 5_000 });
  const claims = relay.stats.claims;
  // left prepared this long: the relay's rechecks of "capturing" back off to once a
  // second, with a claim each (for captures beside it that committed): a handful, no spin
  await new Promise((resolve) => setTimeout(resolve, 3_000));
  t.true(relay.stats.claims - claims <= 5, `${relay.stats.claims - claims} claims while one transaction stayed prepared`);
  t.is(receiver.received('/held').length, 0);

  await database.pool.query(`commit prepared '${name}'`);
  const committed = Date.now();
  await receiver.waitFor(1, { path: '/held', timeoutMs: 10_000 });
  const waited = Date.now() - committed;
  // A time, as the relay promises one: with no NOTIFY and no poll timer, its rechecks of
  // "capturing", at most RECHECK_CAP_MS apart, find the delivery. Its bound leaves
  // 3 s for the claim and the request on a machine that runs every test file at once.
  t.true(waited < RECHECK_CAP_MS + 3_000, `delivered ${waited} ms after COMMIT PREPARED`);
});

// a server of its own, to restart: it allows prepared transactions whatever the run's does
test('a prepared transaction survives a restart of Postgres with its capturing lock: the relay delivers other companies\' changes at once, and its own after COMMIT PREPARED', async (t) => {
  const server = await restartablePostgres(t, { migrated: true, preparedTransactions: 2 });
  t.teardown(async () => void (await rollBackPrepared(server.url)));

  const pool = server.pool();
  const receiver = await startReceiver();
  t.teardown(() => receiver.close());
  const f = factories(pool);
  const company = await f.company();
  const other = await f.company();
  const held = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/held') });
  receiver.route('/held', { secret: held.secret });
  const free = await f.webhook({ companyId: other.id, actions: ['contact.created'], url: receiver.url('/free') });
  receiver.route('/free', { secret: free.secret });

  const name = transactionName();
  await prepareCapture(pool, name, 'insert into crm.contacts (company_id) values ($1)', [company.id]);
  await server.stop();
  await server.start();

  const { rows: locks } = await pool.query(
    `select l.mode, l.pid from pg_locks l where l.locktype = 'advisory' and l.classid = $1 and l.objid = $2 and l.granted`,
    [LOCK_CLASS, LOCK_KEYS.capturing]);
  t.deepEqual(locks, [{ mode: 'ShareLock', pid: null }], 'the prepared transaction, no session, holds capturing');

  const relay = testRelay(server.url, { RELAY_POLL_INTERVAL_MS: HOUR });
  t.teardown(() => relay.stop());
  await relay.start();
  for (let i = 0; i < 3; i++) await f.contact(other.id);
  await receiver.waitFor(3, { path: '/free', timeoutMs: 5_000 });
  t.is(receiver.received('/held').length, 0);

  await pool.query(`commit prepared '${name}'`);
  const committed = Date.now();
  await receiver.waitFor(1, { path: '/held', timeoutMs: 10_000 });
  const waited = Date.now() - committed;
  // A time, as the relay promises one: with no NOTIFY and no poll timer, its rechecks of
  // "capturing", at most RECHECK_CAP_MS apart, find the delivery. Its bound leaves
  // 3 s for the claim and the request on a machine that runs every test file at once.
  t.true(waited < RECHECK_CAP_MS + 3_000, `delivered ${waited} ms after COMMIT PREPARED`);
});

// A webhook changed by a two-phase writer (its transaction prepared, undecided) holds
// that webhook's row locked until its manager decides, across restarts. The relay never
// waits for it: its deliveries are claimed and sent as the webhook is before the change,
// the other companies' deliveries go on, and a 410 Gone's disabling, which would write
// the row, passes it over (as beside a session left open: open-transaction.test.ts):
// that delivery failed, the webhook stays enabled, and the next 410 disables it.
twoPhase('a webhook change left prepared: the relay\'s other work goes on, the webhook\'s own deliveries too; a 410 meanwhile fails its delivery, and the next one disables it', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  t.teardown(async () => void (await rollBackPrepared(database.url)));
  const other = await f.company();
  const changed = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/changed') });
  receiver.route('/changed', { secret: changed.secret, replies: [200, 410, 410] });
  const free = await f.webhook({ companyId: other.id, actions: ['contact.created'], url: receiver.url('/free') });
  receiver.route('/free', { secret: free.secret });

  const name = transactionName();
  await prepareTransaction(database.pool, name, 'set local webhooks.two_phase = on',
    (client) => client.query(`update webhooks.webhooks set name = 'Renamed' where id = $1`, [changed.id]));

  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  const states = (webhookId: string) => `select array_agg(state order by id) as states from webhooks.deliveries where webhook_id = '${webhookId}'`;
  // its own deliveries: captured and sent as the webhook is before the change
  await f.contact(company.id);
  await waitForRows(database.pool, states(changed.id), [], (rows) => rows[0].states?.join() === 'succeeded');
  // the next is answered 410 Gone: failed, the webhook's row passed over
  await f.contact(company.id);
  await waitForRows(database.pool, states(changed.id), [], (rows) => rows[0].states?.join() === 'succeeded,failed');
  for (let i = 0; i < 3; i++) await f.contact(other.id);
  await waitForRows(database.pool, states(free.id), [], (rows) => rows[0].states?.join() === 'succeeded,succeeded,succeeded');
  const webhook = async () => (await database.pool.query(
    'select name, enabled, disabled_by from webhooks.webhooks where id = $1', [changed.id])).rows[0];
  t.deepEqual(await webhook(), { name: changed.name, enabled: true, disabled_by: null }, 'the change undecided');

  await database.pool.query(`commit prepared '${name}'`);
  t.deepEqual(await webhook(), { name: 'Renamed', enabled: true, disabled_by: null });
  await f.contact(company.id);
  await waitForRows(database.pool, states(changed.id), [], (rows) => rows[0].states?.join() === 'succeeded,failed,failed');
  t.deepEqual(await webhook(), { name: 'Renamed', enabled: false, disabled_by: 'relay' }, 'the next 410 disables it');
  t.is(receiver.received('/changed').length, 3, 'nothing sent twice');
});
