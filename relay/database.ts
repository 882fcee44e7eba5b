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

/**
 * The settings every session of the relay (and the API's, api/server.ts) starts with
 * (a connection's startup `options`). READ COMMITTED whatever the database's default:
 * the engine's claims, settles and rescues, and the API's changes, are written for it
 * (SKIP LOCKED, a row changed meanwhile passed by or waited for, a fresh snapshot for
 * each statement). A DBA who set `default_transaction_isolation` to repeatable read
 * or serializable for the CRM's own sake made them fail with serialization errors
 * under load: results dropped, deliveries left in flight until their lease ran out,
 * then sent twice (test/relay/default-isolation.test.ts, test/api/default-isolation.test.ts).
 * And no JIT compilation: the claim and the settle turn sorts and sequential scans off
 * (sql/30_delivery.sql), which prices their plans at 10^10, past every
 * jit_*_above_cost, and the API turns sequential scans off (api/preset.ts). On a
 * Postgres built with LLVM (Debian's and most packaged ones; the embedded one is not)
 * each claim spent about a second compiling its statements, every call, and the
 * relay all but stopped. Their statements are small; JIT never pays for them
 * (test/relay/session-settings.test.ts).
 */
export function sessionOptions(role: string | null, extra: string[] = []): string {
  const settings = ['-c default_transaction_isolation=read\\ committed', '-c jit=off', ...extra];
  if (role) settings.push(`-c role=${role}`);
  return settings.join(' ');
}

/**
 * The server's TCP keepalives on the engine's sessions (its side of the connection;
 * KEEPALIVE_AFTER_MS is the client's): probed after 30 s idle, every 10 s, given up
 * after 3 unanswered, so the server ends the session of a host that died (a crash, a
 * power loss, a network cut, which send no reset) within about a minute, and with it
 * the advisory locks the session held: a relay's RELAY_ID (restarted elsewhere under
 * the same id, it may start then), migrate's and maintain's run locks. Without them the server
 * waits for the system's tcp_keepalive_time, two hours unless the host sets it
 * (docs/operations.md, "A host lost"). Over a Unix socket there is no peer to lose,
 * and the server ignores them.
 */
export const SERVER_KEEPALIVE = { idleS: 30, intervalS: 10, count: 3 } as const;

function serverKeepalives(): string[] {
  return [
    `-c tcp_keepalives_idle=${SERVER_KEEPALIVE.idleS}`,
    `-c tcp_keepalives_interval=${SERVER_KEEPALIVE.intervalS}`,
    `-c tcp_keepalives_count=${SERVER_KEEPALIVE.count}`,
  ];
}

/**
 * What the relay's own sessions set beside sessionOptions, and `npm run maintain`'s
 * and `npm run migrate`'s (tools/maintain.ts, tools/migrate.ts): the DBA's timeouts for the database or the engine's users are
 * meant for the CRM's sessions, not for these. A
 * statement_timeout shorter than a claim cut every claim (with 1 ms nothing was ever
 * delivered), and idle_session_timeout closed a sleeping relay's connections, the one
 * holding relay_idle among them, each time it ran out: a warning, a wake-up, new
 * connections whose first statements compile the engine's functions again
 * (test/relay/dba-timeouts.test.ts); maintenance under a statement_timeout of 1 ms
 * failed at its first statement, every run (test/sql/roll-up-cancelled.test.ts). The
 * relay bounds its statements itself (RELAY_DB_QUERY_TIMEOUT_MS), maintenance's wait
 * for locks at most its LOCK_TIMEOUT, and neither holds a transaction open between
 * statements. And the server's keepalives (above).
 * (transaction_timeout, of Postgres 17, cannot be named here: a server before 17
 * refuses a connection that names it. EngineClient turns it off.)
 */
export const ENGINE_SESSION_TIMEOUTS = [
  '-c statement_timeout=0',
  '-c idle_session_timeout=0',
  '-c idle_in_transaction_session_timeout=0',
  ...serverKeepalives(),
];

/** The first major version of Postgres that knows transaction_timeout. */
const TRANSACTION_TIMEOUT_SINCE = 17;

/** Servers (host:port) that named a version of 17 or later to this process. */
const serversWithTransactionTimeout = new Set<string>();

/**
 * A connection of the engine's (the relay's pool, its idle and listening connections,
 * `npm run maintain`, the API's pool) with transaction_timeout 0 on a server of 17 or
 * later. A DBA's transaction_timeout for the database or the engine's users, meant for
 * the CRM's sessions, shorter than a claim ended the relay's connection at each claim
 * (25P04, FATAL): at 1 ms nothing was ever delivered (test/relay/dba-timeouts.test.ts).
 * Startup options cannot name it blindly (a server before 17 refuses the connection),
 * so the first connection to a server reads its version from the start-up messages
 * (ParameterStatus) and sets it; every later one to that server names it in its
 * startup options, costing no statement. None of it is per delivery. The engine
 * bounds its own statements and holds no transaction open between them.
 */
export class EngineClient extends pg.Client {
  private serverMajorVersion = 0;
  /** The FATAL error the server ended this connection with (57P01 of a pg_terminate_backend, …), if it sent one. */
  private endedWith: Error | undefined;

  constructor(config?: string | pg.ClientConfig) {
    super(config);
    // A connection the server ends is raised as an 'error' event, and pg.Pool listens
    // only while it holds the client idle: one lost while checked out between
    // statements (the API's request transactions), or in the same packet as a new
    // connection's ready message (before the pool's listener is on), had nobody
    // listening, and the uncaught event ended the process. Heard here, the loss costs
    // what it should: the holder's next query is refused, and the pool drops a client
    // that cannot be queried when it comes back (test/relay/lost-checked-out.test.ts).
    this.on('error', () => {});
    (this as unknown as { query: unknown }).query = this.queryGivingUp.bind(this);
    const connection = (this as unknown as { connection: NodeJS.EventEmitter }).connection;
    connection.on('parameterStatus', (message: { parameterName: string; parameterValue: string }) => {
      if (message.parameterName === 'server_version') this.serverMajorVersion = Number.parseInt(message.parameterValue, 10);
    });
    // (heard before pg's own listener, attached at connect)
    connection.on('errorMessage', (message: Error & { severity?: string }) => {
      if (message.severity === 'FATAL' || message.severity === 'PANIC') this.endedWith = message;
    });
    const parameters = (this as unknown as { connectionParameters: { options?: string } }).connectionParameters;
    if (serversWithTransactionTimeout.has(this.server)) {
      parameters.options = [parameters.options, '-c transaction_timeout=0'].filter(Boolean).join(' ');
    }
  }

  /**
   * pg's query, which gives the connection up when a query's answer does not come
   * within query_timeout. pg answers the caller ('Query read timeout') but keeps the
   * connection, its query still active: a caller that hands it back without an error
   * (PostGraphile's adaptor does) had the pool put it back, and the next query on it
   * waited behind the one that never ends. Given up, it takes no more queries, and the
   * pool drops it when it comes back (test/api/silent-database.test.ts). (A query
   * given to pg as an object that submits itself is left as pg has it: the engine
   * sends none.) Set as the instance's query in the constructor, so that pg's typings
   * of query stay the class's.
   */
  private queryGivingUp(...args: unknown[]): unknown {
    const last = args.length - 1;
    const callback = args[last];
    if (typeof callback === 'function') {
      args[last] = (error: unknown, result: unknown) => {
        this.heard(error);
        return (callback as (error: unknown, result: unknown) => unknown)(error, result);
      };
    }
    const result = (pg.Client.prototype.query as (...a: unknown[]) => unknown).apply(this, args);
    // (heard before the caller's own handlers, which see the connection given up)
    if (result instanceof Promise) result.catch((error: unknown) => this.heard(error));
    return result;
  }

  /**
   * A query's error, before its caller has it: a read timeout gives the connection up;
   * and pg's error of a connection the server ended (Connection terminated
   * unexpectedly, not queryable) gets the server's own FATAL error as its cause. A
   * statement queued behind the one the FATAL error went to (PostGraphile's ROLLBACK)
   * fails with pg's words alone, and its error stands for the request's: with the
   * cause, the request's DATABASE_UNAVAILABLE names the SQLSTATE Postgres sent
   * (api/errors.ts; test/api/lost-database.test.ts).
   */
  private heard(error: unknown): void {
    if (isReadTimeout(error)) this.giveUp();
    const e = error as { code?: unknown; cause?: unknown } | null | undefined;
    if (this.endedWith && e && typeof e === 'object' && e !== this.endedWith && e.code === undefined && e.cause === undefined
        && isConnectionError(e)) {
      e.cause = this.endedWith;
    }
  }

  /** No more queries on this connection: its socket closed, and pg.Pool drops it on release. */
  private giveUp(): void {
    const client = this as unknown as { _queryable: boolean; connection: { stream: { destroy(): void } } };
    client._queryable = false;
    client.connection.stream.destroy();
  }

  private get server(): string {
    return `${this.host}:${this.port}`;
  }

  override connect(): Promise<pg.Client>;
  override connect(callback: ((error: Error) => void) | ((error: null, client: pg.Client) => void)): void;
  override connect(callback?: ((error: Error) => void) | ((error: null, client: pg.Client) => void)): Promise<pg.Client> | void {
    const connected = this.connectWithoutTransactionTimeout();
    if (!callback) return connected;
    // (as pg.Pool connects its clients)
    const done = callback as (error: Error | null, client?: pg.Client) => void;
    connected.then((client) => done(null, client), (error: Error) => done(error));
  }

  private async connectWithoutTransactionTimeout(): Promise<pg.Client> {
    const named = serversWithTransactionTimeout.has(this.server);
    await super.connect();
    if (named || this.serverMajorVersion < TRANSACTION_TIMEOUT_SINCE) return this;
    serversWithTransactionTimeout.add(this.server);
    // (the timeout may end this first connection before its SET: its error is the
    // SET's, and the client's own event is heard by the constructor's listener)
    try {
      await this.query('set transaction_timeout = 0');
    } catch (error) {
      await this.end().catch(() => {});
      throw error;
    }
    return this;
  }
}

/**
 * TCP keepalives on a database connection after this long idle, for the relay's and
 * the API's (api/server.ts): a connection kept for minutes must outlive the idle
 * timeouts of the NATs and firewalls on its path (some drop a quiet connection after 4
 * to 6 minutes, and then the next query on it would wait for an answer that never
 * comes, RELAY_DB_QUERY_TIMEOUT_MS for the relay, apiDatabaseReadTimeoutMs for the
 * API); the operating system then probes it
 * every tcp_keepalive_intvl (75 s unless set). Without it, the system's default is two
 * hours. (The relay keeps its pool's connections however long idle, below.)
 */
export const KEEPALIVE_AFTER_MS = 30_000;

/** How long opening a database connection may take, on every connection of the relay
 * (at most: no longer than a query may wait for its answer): one whose path goes
 * silent during the handshake would otherwise wait until TCP gives up (many minutes). */
const DB_CONNECT_TIMEOUT_MS = 10_000;
export const dbConnectTimeoutMs = (queryTimeoutMs: number) => Math.min(DB_CONNECT_TIMEOUT_MS, queryTimeoutMs);

/**
 * The connections of the relay's pool: its settles, releases, rescues, backfill steps,
 * quiet polls' questions, /readyz and the backlog gauges. Its claims have one of their
 * own beside it (claimPool): with it, four, as the pool alone had until 2026-12-07.
 */
export const RELAY_POOL_MAX = 3;

// query_timeout: a connection whose network path goes silent answers nothing and
// reports nothing (TCP gives up only after many minutes); a query without an answer
// for that long fails, and the pool drops the connection it was on. Every query of
// the relay's takes milliseconds, so the bound is generous (RELAY_DB_QUERY_TIMEOUT_MS).
export function relayPool(options: { databaseUrl: string; role: string | null; log: Logger; queryTimeoutMs: number; lifetimeMs?: number; max?: number }): pg.Pool {
  const pool = new pg.Pool({
    Client: EngineClient,
    connectionString: options.databaseUrl,
    max: options.max ?? RELAY_POOL_MAX,
    options: sessionOptions(options.role, [...ENGINE_SESSION_TIMEOUTS, '-c synchronous_commit=off']),
    application_name: 'bpd-webhooks-relay',
    keepAlive: true,
    keepAliveInitialDelayMillis: KEEPALIVE_AFTER_MS,
    connectionTimeoutMillis: dbConnectTimeoutMs(options.queryTimeoutMs),
    query_timeout: options.queryTimeoutMs,
    // kept open however long idle (pg closes a connection idle for 10 s by default):
    // a new connection's first claim compiles the relay's functions and plans their
    // statements, about 20 ms of Postgres time. At the default intervals the relay's
    // own timers use every connection more often than that; with timers a minute
    // apart, each change of a trickle would have paid it. A handful of connections
    // cost the server little; one that breaks while idle is dropped and replaced on
    // next use (below).
    idleTimeoutMillis: 0,
    // but not for ever: a session takes the settings of its database and login
    // (alter database … set webhooks.max_attempts = 3) when it connects, and a relay
    // whose connections lived as long as it did ran on the settings of its start
    // (RELAY_DB_CONNECTION_LIFETIME_MS; a connection in use is closed when it is free)
    maxLifetimeSeconds: (options.lifetimeMs ?? 0) / 1000,
  });
  // an idle connection that breaks (say, Postgres restarts) is dropped and replaced
  // on next use; it must not bring the process down
  pool.on('error', (error) => options.log.warn({ err: lostConnection(error) }, 'database connection lost'));
  return pool;
}

/**
 * The connection the relay's claims run on, one at a time: a pool of one, made as the
 * relay's pool is (its role, settings, timeouts, keepalive; a connection lost or given
 * up is dropped and the next claim opens a new one). A discovery keeps where it stands
 * in settings of its session (sql/28_lanes.sql: where its walk over the companies
 * stopped, their places, the mark of a round of fruitless windows and the round's
 * note). In the relay's pool, a claim that found the connection the last one used
 * busy (a settle, a rescue, a backfill step, a poll's question at that moment) ran on
 * another, which held that connection's marks or none: the round walked on past
 * where it began, up to twice the windows (test/relay/claim-connection.test.ts), and
 * a company's place was lost. A new connection starts the walk afresh, as a new relay
 * does.
 */
export function claimPool(options: { databaseUrl: string; role: string | null; log: Logger; queryTimeoutMs: number; lifetimeMs?: number }): pg.Pool {
  return relayPool({ ...options, max: 1 });
}

/**
 * A lost connection's error as a log line tells it: what happened, its SQLSTATE and
 * the error's class. The error node-postgres gives an idle connection's loss carries
 * that connection's client, whose state, logged with it, made each such line some
 * kilobytes; and its stack is node-postgres's own frames (its parser, a socket's
 * events), which say nothing of where: no caller of the engine's waits on an idle
 * connection. Without them the line is about 200 characters
 * (test/api/lost-connection-log.test.ts). Of the error's own class, so that the log's
 * `type` names it (a plain object's would be Object).
 */
export function lostConnection(error: Error & { code?: string }): Error & { code?: string } {
  const short = Object.create(Object.getPrototypeOf(error) ?? Error.prototype) as Error & { code?: string };
  Object.defineProperties(short, {
    message: { value: error.message, enumerable: true },
    code: { value: error.code, enumerable: true },
    // (none: the log's serializer would take the class's, or write it empty)
    stack: { value: undefined },
  });
  return short;
}

/** How long a stopping relay waits for a database connection to close: one whose
 * network path went silent never answers the goodbye. */
const CLOSE_BOUND_MS = 2_000;

/** Waits for `closing` at most CLOSE_BOUND_MS, then goes on (the process's exit ends what is left). */
export async function closeWithin(what: string, closing: Promise<void>, log: Logger): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<'not closed'>((resolve) => (timer = setTimeout(resolve, CLOSE_BOUND_MS, 'not closed')));
  const outcome = await Promise.race([closing.then(() => 'closed' as const), bound]);
  clearTimeout(timer);
  if (outcome === 'not closed') log.warn(`${what} did not close within ${CLOSE_BOUND_MS} ms (its network path may be silent); stopping without it`);
}

/** pg's message when a query's answer did not come within query_timeout. */
const READ_TIMEOUT_MESSAGE = 'Query read timeout';

function isReadTimeout(error: unknown): boolean {
  return (error as { message?: unknown } | null | undefined)?.message === READ_TIMEOUT_MESSAGE;
}

/** The forms of DATABASE_URL that pg connects with, as each command's refusal names them. */
const DATABASE_URL_FORMS = 'postgres://user:password@host:port/database, or a socket\'s folder and a database: /var/run/postgresql bpd';

/**
 * Why a DATABASE_URL is none pg connects with (null: it is one), said without its text,
 * which may hold a password. pg reads any text: one that is no URL ("bpd", host=… dbname=…)
 * as a database on the host "base", which the relay and the API waited for forever, "not
 * reachable yet"; another scheme's (http://…) as a Postgres's; and a URL with a port
 * that is none (99999) failed at the first connection, which the relay took for a
 * database it may not work in, telling the operator to grant it its role.
 */
export function databaseUrlRefusal(text: string): string | null {
  if (text.startsWith('/')) return null;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return `DATABASE_URL is no URL (or its port is none): it must be ${DATABASE_URL_FORMS}`;
  }
  if (!['postgres:', 'postgresql:', 'socket:'].includes(url.protocol)) {
    return `DATABASE_URL's scheme is ${JSON.stringify(url.protocol.slice(0, 20))}: it must be ${DATABASE_URL_FORMS}`;
  }
  return null;
}

/** True for errors that mean "the database is not reachable right now", not "you may not". */
export function isConnectionError(error: unknown): boolean {
  const e = error as { code?: string; message?: string };
  if (e.code && /^(08|57P0[123])/.test(e.code)) return true; // connection exception, shutdown
  // (too many connections: the server's max_connections, or the database's or the
  // login's limit, taken by other sessions; a wait mends it)
  if (e.code === '53300') return true;
  if (e.code && ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN'].includes(e.code)) return true;
  // (Query read timeout: pg's query_timeout, a connection gone silent; not queryable:
  // a statement sent on a connection lost or given up before, as PostGraphile's
  // ROLLBACK after a read timeout is, whose error then stands for the request's)
  return isReadTimeout(error) ||
    /Connection terminated|timeout exceeded when trying to connect|connection timeout|connection error and is not queryable/i.test(e.message ?? '');
}

/**
 * The relay's fatal line for a database it reached but cannot work in: the error, its
 * SQLSTATE, and what it means; the advice to migrate or GRANT only where one mends it
 * (the role not made yet: the relay's role is the migrate's; the login not granted it).
 * Until 2026-12-07 every such error got that advice: a database named wrong, a server
 * out of memory or disk, an I/O error, a standby (test/relay/start-refusals.test.ts).
 */
export function databaseRefusal(error: unknown, role: string | null): string {
  const { code, message } = error as { code?: string; message?: string };
  return `the relay cannot work in this database: ${message}` + (code ? ` (SQLSTATE ${code}${refusalMeaning(code, message ?? '', role)})` : '');
}

function refusalMeaning(code: string, message: string, role: string | null): string {
  const useLogin = 'or set RELAY_DB_ROLE= to use the user of DATABASE_URL as is';
  if (role && code === '42501' && /role/i.test(message)) return `: that user may not take role ${role}: GRANT ${role} TO the user of DATABASE_URL, ${useLogin}`;
  if (role && code === '22023' && /"role"/.test(message)) return `: role ${role} does not exist here: run npm run migrate, which makes it, ${useLogin}`;
  if (['42P01', '42883', '3F000'].includes(code)) return ': the engine is not here, or is of another release: run npm run migrate';
  if (code === '25006') return ': its transactions are read-only (a standby, or default_transaction_read_only = on): point DATABASE_URL at the primary';
  if (code === '57014') return ': a statement was cancelled (by an administrator, or a timeout); see the server\'s log';
  if (code.startsWith('53')) return ': the server is short of a resource (memory, disk): see the server\'s log';
  if (code.startsWith('58') || code.startsWith('XX')) return ': an error of the server\'s system (I/O, a file, corruption): see the server\'s log';
  if (code.startsWith('28') || code === '3D000') return ': check the user, password and database of DATABASE_URL';
  return '';
}

/** How long a relay waits for its RELAY_ID held by another session: one just killed, whose session the server has not ended yet. */
const RELAY_ID_WAIT_MS = 3_000;

/** Another relay holds this relay's RELAY_ID: at start, or when this one takes it again after losing it. */
export class RelayIdTaken extends Error {
  override name = 'RelayIdTaken';
}

const RELAY_ID_ADVICE = 'each relay needs its own, as each takes the leases of its id for its own; ' +
  'give this one another RELAY_ID, or leave it unset (<host>:<pid>:<random>)';

/**
 * Takes the relay's RELAY_ID in the database (webhooks_relay.hold_relay_id,
 * sql/30_delivery.sql) on a connection of its own, kept while the relay runs; throws
 * RelayIdTaken, naming it, if another relay holds it. Leases are a relay's by its id
 * alone: two relays of one id took each other's for their own
 * (test/relay/relay-id.test.ts). A lost connection gives the id back: onLost is
 * called (RelayIdHold then takes it again before the next claim).
 */
export async function holdRelayId(options: { databaseUrl: string; role: string | null; log: Logger; queryTimeoutMs: number; relayId: string; onLost?: () => void }): Promise<pg.Client> {
  const client = new EngineClient({
    connectionString: options.databaseUrl,
    options: sessionOptions(options.role, ENGINE_SESSION_TIMEOUTS),
    application_name: 'bpd-webhooks-relay-id',
    keepAlive: true,
    keepAliveInitialDelayMillis: KEEPALIVE_AFTER_MS,
    connectionTimeoutMillis: dbConnectTimeoutMs(options.queryTimeoutMs),
    query_timeout: options.queryTimeoutMs,
  });
  let closing = false;
  let held = false;
  const lost = (error?: Error) => {
    if (!closing && held) {
      options.log.warn({ err: error }, `the connection holding RELAY_ID ${options.relayId} was lost: the relay claims nothing until it holds the id again`);
      options.onLost?.();
    }
    closing = true;
  };
  client.on('error', lost);
  client.on('end', () => lost());
  await client.connect();
  const end = client.end.bind(client);
  client.end = (() => {
    closing = true;
    return end();
  }) as typeof client.end;
  try {
    for (const deadline = Date.now() + RELAY_ID_WAIT_MS; ;) {
      const { rows } = await client.query<{ held: boolean }>('select webhooks_relay.hold_relay_id($1) as held', [options.relayId]);
      if (rows[0]!.held) {
        held = true;
        return client;
      }
      if (Date.now() >= deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  } catch (error) {
    await client.end().catch(() => {});
    throw error;
  }
  await client.end().catch(() => {});
  throw new RelayIdTaken(`another relay runs with RELAY_ID ${options.relayId} in this database: ${RELAY_ID_ADVICE}`);
}

/**
 * The relay's hold on its RELAY_ID: taken at start (take), and again, before the next
 * claim (ensure), after the connection holding it was lost (the server ended the
 * session, a restart, a network path closed): a session's advisory lock ends with
 * it. Until 2026-12-07 the relay sent on without it, and a twin started meanwhile took
 * the id and the two claimed under it, each taking the other's leases for its own.
 * If another relay holds it by then, ensure throws RelayIdTaken, and the relay stops
 * (loop.ts); a database that does not answer throws as a claim would, and the next
 * claim tries again.
 */
export class RelayIdHold {
  private client: pg.Client | null = null;
  private taking: Promise<void> | null = null;
  /** taken once (start): from then on the relay claims only while it holds it */
  private wanted = false;
  /** the connection holding it was lost once: taking it again, another relay's hold is a twin's */
  private lostOnce = false;
  private ended = false;

  private readonly options: { databaseUrl: string; role: string | null; log: Logger; queryTimeoutMs: number; relayId: string };

  constructor(options: { databaseUrl: string; role: string | null; log: Logger; queryTimeoutMs: number; relayId: string }) {
    this.options = options;
  }

  /** Takes the id at start (RelayIdTaken if another relay holds it). */
  async take(): Promise<void> {
    this.wanted = true;
    await this.ensure();
  }

  /** Holds the id again if it was lost; nothing when held, or never taken (a relay stepped by hand, runOnce). */
  ensure(): Promise<void> {
    if (!this.wanted || this.client || this.ended) return Promise.resolve();
    this.taking ??= this.takeAgain().finally(() => (this.taking = null));
    return this.taking;
  }

  private async takeAgain(): Promise<void> {
    const again = this.lostOnce;
    let client: pg.Client | null = null;
    try {
      client = await holdRelayId({ ...this.options, onLost: () => this.lost(client) });
    } catch (error) {
      if (error instanceof RelayIdTaken && again) {
        throw new RelayIdTaken(`another relay runs with RELAY_ID ${this.options.relayId} in this database, taken while this relay's ` +
          `connection holding it was lost: this relay stops, handing back what it holds; ${RELAY_ID_ADVICE}`);
      }
      throw error;
    }
    if (this.ended) {
      await client.end().catch(() => {});
      return;
    }
    this.client = client;
    if (again) this.options.log.info(`RELAY_ID ${this.options.relayId} held again`);
  }

  private lost(client: pg.Client | null): void {
    if (this.client !== client) return;
    this.client = null;
    this.lostOnce = true;
  }

  /** Gives the id back (the relay has stopped). */
  async end(): Promise<void> {
    this.ended = true;
    await this.taking?.catch(() => {});
    const client = this.client;
    this.client = null;
    await client?.end();
  }
}
