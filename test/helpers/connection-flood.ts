// Idle connections opened all at once to a server that holds at most some of them:
// how many it closed. The count is waited for, not a fixed time: on a loaded machine
// a server had not accepted them all after a second.
import { connect } from 'node:net';

/**
 * Opens `held` idle connections to 127.0.0.1:`port` and resolves with how many the
 * server closed once `expected` have closed, or after `timeoutMs`; every connection
 * is then destroyed.
 */
export function closedOfFlood(port: number, held: number, expected: number, timeoutMs: number): Promise<number> {
  return new Promise<number>((resolve) => {
    let count = 0;
    const end = () => {
      clearTimeout(timer);
      for (const socket of sockets) socket.destroy();
      resolve(count);
    };
    const sockets = Array.from({ length: held }, () => {
      const socket = connect(port, '127.0.0.1');
      socket.on('error', () => {});
      socket.on('close', () => {
        if (++count === expected) end();
      });
      return socket;
    });
    const timer = setTimeout(end, timeoutMs);
  });
}
