// The graphile-worker contender's HTTP side, written as a task author would: one undici
// Pool per process with one connection per unit of concurrency, request(), and the
// Standard Webhooks headers, so it sends what the relay sends. (The relay's own
// sender, relay/deliver.ts, is leaner per request: BENCHMARKS.md says by how much.)
import { createHmac } from 'node:crypto';
import { Pool } from 'undici';

export function senderPool(origin: string, concurrency: number): Pool {
  return new Pool(origin, { connections: concurrency, pipelining: 1, keepAliveTimeout: 60_000 });
}

/** A fixed signing secret for the benchmark's endpoint (whsec_ + base64 of 32 bytes). */
export const BENCH_SECRET = 'whsec_' + Buffer.alloc(32, 7).toString('base64');

export function webhookHeaders(secret: string, id: string, body: string): Record<string, string> {
  const timestamp = String(Math.floor(Date.now() / 1000));
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const signature = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64');
  return {
    'content-type': 'application/json',
    'webhook-id': id,
    'webhook-timestamp': timestamp,
    'webhook-signature': `v1,${signature}`,
  };
}

/** POSTs one body; resolves with the status code after reading the response to its end. */
export async function post(pool: Pool, path: string, headers: Record<string, string>, body: string): Promise<number> {
  const response = await pool.request({ method: 'POST', path, headers, body });
  await response.body.dump();
  return response.statusCode;
}
