// The operations server of a process that serves nothing else (ops/server.ts: the
// relay's RELAY_METRICS_PORT), as whoever reaches its port may use it: requests no
// browser sends.
import { once } from 'node:events';
import { connect, createServer, type AddressInfo } from 'node:net';
import test from 'ava';
import { Registry } from 'prom-client';
import { OPERATIONS_MAX_CONNECTIONS, startOperationsServer } from '../../ops/server.ts';
import { closedOfFlood } from '../helpers/connection-flood.ts';
import { lines } from '../helpers/lines.ts';
import { spawnRelay } from '../helpers/relay.ts';
import { until } from '../helpers/until.ts';

/** The database of a relay that has none to ask: every question fails. */
const noDatabase = { query: async () => { throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }); } };

/** Sends one request as raw bytes and resolves with the status line of the answer. */
function rawStatus(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(request));
    let answer = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk) => {
      answer += chunk;
      if (answer.includes('\r\n')) {
        socket.destroy();
        resolve(answer.slice(0, answer.indexOf('\r\n')));
      }
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(answer || '(closed without an answer)'));
  });
}

test('a request target that is no URL path is refused, and the server goes on answering', async (t) => {
  const server = await startOperationsServer({ port: 0, host: '127.0.0.1', registry: new Registry(), db: noDatabase });
  t.teardown(() => server.stop());
  // each reads as a URL with a host that cannot be one ("//[", a port out of range)
  for (const target of ['//[', '//a:b/metrics', '//:99999/healthz', '/\\[']) {
    t.is(await rawStatus(server.port, `GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`), 'HTTP/1.1 400 Bad Request', target);
  }
  const health = await fetch(`${server.url}/healthz`);
  t.is(health.status, 200);
  t.deepEqual(await health.json(), { status: 'ok' });
});

test('connections held open by whoever reaches the port are few: past OPERATIONS_MAX_CONNECTIONS they are closed, and /healthz still answers once they go', async (t) => {
  const server = await startOperationsServer({ port: 0, host: '127.0.0.1', registry: new Registry(), db: noDatabase });
  t.teardown(() => server.stop());
  // idle connections, as a flood of them would hold the relay's file descriptors (its
  // deliveries' sockets share them)
  const held = 200;
  // (the count the server must close is waited for, not a fixed second: on a loaded
  // machine the server had not yet accepted them all after one, and the run failed)
  const closed = await closedOfFlood(server.port, held, held - OPERATIONS_MAX_CONNECTIONS, 20_000);
  t.true(closed >= held - OPERATIONS_MAX_CONNECTIONS, `${closed} of ${held} closed by the server`);
  // (the server counts them gone as it sees them close)
  await until('/healthz answers', () => fetch(`${server.url}/healthz`).then((r) => r.status === 200, () => false));
  t.pass();
});

// (node's EADDRINUSE and its stack on stderr, the relay's log silent about it)
test('a relay whose RELAY_METRICS_PORT is taken stops with one fatal line naming it, exit status 1', async (t) => {
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.teardown(() => void taken.close());
  const port = (taken.address() as AddressInfo).port;
  const relay = spawnRelay('postgres://nobody@127.0.0.1:1/none', { RELAY_METRICS_PORT: String(port), RELAY_LOG_LEVEL: 'info' });
  t.teardown(() => void (relay.exitCode === null && relay.kill('SIGKILL')));
  const out = lines(relay.stdout!);
  const err = lines(relay.stderr!);
  const [code] = await once(relay, 'close');
  t.is(code, 1);
  t.deepEqual(err.seen.filter(Boolean), [], 'no stack');
  const fatal = out.seen.map((line) => JSON.parse(line)).filter((line) => line.level === 60);
  t.deepEqual(fatal.map((line) => line.msg),
    [`RELAY_METRICS_PORT ${port} on 127.0.0.1 cannot be listened on: listen EADDRINUSE: address already in use 127.0.0.1:${port}`]);
});
