// The relay's connection pool. Each connection switches to the relay's role at
// start-up, so a misconfigured grant fails on the first query with a clear error.
//
// synchronous_commit = off for these sessions only: the relay's own commits (claims
// and settles) need not wait for the disk. A server crash can lose the last few of
// them, which only means sending those deliveries again: a lost claim leaves the row
// pending, a lost settle leaves it in flight until its lease runs out. At least once
// still holds; the customer's own writes keep the durability they asked for.
import pg from 'pg';
import type { Logger } from 'pino';

export function relayPool(options: { databaseUrl: string; role: string | null; log: Logger; max?: number }): pg.Pool {
  const settings = ['-c synchronous_commit=off'];
  if (options.role) settings.push(`-c role=${options.role}`);
  const pool = new pg.Pool({
    connectionString: options.databaseUrl,
    max: options.max ?? 4,
    options: settings.join(' '),
    application_name: 'bpd-webhooks-relay',
    keepAlive: true,
    connectionTimeoutMillis: 10_000,
  });
  // an idle connection that breaks (say, Postgres restarts) is dropped and replaced
  // on next use; it must not bring the process down
  pool.on('error', (error) => options.log.warn({ err: error }, 'database connection lost'));
  return pool;
}

/** True for errors that mean "the database is not reachable right now", not "you may not". */
export function isConnectionError(error: unknown): boolean {
  const e = error as { code?: string; message?: string };
  if (e.code && /^(08|57P0[123])/.test(e.code)) return true; // connection exception, shutdown
  if (e.code && ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN'].includes(e.code)) return true;
  return /Connection terminated|timeout exceeded when trying to connect|connection timeout/i.test(e.message ?? '');
}
