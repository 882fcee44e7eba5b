// Two relays given the same RELAY_ID (one environment copied to two replicas) took
// each other's leases for their own: one's release of what it did not hold handed
// back what the other was sending, to be claimed and sent again. A relay holds its
// id in the database while it runs; a second one with that id refuses to start.
import test from 'ava';
import { relayScene, rememberedLog, testRelay, waitForRows } from '../helpers/relay.ts';
import { ownConnection } from '../helpers/db.ts';
import { until, within } from '../helpers/until.ts';

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

/** The server process that holds the relay's RELAY_ID (its connection of its own), in this test's database. */
async function idHolderPids(pool: { query: (text: string, values: unknown[]) => Promise<{ rows: Array<{ pid: number }> }> }, relayId: string): Promise<number[]> {
  const { rows } = await pool.query(
    `select l.pid from pg_catalog.pg_locks l join pg_catalog.pg_database d on d.oid = l.database
     where d.datname = current_database() and l.locktype = 'advisory' and l.granted
       and l.classid = ((webhooks_private.relay_id_lock($1) >> 32) & 4294967295)::oid
       and l.objid = (webhooks_private.relay_id_lock($1) & 4294967295)::oid and l.objsubid = 1`, [relayId]);
  return rows.map((row) => row.pid);
}

test('a relay whose connection holding its RELAY_ID is lost takes the id again before it claims', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret, replies: [{ status: 204 }] });
  const relay = testRelay(database.url, { RELAY_ID: 'relay-lost-alone' });
  t.teardown(() => relay.stop());
  await relay.start();
  const [before] = await idHolderPids(database.pool, 'relay-lost-alone');
  t.truthy(before);
  await database.pool.query('select pg_catalog.pg_terminate_backend($1)', [before]);
  await until('the terminated holder gone', async () => !(await idHolderPids(database.pool, 'relay-lost-alone')).includes(before!));

  const contact = await f.contact(company.id);
  await waitForRows(database.pool, 'select state from webhooks.deliveries where webhook_id = $1 and contact_id = $2',
    [webhook.id, contact.id], (rows) => rows[0]?.state === 'succeeded');
  const after = await idHolderPids(database.pool, 'relay-lost-alone');
  t.is(after.length, 1, 'the id is held again, by a new session of the relay');
  t.not(after[0], before);
});

test('a twin started while a relay had lost its RELAY_ID\'s connection: exactly one of them claims, the other stops saying why', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret, replies: [{ status: 204 }] });
  const first = testRelay(database.url, { RELAY_ID: 'relay-lost-twin' });
  t.teardown(() => first.stop());
  await first.start();
  const [held] = await idHolderPids(database.pool, 'relay-lost-twin');
  await database.pool.query('select pg_catalog.pg_terminate_backend($1)', [held]);
  const twin = testRelay(database.url, { RELAY_ID: 'relay-lost-twin' });
  t.teardown(() => twin.stop());
  // whichever takes the id first: the first relay before its next claim, or the twin as it starts
  const twinRefused = await twin.start().then(() => null, (error: Error) => error);
  const contact = await f.contact(company.id);
  const [row] = await waitForRows(database.pool,
    'select state from webhooks.deliveries where webhook_id = $1 and contact_id = $2', [webhook.id, contact.id],
    (rows) => rows[0]?.state === 'succeeded');
  t.is(row!.state, 'succeeded');
  t.is(receiver.requests.length, 1);
  if (twinRefused) {
    t.regex(twinRefused.message, /^another relay runs with RELAY_ID relay-lost-twin in this database/);
    t.is(first.stats.claimed, 1);
  } else {
    const halted = await within(10_000, first.halted);
    t.not(halted, 'still waiting', 'the first relay stops');
    t.regex(halted === 'still waiting' ? '' : halted.message,
            /^another relay runs with RELAY_ID relay-lost-twin in this database, taken while this relay's connection holding it was lost/);
    t.is(first.stats.claimed, 0);
    t.is(twin.stats.claimed, 1);
  }
  t.is((await idHolderPids(database.pool, 'relay-lost-twin')).length, 1, 'one holds the id');
});

test('a relay whose RELAY_ID another session took while its connection holding it was lost claims nothing and stops, saying why', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret, replies: [{ status: 204 }] });
  const { log, lines } = rememberedLog();
  const relay = testRelay(database.url, { RELAY_ID: 'relay-lost-taken' }, { log });
  t.teardown(() => relay.stop());
  await relay.start();
  const [held] = await idHolderPids(database.pool, 'relay-lost-taken');
  // (a twin's hold, taken in the same statement as the relay's session ends)
  const twin = await ownConnection(database.url, t);
  await twin.query(`select pg_catalog.pg_terminate_backend($1), pg_catalog.pg_advisory_lock(webhooks_private.relay_id_lock('relay-lost-taken'))`, [held]);
  // The relay learns of the loss from that connection's end, which reaches it a moment
  // after the server's: a claim in between is one made while it knew itself holding the
  // id (a loaded fresh-clone run's relay claimed the contact written at once). The
  // promise is from its warning on: it claims nothing until it holds the id again.
  await until('the relay warns that the connection holding its id was lost',
    async () => lines().some((line) => line.includes('the connection holding RELAY_ID relay-lost-taken was lost')));
  const contact = await f.contact(company.id);
  const halted = await within(10_000, relay.halted);
  t.not(halted, 'still waiting', 'the relay stops');
  t.regex(halted === 'still waiting' ? '' : halted.message,
          /^another relay runs with RELAY_ID relay-lost-taken in this database, taken while this relay's connection holding it was lost: this relay stops/);
  t.is(relay.stats.claimed, 0);
  t.is(receiver.requests.length, 0);
  const { rows: [delivery] } = await database.pool.query(
    'select state from webhooks.deliveries where webhook_id = $1 and contact_id = $2', [webhook.id, contact.id]);
  t.is(delivery.state, 'pending');
});

// A relay that lost its RELAY_ID while a request was on its way still settles it: the
// settle applies a result only to a row still leased to that id at that attempt
// (webhooks_relay.settle_deliveries: locked_by, attempts), and a twin that took the id
// meanwhile has not claimed it (its lease holds), so the result written is the one
// request's, once; had the lease run out and the row been claimed again, the attempt
// differs and the result is dropped, the row sent again (at least once)
test('a relay that lost its RELAY_ID to a twin while sending settles that delivery once, then stops; nothing lost, nothing settled twice', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  receiver.route('/hook', { secret: webhook.secret, replies: [{ status: 204, after: gate }] });
  const relay = testRelay(database.url, { RELAY_ID: 'relay-lost-sending' });
  t.teardown(() => relay.stop());
  await relay.start();
  const contact = await f.contact(company.id);
  await receiver.waitFor(1, { path: '/hook' });
  const [held] = await idHolderPids(database.pool, 'relay-lost-sending');
  const twin = await ownConnection(database.url, t);
  await twin.query(`select pg_catalog.pg_terminate_backend($1), pg_catalog.pg_advisory_lock(webhooks_private.relay_id_lock('relay-lost-sending'))`, [held]);
  open();
  const [row] = await waitForRows(database.pool,
    'select state, attempts from webhooks.deliveries where webhook_id = $1 and contact_id = $2', [webhook.id, contact.id],
    (rows) => rows[0]?.state === 'succeeded');
  t.like(row, { state: 'succeeded', attempts: 1 });
  const { rows: attempts } = await database.pool.query(
    `select a.status_code from webhooks.delivery_attempts a join webhooks.deliveries d on d.id = a.delivery_id
     where d.webhook_id = $1 and d.contact_id = $2`, [webhook.id, contact.id]);
  t.deepEqual(attempts, [{ status_code: 204 }]);
  await f.contact(company.id);
  const halted = await within(10_000, relay.halted);
  t.not(halted, 'still waiting', 'the relay stops at its next claim');
  t.is(receiver.requests.length, 1);
});
