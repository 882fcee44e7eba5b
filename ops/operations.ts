// What an operator's tools ask each process (the admin API on its port, the relay on
// RELAY_METRICS_PORT): GET /metrics (Prometheus text, prom-client), GET /healthz (the
// process lives and serves HTTP) and GET /readyz (the database answers, and its
// migrations and the sql/ it last applied are this code's). docs/operations.md lists
// the metrics.
//
// Labels are bounded sets only (an outcome, a route): never a company, a webhook or
// a URL, so the number of series does not grow with tenants.
import { readdirSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { ENGINE_FINGERPRINT } from './engine.ts';

const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations/', import.meta.url));

/** The newest migration this code was written for (node-pg-migrate names it by its file name, without .sql). */
export const EXPECTED_MIGRATION = readdirSync(MIGRATIONS_DIR)
  .filter((name) => name.endsWith('.sql'))
  .sort()
  .at(-1)!
  .replace(/\.sql$/, '');

/** The paths operationsRoutes answers. */
export const OPERATIONS_PATHS: ReadonlySet<string> = new Set(['/metrics', '/healthz', '/readyz']);

/** How long a readiness or backlog question may take before the answer is "no" (or "unknown"). */
const DATABASE_CHECK_TIMEOUT_MS = 5_000;

/**
 * How long one answer of the database serves /readyz, and one serves /metrics: both
 * answer whoever reaches the port (the API's is the one the Reports page is served
 * on), and each asked the database afresh, so a flood of them was a flood of queries,
 * the backlog's among them, on the database every company shares. At most one
 * question of each a second, however many ask.
 */
export const DATABASE_ANSWER_REUSE_MS = 1_000;

/**
 * How long a question the database has not answered is waited for by whoever asks,
 * before one asks it again: a connection that went silent answers nothing until TCP
 * gives up on it (many minutes), and /readyz would say "no" for as long.
 */
const UNANSWERED_QUESTION_SHARED_MS = 60_000;

/**
 * `ask`, its answer shared by whoever asks while it runs and for `reuseMs` after (0:
 * until the askers of the moment have it, as the gauges of one scrape do). A question
 * to the database is shared as it is, each asker giving up on it after a check's time
 * (within) but none asking again while it is out (for a minute at most): asked anew
 * once each check had timed out, a database that did not answer (a table a migration
 * held locked) had one more question, and one more connection of the pool held, every
 * few seconds, until the API's pool was all probes and refused every company.
 */
function sharedAnswer<T>(ask: () => Promise<T>, reuseMs: number): () => Promise<T> {
  let answer: Promise<T> | undefined;
  return () => {
    if (answer) return answer;
    const asked = ask();
    answer = asked;
    const clear = () => {
      if (answer === asked) answer = undefined;
    };
    setTimeout(clear, UNANSWERED_QUESTION_SHARED_MS).unref();
    const forget = () => {
      if (reuseMs > 0) setTimeout(clear, reuseMs).unref();
      else setImmediate(clear);
    };
    asked.then(forget, forget);
    return asked;
  };
}

type Queryable = Pick<pg.Pool, 'query'>;

/** The database gave no answer within a check's time (within, below). */
class DatabaseTimeout extends Error {}

function within<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DatabaseTimeout(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

export interface Readiness {
  ready: boolean;
  /** why not, in words */
  reason?: string;
  migration?: string;
  /** not ready because the database gave the check no answer (its time ran out, or it failed), not because of what it answered */
  unanswered?: 'timed out' | 'failed';
  /** ready, and yet to be replaced: the database is the next release's (successorNote) */
  note?: string;
}

/** Enough of a fingerprint (ops/engine.ts) to tell two apart in a reason. */
function short(fingerprint: string): string {
  return fingerprint.slice(0, 12);
}

export interface Asked {
  migration: string | null;
  /** the fingerprint of the sql/ last applied, and of the one it replaced (null: none recorded) */
  applied: string | null;
  replaced: string | null;
  /** the releases that migrated the database (null: a sql/ from before that record is in force) */
  releases?: ReleasesRecord | null;
}

/** A release that migrated the database: its sql/'s fingerprint, its newest migration, whether its sql/ was applied. */
interface Release {
  fingerprint: string;
  migration: string;
  applied: boolean;
  /**
   * its migrate, its first here, found the sql/ of a later release in force (tools/migrate.ts,
   * rollbackToAnOlderRelease) and placed it before every release registered: how many
   * releases older it is, the database cannot tell, so it has no next release
   */
  rolledBackTo?: boolean;
}

/** webhooks_ops.sql_releases(): the releases in the order each first migrated the database. */
interface ReleasesRecord {
  /** the newest migration of the release whose sql/ is in force (null: one from before the record) */
  appliedMigration: string | null;
  releases: Release[];
}

/**
 * The readiness question, most first: the newest migration, the fingerprint of the
 * sql/ last applied and of the one it replaced, and the releases that migrated the
 * database (0048_sql_releases). The later ones for the sql/ of a
 * release from before those records (a migrate that stopped before this release's
 * sql/), which has not all the functions, so that its migrations still say what to do.
 */
const READINESS_QUESTIONS = [
  'select webhooks_ops.latest_migration() as migration, webhooks_ops.applied_sql() as applied, webhooks_ops.replaced_sql() as replaced, ' +
    'webhooks_ops.sql_releases() as releases',
  'select webhooks_ops.latest_migration() as migration, webhooks_ops.applied_sql() as applied, webhooks_ops.replaced_sql() as replaced',
  'select webhooks_ops.latest_migration() as migration, webhooks_ops.applied_sql() as applied',
  'select webhooks_ops.latest_migration() as migration',
];

async function askReadiness(db: Queryable): Promise<Asked> {
  for (const [i, question] of READINESS_QUESTIONS.entries()) {
    try {
      const { rows: [row] } = await db.query<Partial<Asked>>(question);
      return { migration: row!.migration ?? null, applied: row!.applied ?? null, replaced: row!.replaced ?? null,
               releases: row!.releases ?? null };
    } catch (error) {
      const code = (error as { code?: string }).code;
      // invalid_schema_name: no engine in this database (a database made, its migrate yet
      // to run): it answers, migrated to nothing; said "not answering (SQLSTATE 3F000)"
      if (code === '3F000') return { migration: null, applied: null, replaced: null, releases: null };
      // undefined_function (and undefined_table, the record's, to be sure)
      if ((code !== '42883' && code !== '42P01') || i === READINESS_QUESTIONS.length - 1) throw error;
    }
  }
  throw new Error('unreachable');
}

/**
 * Whether the database is the next release's, under whose migrate this process keeps
 * working until it is replaced (readiness, below), and what to do: its migrations ran
 * and not yet its sql/ (its migrate runs, or stopped between the two), or its sql/
 * replaced this code's. Null: not the next release's.
 */
function successorNote(migration: string | null, applied: string | null, replaced: string | null): string | null {
  if (migration === null || migration < EXPECTED_MIGRATION) return null;
  if (applied === ENGINE_FINGERPRINT) return migration > EXPECTED_MIGRATION ? nextMigrationsNote(migration) : null;
  return applied !== null && replaced === ENGINE_FINGERPRINT ? nextSqlNote(applied, migration) : null;
}

/** The next release's migrations ran over this code's sql/. */
function nextMigrationsNote(migration: string): string {
  return `database migrated by newer code (${migration}), under this code's sql/ still: ` +
    'run that release\'s migrate to its end, then replace this process with that release\'s';
}

/** The next release's sql/ is in force. */
function nextSqlNote(applied: string, migration: string): string {
  return `database's sql/ ${short(applied)} (migrated to ${migration}) replaced this code's: replace this process with that release's`;
}

/**
 * Where this code's release stands among those that migrated the database, in the
 * order each first did (webhooks_ops.sql_releases; docs/operations.md, "Upgrading",
 * has the table): ready where the database is its own, or at most the next
 * release's (its migrations, or its migrations and sql/), saying so then; not ready
 * two releases or more behind (a release keeps only the one before it working), nor
 * where the sql/ in force is an earlier release's than this one's, applied before
 * (a migrate of that release rolled the database back), nor where this release was
 * abandoned; abandoned releases are not counted (abandoned). Null: this release, or the
 * one whose sql/ is in force, is not among them (its migrate never ran here, or ran
 * before the record; or the migrations are behind this code's), and the migrations
 * and fingerprints alone say (readiness).
 */
function standing(migration: string | null, applied: string | null, record: ReleasesRecord): Readiness | null {
  const { appliedMigration } = record;
  if (record.releases.some((release, i) => isOwn(release) && abandoned(record.releases, i))) {
    return { ready: false, migration: migration ?? undefined,
      reason: `this code's migrate stopped before its sql/ was applied, and a later release's has run since ` +
        `(${migration}, sql/ ${applied ? short(applied) : 'none recorded'}): replace this process with the newest release's` };
  }
  const releases = record.releases.filter((_, i) => !abandoned(record.releases, i));
  const at = (fingerprint: string | null, newest: string | null) =>
    releases.findIndex((release) => release.fingerprint === fingerprint && release.migration === newest);
  const own = releases.findIndex(isOwn);
  const inForce = at(applied, appliedMigration);
  if (own < 0 || inForce < 0 || migration === null || migration < EXPECTED_MIGRATION) return null;
  if (inForce < own) {
    return releases[own]!.applied
      ? { ready: false, migration,
          reason: `database's sql/ ${short(applied!)} (migrated to ${migration}) is an earlier release's, rolled back to ` +
            'after this code\'s was applied: replace this process with that release\'s, or run this release\'s npm run migrate again ' +
            '(its npm start over a shared database does not)' }
      : null;
  }
  if (inForce === own && migration === EXPECTED_MIGRATION) return { ready: true, migration };
  const next = releases[own]!.rolledBackTo ? undefined : releases[own + 1];
  if (next === undefined || inForce > own + 1 || migration > next.migration) {
    return { ready: false, migration,
      reason: `database migrated by code two or more releases past this one's (${migration}, sql/ ${short(applied!)}): ` +
        'replace this process with the newest release\'s' };
  }
  return { ready: true, migration, note: inForce === own ? nextMigrationsNote(migration) : nextSqlNote(applied!, migration) };
}

/** This code's release: its sql/'s fingerprint and its newest migration. */
function isOwn(release: Release): boolean {
  return release.fingerprint === ENGINE_FINGERPRINT && release.migration === EXPECTED_MIGRATION;
}

/**
 * A release abandoned here: its migrate stopped (killed, or failed) before its sql/
 * was applied, and a later release's migrate ran after it (N′, N mended, in its
 * place). Its engine never ran here: it is no release's next, N′ being the next of
 * the release before it, and its own processes are not ready. The newest release
 * is never abandoned: its migrate runs, or is to be run again.
 */
function abandoned(releases: Release[], i: number): boolean {
  return !releases[i]!.applied && i < releases.length - 1;
}

/**
 * Ready: the database answers, its newest migration is the one this code expects, and
 * the sql/ its last migrate applied is this code's (ENGINE_FINGERPRINT): current
 * migrations alone leave the functions, triggers and views of another release
 * possible, when a migrate stopped before sql/ or another release's ran last.
 * Ready too, saying so, the release before's processes in a rolling upgrade, under
 * the next release's migrations or sql/ (standing, or successorNote where the
 * releases that migrated the database are not recorded): each release keeps what the
 * release before uses (docs/operations.md, "Upgrading"), and an API that answered 503
 * from the migrate on was taken out of its load balancer's pool before its successors
 * were ready.
 */
export async function readiness(db: Queryable, ask: () => Promise<Asked> = () => askReadiness(db)): Promise<Readiness> {
  try {
    const { migration, applied, replaced, releases } = await within(ask(), DATABASE_CHECK_TIMEOUT_MS, 'database');
    const placed = releases ? standing(migration, applied, releases) : null;
    if (placed) return placed;
    // (where the record is kept, it alone says who is the next release's: the
    // fingerprints say whose sql/ ran, not which release's, and a release of
    // migrations alone has the sql/ of the one before it. This release not placed
    // there, its migrate never ran here, or its sql/ was never applied)
    const successor = releases ? null : successorNote(migration, applied, replaced);
    if (successor) return { ready: true, migration: migration!, note: successor };
    if (migration !== EXPECTED_MIGRATION) {
      // (migrations are named in order: one after ours is newer code's, which this
      // code's migrate refuses to run under, tools/migrate.ts)
      const newer = migration !== null && migration > EXPECTED_MIGRATION;
      return { ready: false, migration: migration ?? undefined,
        reason: newer
          ? `database migrated by newer code (${migration}), this code expects ${EXPECTED_MIGRATION}: run the newer code`
          : `database migrated to ${migration ?? 'nothing'}, this code expects ${EXPECTED_MIGRATION}: run npm run migrate` };
    }
    if (applied !== ENGINE_FINGERPRINT) {
      return { ready: false, migration,
        reason: applied === null
          ? `database's sql/ (functions, triggers, views) was never recorded as applied (a migrate that stopped before it?), ` +
            `this code's is ${short(ENGINE_FINGERPRINT)}: run npm run migrate`
          : `database's sql/ (functions, triggers, views) is not this code's (${short(applied)}, ` +
            `this code's ${short(ENGINE_FINGERPRINT)}): run npm run migrate` };
    }
    return { ready: true, migration };
  } catch (error) {
    return { ready: false, reason: unansweredReason(error), unanswered: error instanceof DatabaseTimeout ? 'timed out' : 'failed' };
  }
}

/**
 * Why the database did not answer, by its kind alone: a system error's code
 * (ECONNREFUSED, ENOTFOUND), a SQLSTATE (28P01: the login refused), or our own
 * timeout. The API answers /readyz on the port of its page and GraphQL, and the
 * driver's words name the database's host, address, port or role.
 */
function unansweredReason(error: unknown): string {
  if (error instanceof DatabaseTimeout) return error.message;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && /[0-9]/.test(code)) {
    return `database: not answering (SQLSTATE ${code})`;
  }
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return `database: not answering (${code})`;
  return 'database: not answering';
}

/**
 * What one scrape asks the database: the backlog, the refused settings, the outbox's
 * upkeep, and the transactions that hold capturing (the relays awake).
 */
interface DatabaseAnswers {
  due: number;
  oldest: number;
  refused: number;
  daysAhead: number;
  daysPastRetention: number;
  webhooksToPurge: number;
  reportDaysBehind: number;
  capturing: number;
  oldestCapturing: number;
  preparedCapturing: number;
  oldestPreparedCapturing: number;
  capturingOfUnknownAge: number;
  oldestCapturingXidAge: number;
  webhooksFailing: number;
  companiesFailing: number;
}

/** The gauges read from the database at each scrape, each with the answer it shows. */
const DATABASE_GAUGES: ReadonlyArray<{ name: string; help: string; value: (answers: DatabaseAnswers) => number }> = [
  { name: 'bpd_webhooks_due',
    help: 'Deliveries waiting for a relay whose time has come (pending, next attempt now or earlier; not those an open circuit breaker holds, nor those of a webhook at its own rate_limit or max_in_flight), counted up to a cap (docs/operations.md): at the cap, at least that many.',
    value: (a) => a.due },
  { name: 'bpd_webhooks_oldest_due_seconds',
    help: 'How long the longest-waiting due delivery has been due, in seconds (0 when none is due).',
    value: (a) => a.oldest },
  { name: 'bpd_webhooks_settings_refused',
    help: 'Engine settings whose value as set is not in force (not of their kind, or out of bounds): see webhooks.settings.',
    value: (a) => a.refused },
  { name: 'bpd_webhooks_partition_days_ahead',
    help: 'Days after today whose history partitions are made: one fewer each day maintenance does not run.',
    value: (a) => a.daysAhead },
  { name: 'bpd_webhooks_history_days_past_retention',
    help: 'Days of history kept although older than webhooks.retention (0 or 1 while maintenance runs hourly).',
    value: (a) => a.daysPastRetention },
  { name: 'bpd_webhooks_deleted_webhooks_to_purge',
    help: 'Deleted webhooks whose kept deliveries maintenance has yet to remove.',
    value: (a) => a.webhooksToPurge },
  { name: 'bpd_webhooks_report_counts_days_behind',
    help: "Countable days the report's counts have not reached in every webhook (0, or 1 until the first roll-up after UTC midnight).",
    value: (a) => a.reportDaysBehind },
  { name: 'bpd_webhooks_capturing_transactions',
    help: 'Transactions that captured a delivery and hold capturing until they end, prepared ones among them: while any does, no relay sleeps.',
    value: (a) => a.capturing },
  { name: 'bpd_webhooks_oldest_capturing_transaction_seconds',
    help: 'Age of the oldest transaction holding capturing, in seconds (a prepared one since its PREPARE; 0 when none).',
    value: (a) => a.oldestCapturing },
  { name: 'bpd_webhooks_capturing_prepared_transactions',
    help: 'Prepared transactions (two-phase writers) holding capturing: their deliveries wait for COMMIT PREPARED.',
    value: (a) => a.preparedCapturing },
  { name: 'bpd_webhooks_oldest_prepared_capturing_transaction_seconds',
    help: 'How long the oldest prepared transaction holding capturing has been prepared, in seconds (0 when none).',
    value: (a) => a.oldestPreparedCapturing },
  { name: 'bpd_webhooks_capturing_transactions_of_unknown_age',
    help: "Open transactions holding capturing whose start the engine's owner is not shown (another role's, without pg_read_all_stats): left out of the oldest one's seconds.",
    value: (a) => a.capturingOfUnknownAge },
  { name: 'bpd_webhooks_oldest_capturing_transaction_xid_age',
    help: 'Age of the oldest transaction holding capturing in transaction ids: how many were given since its own, known of every role (0 when none).',
    value: (a) => a.oldestCapturingXidAge },
  { name: 'bpd_webhooks_webhooks_failing',
    help: 'Enabled webhooks whose last attempt failed (in a run of failed attempts, open circuit breakers among them): many at once, failures are widespread.',
    value: (a) => a.webhooksFailing },
  { name: 'bpd_webhooks_companies_failing',
    help: 'Companies with an enabled webhook whose last attempt failed: one is that company\'s receiver; many, the relays\' side.',
    value: (a) => a.companiesFailing },
];

/**
 * A registry (a new one, or the one given) with the process metrics (CPU, memory,
 * event loop lag, handles) and what the database answers at scrape time, in one query
 * per scrape (DATABASE_GAUGES): deliveries due now and how long the oldest of them has
 * waited, the engine settings whose value set was refused (sql/02_settings.sql), how
 * far the outbox's upkeep and the report's roll-up are behind (webhooks_ops.upkeep(),
 * sql/58_operations.sql), the transactions that hold the relays awake, open or
 * prepared (webhooks_ops.capturing(), there too: the server's lock table, read once a
 * second at most as the rest), and whether the database answered at all.
 */
export function operationsRegistry(db: Queryable, registry: Registry = new Registry(),
  reuseMs: number = DATABASE_ANSWER_REUSE_MS): Registry {
  collectDefaultMetrics({ register: registry });
  // the gauges of one scrape share one question, and the scrapes of a second too
  const question = sharedAnswer(() => db.query(
      `select b.due, b.oldest_due_seconds as oldest, (select count(*) from webhooks_ops.refused_settings()) as refused,
              u.days_ahead, u.days_past_retention, u.webhooks_to_purge, u.report_days_behind,
              c.transactions as capturing, c.oldest_seconds as oldest_capturing,
              c.prepared as prepared_capturing, c.oldest_prepared_seconds as oldest_prepared_capturing,
              c.ages_unknown as capturing_of_unknown_age, c.oldest_xid_age as oldest_capturing_xid_age,
              x.webhooks as webhooks_failing, x.companies as companies_failing
       from webhooks_ops.backlog() b, webhooks_ops.upkeep() u, webhooks_ops.capturing() c, webhooks_ops.failing() x`), reuseMs);
  const ask = (): Promise<DatabaseAnswers | undefined> => within(question(), DATABASE_CHECK_TIMEOUT_MS, 'database')
      .then(({ rows: [row] }) => ({
        due: Number(row.due), oldest: Number(row.oldest), refused: Number(row.refused),
        daysAhead: Number(row.days_ahead), daysPastRetention: Number(row.days_past_retention),
        webhooksToPurge: Number(row.webhooks_to_purge), reportDaysBehind: Number(row.report_days_behind),
        capturing: Number(row.capturing), oldestCapturing: Number(row.oldest_capturing),
        preparedCapturing: Number(row.prepared_capturing), oldestPreparedCapturing: Number(row.oldest_prepared_capturing),
        capturingOfUnknownAge: Number(row.capturing_of_unknown_age), oldestCapturingXidAge: Number(row.oldest_capturing_xid_age),
        webhooksFailing: Number(row.webhooks_failing), companiesFailing: Number(row.companies_failing),
      }), () => undefined);
  new Gauge({
    name: 'bpd_webhooks_database_up',
    help: 'Whether the database answered the last scrape (1) or not (0).',
    registers: [registry],
    async collect() {
      this.set((await ask()) ? 1 : 0);
    },
  });
  for (const { name, help, value } of DATABASE_GAUGES) {
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        // unknown (NaN) while the database does not answer: never a stale or a reassuring 0
        const answers = await ask();
        this.set(answers ? value(answers) : Number.NaN);
      },
    });
  }
  return registry;
}

/**
 * The path of a request's target, or null when it is none: a target such as `//[` or
 * `//a:b` reads as a URL whose host cannot be one, and new URL() throws on it. Anyone
 * who reaches the port may send one; thrown in a server's request listener, it ended
 * the process.
 */
export function requestPath(req: IncomingMessage): string | null {
  try {
    return new URL(req.url ?? '/', 'http://localhost').pathname;
  } catch {
    return null;
  }
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store' }).end(body);
}

/**
 * Answers /metrics, /healthz and /readyz; returns false for any other path (the
 * caller serves it). GET or HEAD only.
 */
export function operationsRoutes(options: {
  registry: Registry; db: Queryable; reuseMs?: number;
  /** why the process is not ready though its database may answer (the API before it has read its schema), or nothing */
  notReadyBecause?: () => string | undefined;
}) {
  const question = sharedAnswer(() => askReadiness(options.db), options.reuseMs ?? DATABASE_ANSWER_REUSE_MS);
  const ready = () => readiness(options.db, question);
  return async function serve(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
    if (!OPERATIONS_PATHS.has(path)) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return true;
    }
    if (path === '/healthz') {
      send(res, 200, 'application/json; charset=utf-8', JSON.stringify({ status: 'ok' }));
    } else if (path === '/readyz') {
      let state = await ready();
      // (the database's reason first: it says what to do)
      const own = state.ready ? options.notReadyBecause?.() : undefined;
      if (own) state = { ready: false, reason: own };
      send(res, state.ready ? 200 : 503, 'application/json; charset=utf-8',
        JSON.stringify(state.ready ? { status: 'ready', migration: state.migration, note: state.note } : { status: 'unavailable', reason: state.reason }));
    } else {
      send(res, 200, options.registry.contentType, await options.registry.metrics());
    }
    return true;
  };
}
