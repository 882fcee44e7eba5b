// An HTTP path to a server that can stop answering: while hold(path) is on, requests
// whose path starts with it are accepted, read to the end and never answered (a hung
// proxy, a server that accepts and never replies); everything else, and everything
// once answer() is called, passes through to the server.
import { createServer, request, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HoldingProxy {
  url: string;
  /** from now on, requests to paths starting with `path` are held, unanswered */
  hold(path: string): void;
  /** requests pass through again (those held stay unanswered) */
  answer(): void;
  /** resolves once `count` requests in all have been held */
  untilHeld(count: number): Promise<void>;
  close(): Promise<void>;
}

export async function holdingProxy(target: string): Promise<HoldingProxy> {
  let holding: string | null = null;
  const held: ServerResponse[] = [];
  let waiters: { count: number; resolve: () => void }[] = [];
  const server = createServer((incoming, reply) => {
    if (holding !== null && incoming.url?.startsWith(holding)) {
      incoming.resume();
      held.push(reply);
      waiters = waiters.filter((w) => (held.length >= w.count ? void w.resolve() : true));
      return;
    }
    const upstream = request(new URL(incoming.url ?? '/', target), { method: incoming.method, headers: incoming.headers }, (answer) => {
      reply.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(reply);
    });
    upstream.on('error', () => reply.destroy());
    incoming.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hold(path) {
      holding = path;
    },
    answer() {
      holding = null;
    },
    untilHeld(count) {
      return held.length >= count ? Promise.resolve() : new Promise((resolve) => waiters.push({ count, resolve }));
    },
    async close() {
      for (const reply of held) reply.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
