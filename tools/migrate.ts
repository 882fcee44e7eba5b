// Brings a database up to date: the versioned table changes in migrations/, then the
// engine in sql/ re-applied from scratch, as this process read it when it started
// (ops/engine.ts), with a record of which (webhooks_private.sql_applied). Safe to run
// twice and to run twice at once: a session advisory lock serialises whole runs.
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { runner } from 'node-pg-migrate';
import { ENGINE_FILES, ENGINE_FINGERPRINT } from '../ops/engine.ts';
import { databaseUrlRefusal, ENGINE_SESSION_TIMEOUTS, KEEPALIVE_AFTER_MS } from '../relay/database.ts';
import { RUN_LOCK_WAIT_MS, runLockWaitMs, takeRunLock } from './run-lock.ts';

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

export interface MigrateOptions {
  /** where the versioned migrations are (this release's migrations/ unless a test says otherwise) */
  migrationsDir?: string;
  /** how long a step that gave way waits for the transactions in its way (HOLDERS_WAIT_MS unless a test says otherwise) */
  holdersWaitMs?: number;
  /** how long each lock is waited for (LOCK_TIMEOUT unless a test says otherwise) */
  lockTimeout?: string;
  /**
   * true: this release's sql/ may replace a later release's (a rollback, `npm run
   * migrate -- --rollback`); otherwise such a migrate does nothing and says so
   * (refuseRollback, rollbackToAnOlderRelease)
   */
  rollback?: boolean;
  /**
   * true (npm start over a shared database): this release's sql/ replaces another's
   * only where the database says it is the later one, and not where a rollback made on
   * purpose would be undone; otherwise the migrate does nothing and says so
   * (refuseUnsure), and `npm run migrate` is the operator's to run
   */
  cautious?: boolean;
  /** how long an answer is waited for with no byte from the database before migrate asks whether it is coming (ANSWER_SILENCE_MS unless set) */
  answerSilenceMs?: number;
  /** how long another migrate is waited for (RUN_LOCK_WAIT_MS unless set: MIGRATE_LOCK_WAIT_MS, tools/run-lock.ts) */
  lockWaitMs?: number;
}

/** The command-line flag of `npm run migrate` and `npm start` that allows a rollback (MigrateOptions.rollback). */
export const ROLLBACK_FLAG = '--rollback';

/**
 * Whether the command line (`npm run migrate`, `npm start`: `command`) asks to roll
 * back. Written without the `--` before it, npm keeps the flag as an option of its own
 * (npm_config_rollback) and the process never sees it: read as no rollback asked, the
 * operator who followed the refusal's advice but for the `--` met the same refusal;
 * read as one, a `rollback=true` in an .npmrc would roll back every migrate. So it is
 * refused, saying how to write it.
 */
export function rollbackAsked(command: string, argv = process.argv, env = process.env): boolean {
  if (argv.includes(ROLLBACK_FLAG)) return true;
  if (env.npm_config_rollback !== undefined) {
    throw new Error(`npm took ${ROLLBACK_FLAG} for an option of its own (npm_config_rollback): nothing was done. ` +
      `Write it after --: npm ${command} -- ${ROLLBACK_FLAG}`);
  }
  return false;
}

/**
 * How soon the server ends what a migrate that went away (killed, Ctrl-C, its host
 * lost) was running. Left to itself, a backend finds its client gone only when it
 * next writes to it: a migration that moves data kept its strong locks, and every
 * contact write and claim waiting behind them, to the end of its statement (minutes),
 * and only then rolled back.
 */
const CONNECTION_CHECK_INTERVAL = '1s';

/**
 * How long migrate waits for an answer while no byte comes from its database before it
 * asks, over a connection of its own, whether its session there still runs the
 * statement (MIGRATE_ANSWER_SILENCE_MS). A migration that moves data, or a wait for
 * another migrate, runs for as long as it needs: a session still at it is waited for.
 * One that is not (idle: its answer was sent and lost; gone; stuck writing to a path
 * that takes nothing), or a database that cannot be asked within as long, means an
 * answer that will never come: a network path gone silent without a reset, which TCP
 * alone reports only after many minutes, keepalive or not (the path's own end, a
 * proxy or a NAT, answers the probes).
 */
export const ANSWER_SILENCE_MS = 60_000;
/** The environment variable that sets ANSWER_SILENCE_MS for `npm run migrate`. */
export const ANSWER_SILENCE_SETTING = 'MIGRATE_ANSWER_SILENCE_MS';

/**
 * The longest ANSWER_SILENCE_MS may be: node runs a timer longer than 2^31 - 1 ms after
 * 1 ms, and the bound is the migrate's connect timeout too (a longer one failed its
 * connection at once, "timeout expired").
 */
const ANSWER_SILENCE_MOST_MS = 2_147_483_647;

/**
 * The options `env` sets for a migrate, read by `npm run migrate` and by `npm start`'s
 * migrate alike: MIGRATE_ANSWER_SILENCE_MS, MIGRATE_LOCK_WAIT_MS (until 2026-12-07 npm
 * start read neither, and its migrate ran on the defaults). A value not a whole number
 * of ms is refused, naming it.
 */
export function migrateSettings(env = process.env): Required<Pick<MigrateOptions, 'answerSilenceMs' | 'lockWaitMs'>> {
  return { answerSilenceMs: answerSilenceMs(env), lockWaitMs: runLockWaitMs('migrate', env) };
}

/** The silence bound `env` sets (ANSWER_SILENCE_SETTING), ANSWER_SILENCE_MS unless set; a value not a whole number of ms is refused, naming it. */
export function answerSilenceMs(env = process.env): number {
  const value = env[ANSWER_SILENCE_SETTING];
  if (value === undefined || value === '') return ANSWER_SILENCE_MS;
  if (!/^[1-9][0-9]{0,9}$/.test(value) || Number(value) > ANSWER_SILENCE_MOST_MS) {
    throw new Error(`${ANSWER_SILENCE_SETTING}=${value}: not a whole number of milliseconds from 1 to ${ANSWER_SILENCE_MOST_MS}`);
  }
  return Number(value);
}

/** An answer that will not come, found by watchAnswers: said in the migrate's one line. */
class AnswerLost extends Error {}

/**
 * Watches `client`'s answers: while a query waits and no message has come for
 * `silenceMs`, asks over a connection of its own (at most `silenceMs` to connect and
 * answer) whether the client's session still runs a statement; if not, or if the
 * database cannot be asked, ends that session (so that it holds no lock, the migrate
 * lock among them, for the next run) and the client's connection, which fails the
 * query waiting. Returns what stops the watch and the reason found, if one was.
 */
function watchAnswers(client: pg.Client, databaseUrl: string, silenceMs: number): { stop: () => void; lost: () => AnswerLost | undefined } {
  const internals = client as unknown as { connection: pg.Connection & { stream: { destroy: () => void } }; _activeQuery: unknown; processID: number };
  let heard = Date.now();
  // (a session found at work is asked again a silence later, not at every tick)
  let askedAt = 0;
  let found: AnswerLost | undefined;
  let asking = false;
  internals.connection.on('message', () => (heard = Date.now()));
  const timer = setInterval(async () => {
    if (asking || found || !internals._activeQuery || Date.now() - Math.max(heard, askedAt) < silenceMs) return;
    asking = true;
    const asked = heard;
    const checker = new pg.Client({ connectionString: databaseUrl, application_name: 'bpd-webhooks-migrate-check',
                                    connectionTimeoutMillis: silenceMs, query_timeout: silenceMs });
    checker.on('error', () => {});
    let reason: string | undefined;
    try {
      await checker.connect();
      const { rows: [session] } = await checker.query<{ running: boolean; since: string | null }>(
        `select state = 'active' and wait_event is distinct from 'ClientWrite' as running, state_change::text as since
         from pg_catalog.pg_stat_activity where pid = $1`, [internals.processID]);
      // (an answer that came while asking: the session was between two statements of
      // a migrate at work, not silent, and is left alone. Ended only if it is still in
      // the state it was found in: until 2026-12-08 one found between two statements
      // (a migration's, or the steps of a wait for the migrate lock) was ended though
      // the next had come meanwhile, a migrate at work stopped as if its answer were lost)
      if (!session?.running && heard === asked) {
        // (waited for until it has ended, within the silence: the migrate then exits
        // with its session, and the migrate lock it held, gone; until 2026-12-08 it
        // could exit before the server had ended it, and a migrate run again at once
        // waited for the lock of the one that had just said it lost it)
        const { rows: ending } = await checker.query<{ ended: boolean }>(
          `select pg_catalog.pg_terminate_backend(pid, $3) as ended from pg_catalog.pg_stat_activity
           where pid = $1 and state_change is not distinct from $2::timestamptz
             and not (state = 'active' and wait_event is distinct from 'ClientWrite')`,
          [internals.processID, session?.since ?? null, Math.max(1, Math.floor(silenceMs / 2))]);
        if (ending.length > 0 || !session) reason = 'its session there is not running the statement: the answer was lost on the way';
      }
    } catch (error) {
      reason ??= `the database could not be asked whether it still runs the statement (${(error as Error).message})`;
    } finally {
      await checker.end().catch(() => {});
      asking = false;
      askedAt = Date.now();
    }
    // (an answer that came meanwhile is no silence)
    if (!reason || heard !== asked || !internals._activeQuery) return;
    found = new AnswerLost(`no answer for ${silenceMs} ms, and ${reason}`);
    internals.connection.stream.destroy();
  }, Math.max(1, Math.min(silenceMs / 4, 5_000)));
  timer.unref();
  return { stop: () => clearInterval(timer), lost: () => found };
}

export async function migrate(databaseUrl: string, log: (line: string) => void = () => {},
                              options: MigrateOptions = {}): Promise<void> {
  const dir = options.migrationsDir ?? migrationsDir;
  const silenceMs = options.answerSilenceMs ?? ANSWER_SILENCE_MS;
  // (keepalive: a migration that runs for minutes without a byte either way outlives
  // the idle timeouts of the NATs and firewalls on its path, as the relay's connections
  // do. And the engine's session settings, the server's keepalives among them: this
  // session holds the migrate lock, and on a host that died without a reset the server
  // kept it, every later migrate waiting behind it, for the system's tcp_keepalive_time,
  // two hours unless the host sets it; now about a minute, as for the relay's RELAY_ID)
  const client = new pg.Client({ connectionString: databaseUrl, application_name: 'bpd-webhooks-migrate',
                                 options: ENGINE_SESSION_TIMEOUTS.join(' '),
                                 connectionTimeoutMillis: silenceMs, keepAlive: true, keepAliveInitialDelayMillis: KEEPALIVE_AFTER_MS });
  // a session ended under it (pg_terminate_backend, a server restart) is said once, by
  // the query that fails, not thrown from an event as well: the process
  // would die on it with a stack
  let lost: Error | undefined;
  client.on('error', (error) => (lost ??= error));
  await client.connect();
  const watch = watchAnswers(client, databaseUrl, silenceMs);
  let stage: 'waiting' | 'migrations' | 'sql' = 'waiting';
  let running: string | undefined;
  try {
    await client.query(`set client_connection_check_interval = '${CONNECTION_CHECK_INTERVAL}'`).catch((error: { code?: string }) => {
      // invalid_parameter_value: a server on a system without the check (Windows)
      if (error.code !== '22023') throw error;
    });
    // a second migrate waits here for the first, saying which session holds the lock,
    // for at most MIGRATE_LOCK_WAIT_MS (tools/run-lock.ts; until 2026-12-07 without end,
    // silently); every lock after this one is waited for at most LOCK_TIMEOUT, and on
    // a step's first try not at all (givingWay). Whatever the database or role sets
    // its sessions: with the applications' lock_timeout or statement_timeout, a second
    // migrate failed here ("canceling statement due to lock timeout", saying nothing
    // of the first), and a migration that moves data past the applications'
    // statement_timeout failed
    await client.query(`set statement_timeout = 0`);
    await takeRunLock(client, { key: MIGRATE_LOCK, command: 'migrate', waitMs: options.lockWaitMs ?? RUN_LOCK_WAIT_MS, log });
    stage = 'migrations';
    const lockTimeout = options.lockTimeout ?? LOCK_TIMEOUT;
    await client.query('select set_config($1, $2, false)', ['lock_timeout', lockTimeout]);
    await client.query('set client_min_messages = warning');
    await moveMigrationsTable(client);
    const release = await refuseNewerDatabase(client, dir, options.rollback ?? false);
    if (!options.rollback) await refuseRollback(client, release);
    const over = await otherReleaseInForce(client, release);
    if (over && options.cautious && !options.rollback) refuseUnsure(over);
    await registerRelease(client, release);
    const onNotice = (notice: { message?: string }) => {
      if (notice.message?.startsWith(PROGRESS_NOTICE)) log(`  ${notice.message.slice(PROGRESS_NOTICE.length)}`);
    };
    client.on('notice', onNotice);
    await client.query('set client_min_messages = notice');
    // each migration in a transaction of its own, recorded in it, and a step of its
    // own (givingWay): one that gave way (rolled back) is run again, those before it
    // not, and each one's first try waits for no lock, as sql/'s does
    const recorded = await recordedMigrations(client);
    const giving = { waitMs: options.holdersWaitMs ?? HOLDERS_WAIT_MS, lockTimeout, log };
    const runNext = () => runner({
      dbClient: client,
      dir,
      direction: 'up',
      count: 1,
      migrationsTable: MIGRATIONS_TABLE,
      migrationsSchema: MIGRATIONS_SCHEMA,
      checkOrder: true,
      noLock: true, // our own lock already covers the whole run
      log: (line: string) => {
        const begins = MIGRATION_BEGINS.exec(line);
        if (!begins) return;
        running = begins[1];
        log(`migrating ${running}…`);
      },
    }).catch((error: Error) => {
      // node-pg-migrate's error is the database's alone, as sql/'s are named (applyEngine)
      throw running ? new Error(`migrations/${running}.sql: ${error.message}`, { cause: error }) : error;
    });
    const migrations = { ...giving, capturedNotInWay: MIGRATIONS_CAPTURED_NOT_IN_WAY, mayLockMore: true,
                         named: () => running ? tablesNamed(dir, running) : Promise.resolve(null) };
    while ((await givingWay(client, 'the migrations', migrations, runNext)).length > 0);
    await client.query('set client_min_messages = warning');
    client.off('notice', onNotice);
    // (those of every try: one that gave way ran some of them)
    for (const name of await recordedMigrations(client)) if (!recorded.has(name)) log(`migrated ${name}`);
    stage = 'sql';
    await givingWay(client, 'sql/', { ...giving, capturedNotInWay: SQL_CAPTURED_NOT_IN_WAY },
                    (waiting) => applyEngine(client, release, waiting, options.rollback ?? false));
    log(`applied sql/ (${ENGINE_FILES.length} files, ${ENGINE_FINGERPRINT.slice(0, 12)})`);
    if (over?.unsure && !options.rollback) {
      log(`applied over the sql/ of another release of the same migrations (${over.named}), never applied here before: ` +
        `taken for the release after it; if this is an earlier release, run npm run migrate -- ${ROLLBACK_FLAG} to have it taken for that`);
    }
  } catch (error) {
    const silent = watch.lost();
    if (!silent && !lost && !connectionLost(error)) throw error;
    // the server's word for it (57P01 for pg_terminate_backend), whether the query or the idle client heard it
    const said = silent ?? [firstCause(error), lost].find((heard) => (heard as { code?: string } | undefined)?.code) ?? firstCause(error);
    throw new Error(`migrate lost its connection to the database while ${STAGES[stage]} (${said.message}): ` +
      `${appliedBefore(stage, running)}; run migrate again to finish`, { cause: error });
  } finally {
    watch.stop();
    if (!watch.lost()) await client.query('select pg_advisory_unlock($1)', [MIGRATE_LOCK]).catch(() => {});
    await client.end();
  }
}

const STAGES = {
  waiting: 'it waited for another migrate to end',
  migrations: 'it ran the migrations',
  sql: 'it applied sql/',
};

/**
 * What a migrate that lost its session had committed: each migration is a transaction
 * of its own, and sql/ one more, so the one it was in is rolled back and those before
 * it stay.
 */
function appliedBefore(stage: keyof typeof STAGES, running: string | undefined): string {
  if (stage === 'sql') return 'the migrations were applied, sql/ not';
  if (stage === 'migrations' && running) return `the migrations before ${running} were applied, ${running} and the rest not, nor sql/`;
  return 'nothing was applied';
}

/** The server ended the session (admin_shutdown, crash_shutdown, cannot_connect_now, connection_exception). */
function connectionLost(error: unknown): boolean {
  return /^(57P0[123]|08...)$/.test((firstCause(error) as { code?: string }).code ?? '');
}

/** The error at the bottom of a chain of causes (the database's own). */
function firstCause(error: unknown): Error {
  let found = error as Error;
  while (found.cause instanceof Error) found = found.cause;
  return found;
}

/** The migrations the database has recorded as run (none before its first migrate). */
async function recordedMigrations(client: pg.Client): Promise<Set<string>> {
  const table = `${MIGRATIONS_SCHEMA}.${MIGRATIONS_TABLE}`;
  const { rows: [found] } = await client.query<{ found: boolean }>('select to_regclass($1) is not null as found', [table]);
  if (!found!.found) return new Set();
  const { rows } = await client.query<{ name: string }>(`select name from ${table} order by id`);
  return new Set(rows.map((row) => row.name));
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
 * Otherwise returns this release's newest migration (registerRelease).
 */
async function refuseNewerDatabase(client: pg.Client, dir: string, rollback: boolean): Promise<string> {
  const known = (await readdir(dir)).filter((name) => name.endsWith('.sql')).map((name) => name.replace(/\.sql$/, '')).sort();
  const unknown = [...await recordedMigrations(client)].filter((name) => !known.includes(name)).sort();
  if (unknown.length > 0) {
    // (asked to roll back, the operator learns that no rollback goes past a migration:
    // none is ever undone, and each release keeps the one before it working)
    throw new Error(`this database was migrated by newer code (${unknown.join(', ')}: no such file in migrations/); ` +
      'nothing was done, so as not to put this older engine under it: run the newer code, or its migrate' +
      (rollback ? `. A rollback (${ROLLBACK_FLAG}) undoes no migration: roll back only to a release that has them all` : ''));
  }
  return known.at(-1)!;
}

/**
 * Registers this release (its sql/'s fingerprint and its newest migration, `migration`)
 * among those whose migrate ran on the database, unless it was already (a migrate run
 * again, or an earlier release's rolling back to it): /readyz places each process's
 * release in that order (ops/operations.ts). Before the migrations, so that a migrate
 * stopped in them or before sql/ is known as the next release's; on a database
 * without the record yet (0048_sql_releases), applyEngine registers it.
 */
async function registerRelease(client: pg.Client, migration: string): Promise<void> {
  if (!await releasesKept(client)) return;
  await client.query(
    `insert into webhooks_private.sql_releases (fingerprint, migration) values ($1, $2) on conflict (fingerprint, migration) do nothing`,
    [ENGINE_FINGERPRINT, migration]);
}

const ROLLBACK_ADVICE = `Nothing was applied. To roll back on purpose: npm run migrate -- ${ROLLBACK_FLAG} ` +
  `(its embedded database: npm start -- ${ROLLBACK_FLAG})`;

/**
 * A migrate of a release registered here before a later release whose sql/ is now in
 * force would roll the database back under that release's processes, which answer
 * 503 from then on: meant by an operator rolling back, not by a host left on the older
 * release and restarted mid-rollout (npm start migrates first, and a release of sql/
 * only has no migration of its own for refuseNewerDatabase to find). So it does
 * nothing unless asked (MigrateOptions.rollback), and says why. Whether this release's
 * sql/ was applied here or its migrate stopped before it (a later release, N mended
 * say, migrated after it): the order of registering says which is older, whatever
 * the later release changed (its functions' bodies only, say).
 */
async function refuseRollback(client: pg.Client, release: string): Promise<void> {
  if (!await releasesKept(client)) return;
  const { rows: [later] } = await client.query<{ fingerprint: string; migration: string }>(
    `select a.fingerprint, a.migration
     from webhooks_private.sql_applied a
     join webhooks_private.sql_releases inForce on (inForce.fingerprint, inForce.migration) = (a.fingerprint, a.migration)
     join webhooks_private.sql_releases own on (own.fingerprint, own.migration) = ($1, $2)
     where inForce.n > own.n`,
    [ENGINE_FINGERPRINT, release]);
  if (later) {
    throw new Error(`this database runs the sql/ of a later release than this one (${later.fingerprint.slice(0, 12)}, ` +
      `migrated to ${later.migration}): applying this release's would roll it back under that release's processes ` +
      `(an older host's npm start?). ${ROLLBACK_ADVICE}`);
  }
}

/** Whether the database keeps the record of releases (0048_sql_releases). */
async function releasesKept(client: pg.Client): Promise<boolean> {
  const { rows: [found] } = await client.query<{ kept: boolean }>(
    `select to_regclass('webhooks_private.sql_releases') is not null as kept`);
  return found!.kept;
}

/** The release whose sql/ is in force, when another than this one (refuseUnsure). */
interface OtherInForce {
  /** its fingerprint's first digits and its newest migration, as messages name it */
  named: string;
  /** a release registered after it had its sql/ applied here: a rollback made on purpose */
  rolledBack: boolean;
  /** this release, never registered here, has the same migrations: the database cannot tell which is the later */
  unsure: boolean;
}

/** The release whose sql/ is in force, if the record places it and it is not this one. */
async function otherReleaseInForce(client: pg.Client, release: string): Promise<OtherInForce | null> {
  if (!await releasesKept(client)) return null;
  const { rows: [inForce] } = await client.query<{ fingerprint: string; migration: string; rolledBack: boolean; ownRegistered: boolean }>(
    `select a.fingerprint, a.migration,
            exists (select 1 from webhooks_private.sql_releases later
                    where later.n > inForce.n and later.first_applied_at is not null) as "rolledBack",
            exists (select 1 from webhooks_private.sql_releases own where (own.fingerprint, own.migration) = ($1, $2)) as "ownRegistered"
     from webhooks_private.sql_applied a
     join webhooks_private.sql_releases inForce on (inForce.fingerprint, inForce.migration) = (a.fingerprint, a.migration)
     where (a.fingerprint, a.migration) <> ($1, $2)`,
    [ENGINE_FINGERPRINT, release]);
  if (!inForce) return null;
  // (registered, this release is the later: refuseRollback refused an earlier one)
  return { named: `${inForce.fingerprint.slice(0, 12)}, migrated to ${inForce.migration}`, rolledBack: inForce.rolledBack,
           unsure: !inForce.ownRegistered && inForce.migration === release };
}

/**
 * What npm start over a shared database (MigrateOptions.cautious), where other hosts'
 * processes run, leaves to an operator's npm run migrate: to undo a rollback made on
 * purpose (the sql/ in force a release's registered before another whose sql/ was
 * applied here, refuseRollback and placeFirst keeping that order), which put the sql/
 * rolled back from under the processes of the release rolled back to, 503 from then
 * on (a later release's host restarted, or deployed again); and to apply the sql/ of
 * a release never registered here over another release's of the same migrations, an
 * earlier release's or a later one's: a release that changed only functions' bodies
 * leaves nothing in the database to tell (an older host's start, its release never
 * migrated here, put its older bodies under the newer processes, which stayed ready).
 * The release in force re-applies its own sql/; one with a migration of its own is
 * the later.
 */
function refuseUnsure({ named, rolledBack, unsure }: OtherInForce): void {
  if (rolledBack) {
    throw new Error(`this database was rolled back on purpose to an earlier release's sql/ (${named}), ` +
      `after a later release's was applied here: npm start does not undo that. ` +
      'Nothing was applied. To move it forward again on purpose: npm run migrate');
  }
  if (unsure) {
    throw new Error(`this release's sql/ was never applied here, and another release's of the same migrations is in force ` +
      `(${named}): which of the two is the later, the database cannot tell, and npm start rolls back only when asked. ` +
      `Nothing was applied. To apply it on purpose: npm run migrate (a release of sql/ only, after that one), ` +
      `or npm run migrate -- ${ROLLBACK_FLAG} (an earlier release)`);
  }
}

/**
 * A migrate takes strong locks on tables the relay, the API and the CRM use all the
 * time: a migration's ALTER TABLE, and sql/'s replacing of views, triggers and
 * policies. A lock request waits for the transactions that hold the table, and every
 * later request waits behind it: a migrate that waited for a long transaction (a
 * report, a backup's snapshot, a session left idle in one) held every contact write
 * and every claim for as long as that transaction lasted. So each lock is waited for
 * at most LOCK_TIMEOUT (under the deadlock check's 1 s: the migrate gives way, never
 * the others), and the step that gave way is rolled back. Before it starts over, it
 * waits, asking for no lock, until the transactions that held the engine's tables
 * then have ended (givingWay): asking again every second or so, 50 times, held the
 * CRM's writes half of that minute (25 s of 49, measured). Busy with short
 * transactions only (claims, contact writes), it starts over after a moment (at
 * random, so as not to meet the same claims again), up to TRIES times.
 *
 * Each step (each migration, and sql/) waits for no lock on its first try: asked with
 * the timeout, the locks granted before the table in its way were held while it
 * waited, and every write to those tables queued behind them, and behind the lock it
 * waited for, for up to LOCK_TIMEOUT (a migration that locked the contacts and then
 * waited for the queue a report read: a contact write given 50 ms failed 8 times in a
 * row). Refused, it gives way at once, waits for the holders of that moment as above,
 * and only then asks with the timeout, when what was in its way has ended.
 *
 * Except an autovacuum worker (yieldingAutovacuum): it holds its table to the end of
 * its vacuum, minutes on a big table, and lets go only of a lock asked for longer than
 * deadlock_timeout, which LOCK_TIMEOUT is not. With only such workers in its way, the
 * step asks for deadlock_timeout and a little more (cancellingTimeout), so that the
 * server cancels them, and writes wait behind it that long instead. A worker still in
 * its way after such a try was not cancelled (one that prevents wraparound, which a
 * migrate role that is no superuser is not shown as such): it is waited for from then
 * on as any transaction. One that started since (the table's vacuum begun again) has
 * such a try of its own, up to TRIES in all.
 */
const LOCK_TIMEOUT = '500ms';
/**
 * The lock_timeout of a first try: the least the server takes (0 is no limit at all),
 * so that a lock a statement asks for by itself (a migration's ALTER TABLE) is given
 * up as NOWAIT would, its place in the lock's queue held a millisecond at most. sql/
 * asks its tables' locks NOWAIT besides (applyEngine).
 */
const FIRST_TRY_LOCK_TIMEOUT = '1ms';
const TRIES = 50;
/** How long a step that gave way waits for the transactions that held its tables, in all. */
const HOLDERS_WAIT_MS = 60_000;
/**
 * How often it looks whether they have ended: soon at first (the claims and contact
 * writes of a busy install end within milliseconds, and a migrate that gave way to
 * them should not wait a poll's time more), then every HOLDERS_POLL_MS.
 */
const HOLDERS_FIRST_POLL_MS = 2;
const HOLDERS_POLL_MS = 100;
/** How much longer each look waits than the one before. */
const HOLDERS_POLL_GROWTH = 1.5;
/** How long they have held it up when it says what it waits for. */
const HOLDERS_SAID_MS = 500;

interface GivingWay {
  /** how long a step that gave way waits for the transactions in its way, in all */
  waitMs: number;
  /** the lock_timeout of the tries after the first */
  lockTimeout: string;
  log: (line: string) => void;
  /** the locks on the CRM's captured tables that are not in the step's way (holdersInWay) */
  capturedNotInWay: readonly string[];
  /**
   * The tables the step that gave way names (tablesNamed), whose holders alone are in
   * its way; absent, or null, every table of the engine's is (sql/ locks them all).
   */
  named?: () => Promise<readonly string[] | null>;
  /**
   * true: the step may lock more than `named` says, or a captured table whole (a
   * function it calls, a view over a table it drops, a key it drops): once a try that
   * waited finds none but those in its way, every holder of an engine table is
   */
  mayLockMore?: boolean;
}

/**
 * Runs `work`, one step of the migrate, as above: its first try (`waiting` false)
 * with FIRST_TRY_LOCK_TIMEOUT, each try after it, once the transactions in its way
 * have ended, with the lock timeout.
 */
async function givingWay<T>(client: pg.Client, step: string,
                            { waitMs, lockTimeout, log, capturedNotInWay, named, mayLockMore = false }: GivingWay,
                            work: (waiting: boolean) => Promise<T>): Promise<T> {
  const deadline = Date.now() + waitMs;
  let timeout = FIRST_TRY_LOCK_TIMEOUT;
  // the autovacuums (their transactions) the last try asked past deadlock_timeout for,
  // and those of them it found still in its way: not cancelled
  let askedToCancel = new Set<string>();
  const notCancelled = new Set<string>();
  for (let attempt = 1; ; attempt++) {
    const waiting = attempt > 1;
    await client.query('select set_config($1, $2, false)', ['lock_timeout', timeout]);
    try {
      return await work(waiting);
    } catch (error) {
      // node-pg-migrate leaves the transaction of a migration that failed open (and
      // a session that ended cannot roll back: its own error says why, unless it ended
      // after the try failed, and the server said so to the rollback: a try that met
      // its lock timeout as the session was ended was reported as that timeout, not as
      // the lost connection it was, in a loaded run of test/sql/migrate-lost.test.ts)
      await client.query('rollback').catch((rollbackError: unknown) => {
        throw connectionLost(rollbackError) && !connectionLost(error) ? rollbackError : error;
      });
      if (!busy(error)) throw error;
      let scope: InWay = { notInWay: capturedNotInWay, tables: (await named?.()) ?? null };
      let holders = await holdersInWay(client, scope);
      if (holders.length === 0 && waiting && mayLockMore) holders = await holdersInWay(client, scope = EVERY_HOLDER);
      // an autovacuum is not waited for: it would hold the step up to its end (minutes
      // on a big table), and the server cancels it for the try after (cancellingTimeout)
      // unless that try found it did not
      const cancellable = holders.filter((holder) => yieldingAutovacuum(holder));
      if (cancellable.length === holders.length) {
        for (const { transaction } of cancellable) if (askedToCancel.has(transaction)) notCancelled.add(transaction);
      }
      const waitedFor = holders.filter((holder) => !yieldingAutovacuum(holder) || notCancelled.has(holder.transaction));
      const vacuumsOnly = waitedFor.length === 0 && holders.length > 0;
      askedToCancel = new Set(vacuumsOnly ? holders.map((holder) => holder.transaction) : []);
      const said = () => log(`${step}: waiting for the transactions in its way to end, ${holdersNamed(waitedFor)}…`);
      if (attempt >= TRIES || (vacuumsOnly ? Date.now() > deadline : !(await holdersEnded(client, waitedFor, deadline, said)))) {
        throw new Error(`${step} not applied: the tables they change stayed in use (${(error as Error).message}), ` +
          `${holdersNamed(await holdersInWay(client, mayLockMore ? EVERY_HOLDER : scope))}: run migrate again once they end`, { cause: error });
      }
      timeout = lockTimeout;
      if (vacuumsOnly) {
        const { deadlockTimeoutMs, timeout: cancelling } = await cancellingTimeout(client);
        timeout = cancelling;
        log(`${step}: only an autovacuum in its way, ${holdersNamed(holders)} (${describeActivities(holders)}): asking for ` +
          `the locks for ${cancelling}, past deadlock_timeout (${deadlockTimeoutMs} ms), after which the server cancels ` +
          'the autovacuum (it starts again later); writes to the tables meanwhile wait that long');
        continue;
      }
      // (at random, after a try that waited for no lock too: its holders' ends wake
      // the relay, whose claims a try asked for right then met, and gave way to)
      await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(100 * attempt, 1_000)));
    }
  }
}

/**
 * How long past deadlock_timeout a try asks for its locks when only autovacuum
 * workers are in its way: the server cancels the worker once the request has waited
 * deadlock_timeout (its deadlock check finds the worker in the way), and the worker
 * then rolls back and lets go, which takes it a moment.
 */
const AUTOVACUUM_CANCEL_MARGIN_MS = 500;

/** The lock_timeout of a try that has an autovacuum cancelled: this session's deadlock_timeout and the margin. */
async function cancellingTimeout(client: pg.Client): Promise<{ deadlockTimeoutMs: number; timeout: string }> {
  const { rows: [{ ms }] } = await client.query<{ ms: number }>(
    `select setting::int as ms from pg_catalog.pg_settings where name = 'deadlock_timeout'`);
  return { deadlockTimeoutMs: ms, timeout: `${ms + AUTOVACUUM_CANCEL_MARGIN_MS}ms` };
}

/**
 * Whether the server cancels this holder of a lock for a request that has waited
 * deadlock_timeout, as far as the migrate role is shown: an autovacuum worker, unless
 * it vacuums to prevent transaction ID wraparound (that one is never cancelled, and is
 * waited for as any transaction). Its query says so ("… (to prevent wraparound)"),
 * shown only to a superuser or a member of pg_read_all_stats: to another role every
 * worker is one the server may cancel, until a try past deadlock_timeout finds it
 * was not (givingWay).
 */
export function yieldingAutovacuum(holder: Pick<Holder, 'autovacuum' | 'activity'>): boolean {
  return holder.autovacuum && !holder.activity?.endsWith('(to prevent wraparound)');
}

/**
 * A holder (pg_locks l, pg_stat_activity s) that is an autovacuum worker: a server
 * process of no role. pg_stat_activity shows every role which role a process runs as
 * (usesysid), but its backend_type and query only to a superuser, a member of
 * pg_read_all_stats or a member of the process's own role (a worker has none). Of the
 * processes of no role, only autovacuum's workers hold locks in a database of a
 * primary server (parallel workers, logical replication's and other background
 * workers run as a role). The report's roll-up tells them so too
 * (sql/50_report_counts.sql, oldest_writer_xid): the migrate runs before sql/ exists,
 * and cannot ask sql/.
 */
const AUTOVACUUM_WORKER = '(l.pid is not null and s.pid is not null and s.usesysid is null)';

/** What pg_stat_activity says in `query` of a process it does not show the role. */
const NOT_SHOWN = '<insufficient privilege>';

/** What the holders do, as pg_stat_activity says (an autovacuum's: "autovacuum: VACUUM schema.table"). */
function describeActivities(holders: Holder[]): string {
  return [...new Set(holders.flatMap(({ activity }) => activity === NOT_SHOWN ? 'its query not shown to this role' : activity ?? []))]
    .join('; ');
}

/** lock_not_available (LOCK_TIMEOUT), deadlock_detected: busy, not wrong */
function busy(error: unknown): boolean {
  const code = ((error as Error).cause as { code?: string } | undefined)?.code ?? (error as { code?: string }).code;
  return code === '55P03' || code === '40P01';
}

interface Holder {
  /** null: a prepared transaction, `prepared` its name */
  pid: number | null;
  prepared: string | null;
  transaction: string;
  /** an autovacuum worker (AUTOVACUUM_WORKER) */
  autovacuum: boolean;
  /**
   * its query, as pg_stat_activity says (an autovacuum's says what it vacuums; to a
   * role that is not shown it, '<insufficient privilege>')
   */
  activity: string | null;
}

/**
 * Of the locks on the CRM's captured tables, those not in a step's way. sql/ locks
 * them SHARE ROW EXCLUSIVE (applyEngine), which waits for writes only. A migration
 * changes no table of the CRM (test/sql/migrate.test.ts), and one that locks them
 * mostly locks them against writes (one that moves data) or adds a key referring to
 * them: a plain read is not in its way, unless a try that waited was refused with
 * nothing else in its way (dropping a key that refers to one takes that table whole).
 */
const SQL_CAPTURED_NOT_IN_WAY = ['AccessShareLock', 'RowShareLock'];
const MIGRATIONS_CAPTURED_NOT_IN_WAY = ['AccessShareLock'];

/** Which locks holdersInWay counts. */
interface InWay {
  /** the modes of lock on the CRM's captured tables that are not in the step's way */
  notInWay: readonly string[];
  /** the tables the step names, schema-qualified, lower case (null: every table of the engine's) */
  tables: readonly string[] | null;
}
const EVERY_HOLDER: InWay = { notInWay: [], tables: null };

/**
 * The transactions of others that hold a lock on a table of the engine's the step
 * names (all of them, for sql/), or one in the step's way on a captured table of the
 * CRM's, now: a DBA's hour-long read of the contacts is in no step's way, nor a read of
 * the fire history in the way of a migration of the queue, and a migrate that gave way
 * to a contact write or a claim waited for that read too, and failed after
 * HOLDERS_WAIT_MS. A lock on a partition counts as one on its partitioned table: a
 * lock of that table takes its partitions too, and a migrate refused by a read of
 * one partition found none in its way, and tried again, 50 times, each try stopping
 * writes for its LOCK_TIMEOUT.
 */
async function holdersInWay(client: pg.Client, { notInWay, tables }: InWay): Promise<Holder[]> {
  const { rows } = await client.query<Holder>(
    `select distinct l.pid, l.virtualtransaction as transaction, ${AUTOVACUUM_WORKER} as autovacuum, s.query as activity,
            (select p.gid from pg_catalog.pg_locks x join pg_catalog.pg_prepared_xacts p on p.transaction = x.transactionid
             where l.pid is null and x.virtualtransaction = l.virtualtransaction and x.locktype = 'transactionid') as prepared
     from pg_catalog.pg_locks l
     cross join lateral (
       select coalesce((select a.relid from pg_catalog.pg_partition_ancestors(l.relation) a
                        join pg_catalog.pg_class p on p.oid = a.relid
                        where not p.relispartition), l.relation) as oid) t
     join pg_catalog.pg_class c on c.oid = t.oid
     left join pg_catalog.pg_stat_activity s on s.pid = l.pid
     where l.locktype = 'relation' and l.granted and l.pid is distinct from pg_backend_pid()
       and l.database = (select oid from pg_catalog.pg_database where datname = current_database())
       and t.oid = any (${ENGINE_RELATIONS})
       and ($4::text[] is null or c.relnamespace::regnamespace::text || '.' || c.relname = any ($4))
       and not (l.mode = any ($3) and c.relnamespace::regnamespace::text = $2)`,
    [ENGINE_SCHEMAS, CAPTURED_SCHEMA, notInWay, tables]);
  return rows;
}

/**
 * The tables a migration names (schema.table, outside its line comments), which its
 * statements lock: a migration of the queue is not held up by a read of the history.
 * One that locks a table it does not name so (a function it calls, a name quoted or
 * left to the search path) is refused again after its wait, and then waits for every
 * holder (mayLockMore).
 */
async function tablesNamed(dir: string, migration: string): Promise<string[]> {
  const text = (await readFile(`${dir}/${migration}.sql`, 'utf8')).replace(/--[^\n]*/g, '');
  return [...new Set([...text.matchAll(/(?<![\w$."])([a-z_][\w$]*)\s*\.\s*([a-z_][\w$]*)(?![\w$"])/gi)]
    .map(([, schema, table]) => `${schema}.${table}`.toLowerCase()))];
}

/** Who holds the tables, in words an operator can look up (pg_stat_activity, pg_prepared_xacts). */
function holdersNamed(holders: Holder[]): string {
  const pids = [...new Set(holders.flatMap((holder) => holder.pid ?? []))];
  const prepared = [...new Set(holders.flatMap((holder) => holder.prepared ?? []))];
  const named = [
    ...(pids.length > 0 ? [`by server process${pids.length > 1 ? 'es' : ''} ${pids.join(', ')} (pg_stat_activity)`] : []),
    ...(prepared.length > 0 ? [`by prepared transaction ${prepared.map((gid) => `'${gid}'`).join(', ')} (pg_prepared_xacts)`] : []),
  ];
  return named.length > 0 ? named.join(' and ') : 'by transactions that have ended since';
}

/**
 * Waits until none of `holders` is still in its transaction: false if one still is at
 * the deadline. Says so (`waiting`) once one has outlasted HOLDERS_SAID_MS: the
 * short transactions of a busy relay end well before.
 */
async function holdersEnded(client: pg.Client, holders: Holder[], deadline: number, waiting: () => void): Promise<boolean> {
  const transactions = holders.map((holder) => holder.transaction);
  const said = Date.now() + HOLDERS_SAID_MS;
  for (let told = false, pollMs = HOLDERS_FIRST_POLL_MS; ; pollMs = Math.min(HOLDERS_POLL_GROWTH * pollMs, HOLDERS_POLL_MS)) {
    const { rows: [{ open }] } = await client.query<{ open: boolean }>(
      'select exists (select 1 from pg_catalog.pg_locks where virtualtransaction = any ($1)) as open', [transactions]);
    if (!open) return true;
    if (Date.now() > deadline) return false;
    if (!told && Date.now() > said) {
      told = true;
      waiting();
    }
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

/**
 * The engine's schemas, whose tables and views sql/ changes (policies, triggers,
 * views), all locked before the first file; and of the CRM's tables, those with the
 * engine's capture triggers (no other, so the CRM's other writes never wait).
 */
const ENGINE_SCHEMAS = ['webhooks', 'webhooks_private'];
const CAPTURED_SCHEMA = 'crm';

/** Those tables and views, oldest first (a subquery; $1: ENGINE_SCHEMAS, $2: CAPTURED_SCHEMA). */
const ENGINE_RELATIONS = `
  array(select c.oid
        from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
        where c.relkind in ('r', 'p', 'v', 'm') and not c.relispartition
          and (n.nspname = any ($1)
               or n.nspname = $2 and exists (select 1 from pg_catalog.pg_trigger t
                                               join pg_catalog.pg_proc f on f.oid = t.tgfoid
                                               where t.tgrelid = c.oid and not t.tgisinternal
                                                 and f.pronamespace::regnamespace::text = any ($1)))
        order by c.oid)`;

/**
 * sql/ re-applied in one transaction. Taking its locks file by file, it held some
 * while it waited for others, and a claim or a contact write that held one of those
 * and wanted one of the first deadlocked with it: the migrate failed (or the CRM's
 * write). So it takes them all first, then applies the files without waiting on
 * anyone. The CRM's tables are locked against writes only (SHARE ROW EXCLUSIVE, all
 * that sql/'s CREATE OR REPLACE TRIGGER takes): a contact write that is under way
 * reads the users, statuses and assignments in its capture, and had the migrate
 * held them ACCESS EXCLUSIVE while it waited for the contacts that write held, the
 * two waited for each other until the migrate gave way, attempt after attempt
 * (test/relay/upgrade.test.ts). `waiting` false: each lock asked NOWAIT (givingWay).
 * `release`: this release's newest migration.
 */
async function applyEngine(client: pg.Client, release: string, waiting: boolean, rollback: boolean): Promise<void> {
  await client.query('begin');
  const { rows } = await client.query<{ relation: string; captured: boolean }>(
    `select r.oid::regclass::text as relation, c.relnamespace::regnamespace::text = $2 as captured
     from unnest(${ENGINE_RELATIONS}) with ordinality r(oid, n) join pg_catalog.pg_class c on c.oid = r.oid
     order by r.n`,
    [ENGINE_SCHEMAS, CAPTURED_SCHEMA]);
  const captured = rows.filter((row) => row.captured).map((row) => row.relation);
  const engine = rows.filter((row) => !row.captured).map((row) => row.relation);
  // the CRM's first: once the migrate has them, no contact write is under way to
  // want the engine's tables after it
  // (in one round trip: a refused lock ends the transaction's locks on the server at
  // once, and none is held while the client sends the next statement)
  const nowait = waiting ? '' : ' nowait';
  const locks = [
    ...(captured.length > 0 ? [`lock table ${captured.join(', ')} in share row exclusive mode${nowait}`] : []),
    ...(engine.length > 0 ? [`lock table ${engine.join(', ')} in access exclusive mode${nowait}`] : []),
  ];
  if (locks.length > 0) await client.query(locks.join('; '));
  const replacingLater = rollback && await replacesALaterRegistered(client, release);
  for (const { name, text } of ENGINE_FILES) {
    try {
      await client.query(text);
    } catch (error) {
      throw new Error(`sql/${name}: ${(error as Error).message}`, { cause: error });
    }
  }
  // what was applied, in the same transaction: a run that fails leaves the record
  // of the sql/ still in force, and /readyz (ops/operations.ts) compares it with
  // the code's; the sql/ it replaced, if another, whose processes (the release
  // before, in a rolling upgrade) stay ready until they are replaced in turn; and
  // this release's place among those that ran here, its sql/ applied
  await client.query(
    `insert into webhooks_private.sql_applied as a (fingerprint, migration) values ($1, $2)
     on conflict (one) do update
       set replaced = case when a.fingerprint = excluded.fingerprint then a.replaced else a.fingerprint end,
           fingerprint = excluded.fingerprint, migration = excluded.migration, applied_at = now()`,
    [ENGINE_FINGERPRINT, release]);
  const rolledBack = await rollbackToAnOlderRelease(client, release);
  if (rolledBack.length > 0 && !rollback) {
    throw new Error(`sql/ not applied: it does not name ${rolledBack.slice(0, 3).join(', ')}${rolledBack.length > 3 ? ' …' : ''}, ` +
      'functions of a later release\'s sql/ in force here: applying this older one would roll the database back under ' +
      'that release\'s processes (an older host\'s npm start?), or made by hand in the engine\'s schemas (drop or move them). ' +
      ROLLBACK_ADVICE);
  }
  await client.query(
    `insert into webhooks_private.sql_releases as r (fingerprint, migration, first_applied_at) values ($1, $2, now())
     on conflict (fingerprint, migration) do update set first_applied_at = coalesce(r.first_applied_at, excluded.first_applied_at)`,
    [ENGINE_FINGERPRINT, release]);
  if (rolledBack.length > 0 || replacingLater) await placeFirst(client, release);
  await client.query('commit');
}

/**
 * Whether this release, its sql/ never applied here and registered after the release
 * whose sql/ is in force, of the same migrations, is to replace that sql/ (asked after
 * sql/'s locks, before it is applied). Rolling back on purpose (MigrateOptions.rollback),
 * it is that release's elder, however little the two differ: one that changed only its
 * functions' bodies leaves no function for rollbackToAnOlderRelease to find, and the
 * release rolled back to read as the next one.
 */
async function replacesALaterRegistered(client: pg.Client, release: string): Promise<boolean> {
  const { rows: [found] } = await client.query<{ later: boolean }>(
    `select exists (
       select 1
       from webhooks_private.sql_applied a
       join webhooks_private.sql_releases inForce on (inForce.fingerprint, inForce.migration) = (a.fingerprint, a.migration)
       join webhooks_private.sql_releases own on (own.fingerprint, own.migration) = ($1, $2)
       where a.migration = $2 and a.fingerprint <> $1 and own.first_applied_at is null and own.n > inForce.n) as later`,
    [ENGINE_FINGERPRINT, release]);
  return found!.later;
}

/**
 * Whether this sql/, applied in the transaction of `client` and never before here,
 * is an older release's than one whose sql/ ran here (the functions that say so, none
 * if not): a function of the engine's
 * schemas is left that this sql/ does not name (a function a later release added;
 * no migration makes one, and a release names what it removes, dropping it).
 * Registered in the order releases first migrated, such a release (an install that
 * began at N, rolled back to N-1, whose migrate never ran here) read as the release
 * after N, and N's processes stayed ready, with a note, over N-1's older sql/. A
 * rollback across releases that only changed functions' bodies leaves none: asked
 * for, it is placed all the same (replacesALaterRegistered); not asked for, npm start
 * over a shared database refuses it (refuseUnsure), and npm run migrate reads it as
 * the next release still (docs/operations.md).
 */
async function rollbackToAnOlderRelease(client: pg.Client, release: string): Promise<string[]> {
  const { rows } = await client.query<{ name: string; signature: string }>(
    `select p.proname as name, p.oid::regprocedure::text as signature
     from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
     where n.nspname = any (webhooks_private.engine_schema_names())
       and not exists (select 1 from pg_catalog.pg_depend d
                       where d.classid = 'pg_catalog.pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
       and not exists (select 1 from webhooks_private.sql_releases
                       where fingerprint = $1 and migration = $2 and first_applied_at is not null)`,
    [ENGINE_FINGERPRINT, release]);
  return rows.filter(({ name }) => !ENGINE_NAMES.has(name.toLowerCase())).map(({ signature }) => signature).sort();
}

/** Every word of sql/ that could name a function, lower case. */
const ENGINE_NAMES: ReadonlySet<string> = new Set(
  ENGINE_FILES.flatMap(({ text }) => text.toLowerCase().match(/[a-z_][a-z0-9_$]*/g) ?? []));

/**
 * Places this release before every other one registered, marked rolled back to
 * (0062_sql_releases_rolled_back_to): older than the one whose sql/ it replaced, and
 * so than every release registered (none is skipped on the way forward), by how many
 * releases nothing says. The others keep their order.
 */
async function placeFirst(client: pg.Client, release: string): Promise<void> {
  await client.query(
    `with others as (
       delete from webhooks_private.sql_releases where (fingerprint, migration) <> ($1, $2)
       returning n, fingerprint, migration, first_applied_at, rolled_back_to)
     insert into webhooks_private.sql_releases (fingerprint, migration, first_applied_at, rolled_back_to)
     select fingerprint, migration, first_applied_at, rolled_back_to from others order by n`,
    [ENGINE_FINGERPRINT, release]);
  await client.query(`update webhooks_private.sql_releases set rolled_back_to = true where (fingerprint, migration) = ($1, $2)`,
    [ENGINE_FINGERPRINT, release]);
}

// `npm run migrate`
if (import.meta.url === `file://${process.argv[1]}`) {
  const url = process.env.DATABASE_URL;
  if (!url) {
    console.error('DATABASE_URL is not set (npm start migrates its own embedded database)');
    process.exit(2);
  }
  if (databaseUrlRefusal(url)) {
    console.error(databaseUrlRefusal(url));
    process.exit(2);
  }
  let settings: ReturnType<typeof migrateSettings>;
  try {
    settings = migrateSettings();
  } catch (error) {
    console.error((error as Error).message);
    process.exit(2);
  }
  try {
    await migrate(url, (line) => console.log(line), { rollback: rollbackAsked('run migrate'), ...settings });
  } catch (error) {
    // its sentences say what happened and what to do; a stack would bury them
    console.error((error as Error).message);
    process.exit(1);
  }
}
