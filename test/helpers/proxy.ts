// A TCP path to Postgres that can go silent, for tests of what a silent network does
// to the relay: connections made before freeze() stop carrying bytes either way and
// stay open (as when a network path drops them without a word); connections made
// after it work.
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';

export async function freezableProxy(target: URL): Promise<{ url: string; freeze: () => void; close: () => Promise<void> }> {
  const live = new Set<Socket>();
  const all = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    for (const socket of [client, upstream]) {
      live.add(socket);
      all.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => live.delete(socket));
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return {
    url: url.toString(),
    freeze() {
      for (const socket of live) {
        socket.unpipe();
        socket.pause();
      }
      live.clear();
    },
    async close() {
      for (const socket of all) socket.destroy();
      server.close();
    },
  };
}
