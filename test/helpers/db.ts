// A database of its own for each test file, cloned from the migrated template that
// test/run.ts prepared (cloning takes milliseconds; migrating would take seconds).
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export interface TestDatabase {
  name: string;
  url: string;
  pool: pg.Pool;
  drop(): Promise<void>;
}

function serverUrl(): string {
  const url = process.env.DATABASE_URL;
  if (!url || !process.env.TEST_TEMPLATE_DATABASE) {
    throw new Error('run the tests with `npm test` (it prepares the database)');
  }
  return url;
}

export function databaseUrl(name: string): string {
  const url = new URL(serverUrl());
  url.pathname = `/${name}`;
  return url.toString();
}

async function onServer<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl() });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `bpd_test_${randomBytes(5).toString('hex')}`;
  const template = process.env.TEST_TEMPLATE_DATABASE!;
  await onServer((client) => client.query(`create database ${name} template ${template} strategy file_copy`));
  return openTestDatabase(name);
}

/**
 * A copy of `source`'s rows as they are now (a restored backup, a staging copy): not
 * its `alter database … set` settings, as a restore without --create. Its sessions are
 * ended first (Postgres copies only a database nobody is connected to); its pool
 * connects again when next used (connections are refused while it is copied).
 */
export async function copyOfTestDatabase(source: TestDatabase): Promise<TestDatabase> {
  const name = `bpd_test_${randomBytes(5).toString('hex')}`;
  await onServer(async (client) => {
    // (a relay of the test's at work connects again at once: kept out meanwhile)
    await client.query(`alter database ${source.name} allow_connections false`);
    try {
      await client.query('select pg_terminate_backend(pid) from pg_stat_activity where datname = $1', [source.name]);
      await client.query(`create database ${name} template ${source.name} strategy file_copy`);
    } finally {
      await client.query(`alter database ${source.name} allow_connections true`);
    }
  });
  return openTestDatabase(name);
}

/** An empty database, as `createdb` makes one (from template0), of `owner`: to restore a dump into. */
export async function createEmptyTestDatabase(owner?: string): Promise<TestDatabase> {
  const name = `bpd_test_${randomBytes(5).toString('hex')}`;
  await onServer((client) => client.query(`create database ${name} template template0${owner ? ` owner ${owner}` : ''}`));
  return openTestDatabase(name);
}

function openTestDatabase(name: string): TestDatabase {
  const url = databaseUrl(name);
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  // idle clients hear about the drop below ("terminating connection"): expected then
  pool.on('error', () => {});
  return {
    name,
    url,
    pool,
    async drop() {
      await pool.end();
      await onServer((client) => client.query(`drop database if exists ${name} with (force)`));
    },
  };
}

/** Registers a fresh database for the whole test file; read it with db() inside tests. */
export function useTestDatabase(test: {
  before: (fn: () => Promise<void>) => void;
  after: { always: (fn: () => Promise<void>) => void };
}): () => TestDatabase {
  let database: TestDatabase | undefined;
  test.before(async () => {
    database = await createTestDatabase();
  });
  test.after.always(async () => {
    await database?.drop();
  });
  return () => {
    if (!database) throw new Error('database not ready');
    return database;
  };
}

/**
 * A connection of a test's own to url, ended when the test is: for a transaction held
 * open while the test goes on (the tests of a file run at once, and clients of the
 * shared pool held so could leave it none for the rest).
 */
export async function ownConnection(url: string, t: { teardown: (fn: () => Promise<void>) => void }): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  t.teardown(() => client.end());
  return client;
}
