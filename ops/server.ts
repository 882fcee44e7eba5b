// An HTTP server of its own for /metrics, /healthz and /readyz (ops/operations.ts),
// for a process that serves nothing else: the relay, on RELAY_METRICS_PORT.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type pg from 'pg';
import type { Registry } from 'prom-client';
import { operationsRoutes, requestPath } from './operations.ts';

/**
 * How many connections the server holds at once: more are closed as they come. A
 * scraper and a probe or two need a few; idle connections without a bound, which
 * anyone who reaches the port may open, held the relay's file descriptors, which its
 * deliveries' sockets need (a system's default limit is 1,024).
 */
export const OPERATIONS_MAX_CONNECTIONS = 64;

export interface OperationsServer {
  url: string;
  port: number;
  stop(): Promise<void>;
}

export async function startOperationsServer(options: {
  port: number;
  host: string;
  registry: Registry;
  db: Pick<pg.Pool, 'query'>;
}): Promise<OperationsServer> {
  const routes = operationsRoutes({ registry: options.registry, db: options.db });
  const server = createServer((req, res) => {
    const path = requestPath(req);
    if (path === null) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end('bad request target\n');
      return;
    }
    routes(req, res, path).then(
      (served) => {
        if (!served) res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: /metrics, /healthz, /readyz\n');
      },
      (error: Error) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' }).end(`${error.message}\n`);
        else res.destroy();
      },
    );
  });
  server.maxConnections = OPERATIONS_MAX_CONNECTIONS;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${port}`,
    port,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
