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

/**
 * The advisory lock key that says "a bpd-webhooks migrate is running" (one bigint
 * key; the engine's other keys are listed in sql/00_schemas.sql). Taken before sql/
 * exists, so it lives here.
 */
export const MIGRATE_LOCK = 4_204_204_204;

/**
 * Where node-pg-migrate records the migrations that ran: in the engine's private
 * schema, not under a generic name in the CRM's public schema. Installs migrated
 * before it moved have it as public.migrations; moveMigrationsTable carries it over.
 */
export const MIGRATIONS_SCHEMA = 'webhooks_private';
export const MIGRATIONS_TABLE = 'migrations';

/**
 * A migration that moves data says how much as it goes (RAISE NOTICE with this
 * prefix); migrate passes those lines on, so a long one is not a silent terminal.
 */
export const PROGRESS_NOTICE = 'progress: ';
/** What node-pg-migrate says as it begins a migration. */
const MIGRATION_BEGINS = /^### MIGRATION (\S+) \(UP\) ###$/;

export async function migrate(databaseUrl: string, log: (line: string) => void = () => {}): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query('select pg_advisory_lock($1)', [MIGRATE_LOCK]);
    await client.query('set client_min_messages = warning');
    await moveMigrationsTable(client);
    const onNotice = (notice: { message?: string }) => {
      if (notice.message?.startsWith(PROGRESS_NOTICE)) log(`  ${notice.message.slice(PROGRESS_NOTICE.length)}`);
    };
    client.on('notice', onNotice);
    await client.query('set client_min_messages = notice');
    const ran = await runner({
      dbClient: client,
      dir: migrationsDir,
      direction: 'up',
      migrationsTable: MIGRATIONS_TABLE,
      migrationsSchema: MIGRATIONS_SCHEMA,
      checkOrder: true,
      noLock: true, // our own lock already covers the whole run
      log: (line: string) => {
        const begins = MIGRATION_BEGINS.exec(line);
        if (begins) log(`migrating ${begins[1]}…`);
      },
    });
    await client.query('set client_min_messages = warning');
    client.off('notice', onNotice);
    for (const migration of ran) log(`migrated ${migration.name}`);
    await applyEngine(client);
    log(`applied sql/ (${(await engineFiles()).length} files)`);
  } finally {
    await client.query('select pg_advisory_unlock($1)', [MIGRATE_LOCK]).catch(() => {});
    await client.end();
  }
}

/**
 * Moves the record of migrations run from public.migrations (where installs before
 * it moved keep it) into MIGRATIONS_SCHEMA, rows, ids and sequence with it, so that
 * nothing runs twice. Only a table that is ours moves: one that records our first
 * migration. Runs under the migrate lock, before node-pg-migrate looks.
 */
async function moveMigrationsTable(client: pg.Client): Promise<void> {
  await client.query(`create schema if not exists ${MIGRATIONS_SCHEMA}`);
  const { rows } = await client.query<{ ours: boolean }>(
    `select to_regclass($1) is not null and to_regclass($2) is null as ours`,
    [`public.${MIGRATIONS_TABLE}`, `${MIGRATIONS_SCHEMA}.${MIGRATIONS_TABLE}`],
  );
  if (!rows[0]!.ours) return;
  const { rows: [recorded] } = await client.query<{ ours: boolean }>(
    `select exists (select 1 from public.${MIGRATIONS_TABLE} where name = '0001_crm') as ours`,
  );
  if (!recorded!.ours) return;
  await client.query(`alter table public.${MIGRATIONS_TABLE} set schema ${MIGRATIONS_SCHEMA}`);
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
