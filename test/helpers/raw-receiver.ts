// A receiver on loopback that answers byte for byte: a raw `net` server whose script
// runs once a whole request (its head, then content-length bytes of body) has arrived
// on a connection, or at once when the connection opens (`onConnect`). It never closes
// a connection itself unless its script does: each connection is kept with whether it
// closed, so that a test can see the relay let go of it.
import { createServer, type Socket } from 'node:net';

/** What a connection does for its request number `request` (from 0 on that connection). */
export type RawScript = (socket: Socket, request: number) => void;

export interface RawConnection {
  socket: Socket;
  closed: boolean;
  requests: number;
}

export async function rawReceiver(
  t: { teardown: (fn: () => void) => void },
  script: RawScript,
  options: { onConnect?: (socket: Socket) => void } = {},
): Promise<{ url: string; host: string; connections: RawConnection[] }> {
  const connections: RawConnection[] = [];
  const server = createServer((socket) => {
    const connection: RawConnection = { socket, closed: false, requests: 0 };
    connections.push(connection);
    socket.on('error', () => {});
    socket.on('close', () => (connection.closed = true));
    if (options.onConnect) return options.onConnect(socket);
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        const headEnd = buffered.indexOf('\r\n\r\n');
        if (headEnd < 0) return;
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(buffered.subarray(0, headEnd).toString('latin1'))?.[1] ?? 0);
        if (buffered.length < headEnd + 4 + length) return;
        buffered = buffered.subarray(headEnd + 4 + length);
        script(socket, connection.requests++);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const { socket } of connections) socket.destroy();
    server.close();
  });
  const host = `127.0.0.1:${(server.address() as { port: number }).port}`;
  return { url: `http://${host}/hook`, host, connections };
}

/** Writes `chunk` while the connection takes it, without end (a body or a header that never ends). */
export function pump(socket: Socket, chunk: Buffer | string): void {
  const more = () => {
    while (!socket.destroyed && !socket.writableEnded) if (!socket.write(chunk)) return void socket.once('drain', more);
  };
  more();
}

/** Writes `text` one character every `everyMs` until it is all out or the connection is gone. */
export function trickle(socket: Socket, text: string, everyMs: number): void {
  let at = 0;
  const timer = setInterval(() => {
    if (socket.destroyed || at >= text.length) return clearInterval(timer);
    socket.write(text[at++]!);
  }, everyMs);
  socket.on('close', () => clearInterval(timer));
}
