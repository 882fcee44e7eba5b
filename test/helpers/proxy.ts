// A TCP path to Postgres that can go silent, for tests of what a silent network does
// to the relay: connections made before freeze() stop carrying bytes either way and
// stay open (as when a network path drops them without a word); connections made
// after it work. While silent() holds, new connections are accepted and carry
// nothing either, until speak(). deafen(): connections made before it still carry
// what the client sends, and nothing comes back (a query runs, its answer is lost).
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';

export async function freezableProxy(
  target: URL,
): Promise<{
  url: string; freeze: () => void; silent: () => void; speak: () => void; deafen: () => void;
  /** how many connections silent() has held, accepted and carrying nothing */
  heldSilent: () => number;
  close: () => Promise<void>;
}> {
  const live = new Set<Socket>();
  // each live connection's way back: the server's socket and the client's
  const answers = new Map<Socket, Socket>();
  const all = new Set<Socket>();
  let mute = false;
  let heldSilent = 0;
  const server = createServer((client) => {
    all.add(client);
    client.on('error', () => {});
    if (mute) {
      heldSilent++;
      return void client.pause();
    }
    const upstream = connect(Number(target.port), target.hostname);
    for (const socket of [client, upstream]) {
      live.add(socket);
      all.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => live.delete(socket));
    }
    client.pipe(upstream);
    upstream.pipe(client);
    // a side that closes closes the other while the path carries bytes: pipe() passes
    // on an end, not a reset (a server that ends a backend with the client's next
    // query unread resets), and a client then waited for ever for an answer its server
    // had given up (test/sql/migrate-lost.test.ts, once in four runs). A frozen path
    // (freeze, deafen) stays silent, as its networks do.
    for (const [socket, other] of [[client, upstream], [upstream, client]] as const) {
      socket.on('close', () => {
        if (live.has(other) && (socket === client || answers.has(upstream))) other.destroy();
      });
    }
    answers.set(upstream, client);
    upstream.on('close', () => answers.delete(upstream));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  const freeze = () => {
    for (const socket of live) {
      socket.unpipe();
      socket.pause();
    }
    live.clear();
    answers.clear();
  };
  return {
    url: url.toString(),
    freeze,
    silent() {
      mute = true;
      freeze();
    },
    speak() {
      mute = false;
    },
    heldSilent: () => heldSilent,
    deafen() {
      for (const [upstream, client] of answers) {
        upstream.unpipe(client);
        upstream.pause();
      }
      answers.clear();
    },
    async close() {
      for (const socket of all) socket.destroy();
      server.close();
    },
  };
}
