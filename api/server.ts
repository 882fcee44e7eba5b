// The admin API on node:http: POST /graphql (bearer JWT required), Ruru at /graphiql,
// and the Reports page's static files at / and /reports/webhooks.
import './env.ts';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { Logger } from 'pino';
import { postgraphile } from 'postgraphile';
import { grafserv } from 'postgraphile/grafserv/node';
import { AuthError, maxTokenLifetime, UNAUTHENTICATED_CODE, VerifiedTokens, type Claims } from './auth.ts';
import { DATABASE_UNAVAILABLE_CODE, HTTP_REFUSAL_CODES } from './errors.ts';
import { apiLogger } from './log.ts';
import { refuseWeakJwtSecret } from './jwt-secret.ts';
import { clientKey, TokenFailures, trustedProxies } from './token-failures.ts';
import { apiDatabaseReadTimeoutMs, LIMIT_CODES, LIMIT_SETTINGS, limitsFromEnv, type ApiLimits } from './limits.ts';
import { apiPreset, GRAPHIQL_PATH, GRAPHQL_PATH } from './preset.ts';
import { rollUpReportCounts } from './report-counts.ts';
import { GRAPHQL_ANSWER_HEADERS, IDE_SECURITY_HEADERS, staticFiles } from './static.ts';
import { apiMetrics, type Route } from './metrics.ts';
import { CompanyShare, type Admission } from './company-share.ts';
import { RequestRate } from './request-rate.ts';
import { OPERATIONS_PATHS, operationsRegistry, operationsRoutes, readiness, type Readiness, requestPath } from '../ops/operations.ts';
import { backoffMs } from '../relay/backoff.ts';
import { EngineClient, ENGINE_SESSION_TIMEOUTS, isConnectionError, KEEPALIVE_AFTER_MS, lostConnection, sessionOptions } from '../relay/database.ts';
import { DEFAULT_API_HOST, DEFAULT_API_PORT } from './address.ts';

export const DEFAULT_PAGE_DIR = fileURLToPath(new URL('../page/', import.meta.url));

/**
 * How long an idle connection of the API's pool is kept (node-postgres closes them
 * after 10 s unless told). A new connection's first report reads the catalog entries
 * of every partition of the outbox and plans its statements: 0.2 to 0.4 s at 90 days
 * kept, against about 35 ms for the same report on a warm connection (a company of 100
 * webhooks, 2026-12-03). Longer than the roll-up's interval, which keeps one warm.
 */
export const API_IDLE_CONNECTION_MS = 10 * 60_000;

/**
 * How long a database connection of the API lives, however busy or idle: a session
 * takes its database's and login's settings when it connects (alter database … set
 * webhooks.max_webhooks_per_company = 20, and the refused settings /metrics counts),
 * and the connections kept for warm requests (above) lived as long as the API, on the
 * settings of their opening. Long, since a new connection's first report costs
 * 0.2–0.4 s (above): a renewal a connection an hour.
 */
export const API_CONNECTION_LIFETIME_MS = 60 * 60_000;

/**
 * The longest wait between two tries to read the GraphQL schema from a database that
 * did not answer as the API started (doubling from backoffMs's base up to it): one
 * connection attempt every 2 s is nothing to a database that is starting, and the API
 * is ready within 2 s of its answering.
 */
export const SCHEMA_RETRY_CAP_MS = 2_000;

/** /readyz's reason while the API has not read its schema, the database answering. */
const SCHEMA_NOT_READ = `GraphQL schema not yet read from the database (the API tries again within ${SCHEMA_RETRY_CAP_MS} ms)`;

/**
 * How often node looks for requests past their time (API_RECEIVE_TIMEOUT_MS): its
 * default, 30 s, let a request run 30 s past the bound.
 */
export const CONNECTIONS_CHECKED_EVERY_MS = 1_000;

/**
 * How long past the Keep-Alive timeout it advertises (API_KEEP_ALIVE_MS) the API keeps
 * an idle connection: a client counts the idle time from when it reads an answer, and
 * on a loaded machine it reads it a second or two after the API wrote it; one that sends
 * at the advertised timeout (fetch sends up to a second before it) reached the API as it
 * closed the connection at node's second past it (keepAliveTimeoutBuffer), and read
 * "other side closed" (test/api/connections.test.ts). Idle connections count against
 * API_MAX_CONNECTIONS this much longer.
 */
export const KEEP_ALIVE_CLOSE_MARGIN_MS = 3_000;

/**
 * Resolves once the answer is all handed to the system, or its connection has closed.
 * A client that takes no byte of it for idleMs is disconnected (node's own timeout of
 * an idle socket, set for this answer only: once it is sent, node sets the keep-alive's).
 */
function answerTaken(res: ServerResponse, idleMs: number): Promise<void> {
  if (res.writableFinished || res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    res.once('close', () => resolve());
    res.setTimeout(idleMs, () => res.destroy());
  });
}

/** Connections with an answer under API_ANSWER_IDLE_MS's timeout (closeUntaken), until it is sent. */
const answering = new WeakSet<Socket>();

/**
 * An answer's connection idle for API_ANSWER_IDLE_MS is closed if bytes of it wait for
 * its client; with none waiting, the wait was the API's own (a file not yet read, the
 * thread held by other work past the timeout: the loop's next turn runs the expired
 * timeout before the read's callback), and a file's connection was closed before its
 * first byte. The next write starts the timeout again.
 */
function closeUntaken(res: ServerResponse): void {
  if (res.socket && !res.socket.destroyed && res.socket.writableLength === 0 && !res.writableFinished) return;
  res.destroy();
}

/**
 * A connection whose timeout has passed (an idle keep-alive one; an answer not taken,
 * whose own handler has closed it already) is closed once the loop has read what came
 * meanwhile, and kept if a request came. Node closed it at once: when the API's one
 * thread was held (a large answer, a long plan) past an idle connection's timeout, the
 * loop's next turn ran the timeout before it read the request its client had sent
 * within the advertised keep-alive, and the client read ECONNRESET. A request that
 * came is then node's again: its headers and body within API_RECEIVE_TIMEOUT_MS.
 */
function closeOnceRead(socket: Socket): void {
  if (answering.has(socket)) return;
  const read = socket.bytesRead;
  // after the loop's reading of sockets (an immediate runs after it)
  setImmediate(() => {
    if (!socket.destroyed && socket.bytesRead === read) socket.destroy();
  });
}

export interface ApiOptions {
  databaseUrl: string;
  jwtSecret: string;
  /** a token's longest accepted life, in seconds (default: JWT_MAX_LIFETIME, else 24h) */
  tokenMaxLifetimeSeconds?: number;
  /** 0 picks a free port (default DEFAULT_API_PORT) */
  port?: number;
  /** default DEFAULT_API_HOST; empty is none */
  host?: string;
  pageDir?: string;
  poolSize?: number;
  /** how often to roll up the report's daily counts; 0: never (default 5 minutes) */
  reportCountsEveryMs?: number;
  /** default: JSON lines on stdout (pino), level info */
  log?: Logger;
  /** request limits; unset ones come from the environment (api/limits.ts), else their defaults */
  limits?: Partial<ApiLimits>;
  /** how long one answer of the database serves /readyz and /metrics (default DATABASE_ANSWER_REUSE_MS) */
  operationsReuseMs?: number;
  /** how long a connection above the warm ones may stay idle (default API_IDLE_CONNECTION_MS) */
  idleConnectionMs?: number;
  /** how long a database connection lives (API_CONNECTION_LIFETIME_MS unless given) */
  connectionLifetimeMs?: number;
}

export interface RunningApi {
  url: string;
  port: number;
  stop(): Promise<void>;
  /**
   * Settles when the API gives up on its database: one that did not answer as it
   * started and then refused it for good (a wrong password, 28P01; no such database,
   * 3D000), as startApi rejects for such a refusal at its first try. Never otherwise.
   */
  halted: Promise<Error>;
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers }).end(text);
}

/** 429: the company has its share of requests running and waiting (api/company-share.ts). */
function refuseBusy(res: ServerResponse, why: Exclude<Admission, { admitted: true }>['why']): void {
  const message = why === 'queue_full'
    ? 'too many requests of this company at once: try again in a moment ' +
      `(${LIMIT_SETTINGS.companyMaxInFlight} running, ${LIMIT_SETTINGS.companyMaxQueued} waiting)`
    : 'too many requests of this company at once: this one waited its turn too long ' +
      `(${LIMIT_SETTINGS.companyMaxWaitMs}); try again in a moment`;
  sendJson(res, 429, { errors: [{ message, extensions: { code: LIMIT_CODES.companyShare, why } }] }, { 'retry-after': '1' });
}

/** 429: the company has sent more requests than its rate allows (api/request-rate.ts); waitMs until it may send one. */
function refuseRate(res: ServerResponse, limits: ApiLimits, waitMs: number): void {
  const message = `too many requests of this company in a short time (${LIMIT_SETTINGS.companyRequestsPerSecond}: ` +
    `${limits.companyRequestsPerSecond} a second, ${limits.companyRequestBurst} at once); send it again after Retry-After`;
  sendJson(res, 429, { errors: [{ message, extensions: { code: LIMIT_CODES.requestRate, limit: limits.companyRequestsPerSecond } }] },
    { 'retry-after': String(Math.max(1, Math.ceil(waitMs / 1000))) });
}

/** 429: the client's address has sent more refused tokens than its rate allows (api/token-failures.ts); waitMs until one is checked. */
function refuseTokenFailures(res: ServerResponse, limits: ApiLimits, waitMs: number): void {
  const message = `too many refused tokens from this address in a short time (${LIMIT_SETTINGS.addressTokenFailuresPerSecond}: ` +
    `${limits.addressTokenFailuresPerSecond} a second, ${limits.addressTokenFailureBurst} at once); its token was not checked: ` +
    'send it again after Retry-After';
  sendJson(res, 429, { errors: [{ message, extensions: { code: LIMIT_CODES.tokenFailures, limit: limits.addressTokenFailuresPerSecond } }] },
    { 'retry-after': String(Math.max(1, Math.ceil(waitMs / 1000))), 'www-authenticate': 'Bearer' });
}

/**
 * The timeouts each session of the API's pool starts with (startup options: no
 * statement, nothing per request): the engine's (ENGINE_SESSION_TIMEOUTS), but a
 * transaction left waiting for its next statement for longer than the API waits for
 * an answer (apiDatabaseReadTimeoutMs) is ended by the server. A session the API gave
 * up on a silent path (EngineClient) otherwise kept its transaction and its locks
 * (the row its change updated) until TCP noticed the dead socket, hours by the
 * system's default, and every change of that row waited (test/api/silent-database.test.ts).
 * A request's statements run within its statement_timeout, which cancels one still
 * running, and no request waits between its statements; the report's roll-up is one
 * CALL. (Of the later of two -c of a setting: Postgres takes the last.)
 */
function apiSessionTimeouts(limits: ApiLimits): string[] {
  return [...ENGINE_SESSION_TIMEOUTS, `-c idle_in_transaction_session_timeout=${apiDatabaseReadTimeoutMs(limits)}`];
}

export async function startApi(options: ApiOptions): Promise<RunningApi> {
  if (!options.jwtSecret) throw new Error('JWT secret is empty: set JWT_SECRET');
  refuseWeakJwtSecret(options.jwtSecret);
  const log = options.log ?? apiLogger();
  const limits = limitsFromEnv(process.env, options.limits);
  const maxLifetimeSeconds = options.tokenMaxLifetimeSeconds ?? maxTokenLifetime();
  const claimsByRequest = new WeakMap<object, Claims>();
  const poolSize = options.poolSize ?? 10;
  const pool = new pg.Pool({
    // transaction_timeout 0 on a server of 17 or later (relay/database.ts says why):
    // each request is a transaction, bounded by its own statement_timeout
    Client: EngineClient,
    connectionString: options.databaseUrl,
    max: poolSize,
    // a statement that waits this long for a connection is refused by name (DATABASE_BUSY)
    connectionTimeoutMillis: limits.poolWaitMs,
    // a statement without an answer for longer than a request may run fails
    // (DATABASE_UNAVAILABLE), and EngineClient gives its connection up: one whose
    // network path went silent answered nothing until TCP gave up, many minutes
    // (test/api/silent-database.test.ts)
    query_timeout: apiDatabaseReadTimeoutMs(limits),
    // READ COMMITTED whatever the database's default (relay/database.ts says why); and
    // none of a DBA's timeouts for the API's login (but its own bound on a transaction
    // left waiting, apiSessionTimeouts): each request sets its own
    // statement_timeout (api/limits.ts), and the API's start-up reading of the schema,
    // bounded by nothing of its own, failed under a statement_timeout of 1 ms, so the
    // API never answered (test/api/dba-settings.test.ts)
    options: sessionOptions(null, apiSessionTimeouts(limits)),
    // however long they stay idle, as many stay open as one company's requests may
    // use at once (API_COMPANY_MAX_IN_FLIGHT): an admin who opens the page after a
    // quiet spell finds its first requests' connections warm, not only the one the
    // roll-up used last
    min: Math.min(limits.companyMaxInFlight, poolSize),
    idleTimeoutMillis: options.idleConnectionMs ?? API_IDLE_CONNECTION_MS,
    // but none for ever (API_CONNECTION_LIFETIME_MS says why)
    maxLifetimeSeconds: (options.connectionLifetimeMs ?? API_CONNECTION_LIFETIME_MS) / 1000,
    keepAlive: true,
    // (relay/database.ts says why)
    keepAliveInitialDelayMillis: KEEPALIVE_AFTER_MS,
  });
  let stopping = false;
  // an idle connection dropped by the server (restart, failover) is replaced on next use
  pool.on('error', (error) => {
    if (!stopping) log.warn({ err: lostConnection(error) }, 'idle database connection lost');
  });
  // /metrics, /healthz, /readyz (ops/operations.ts): the API's pool asks the database
  const registry = operationsRegistry(pool, undefined, options.operationsReuseMs);
  const share = new CompanyShare({
    maxInFlight: limits.companyMaxInFlight,
    maxQueued: limits.companyMaxQueued,
    maxWaitMs: limits.companyMaxWaitMs,
  });
  const rate = new RequestRate({ perSecond: limits.companyRequestsPerSecond, burst: limits.companyRequestBurst });
  const tokens = new VerifiedTokens({ secret: options.jwtSecret, maxLifetimeSeconds });
  const failures = new TokenFailures({ perSecond: limits.addressTokenFailuresPerSecond, burst: limits.addressTokenFailureBurst });
  const proxies = trustedProxies();
  const metrics = apiMetrics(registry, share, pool);
  // PostGraphile reads the database's catalog to build its schema as it is made (a
  // failed read is its instance's for good): one instance a try
  const schemaOfDatabase = () => postgraphile(
    apiPreset({
      pool,
      claimsOf: (req) => (req && typeof req === 'object' ? claimsByRequest.get(req) : undefined),
      limits,
      planned: (ms) => metrics.planned(ms),
      newTextRefused: () => metrics.newTextRefused(),
      log,
    }),
  );
  type Pgl = ReturnType<typeof schemaOfDatabase>;
  /** One try: the instance whose schema was read, or why not (its instance released). */
  const readSchema = async (): Promise<{ pgl: Pgl } | { error: Error }> => {
    const candidate = schemaOfDatabase();
    try {
      await candidate.getSchemaResult();
      return { pgl: candidate };
    } catch (error) {
      await Promise.resolve().then(() => candidate.release()).catch(() => {});
      return { error: error as Error };
    }
  };
  const everyMs = options.reportCountsEveryMs ?? 5 * 60_000;
  // set once the schema is read: until then GraphQL is refused by name (DATABASE_UNAVAILABLE)
  let pgl: Pgl | undefined;
  let graphql: ReturnType<ReturnType<typeof grafserv>['createHandler']> | undefined;
  let rollUp: ReturnType<typeof rollUpReportCounts> | undefined;
  const serveSchema = (read: Pgl) => {
    pgl = read;
    graphql = read.createServ(grafserv).createHandler();
    rollUp = everyMs > 0 ? rollUpReportCounts(pool, everyMs, log) : undefined;
  };
  // read the schema now: a broken database shows at start, not at the first request;
  // one that does not answer yet (refused, silent, starting up: 57P03) is waited for,
  // the API serving /healthz and /readyz meanwhile, as the relay waits for its own
  const first = await readSchema();
  if ('error' in first && !isConnectionError(first.error)) {
    await pool.end();
    throw first.error;
  }
  // a database that answers at once but is not this code's yet (no engine, or the
  // previous release's: its migrate not yet run) is waited for as one that does not
  // answer is: its schema, read now and served, stayed served until a restart
  const checked: Readiness | undefined = 'pgl' in first
    ? await readiness(pool).catch((error: Error) => ({ ready: false, reason: error.message, unanswered: 'failed' as const }))
    : undefined;
  const unready = checked !== undefined && !checked.ready;
  if ('pgl' in first && unready) await first.pgl.release();
  else if ('pgl' in first) serveSchema(first.pgl);
  const page = staticFiles(options.pageDir ?? DEFAULT_PAGE_DIR);

  const operations = operationsRoutes({ registry, db: pool, reuseMs: options.operationsReuseMs,
    notReadyBecause: () => (graphql ? undefined : SCHEMA_NOT_READ) });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = requestPath(req);
    if (path === null) {
      // the client's error, not the API's: no 500, no error logged
      metrics.track(req, res, 'page');
      res.writeHead(400, { 'content-type': 'text/plain' }).end('bad request target\n');
      return;
    }
    const route: Route = path === GRAPHQL_PATH ? 'graphql'
      : path === GRAPHIQL_PATH || path.startsWith('/ruru-static/') ? 'graphiql'
      : OPERATIONS_PATHS.has(path) ? 'operations' : 'page';
    metrics.track(req, res, route);
    // a file (Ruru's are up to 10 MB) or an operations answer its client stops taking:
    // its connection is closed after API_ANSWER_IDLE_MS without a byte taken, as a
    // GraphQL answer's is (below), not held for as long as the client stays
    if (route !== 'graphql') {
      res.setTimeout(limits.answerIdleMs, () => closeUntaken(res));
      // (the answer's timeout is its own: closeOnceRead leaves its connection alone)
      const socket = res.socket;
      if (socket) {
        answering.add(socket);
        res.once('close', () => answering.delete(socket));
      }
    }
    if (route === 'operations') {
      await operations(req, res, path);
      return;
    }
    if (path === GRAPHQL_PATH) {
      for (const [name, value] of Object.entries(GRAPHQL_ANSWER_HEADERS)) res.setHeader(name, value);
      if (req.method !== 'POST') {
        sendJson(res, 405, { errors: [{ message: `send GraphQL as POST to ${GRAPHQL_PATH}`, extensions: { code: HTTP_REFUSAL_CODES[405] } }] }, { allow: 'POST' });
        return;
      }
      // a body said to be too long is refused before it is read (grafserv counts the
      // bytes of one that does not say, and answers 413 too)
      if (Number(req.headers['content-length']) > limits.maxBodyBytes) {
        sendJson(res, 413, { errors: [{
          message: `request body is larger than ${limits.maxBodyBytes} bytes (${LIMIT_SETTINGS.maxBodyBytes})`,
          extensions: { code: LIMIT_CODES.body, limit: limits.maxBodyBytes },
        }] }, { connection: 'close' });
        return;
      }
      // a client that leaves before its request runs: it gives its place up while it
      // waits, and its turn back if it had one before GraphQL began (its close may come
      // while the token is checked)
      const gone = new AbortController();
      res.once('close', () => gone.abort());
      // a token kept verified costs nothing to check; any other is checked only while its
      // client's address has refused tokens to spare (api/token-failures.ts)
      let claims = tokens.kept(req.headers.authorization);
      if (claims === undefined) {
        const client = clientKey(req, proxies);
        const failuresWaitMs = failures.waitMs(client);
        if (failuresWaitMs > 0) {
          refuseTokenFailures(res, limits, failuresWaitMs);
          return;
        }
        failures.checking(client);
        try {
          claims = await tokens.verify(req.headers.authorization);
          failures.passed(client);
        } catch (error) {
          if (!(error instanceof AuthError)) throw error;
          // nothing else: no data, no schema, just why
          sendJson(res, 401, { errors: [{ message: error.message, extensions: { code: UNAUTHENTICATED_CODE, claim: error.claim } }] },
            { 'www-authenticate': 'Bearer' });
          return;
        }
      }
      // nothing to run it on yet (a database that did not answer as the API started, or
      // not yet migrated since):
      // refused as a request whose database cannot be reached is, before it counts
      // against its company's rate
      if (!graphql) {
        sendJson(res, 503, { errors: [{
          message: 'the API has not yet read its schema from the database (not reachable, or not yet migrated for this ' +
            'code: /readyz says which), and keeps trying; nothing was done: send it again in a moment',
          extensions: { code: DATABASE_UNAVAILABLE_CODE },
        }] }, { 'retry-after': '1' });
        return;
      }
      // the company's rate (api/request-rate.ts): refused before its body is read
      const waitMs = rate.take(claims.company_id);
      if (waitMs > 0) {
        refuseRate(res, limits, waitMs);
        return;
      }
      // the company's turn (api/company-share.ts)
      const turn = await share.admit(claims.company_id, gone.signal);
      if (!turn.admitted) {
        if (turn.why !== 'gone') refuseBusy(res, turn.why);
        return;
      }
      if (gone.signal.aborted) {
        turn.release();
        return;
      }
      claimsByRequest.set(req, claims);
      // the turn is the request's until its work has ended, whether its client waits
      // for the answer or not: a client that left handed its turn on while its SQL went
      // on, and a company whose clients left every request held as many backends as it
      // sent; and until its answer is taken: an answer is held in the API's memory
      // until its client reads it (megabytes: api/limits.ts), and a company whose
      // clients read none had as many held as it sent
      try {
        await graphql(req, res);
        await answerTaken(res, limits.answerIdleMs);
      } finally {
        turn.release();
      }
      return;
    }
    if (path === GRAPHIQL_PATH || path.startsWith('/ruru-static/')) {
      for (const [name, value] of Object.entries(IDE_SECURITY_HEADERS)) res.setHeader(name, value);
      if (graphql) graphql(req, res);
      else res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '1' }).end('the API has not yet read its schema from the database: try again in a moment\n');
      return;
    }
    await page(req, res);
  }

  const server = createServer({
    // a request's headers and body arrive within receiveTimeoutMs, else node answers
    // 408 and closes the connection: one sent a byte a second held its connection, and
    // its company's turn, for node's 300 s
    headersTimeout: limits.receiveTimeoutMs,
    requestTimeout: limits.receiveTimeoutMs,
    connectionsCheckingInterval: CONNECTIONS_CHECKED_EVERY_MS,
  }, (req, res) => {
    handle(req, res).catch((error) => {
      log.error({ err: error, method: req.method, url: req.url }, 'request failed');
      if (!res.headersSent) sendJson(res, 500, { errors: [{ message: 'internal error' }] });
      else res.destroy();
    });
  });
  // with a listener, node leaves a connection whose timeout has passed to it
  server.on('timeout', closeOnceRead);
  // past it, connections are closed as they come (idle ones close after
  // API_KEEP_ALIVE_MS)
  server.maxConnections = limits.maxConnections;
  // an idle connection is closed this long after its last answer, advertised as
  // Keep-Alive: timeout, and KEEP_ALIVE_CLOSE_MARGIN_MS past it (node's 1 s was less
  // than a loaded client's lag)
  server.keepAliveTimeout = limits.keepAliveMs;
  server.keepAliveTimeoutBuffer = KEEP_ALIVE_CLOSE_MARGIN_MS;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // an empty host is none (a compose file's `HOST: ${HOST}` with HOST unset): given to
    // listen() as it is, it listened on every address, the tokenless /metrics with it
    server.listen(options.port ?? DEFAULT_API_PORT, options.host || DEFAULT_API_HOST, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const host = options.host && options.host !== '0.0.0.0' ? options.host : 'localhost';
  let halt!: (error: Error) => void;
  const halted = new Promise<Error>((resolve) => (halt = resolve));
  let wake: (() => void) | undefined;
  const reading = 'error' in first ? keepReading(first.error) : unready ? keepReading(undefined, checked) : Promise.resolve();
  /**
   * Tries again, with a doubling pause, until the schema is read, the database refuses
   * the API for good, or stop(). `firstError`: the database did not answer; else
   * `checked`, the readiness check after the schema was read: given no answer within its
   * time (a loaded machine: until 2026-12-07 logged as "not migrated", which sent its
   * operator to run a migrate for nothing), or answered, not migrated for this code.
   */
  async function keepReading(firstError?: Error, checked?: Readiness): Promise<void> {
    const trying = 'the API answers /healthz and /readyz and keeps trying';
    if (firstError) log.warn({ err: lostConnection(firstError) }, `database not reachable yet; ${trying}`);
    else if (checked?.unanswered) log.warn(`database readiness check ${checked.unanswered} (${checked.reason}), its schema read; ${trying}`);
    else log.warn(`database not migrated for this code yet; ${trying}`);
    // (stop() ends the pool: whatever fails after it is no answer of the database's)
    for (let attempt = 0; !stopping; attempt++) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, backoffMs(attempt, { capMs: SCHEMA_RETRY_CAP_MS }));
        wake = () => (clearTimeout(timer), resolve());
      });
      if (stopping) return;
      // the database answering, its schema is read once it is this code's (or the next
      // release's, readiness): a deployment's database answers before its migrate has
      // run, and a schema read then (of no engine, or the previous release's) would be
      // served for good, /readyz saying ready once the migrate ran
      const answered = await pool.query('select 1').then(() => undefined, (error: Error) => error);
      if (stopping) return;
      if (answered && !isConnectionError(answered)) {
        halt(answered);
        return;
      }
      if (answered || !(await readiness(pool)).ready) continue;
      if (stopping) return;
      const read = await readSchema();
      if (stopping) {
        if ('pgl' in read) await read.pgl.release();
        return;
      }
      if ('pgl' in read) {
        serveSchema(read.pgl);
        log.info('database reachable: the API read its GraphQL schema and serves it');
        return;
      }
      if (!isConnectionError(read.error)) {
        halt(read.error);
        return;
      }
    }
  }
  return {
    url: `http://${host}:${port}`,
    port,
    halted,
    async stop() {
      stopping = true;
      wake?.();
      await rollUp?.stop();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await pgl?.release();
      await pool.end();
      await reading;
    },
  };
}
