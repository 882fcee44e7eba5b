// The destination guard end to end: a real relay, a real receiver on 127.0.0.2 that
// the allow-list leaves out, and every spelling of that address a webhook URL can
// carry. None may reach it; each is one recorded, failed attempt that tells the
// tenant no more than "not a public address".
import { Writable } from 'node:stream';
import test from 'ava';
import pino from 'pino';
import { Relay } from '../../relay/loop.ts';
import { relaySettings } from '../../relay/settings.ts';
import { TENANT_REFUSAL } from '../../relay/destinations.ts';
import { startTestApi } from '../helpers/api.ts';
import { startReceiver } from '../helpers/receiver.ts';
import { relayScene, testRelayEnvironment, waitForFinalDeliveries } from '../helpers/relay.ts';

/** Ways to write 127.0.0.2 (port added below) that URL parsers or resolvers accept. */
const SPELLINGS = [
  'http://127.0.0.2',
  'http://2130706434', // decimal
  'http://0x7f000002', // hex
  'http://0x7f.0.0.2', // hex octet
  'http://0177.0.0.2', // octal
  'http://127.2', // short
  'http://127.0.0.2.', // trailing dot
  'http://[::ffff:127.0.0.2]', // IPv4-mapped, dotted
  'http://[::ffff:7f00:2]', // IPv4-mapped, hex
  'http://[0:0:0:0:0:ffff:7f00:2]',
  'http://[::ffff:0:7f00:2]', // IPv4-translated
  'http://[::127.0.0.2]', // IPv4-compatible
  'http://[64:ff9b::127.0.0.2]', // NAT64
  'http://[64:ff9b:1::7f00:2]', // NAT64, local use
  'http://[2002:7f00:2::1]', // 6to4
  'http://[2001:0:7f00:2::80ff:fffd]', // Teredo: server and client are 127.0.0.2
];

test('every spelling of a loopback address outside the allow-list is refused, recorded, and never reached', async (t) => {
  const { database, receiver: allowedReceiver, f, company } = await relayScene(t);
  const inside = await startReceiver({ host: '127.0.0.2' });
  t.teardown(() => inside.close());
  const port = new URL(inside.origin).port;

  const lines: string[] = [];
  const log = pino(
    { level: 'warn' },
    new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    }),
  );
  const relay = new Relay(relaySettings(testRelayEnvironment(database.url, { RELAY_ALLOW_NETWORKS: '127.0.0.1/32' })), { log });
  t.teardown(() => relay.stop());

  const refused = [];
  for (const origin of SPELLINGS) {
    refused.push(await f.webhook({ companyId: company.id, actions: ['contact.created'], url: `${origin}:${port}/x`, maxAttempts: 1 }));
  }
  const allowed = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: allowedReceiver.url('/ok'), maxAttempts: 1 });
  await f.contact(company.id);

  const { claimed } = await relay.runOnce();
  t.is(claimed, SPELLINGS.length + 1);
  const deliveries = await waitForFinalDeliveries(database.pool, [...refused.map((w) => w.id), allowed.id], SPELLINGS.length + 1);
  const byWebhook = new Map(deliveries.map((d) => [d.webhook_id as string, d]));
  t.deepEqual(inside.requests.map((r) => r.path), [], 'nothing reached 127.0.0.2');

  t.is(byWebhook.get(allowed.id)!.state, 'succeeded', 'the allow-list lets 127.0.0.1 through');
  for (const [i, webhook] of refused.entries()) {
    const delivery = byWebhook.get(webhook.id)!;
    t.like(delivery, { state: 'failed', last_error: TENANT_REFUSAL, attempts: 1 }, SPELLINGS[i]);
    const { rows: attempts } = await database.pool.query(
      'select status_code, error, response_body from webhooks.delivery_attempts where delivery_id = $1',
      [delivery.id],
    );
    t.deepEqual(attempts, [{ status_code: null, error: TENANT_REFUSAL, response_body: null }], SPELLINGS[i]);
  }
  t.is(TENANT_REFUSAL, 'destination refused: not a public address');

  // the operator's log says what was refused and why
  const refusals = lines.map((line) => JSON.parse(line)).filter((entry) => /destination refused/.test(entry.msg));
  t.is(refusals.length, SPELLINGS.length);
  t.true(refusals.every((entry) => /127\.0\.0\.2|7f00:2/.test(entry.why) && /RELAY_ALLOW_NETWORKS \(127\.0\.0\.1\/32\)/.test(entry.why)));
});

test('through the API a tenant sees "not a public address" and nothing more: no address, no allow-list, no relay', async (t) => {
  const { database, f, company } = await relayScene(t);
  const inside = await startReceiver({ host: '127.0.0.2' });
  t.teardown(() => inside.close());
  const api = await startTestApi(database.url);
  t.teardown(() => api.stop());
  const relay = new Relay(
    relaySettings(testRelayEnvironment(database.url, { RELAY_ALLOW_NETWORKS: '127.0.0.1/32', RELAY_ID: 'relay-host.internal.example:42:abc' })),
    { log: pino({ level: 'silent' }) },
  );
  t.teardown(() => relay.stop());
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: `http://[::ffff:7f00:2]:${new URL(inside.origin).port}/x`, maxAttempts: 1 });
  await f.contact(company.id);
  await relay.runOnce();
  await waitForFinalDeliveries(database.pool, [webhook.id], 1);

  const token = await api.token(company.id, 'webhook_viewer');
  const seen = await api.gql(token, `{ allDeliveries(first: 10) { nodes { state lastError lastStatusCode
      deliveryAttemptsByDeliveryId(first: 10) { nodes { attempt statusCode error responseBody } } } } }`);
  t.is(seen.errors, undefined, JSON.stringify(seen.errors));
  t.deepEqual(seen.data.allDeliveries.nodes, [{
    state: 'failed', lastError: TENANT_REFUSAL, lastStatusCode: null,
    deliveryAttemptsByDeliveryId: { nodes: [{ attempt: 1, statusCode: null, error: TENANT_REFUSAL, responseBody: null }] },
  }]);
  const relayId = await api.gql(token, '{ allDeliveryAttempts(first: 10) { nodes { relayId } } }');
  t.regex(relayId.errors?.[0]?.message ?? '', /Cannot query field "relayId"/, 'which relay (and so which host) is not for the tenant');
  t.is(inside.requests.length, 0);
});
