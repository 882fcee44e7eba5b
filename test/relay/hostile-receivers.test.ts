// Receivers that misbehave, through the whole relay: what each attempt records (a
// status, or an error that is one bounded line in the relay's words), what comes of
// the delivery, that the relay lets go of the connection and its request slot, and
// that another webhook's deliveries go on meanwhile. The receivers are raw sockets on
// loopback that write their answers byte for byte (test/helpers/raw-receiver.ts);
// sender.test.ts has the sender alone.
import { gzipSync } from 'node:zlib';
import test from 'ava';
import { RESPONSE_MAX_HEADER_BYTES } from '../../relay/deliver.ts';
import { parsePrometheus } from '../helpers/prometheus.ts';
import { pump, rawReceiver, trickle, type RawScript } from '../helpers/raw-receiver.ts';
import { relayScene, testRelay, waitForFinalDeliveries, waitForRows } from '../helpers/relay.ts';
import { inTransaction } from '../helpers/sql.ts';
import { until } from '../helpers/until.ts';

const REQUEST_TIMEOUT_MS = 3_000;
const EXCERPT_BYTES = 1024;
/** Control characters (C0, DEL, C1): none may be in an error the relay stores. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

// a gzip "bomb": 10 MB of zeros in about 10 KB; nothing in the relay inflates it
const BOMB = gzipSync(Buffer.alloc(10_000_000));

interface Case {
  what: string;
  script: RawScript;
  /** the attempt's status code, error (given the receiver's host:port) and the delivery's state */
  expect: (host: string) => { status_code: number | null; error: string | null; state: 'succeeded' | 'pending' };
  /** what the kept excerpt must be like (default: nothing asked) */
  body?: (body: string | null) => boolean;
  /** a whole answer: its connection may be kept for the next request (KEEP_ALIVE_MS) */
  whole?: true;
}

const timeout = (host: string) => `timeout: no complete response from ${host} within ${REQUEST_TIMEOUT_MS} ms`;

const CASES: Case[] = [
  {
    what: 'a body of 1 GB',
    script: (socket) => {
      socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${1024 ** 3}\r\n\r\n`);
      pump(socket, Buffer.alloc(65_536, 'a'));
    },
    expect: () => ({ status_code: 200, error: null, state: 'succeeded' }),
    body: (body) => body === 'a'.repeat(EXCERPT_BYTES),
  },
  {
    what: 'a chunked body without end',
    script: (socket) => {
      socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n');
      pump(socket, `4000\r\n${'b'.repeat(0x4000)}\r\n`);
    },
    expect: () => ({ status_code: 200, error: null, state: 'succeeded' }),
    body: (body) => body === 'b'.repeat(EXCERPT_BYTES),
  },
  {
    what: 'a body trickled a byte at a time',
    script: (socket) => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 500\r\n\r\n');
      trickle(socket, 'c'.repeat(500), 100);
    },
    expect: (host) => ({ status_code: null, error: timeout(host), state: 'pending' }),
  },
  {
    what: 'headers trickled a byte at a time',
    script: (socket) => trickle(socket, `HTTP/1.1 200 OK\r\nx-slow: ${'d'.repeat(500)}\r\n\r\n`, 100),
    expect: (host) => ({ status_code: null, error: timeout(host), state: 'pending' }),
  },
  {
    what: 'a header line without end',
    script: (socket) => {
      socket.write('HTTP/1.1 200 OK\r\nx-long: ');
      pump(socket, 'e'.repeat(4_096));
    },
    expect: (host) => ({ status_code: null, error: `response headers from ${host} ran past ${RESPONSE_MAX_HEADER_BYTES} bytes`, state: 'pending' }),
  },
  {
    what: 'a gzip bomb',
    script: (socket) => {
      socket.write(`HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: ${BOMB.length}\r\n\r\n`);
      socket.write(BOMB);
    },
    expect: () => ({ status_code: 200, error: null, state: 'succeeded' }),
    // gzip's magic as it came (1f 8b: the second is no UTF-8), not zeros inflated
    body: (body) => body!.startsWith('\u001f\uFFFD') && !body!.includes('\u0000'.repeat(16)),
  },
  {
    what: 'status 999',
    script: (socket) => socket.write('HTTP/1.1 999 Odd\r\ncontent-length: 0\r\n\r\n'),
    expect: () => ({ status_code: 999, error: null, state: 'pending' }),
    whole: true,
  },
  {
    what: 'status 600',
    script: (socket) => socket.write('HTTP/1.1 600 Odd\r\ncontent-length: 0\r\n\r\n'),
    expect: () => ({ status_code: 600, error: null, state: 'pending' }),
    whole: true,
  },
  {
    // HTTP ends a 204's answer at its headers, whatever Content-Length it names (RFC 9112,
    // 6.3); undici counted the body it never reads against it, and the relay recorded
    // a receiver's 204 as a failure in undici's words and sent it again, attempt after
    // attempt
    what: 'a 204 that names a Content-Length',
    script: (socket) => socket.write('HTTP/1.1 204 No Content\r\ncontent-length: 7\r\n\r\n'),
    expect: () => ({ status_code: 204, error: null, state: 'succeeded' }),
  },
  {
    what: 'a chunked body that names a Content-Length too',
    script: (socket) => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 7\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n'),
    expect: (host) => ({ status_code: null, error: `${host} answered a body whose length is not the Content-Length it named`, state: 'pending' }),
  },
  {
    what: 'HTTP/0.9-style bytes',
    script: (socket) => socket.write('ok, got it; the database is full\r\n'),
    expect: (host) => ({ status_code: null, error: `${host} answered with bytes that are not an HTTP/1.1 response (Expected HTTP/, RTSP/ or ICE/)`, state: 'pending' }),
  },
  {
    what: 'a malformed status line',
    script: (socket) => socket.write('HTTP/1.1 2xx Fine\r\ncontent-length: 0\r\n\r\n'),
    expect: (host) => ({ status_code: null, error: `${host} answered with bytes that are not an HTTP/1.1 response (Invalid status code)`, state: 'pending' }),
  },
];

test('misbehaving answers: each attempt recorded in one bounded line, the connection dropped, the slot freed, another webhook served meanwhile', async (t) => {
  const { database, receiver, f, company } = await relayScene(t, { retryBase: '1 hour' });
  const hostile = [];
  for (const c of CASES) {
    const raw = await rawReceiver(t, c.script);
    const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: raw.url });
    hostile.push({ ...c, raw, webhook });
  }
  const fine = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/fine') });
  receiver.route('/fine', { secret: fine.secret, otherwise: 200 });
  const relay = testRelay(database.url, {
    RELAY_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
    RELAY_LEASE_MS: '60000',
    RELAY_RESPONSE_EXCERPT_BYTES: String(EXCERPT_BYTES),
  });
  t.teardown(() => relay.stop());
  await relay.start();
  for (let i = 0; i < 3; i++) await f.contact(company.id);

  const served = await waitForFinalDeliveries(database.pool, [fine.id], 3);
  t.true(served.every((d) => d.state === 'succeeded'));

  for (const h of hostile) {
    const rows = await waitForRows<{ state: string; attempts: number; status_code: number | null; error: string | null; response_body: string | null }>(
      database.pool,
      `select d.state, d.attempts, a.status_code, a.error, a.response_body
       from webhooks.deliveries d join webhooks.delivery_attempts a on a.delivery_id = d.id
       where d.webhook_id = $1 and d.state <> 'in_flight'`,
      [h.webhook.id],
      (found) => found.length === 3,
    );
    const wanted = h.expect(h.raw.host);
    for (const row of rows) {
      t.like(row, { ...wanted, attempts: 1 }, h.what);
      if (row.error !== null) {
        t.false(CONTROL.test(row.error), `${h.what}: ${JSON.stringify(row.error)}`);
        t.true(row.error.length <= EXCERPT_BYTES + 1, h.what);
      }
      if (h.body) t.true(h.body(row.response_body), `${h.what}: ${JSON.stringify(row.response_body?.slice(0, 40))}`);
    }
    // no receiver here closes a connection: the relay let go of each answer cut short.
    // (undici opens a new connection after each request it was told to abort, and
    // leaves it unused until the idle keep-alive, KEEP_ALIVE_MS, ends it: those are
    // not waited for here)
    if (!h.whole) {
      await until(`the relay closes its connections to ${h.what}`, async () =>
        h.raw.connections.every((c) => c.closed || c.requests === 0));
    }
  }
  // the other webhook's three were answered while the trickling answers still came
  // (each attempt's end by the database's clock, as the relay records it)
  const { rows: [ends] } = await database.pool.query(
    `select max(attempted_at + duration_ms * interval '1 ms') filter (where webhook_id = $1) as served,
            min(attempted_at + duration_ms * interval '1 ms') filter (where webhook_id = any ($2::bigint[])) as trickled
     from webhooks.delivery_attempts where webhook_id = any ($1::bigint || $2::bigint[])`,
    [fine.id, hostile.filter((h) => h.what.includes('trickled')).map((h) => h.webhook.id)]);
  t.true(ends.served < ends.trickled, `the other webhook served by ${ends.served.toISOString()}, the first trickling answer given up at ${ends.trickled.toISOString()}`);
  const metrics = parsePrometheus(await relay.metrics.registry.metrics());
  t.is(metrics.get('bpd_webhooks_requests_in_flight'), 0);
  t.is(metrics.get('bpd_webhooks_payload_bytes_held'), 0);
});

test('a receiver that resets every connection at once: each attempt recorded, slots freed, the circuit breaker opens', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  await database.pool.query(`alter database ${database.name} set webhooks.breaker_after = 3`);
  await database.pool.query(`alter database ${database.name} set webhooks.breaker_probe_interval = '1 hour'`);
  const raw = await rawReceiver(t, () => {}, { onConnect: (socket) => socket.resetAndDestroy() });
  const reset = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: raw.url });
  const fine = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/fine') });
  receiver.route('/fine', { secret: fine.secret, otherwise: 200 });
  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  for (let i = 0; i < 4; i++) await f.contact(company.id);

  await waitForRows(database.pool, 'select 1 from webhooks_private.lanes where webhook_id = $1 and open_until is not null',
    [reset.id], (rows) => rows.length === 1);
  const served = await waitForFinalDeliveries(database.pool, [fine.id], 4);
  t.true(served.every((d) => d.state === 'succeeded'));
  // (none of its deliveries in flight: each attempt counted is settled)
  const [counted] = await waitForRows<{ attempts: number }>(database.pool,
    `select coalesce(sum(attempts), 0)::int as attempts from webhooks.deliveries where webhook_id = $1
     having count(*) filter (where state = 'in_flight') = 0`, [reset.id], (rows) => rows.length === 1);
  const { rows: attempts } = await database.pool.query(
    'select status_code, error from webhooks.delivery_attempts where webhook_id = $1', [reset.id]);
  t.true(attempts.length >= 3, `${attempts.length} attempts`);
  // every attempt its deliveries count has its row, each on a connection of its own
  // (undici may open one more than it sends on after a request dropped: a connection
  // the receiver resets before any request is on it, which is no attempt)
  t.is(attempts.length, counted!.attempts, 'every attempt recorded');
  t.true(raw.connections.length >= attempts.length, `${raw.connections.length} connections for ${attempts.length} attempts`);
  for (const attempt of attempts) {
    t.is(attempt.status_code, null);
    t.is(attempt.error, `connection to ${raw.host} closed before a complete response`);
    t.false(CONTROL.test(attempt.error));
  }
  const { rows: [lane] } = await database.pool.query('select failures from webhooks_private.lanes where webhook_id = $1', [reset.id]);
  t.true(lane.failures >= 3, `${lane.failures} failures in a row counted`);
  await until('the requests of the reset webhook are over', async () =>
    parsePrometheus(await relay.metrics.registry.metrics()).get('bpd_webhooks_requests_in_flight') === 0);
});

// Retry-After as a receiver might abuse it, on a 429 and on a 503: the wait is the
// schedule's (retry_base 1 hour, ±25 %) unless the header reads as a later time, and
// never past webhooks.retry_after_max (6 h).
const RETRY_AFTER: Array<[string, string, 'schedule' | 'cap']> = [
  ['negative', '-5', 'schedule'],
  ['1e30 seconds', '1e30', 'schedule'],
  ['40 digits', '9'.repeat(40), 'cap'],
  ['10 KB of digits', '9'.repeat(10_240), 'cap'],
  ['10 KB of words', 'Wed '.repeat(2_560), 'schedule'],
  ['a date far in the future', 'Fri, 31 Dec 9999 23:59:59 GMT', 'cap'],
  ['a date in the past', 'Wed, 21 Oct 2015 07:28:00 GMT', 'schedule'],
  ['non-ASCII', 'éé 12', 'schedule'],
];

test('hostile Retry-After on 429 and 503: the wait stays within the schedule and retry_after_max', async (t) => {
  const { database, receiver, f, company } = await relayScene(t, { retryBase: '1 hour' });
  const webhooks = [];
  for (const [i, [what, value, bound]] of RETRY_AFTER.entries()) {
    for (const status of [429, 503]) {
      const path = `/r${i}-${status}`;
      const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url(path) });
      receiver.route(path, { otherwise: { status, headers: { 'retry-after': value } } });
      webhooks.push({ what: `${what} on ${status}`, bound, webhook });
    }
  }
  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  await f.contact(company.id);
  const rows = await waitForRows<{ webhook_id: string; wait_s: number }>(
    database.pool,
    `select webhook_id, extract(epoch from next_attempt_at - last_attempt_at)::float8 as wait_s
     from webhooks.deliveries where webhook_id = any ($1::bigint[]) and state = 'pending' and attempts = 1`,
    [webhooks.map((w) => w.webhook.id)],
    (settled) => settled.length === webhooks.length,
  );
  const wait = new Map(rows.map((r) => [r.webhook_id, r.wait_s]));
  for (const { what, bound, webhook } of webhooks) {
    const s = wait.get(webhook.id)!;
    if (bound === 'cap') t.true(Math.abs(s - 6 * 3600) <= 60, `${what}: waits ${s} s, wanted 6 h`);
    else t.true(s >= 0.75 * 3600 - 1 && s <= 1.25 * 3600 + 1, `${what}: waits ${s} s, wanted the schedule's hour`);
  }
});

test('a receiver that sets cookies and echoes the signature headers back: nothing of it is kept or sent again', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/echo') });
  receiver.route('/echo', {
    secret: webhook.secret,
    otherwise: {
      status: 200,
      headers: {
        'set-cookie': 'session=stolen; Path=/',
        'webhook-id': 'msg_from_receiver',
        'webhook-signature': 'v1,Zm9yZ2Vk',
        'webhook-timestamp': '1',
        authorization: 'Bearer x',
      },
    },
  });
  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  await f.contact(company.id);
  await waitForFinalDeliveries(database.pool, [webhook.id], 1);
  await f.contact(company.id);
  const deliveries = await waitForFinalDeliveries(database.pool, [webhook.id], 2);
  const requests = await receiver.waitFor(2, { path: '/echo' });
  t.deepEqual(requests.map((r) => r.headers['webhook-id']), deliveries.map((d) => d.message_id));
  for (const request of requests) {
    t.true(request.verified, request.verifyError ?? '');
    t.is(request.headers.cookie, undefined);
    t.is(request.headers.authorization, undefined);
  }
  const { rows } = await database.pool.query(
    'select status_code, error, response_body from webhooks.delivery_attempts where webhook_id = $1', [webhook.id]);
  t.deepEqual(rows, [{ status_code: 200, error: null, response_body: '' }, { status_code: 200, error: null, response_body: '' }]);
});

// 410 Gone disables the webhook whatever the delivery was: the receiver says it is
// gone, to a test send as to a backfill's snapshot (docs/relay.md).
test('410 Gone to a test send, or to a backfill snapshot, disables the webhook as any 410 does', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  // a contact from before the webhooks: only the test send and the snapshot reach them
  await f.contact(company.id);
  const tested = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/tested') });
  const backfilled = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/backfilled') });
  receiver.route('/tested', { otherwise: 410 });
  receiver.route('/backfilled', { otherwise: 410 });
  await inTransaction(database.pool,
    `select set_config('role', 'webhook_admin', true), set_config('jwt.claims.company_id', '${company.id}', true)`,
    (client) => client.query('select webhooks.send_test_webhook($1)', [tested.id]));
  await database.pool.query('select webhooks.backfill($1)', [backfilled.id]);
  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  await receiver.waitFor(1, { path: '/tested' });
  await receiver.waitFor(1, { path: '/backfilled' });
  const hooks = await waitForRows<{ id: string; enabled: boolean; disabled_by: string | null }>(
    database.pool, 'select id, enabled, disabled_by from webhooks.webhooks where id = any ($1::bigint[]) order by id',
    [[tested.id, backfilled.id]], (found) => found.every((h) => !h.enabled));
  t.deepEqual(hooks.map((h) => h.disabled_by), ['relay', 'relay']);
  const { rows: ended } = await database.pool.query(
    `select webhook_id, action, state, last_status_code from webhooks.deliveries
     where webhook_id = any ($1::bigint[]) order by webhook_id`, [[tested.id, backfilled.id]]);
  t.like(ended[0], { action: 'webhook.test', state: 'failed', last_status_code: 410 });
  t.like(ended[1], { state: 'failed', last_status_code: 410 });
  t.is(ended.length, 2);
});
