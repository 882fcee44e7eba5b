// A DBA's date, time, interval, float and bytea styles for the database: the relay's
// sessions inherit them (relay/database.ts sets none of them), so whatever the relay
// reads of times must not depend on them; and its client encoding, which they do not
// (node-postgres asks for UTF8). What a receiver is sent, its signature and its
// webhook-timestamp (its attempt's time), is what a database with the defaults sends.
import test from 'ava';
import { relayScene, rememberedLog, testRelay, waitForFinalDeliveries } from '../helpers/relay.ts';

const STYLES: Array<[string, string]> = [
  ['timezone', 'Asia/Kolkata'], ['datestyle', 'SQL, DMY'], ['intervalstyle', 'postgres_verbose'],
  ['extra_float_digits', '0'], ['bytea_output', 'escape'],
  // (node-postgres asks for UTF8 when it connects, which the database's default does not override)
  ['client_encoding', 'LATIN1'],
];

test('a database with other date, time, interval, float and bytea styles and another client encoding: the relay sends the same payload, signed, timestamped by its attempt, and settles it', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  for (const [name, value] of STYLES) await database.pool.query(`alter database ${database.name} set ${name} = '${value}'`);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook'),
    fields: ['first_name', 'created_at'] });
  receiver.route('/hook', { secret: webhook.secret, replies: [500], otherwise: 204 });
  // (a name LATIN1 cannot spell)
  const contact = await f.contact(company.id, { first_name: 'Zoë 中文', created_at: '2026-03-01T12:34:56.789Z' });

  const { log, lines } = rememberedLog(500);
  const relay = testRelay(database.url, { RELAY_ID: 'relay-styles' }, { log });
  t.teardown(() => relay.stop());
  await relay.start();
  const [delivery] = await waitForFinalDeliveries(database.pool, [webhook.id], 1, 20_000);
  t.like(delivery, { state: 'succeeded', attempts: 2 });
  const requests = receiver.received('/hook');
  t.is(requests.length, 2);
  t.true(requests.every((r) => r.verified));
  const { rows: [history] } = await database.pool.query(
    'select h.payload::text as payload from webhooks.delivery_history h where h.webhook_id = $1', [webhook.id]);
  // (webhook-timestamp: the attempt's time, in whole seconds, as recorded)
  const { rows: attempts } = await database.pool.query(
    `select floor(extract(epoch from a.attempted_at))::bigint::text as at
       from webhooks.delivery_attempts a where a.webhook_id = $1 order by a.attempt`, [webhook.id]);
  t.deepEqual(requests.map((request) => request.headers['webhook-timestamp']), attempts.map((attempt) => attempt.at));
  for (const request of requests) t.is(request.body, history.payload);
  t.deepEqual(JSON.parse(requests[0]!.body).data.contact, { id: Number(contact.id), first_name: 'Zoë 中文', created_at: '2026-03-01T12:34:56.789+00:00' });
  t.deepEqual(lines().filter((line) => /"level":(40|50)/.test(line) && !line.includes('"status":500')), []);
});
