// The sender alone (relay/deliver.ts), against sockets that misbehave: the whole
// request, connecting included, gets RELAY_REQUEST_TIMEOUT_MS, whatever the connect
// timeout.
import { createServer, type Socket } from 'node:net';
import test from 'ava';
import { Sender } from '../../relay/deliver.ts';
import { parseNetworks } from '../../relay/destinations.ts';

function job(url: string) {
  return {
    deliveryId: '1', messageId: 'msg_1', webhookId: '1', attempt: 1, url, body: '{"type":"contact.updated"}',
    secret: `whsec_${Buffer.alloc(32, 1).toString('base64')}`, previousSecret: null, sendAt: null, sendUntil: null,
  };
}

test('a TLS handshake that never answers ends at the request timeout, not the longer connect timeout', async (t) => {
  // accepts the connection and says nothing: the client's TLS hello goes unanswered
  const sockets: Socket[] = [];
  const server = createServer((socket) => sockets.push(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  const port = (server.address() as { port: number }).port;
  const sender = new Sender({
    allowNetworks: parseNetworks('127.0.0.1/32'),
    dnsServers: null,
    connectTimeoutMs: 60_000,
    requestTimeoutMs: 300,
    responseExcerptBytes: 1024,
  });
  t.teardown(() => sender.close());

  const started = performance.now();
  const result = await sender.send(job(`https://127.0.0.1:${port}/hook`));
  const tookMs = performance.now() - started;
  t.deepEqual(result.outcome, { kind: 'error', error: `timeout: no complete response from 127.0.0.1:${port} within 300 ms` });
  t.true(tookMs < 5_000, `the attempt took ${Math.round(tookMs)} ms`);
  // the handshake fails now, and the sender closes without waiting for it
  for (const socket of sockets) socket.destroy();
});
