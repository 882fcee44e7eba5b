// Brings a database up to date: the versioned table changes in migrations/, then the
// engine in sql/ re-applied from scratch. Safe to run twice and to run twice at once:
// a session advisory lock serialises whole runs.
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { runner } from 'node-pg-migrate';

const root = fileURLToPath(new URL('../', import.meta.url));
export const migrationsDir = `${root}migrations`;
export const sqlDir = `${root}sql`;

// an arbitrary constant that identifies "a bpd-webhooks migrate is running"
const MIGRATE_LOCK = 4_204_204_204;

export async function migrate(databaseUrl: string, log: (line: string) => void = () => {}): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query('select pg_advisory_lock($1)', [MIGRATE_LOCK]);
    await client.query('set client_min_messages = warning');
    const ran = await runner({
      dbClient: client,
      dir: migrationsDir,
      direction: 'up',
      migrationsTable: 'migrations',
      migrationsSchema: 'public',
      checkOrder: true,
      noLock: true, // our own lock already covers the whole run
      log: () => {},
    });
    for (const migration of ran) log(`migrated ${migration.name}`);
    await applyEngine(client);
    log(`applied sql/ (${(await engineFiles()).length} files)`);
  } finally {
    await client.query('select pg_advisory_unlock($1)', [MIGRATE_LOCK]).catch(() => {});
    await client.end();
  }
}

async function engineFiles(): Promise<string[]> {
  return (await readdir(sqlDir)).filter((name) => name.endsWith('.sql')).sort();
}

async function applyEngine(client: pg.Client): Promise<void> {
  await client.query('begin');
  try {
    for (const name of await engineFiles()) {
      const text = await readFile(`${sqlDir}/${name}`, 'utf8');
      try {
        await client.query(text);
      } catch (error) {
        throw new Error(`sql/${name}: ${(error as Error).message}`, { cause: error });
      }
    }
    await client.query('commit');
  } catch (error) {
    await client.query('rollback');
    throw error;
  }
}

// `npm run migrate`
if (import.meta.url === `file://${process.argv[1]}`) {
  const url = process.env.DATABASE_URL;
  if (!url) {
    console.error('DATABASE_URL is not set (npm start migrates its own embedded database)');
    process.exit(2);
  }
  await migrate(url, (line) => console.log(line));
}
