// Receivers that answer `100 Continue`, through the whole relay: what the attempt
// records, when the delivery comes again, and what is left of the request (its
// connection, its slot). undici, the relay's HTTP client (relay/deliver.ts), reads
// no HTTP/1.1 answer past a 100: it drops the connection at the 100, whatever
// follows, a legal final status too, and the attempt fails with words that say so
// (sender.test.ts has the sender alone). Such a receiver cannot be delivered to. The
// receiver here is a raw socket on loopback that writes its answers byte for byte.
import type { Socket } from 'node:net';
import test from 'ava';
import { parsePrometheus } from '../helpers/prometheus.ts';
import { rawReceiver } from '../helpers/raw-receiver.ts';
import { relayScene, testRelay, waitForFinalDeliveries, waitForRows } from '../helpers/relay.ts';
import { until } from '../helpers/until.ts';

const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n';
const OK = 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok';

/** What one connection does once a whole request has arrived on it. */
type Script = (socket: Socket) => void;

/**
 * A receiver (test/helpers/raw-receiver.ts) whose first connection answers its
 * request with `first`; every later one answers each request 200 OK. It never closes
 * a connection itself.
 */
async function firstAnswers(t: { teardown: (fn: () => void) => void }, first: Script) {
  const receiver = await rawReceiver(t, (socket) => (socket === receiver.connections[0]!.socket ? first(socket) : socket.write(OK)));
  return receiver;
}

const SCRIPTS: Array<[string, Script]> = [
  // legal HTTP/1.1: any number of 1xx before the final response
  ['100 Continue, then 200 OK', (socket) => socket.write(CONTINUE + OK)],
  ['100 Continue, then nothing', (socket) => socket.write(CONTINUE)],
  // until the relay lets go of the connection
  ['100 Continue over and over', (socket) => {
    const more = () => {
      if (socket.destroyed || socket.writableEnded) return;
      socket.write(CONTINUE.repeat(64), () => setImmediate(more));
    };
    more();
  }],
];

for (const [what, script] of SCRIPTS) {
  test(`${what}: a failed attempt that says so, retried on the schedule, its connection dropped and its slot free`, async (t) => {
    const { database, f, company } = await relayScene(t, { retryBase: '1 hour' });
    const receiver = await firstAnswers(t, script);
    const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url });
    // a request timeout beyond every wait below: an attempt that waited for a final
    // response would not be recorded in time
    const relay = testRelay(database.url, { RELAY_REQUEST_TIMEOUT_MS: '600000', RELAY_LEASE_MS: '1200000' });
    t.teardown(() => relay.stop());
    await relay.start();
    await f.contact(company.id);

    const [delivery] = await waitForRows(
      database.pool,
      `select id, state, attempts, locked_by, last_status_code, last_error,
              extract(epoch from next_attempt_at - last_attempt_at)::float8 as wait_s
       from webhooks.deliveries where webhook_id = $1 and attempts = 1 and state <> 'in_flight'`,
      [webhook.id],
      (rows) => rows.length === 1,
    );
    const named = `${new URL(receiver.url).host} answered 100 Continue, which the relay does not read past ` +
      '(it sends no Expect: 100-continue): no final status';
    t.like(delivery, { state: 'pending', attempts: 1, locked_by: null, last_status_code: null, last_error: named });
    // the schedule's first wait, retry_base, give or take its jitter (±25 %)
    t.true(delivery!.wait_s >= 0.75 * 3600 - 1 && delivery!.wait_s <= 1.25 * 3600 + 1, `waits ${delivery!.wait_s} s`);
    const { rows: [attempt] } = await database.pool.query(
      'select attempt, status_code, error, response_body from webhooks.delivery_attempts where delivery_id = $1',
      [delivery!.id],
    );
    t.deepEqual(attempt, { attempt: 1, status_code: null, error: named, response_body: null });

    // the relay let go of the connection (the receiver closes none), and of the slot
    // (freed before the result is written: loop.ts, send)
    await until('the relay closes the connection it was answered 100 Continue on', async () => receiver.connections[0]!.closed);
    const metrics = parsePrometheus(await relay.metrics.registry.metrics());
    t.is(metrics.get('bpd_webhooks_requests_in_flight'), 0);
    t.is(metrics.get('bpd_webhooks_payload_bytes_held'), 0);

    // its retry brought forward: sent on a new connection, answered 200, succeeded
    await database.pool.query('update webhooks.deliveries set next_attempt_at = now() where id = $1', [delivery!.id]);
    const [done] = await waitForFinalDeliveries(database.pool, [webhook.id], 1);
    t.like(done, { state: 'succeeded', attempts: 2, last_status_code: 200 });
    t.is(receiver.connections.length, 2);
    t.deepEqual(receiver.connections.map((c) => c.requests), [1, 1]);
  });
}
