// Brings a database up to date: the versioned table changes in migrations/, then the
// engine in sql/ re-applied from scratch, as this process read it when it started
// (ops/engine.ts), with a record of which (webhooks_private.sql_applied). Safe to run
// twice and to run twice at once: a session advisory lock serialises whole runs.
import { readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { runner } from 'node-pg-migrate';
import { ENGINE_FILES, ENGINE_FINGERPRINT } from '../ops/engine.ts';

const root = fileURLToPath(new URL('../', import.meta.url));
export const migrationsDir = `${root}migrations`;

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
    await refuseNewerDatabase(client);
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
    log(`applied sql/ (${ENGINE_FILES.length} files, ${ENGINE_FINGERPRINT.slice(0, 12)})`);
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

/**
 * A database that recorded a migration this checkout has no file for was migrated by
 * newer code: re-applying this checkout's sql/ would put its older engine under the
 * newer relays and API (a host restarted on the old version mid-rollout, with npm
 * start, which migrates first). So nothing is done, and the error says why.
 */
async function refuseNewerDatabase(client: pg.Client): Promise<void> {
  const table = `${MIGRATIONS_SCHEMA}.${MIGRATIONS_TABLE}`;
  const { rows: [found] } = await client.query<{ found: boolean }>('select to_regclass($1) is not null as found', [table]);
  if (!found!.found) return;
  const known = new Set((await readdir(migrationsDir)).filter((name) => name.endsWith('.sql')).map((name) => name.replace(/\.sql$/, '')));
  const { rows } = await client.query<{ name: string }>(`select name from ${table} order by name`);
  const unknown = rows.map((row) => row.name).filter((name) => !known.has(name));
  if (unknown.length > 0) {
    throw new Error(`this database was migrated by newer code (${unknown.join(', ')}: no such file in migrations/); ` +
      'nothing was done, so as not to put this older engine under it: run the newer code, or its migrate');
  }
}

/**
 * The engine's schemas, whose tables and views sql/ changes (policies, triggers,
 * views), all locked before the first file; and of the CRM's tables, those with the
 * engine's capture triggers (no other, so the CRM's other writes never wait).
 */
const ENGINE_SCHEMAS = ['webhooks', 'webhooks_private'];
const CAPTURED_SCHEMA = 'crm';

/**
 * sql/ replaces views, triggers and policies on tables the relay, the API and the CRM
 * use all the time. Taking those locks file by file, it held some while it waited for
 * others, and a claim or a contact write that held one of those and wanted one of the
 * first deadlocked with it: the migrate failed (or the CRM's write). So the run takes
 * them all first, in one LOCK that waits at most ENGINE_LOCK_TIMEOUT (under the
 * deadlock check's 1 s: it gives way, never the others), then applies the files
 * without waiting on anyone; the others wait for it, well under a second. A run that
 * gave way starts over, a little later (at random, so as not to meet the same claims
again), up to ENGINE_TRIES times: a few under a busy relay, a minute or so at most.
 */
const ENGINE_LOCK_TIMEOUT = '500ms';
const ENGINE_TRIES = 50;

async function applyEngine(client: pg.Client): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    await client.query('begin');
    try {
      await client.query(`set local lock_timeout = '${ENGINE_LOCK_TIMEOUT}'`);
      const { rows: [{ relations }] } = await client.query<{ relations: string | null }>(
        `select string_agg(format('%I.%I', n.nspname, c.relname), ', ' order by c.oid) as relations
         from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
         where c.relkind in ('r', 'p', 'v', 'm') and not c.relispartition
           and (n.nspname = any ($1)
                or n.nspname = $2 and exists (select 1 from pg_catalog.pg_trigger t
                                                join pg_catalog.pg_proc f on f.oid = t.tgfoid
                                                where t.tgrelid = c.oid and not t.tgisinternal
                                                  and f.pronamespace::regnamespace::text = any ($1)))`,
        [ENGINE_SCHEMAS, CAPTURED_SCHEMA]);
      if (relations) await client.query(`lock table ${relations} in access exclusive mode`);
      for (const { name, text } of ENGINE_FILES) {
        try {
          await client.query(text);
        } catch (error) {
          throw new Error(`sql/${name}: ${(error as Error).message}`, { cause: error });
        }
      }
      // what was applied, in the same transaction: a run that fails leaves the record
      // of the sql/ still in force, and /readyz (ops/operations.ts) compares it with
      // the code's
      await client.query(
        `insert into webhooks_private.sql_applied (fingerprint) values ($1)
         on conflict (one) do update set fingerprint = excluded.fingerprint, applied_at = now()`,
        [ENGINE_FINGERPRINT]);
      await client.query('commit');
      return;
    } catch (error) {
      await client.query('rollback');
      const code = ((error as Error).cause as { code?: string } | undefined)?.code ?? (error as { code?: string }).code;
      // lock_not_available, deadlock_detected: busy, not wrong
      if (code !== '55P03' && code !== '40P01') throw error;
      if (attempt >= ENGINE_TRIES) {
        throw new Error(`sql/ not applied: its tables stayed in use (${(error as Error).message}) ${ENGINE_TRIES} times; ` +
          'a long transaction holds one (see pg_stat_activity): run migrate again once it ends', { cause: error });
      }
      await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(100 * attempt, 1_000)));
    }
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
