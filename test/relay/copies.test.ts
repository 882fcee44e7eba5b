// Two databases where one is a copy of the other (a backup restored for staging, a
// standby promoted while the old primary's relay still runs): both hold the same
// unsent deliveries under the same message ids, and a relay on each sends them. The
// copy is stopped from sending by one setting of its own, webhooks.sending = off,
// which a relay reads at start and, while it runs, on its rescuer's timer
// (docs/operations.md, "Backups and copies").
import test from 'ava';
import { once } from 'node:events';
import pino from 'pino';
import { relayPool } from '../../relay/database.ts';
import { databaseSending, ping } from '../../relay/queries.ts';
import { relayLoginUrl } from '../helpers/crm-role.ts';
import { copyOfTestDatabase } from '../helpers/db.ts';
import { lines } from '../helpers/lines.ts';
import { freezableProxy } from '../helpers/proxy.ts';
import { gatedReplies } from '../helpers/receiver.ts';
import { relayScene, spawnRelay, testRelay, waitForRows } from '../helpers/relay.ts';

async function sceneWithCopy(t: Parameters<typeof relayScene>[0]) {
  const scene = await relayScene(t);
  const webhook = await scene.f.webhook({ companyId: scene.company.id, actions: ['contact.created'], url: scene.receiver.url('/hook') });
  scene.receiver.route('/hook', { secret: webhook.secret });
  const contact = await scene.f.contact(scene.company.id);
  const copy = await copyOfTestDatabase(scene.database);
  t.teardown(() => copy.drop());
  return { ...scene, webhook, contact, copy };
}

const pendingOf = 'select id, state, attempts from webhooks.deliveries where webhook_id = $1 and contact_id = $2';

test('a copy holds the same pending delivery under the same message id, and a relay on each sends it: the receiver gets it twice', async (t) => {
  const { database, copy, receiver, webhook, contact } = await sceneWithCopy(t);
  const [original] = (await database.pool.query(pendingOf, [webhook.id, contact.id])).rows;
  const [copied] = (await copy.pool.query(pendingOf, [webhook.id, contact.id])).rows;
  t.deepEqual(copied, original);

  const relays = [testRelay(database.url, { RELAY_ID: 'relay-original' }), testRelay(copy.url, { RELAY_ID: 'relay-copy' })];
  t.teardown(() => Promise.all(relays.map((relay) => relay.stop())));
  await Promise.all(relays.map((relay) => relay.start()));
  const requests = await receiver.waitFor(2, { path: '/hook' });
  const [first, second] = requests;
  t.truthy(first!.headers['webhook-id']);
  t.is(second!.headers['webhook-id'], first!.headers['webhook-id']);
  t.is(second!.body, first!.body);
  t.true(requests.every((r) => r.verified));
});

test('a relay started where webhooks.sending = off exits 1 at once, naming the setting, and sends nothing; the original sends once', async (t) => {
  const { database, copy, receiver, webhook, contact } = await sceneWithCopy(t);
  await copy.pool.query(`alter database ${copy.name} set webhooks.sending = off`);

  const copyRelay = spawnRelay(copy.url, { RELAY_ID: 'relay-copy', RELAY_LOG_LEVEL: 'info' });
  t.teardown(() => copyRelay.kill('SIGKILL'));
  const out = lines(copyRelay.stdout!);
  const [code] = await Promise.race([once(copyRelay, 'exit'), receiver.waitFor(1, { path: '/hook' }).then(() => ['sent'])]);
  t.is(code, 1, out.seen.join('\n'));
  const fatal = out.seen.map((line) => JSON.parse(line)).find((line) => line.level === 60);
  t.regex(fatal?.msg ?? '', /webhooks\.sending = 'off'/, out.seen.join('\n'));
  t.deepEqual((await copy.pool.query(pendingOf, [webhook.id, contact.id])).rows.map((r) => [r.state, r.attempts]), [['pending', 0]]);
  t.is(receiver.requests.length, 0);

  const relay = testRelay(database.url, { RELAY_ID: 'relay-original' });
  t.teardown(() => relay.stop());
  await relay.start();
  await waitForRows(database.pool, pendingOf, [webhook.id, contact.id], (rows) => rows[0]?.state === 'succeeded');
  t.is(receiver.received('/hook').length, 1);
});

test('a relay started before its database answers reads webhooks.sending once it does, before any claim', async (t) => {
  const { copy, receiver } = await sceneWithCopy(t);
  await copy.pool.query(`alter database ${copy.name} set webhooks.sending = off`);
  const proxy = await freezableProxy(new URL(copy.url));
  t.teardown(() => proxy.close());
  proxy.silent();
  const copyRelay = spawnRelay(proxy.url, { RELAY_ID: 'relay-copy', RELAY_LOG_LEVEL: 'info', RELAY_DB_QUERY_TIMEOUT_MS: '500' });
  t.teardown(() => copyRelay.kill('SIGKILL'));
  const out = lines(copyRelay.stdout!);
  await out.next(/not reachable yet/);
  proxy.speak();
  // (as it was: it claimed and sent once the database answered, the check passed over)
  const [code] = await Promise.race([once(copyRelay, 'exit'), receiver.waitFor(1, { path: '/hook' }).then(() => ['sent'])]);
  t.is(code, 1, out.seen.join('\n'));
  const fatal = out.seen.map((line) => JSON.parse(line)).find((line) => line.level === 60);
  t.regex(fatal?.msg ?? '', /webhooks\.sending = 'off'/, out.seen.join('\n'));
  t.is(receiver.requests.length, 0);
});

test('a value of webhooks.sending the relay cannot read stops it too, rather than send from a copy by a typo', async (t) => {
  const { copy, receiver } = await sceneWithCopy(t);
  await copy.pool.query(`alter database ${copy.name} set webhooks.sending = 'of'`);
  const copyRelay = spawnRelay(copy.url, { RELAY_ID: 'relay-copy', RELAY_LOG_LEVEL: 'info' });
  t.teardown(() => copyRelay.kill('SIGKILL'));
  const out = lines(copyRelay.stdout!);
  const [code] = await Promise.race([once(copyRelay, 'exit'), receiver.waitFor(1, { path: '/hook' }).then(() => ['sent'])]);
  t.is(code, 1, out.seen.join('\n'));
  const fatal = out.seen.map((line) => JSON.parse(line)).find((line) => line.level === 60);
  t.regex(fatal?.msg ?? '', /webhooks\.sending = 'of', which is neither on nor off/, out.seen.join('\n'));
  t.is(receiver.requests.length, 0);
});

test('webhooks.sending = on (or unset) sends as before', async (t) => {
  const { copy, receiver, webhook, contact } = await sceneWithCopy(t);
  await copy.pool.query(`alter database ${copy.name} set webhooks.sending = on`);
  const relay = testRelay(copy.url, { RELAY_ID: 'relay-copy' });
  t.teardown(() => relay.stop());
  await relay.start();
  await waitForRows(copy.pool, pendingOf, [webhook.id, contact.id], (rows) => rows[0]?.state === 'succeeded');
  t.is(receiver.received('/hook').length, 1);
});

test('a delivery in flight when the copy was made is sent again from the copy once its lease runs out: the same webhook-id, its attempts counting both requests', async (t) => {
  const scene = await relayScene(t);
  const { database, receiver, f, company } = scene;
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  // the original's request is never answered: it is in flight when the copy is made
  receiver.route('/hook', { secret: webhook.secret, replies: ['hang'], otherwise: 200 });
  const contact = await f.contact(company.id);
  const original = testRelay(database.url, { RELAY_ID: 'relay-original', RELAY_LEASE_MS: '5000', RELAY_REQUEST_TIMEOUT_MS: '4500' });
  t.teardown(() => original.stop());
  await original.start();
  const [first] = await receiver.waitFor(1, { path: '/hook' });
  const copy = await copyOfTestDatabase(database);
  t.teardown(() => copy.drop());
  const [leased] = (await copy.pool.query(
    'select state, attempts, locked_by from webhooks.deliveries where webhook_id = $1 and contact_id = $2', [webhook.id, contact.id])).rows;
  t.like(leased, { attempts: 1, locked_by: 'relay-original' });

  const relay = testRelay(copy.url, { RELAY_ID: 'relay-copy' });
  t.teardown(() => relay.stop());
  await relay.start();
  const [, second] = await receiver.waitFor(2, { path: '/hook' });
  t.is(second!.headers['webhook-id'], first!.headers['webhook-id']);
  t.is(second!.body, first!.body);
  t.true(second!.verified);
  const [row] = await waitForRows(copy.pool,
    'select state, attempts from webhooks.deliveries where webhook_id = $1 and contact_id = $2', [webhook.id, contact.id],
    (rows) => rows[0]?.state === 'succeeded');
  t.deepEqual(row, { state: 'succeeded', attempts: 2 });
});

const stateOf = 'select state, attempts, locked_by from webhooks.deliveries where webhook_id = $1 and contact_id = $2';

for (const value of ['off', 'of']) {
  test(`a running relay that reads webhooks.sending = '${value}' claims no more, lets its request in flight finish and settle, and exits 1 naming the setting`, async (t) => {
    const { database, receiver, f, company } = await relayScene(t);
    const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
    const { replies, opens } = gatedReplies(1);
    receiver.route('/hook', { secret: webhook.secret, replies });
    const first = await f.contact(company.id);
    const relay = spawnRelay(database.url, { RELAY_ID: 'relay-running', RELAY_LOG_LEVEL: 'info' });
    t.teardown(() => relay.kill('SIGKILL'));
    const out = lines(relay.stdout!);
    await receiver.waitFor(1, { path: '/hook' });

    // (the setting reaches only new sessions: the relay's are all open by now)
    await database.pool.query(`alter database ${database.name} set webhooks.sending = '${value}'`);
    await out.next(/webhooks\.sending = /, 10_000);
    const second = await f.contact(company.id);
    opens[0]!();
    const [code] = await once(relay, 'exit');
    t.is(code, 1, out.seen.join('\n'));
    const fatal = out.seen.map((line) => JSON.parse(line)).find((line) => line.level === 60);
    t.regex(fatal?.msg ?? '', new RegExp(`webhooks\\.sending = '${value}'`), out.seen.join('\n'));
    t.deepEqual((await database.pool.query(stateOf, [webhook.id, first.id])).rows, [{ state: 'succeeded', attempts: 1, locked_by: null }]);
    t.deepEqual((await database.pool.query(stateOf, [webhook.id, second.id])).rows, [{ state: 'pending', attempts: 0, locked_by: null }]);
    t.is(receiver.received('/hook').length, 1);
  });
}

// What a running relay reads is what its next session would start with. Postgres gives
// a new session the setting of its login role in its database first, else the login
// role's own, else the database's (else every role's everywhere); the role the relay's
// sessions switch to (RELAY_DB_ROLE, bpd_webhooks_relay) brings none of its own:
// Postgres applies a role's settings at login only. Until 2026-12-07 a running relay
// read the database's alone: `alter role … set webhooks.sending = off` stopped it only
// at its next start, and one set on for its login beside off for the database stopped
// a relay that a restart would have kept sending.
test('a running relay reads webhooks.sending as its next session would start with it: its login in the database, its login, then the database', async (t) => {
  const { database } = await relayScene(t);
  const { role, url } = await relayLoginUrl(t, database);
  const relaysPool = () => relayPool({ databaseUrl: url, role: 'bpd_webhooks_relay', log: pino({ level: 'silent' }), queryTimeoutMs: 30_000, max: 1 });
  const running = relaysPool();
  t.teardown(() => running.end());
  t.is((await ping(running)).sending, null, 'its session open before any setting');
  const nextStart = async () => {
    const pool = relaysPool();
    try {
      return (await ping(pool)).sending;
    } finally {
      await pool.end();
    }
  };
  const steps: Array<[string, string | null]> = [
    [`alter database ${database.name} set webhooks.sending = off`, 'off'],
    [`alter role ${role} set webhooks.sending = on`, 'on'],
    [`alter role ${role} in database ${database.name} set webhooks.sending = 'of'`, 'of'],
    [`alter role ${role} in database ${database.name} reset webhooks.sending`, 'on'],
    [`alter role ${role} reset webhooks.sending`, 'off'],
    [`alter role bpd_webhooks_relay in database ${database.name} set webhooks.sending = on`, 'off'],
    [`alter database ${database.name} reset webhooks.sending`, null],
  ];
  for (const [statement, wanted] of steps) {
    await database.pool.query(statement);
    t.deepEqual({ running: await databaseSending(running), nextStart: await nextStart() }, { running: wanted, nextStart: wanted }, statement);
  }
});

test('a running relay whose login is given webhooks.sending = off (alter role … set) claims no more and exits 1 naming the setting, as its next start would', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const { role, url } = await relayLoginUrl(t, database);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret });
  const first = await f.contact(company.id);
  const relay = spawnRelay(url, { RELAY_ID: 'relay-running', RELAY_LOG_LEVEL: 'info' });
  t.teardown(() => relay.kill('SIGKILL'));
  const out = lines(relay.stdout!);
  await waitForRows(database.pool, stateOf, [webhook.id, first.id], (rows) => rows[0]?.state === 'succeeded');

  // (its sessions are all open by now)
  await database.pool.query(`alter role ${role} set webhooks.sending = off`);
  await out.next(/webhooks\.sending = /, 10_000);
  const [code] = await once(relay, 'exit');
  t.is(code, 1, out.seen.join('\n'));
  const fatal = out.seen.map((line) => JSON.parse(line)).find((line) => line.level === 60);
  t.regex(fatal?.msg ?? '', /webhooks\.sending = 'off'/, out.seen.join('\n'));
  const second = await f.contact(company.id);
  t.deepEqual((await database.pool.query(stateOf, [webhook.id, second.id])).rows, [{ state: 'pending', attempts: 0, locked_by: null }]);
  t.is(receiver.received('/hook').length, 1);
});
