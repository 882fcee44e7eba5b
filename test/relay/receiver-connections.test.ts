// The relay's connections to receivers over a long life (relay/deliver.ts): a relay
// sends for thousands of companies to thousands of receivers that come and go, and
// each receiver it keeps a connection to costs it a per-origin dispatcher and a file
// descriptor. The sender alone, against receivers on loopback that count what they
// hold open.
import { createServer, type Socket } from 'node:net';
import test from 'ava';
import { Sender } from '../../relay/deliver.ts';
import { parseNetworks } from '../../relay/destinations.ts';
import { until } from '../helpers/until.ts';

function job(url: string) {
  return {
    deliveryId: '1', messageId: 'msg_1', webhookId: '1', companyId: '1', attempt: 1, url, body: '{"type":"contact.updated"}',
    secret: `whsec_${Buffer.alloc(32, 1).toString('base64')}`, previousSecrets: [], sendAt: null, sendUntil: null,
  };
}

type Answer = 'keeps' | 'closes' | 'silent';

const ANSWERS: Record<Answer, (socket: Socket) => void> = {
  // answers and keeps the connection for as long as the relay does
  keeps: (socket) => socket.write('HTTP/1.1 200 OK\r\nkeep-alive: timeout=600\r\ncontent-length: 2\r\n\r\nok'),
  // answers and closes the connection
  closes: (socket) => socket.end('HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok'),
  // reads the request and never answers
  silent: () => {},
};

interface Origin {
  url: string;
  /** connections open now */
  open: Set<Socket>;
  /** the heads of the requests that arrived, in order */
  heads: string[];
  /** connections ever accepted */
  accepted: number;
}

/**
 * `count` receivers, each an origin of its own (its own loopback address) answering as
 * `answer` says; `together`: each holds its answers until it has that many requests
 * unanswered, then answers them all (a burst whose connections are all in use at once).
 */
async function origins(t: { teardown: (fn: () => void) => void }, count: number, answer: Answer, network: number, together = 1): Promise<Origin[]> {
  const made: Origin[] = [];
  for (let i = 1; i <= count; i++) {
    const unanswered: Socket[] = [];
    const origin: Origin = { url: '', open: new Set(), heads: [], accepted: 0 };
    const server = createServer((socket) => {
      origin.accepted++;
      origin.open.add(socket);
      socket.on('close', () => origin.open.delete(socket));
      socket.on('error', () => {});
      let buffered = '';
      socket.on('data', (chunk: Buffer) => {
        buffered += chunk.toString('latin1');
        for (let end = buffered.indexOf('\r\n\r\n'); end >= 0; end = buffered.indexOf('\r\n\r\n')) {
          const head = buffered.slice(0, end);
          const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
          if (buffered.length < end + 4 + length) return;
          buffered = buffered.slice(end + 4 + length);
          origin.heads.push(head.toLowerCase());
          unanswered.push(socket);
          if (unanswered.length < together) return;
          for (const waiting of unanswered.splice(0)) ANSWERS[answer](waiting);
        }
      });
    });
    const host = `127.0.${network}.${i}`;
    await new Promise<void>((resolve) => server.listen(0, host, resolve));
    t.teardown(() => {
      for (const socket of origin.open) socket.destroy();
      server.close();
    });
    origin.url = `http://${host}:${(server.address() as { port: number }).port}/hook`;
    made.push(origin);
  }
  return made;
}

const openAt = (all: Origin[]) => all.reduce((sum, origin) => sum + origin.open.size, 0);

function sender(t: { teardown: (fn: () => void) => void }, options: { keepAliveMs?: number; keptOriginsMax?: number; keptConnectionsMax?: number; requestTimeoutMs?: number } = {}) {
  const made = new Sender({
    allowNetworks: parseNetworks('127.0.0.0/8'),
    dnsServers: null,
    connectTimeoutMs: 2_000,
    requestTimeoutMs: options.requestTimeoutMs ?? 5_000,
    responseExcerptBytes: 1024,
    keepAliveMs: options.keepAliveMs ?? 60_000,
    keptOriginsMax: options.keptOriginsMax,
    keptConnectionsMax: options.keptConnectionsMax,
  });
  t.teardown(() => made.close());
  return made;
}

test('the relay keeps idle connections to at most its bound of origins (KEPT_ORIGINS_MAX); past it, a new origin is sent to without keep-alive', async (t) => {
  const kept = 8;
  const receivers = await origins(t, 3 * kept, 'keeps', 41);
  const relay = sender(t, { keptOriginsMax: kept });

  // one delivery to each, all at once
  const results = await Promise.all(receivers.map((origin) => relay.send(job(origin.url))));
  t.deepEqual(results.map((r) => r.outcome.kind === 'response' && r.outcome.status), receivers.map(() => 200));
  const keepAlive = receivers.filter((origin) => origin.heads[0]!.includes('\r\nconnection: keep-alive'));
  const closing = receivers.filter((origin) => origin.heads[0]!.includes('\r\nconnection: close'));
  t.is(keepAlive.length, kept, 'the first origins get keep-alive connections');
  t.is(closing.length, 2 * kept, 'the others are asked to close their connection after the answer');
  // the receivers keep every connection the relay does not close
  await until('the connections of the origins past the bound are closed', async () => openAt(closing) === 0);
  t.is(openAt(keepAlive), kept);
  await until('the relay counts the connections closed', async () => relay.receivers().connections === kept);
  t.deepEqual(relay.receivers(), { kept, connections: kept }, 'what /metrics shows');

  // the kept ones are used again, and the others still go without keep-alive
  const again = await Promise.all(receivers.map((origin) => relay.send(job(origin.url))));
  t.true(again.every((r) => r.outcome.kind === 'response' && r.outcome.status === 200));
  t.deepEqual(keepAlive.map((origin) => origin.accepted), keepAlive.map(() => 1), 'one connection each, used again');
  t.true(closing.every((origin) => origin.accepted === 2 && origin.heads[1]!.includes('\r\nconnection: close')));
  await until('the connections of the origins past the bound are closed', async () => openAt(closing) === 0);
  t.is(openAt(receivers), kept);
});

test('once the kept origins\' idle connections close (the keep-alive), new origins are kept in their place', async (t) => {
  const kept = 4;
  const first = await origins(t, kept, 'keeps', 42);
  const later = await origins(t, kept, 'keeps', 43);
  const relay = sender(t, { keptOriginsMax: kept, keepAliveMs: 200 });
  for (const origin of first) t.like((await relay.send(job(origin.url))).outcome, { kind: 'response', status: 200 });
  await until('the idle connections are closed after the keep-alive, and their origins kept no more',
    async () => openAt(first) === 0 && relay.receivers().kept === 0);
  for (const origin of later) t.like((await relay.send(job(origin.url))).outcome, { kind: 'response', status: 200 });
  t.true(later.every((origin) => origin.heads[0]!.includes('\r\nconnection: keep-alive')));
});

test('a burst to one kept origin after another: idle connections past KEPT_CONNECTIONS_MAX are closed as new ones open, not kept at each origin\'s peak until the keep-alive', async (t) => {
  // each origin's dispatcher keeps as many connections as it once had requests at once
  // (a webhook's slots, several webhooks on one origin), for the keep-alive: bursts to
  // 500 kept origins could leave 500 × 32 open, a file descriptor (and over TLS some
  // 160 KB of OpenSSL's memory) each
  const peak = 8;
  const bound = 12;
  const receivers = await origins(t, 4, 'keeps', 49, peak);
  const relay = sender(t, { keptConnectionsMax: bound });
  for (const origin of receivers) {
    const results = await Promise.all(Array.from({ length: peak }, () => relay.send(job(origin.url))));
    t.true(results.every((r) => r.outcome.kind === 'response' && r.outcome.status === 200));
    t.is(origin.accepted, peak, 'a connection for each request at once');
  }
  await until('the idle connections past the bound are closed', async () => openAt(receivers) === bound, 3_000);
  t.is(relay.receivers().connections, bound, 'what /metrics shows');
  // the most recently opened idle ones went first: those open longest are the ones
  // used again and again (an idle one closes after the keep-alive)
  t.deepEqual(receivers.map((origin) => origin.open.size), [bound - peak, 0, 0, peak],
    'the first burst\'s oldest connections, and the last burst\'s, each in use when it opened');

  // an origin whose idle connections were closed is sent to again on new ones
  const again = await Promise.all(Array.from({ length: peak }, () => relay.send(job(receivers[1]!.url))));
  t.true(again.every((r) => r.outcome.kind === 'response' && r.outcome.status === 200));
  t.is(receivers[1]!.accepted, 2 * peak);
  await until('still no more than the bound', async () => openAt(receivers) === bound, 3_000);
});

// undici keeps one dispatcher per origin inside the relay's Agent, and drops it once
// its last connection has closed: an origin the relay never sends to again holds
// nothing after the keep-alive, however its receiver behaved. Four requests at once
// to each (a webhook has many slots): undici connects once more after each request
// it was told to abort (the request timeout, against a silent receiver), and that
// connection, which never carried a request, must go too (undici 7.30, which the
// relay uses, closes it; 8.10.1 is reported to keep it open for as long as the
// receiver does, nodejs/undici#5845).
for (const answer of ['keeps', 'closes', 'silent'] as const) {
  test(`a receiver that ${answer === 'silent' ? 'never answers' : `${answer} its connection after answering`}: nothing stays open after the keep-alive`, async (t) => {
    const receivers = await origins(t, 10, answer, { keeps: 44, closes: 45, silent: 46 }[answer]);
    const relay = sender(t, { keepAliveMs: 200, requestTimeoutMs: answer === 'silent' ? 300 : 5_000 });
    const results = await Promise.all(receivers.flatMap((origin) => [1, 2, 3, 4].map(() => relay.send(job(origin.url)))));
    const outcomes = results.map((r) => r.outcome.kind === 'response' ? r.outcome.status : r.outcome.error.split(':')[0]);
    t.deepEqual(outcomes, results.map(() => answer === 'silent' ? 'timeout' : 200));
    // (a silent receiver's may time out before they are written, on a loaded machine)
    if (answer !== 'silent') t.true(receivers.every((origin) => origin.heads.length === 4));
    // (a connection undici opens again after an aborted request may be on its way)
    await until('every connection the relay opened is closed, and no per-origin dispatcher left',
      async () => openAt(receivers) === 0 && relay.origins === 0);
    t.deepEqual(relay.receivers(), { kept: 0, connections: 0 });
  });
}

test('origins that refuse the connection hold nothing afterwards, and count against no bound', async (t) => {
  // ports that were listened on and are no more
  const urls: string[] = [];
  for (let i = 1; i <= 20; i++) {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, `127.0.47.${i}`, resolve));
    urls.push(`http://127.0.47.${i}:${(server.address() as { port: number }).port}/hook`);
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
  const relay = sender(t, { keptOriginsMax: 4 });
  const results = await Promise.all(urls.map((url) => relay.send(job(url))));
  t.deepEqual(results.map((r) => r.outcome), urls.map((url) => ({ kind: 'error', error: `connection refused by ${new URL(url).host}` })));
  await until('every origin let go', async () => relay.origins === 0);
  t.deepEqual(relay.receivers(), { kept: 0, connections: 0 });
  // and the bound is free for origins that answer
  const receivers = await origins(t, 4, 'keeps', 48);
  await Promise.all(receivers.map((origin) => relay.send(job(origin.url))));
  t.true(receivers.every((origin) => origin.heads[0]!.includes('\r\nconnection: keep-alive')));
});
