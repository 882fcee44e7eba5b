// The admin API running in-process on a free port, logged in as webhook_authenticator
// like in production, and a small GraphQL client that speaks real HTTP to it.
import { randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import { signToken, type ApiRole } from '../../api/auth.ts';
import { authenticatorUrl } from '../../api/authenticator.ts';
import type { ApiLimits } from '../../api/limits.ts';
import { startApi, type RunningApi } from '../../api/server.ts';
import type { Logger } from 'pino';
import { createTestDatabase, type TestDatabase } from './db.ts';
import { until } from './until.ts';

// One password for every test file: the role is shared by the whole cluster, and
// files run at once; a per-file password would lock the others' new connections out.
const AUTHENTICATOR_PASSWORD = 'authenticator-for-tests';

export interface GraphQLError {
  message: string;
  path?: string[];
  extensions?: { code?: string; constraint?: string; column?: string; [key: string]: unknown };
}
export interface GraphQLResponse<T = any> {
  status: number;
  data?: T;
  errors?: GraphQLError[];
}

export interface TestApi {
  api: RunningApi;
  jwtSecret: string;
  token(companyId: string, role?: ApiRole, sub?: string): Promise<string>;
  /** POST a GraphQL request with the given bearer token (none if undefined) */
  gql<T = any>(token: string | undefined, query: string, variables?: Record<string, unknown>): Promise<GraphQLResponse<T>>;
  stop(): Promise<void>;
}

/** The URL the tests' API logs in with (the authenticator, its password set as ownerUrl). */
export const testAuthenticatorUrl = (ownerUrl: string): Promise<string> => authenticatorUrl(ownerUrl, AUTHENTICATOR_PASSWORD);

export async function startTestApi(
  ownerUrl: string,
  options: {
    reportCountsEveryMs?: number; poolSize?: number; limits?: Partial<ApiLimits>; idleConnectionMs?: number; log?: Logger; pageDir?: string;
    /** the authenticator's URL as testAuthenticatorUrl gave it: the API starts without asking the owner's database (it may be down) */
    databaseUrl?: string;
    /** return only once /readyz says 200 (the API serves its schema); true unless databaseUrl is given (a test of a database down or not migrated) */
    serving?: boolean;
  } = {},
): Promise<TestApi> {
  const jwtSecret = randomBytes(32).toString('base64url');
  const api = await startApi({
    databaseUrl: options.databaseUrl ?? await testAuthenticatorUrl(ownerUrl),
    jwtSecret,
    // the kernel's choice at listen: a port found free beforehand may be taken by then
    port: 0,
    poolSize: options.poolSize ?? 4,
    limits: options.limits,
    idleConnectionMs: options.idleConnectionMs,
    log: options.log,
    pageDir: options.pageDir,
    // tests roll the report's counts up themselves, when they mean to
    reportCountsEveryMs: options.reportCountsEveryMs ?? 0,
    // and read /metrics' figures as they are now, not as they were a second ago
    operationsReuseMs: 0,
  });
  // The API promises GraphQL once it has read its schema, which an API started on a
  // loaded machine may not have yet (its first read, or the readiness check after it,
  // past its time): it refuses by name meanwhile, DATABASE_UNAVAILABLE, "send it again
  // in a moment", as a fresh-clone run's createWebhook and startBackfill met. /readyz
  // says 200 once it serves, and a test about something else starts from there.
  if (options.serving ?? !options.databaseUrl) {
    await until('the API serves its schema (/readyz 200)', async () => (await fetch(`${api.url}/readyz`)).status === 200)
      .catch(async (error) => {
        await api.stop();
        throw error;
      });
  }
  return {
    api,
    jwtSecret,
    token: (companyId, role = 'webhook_admin', sub) => signToken(jwtSecret, { companyId, role, sub }),
    async gql(token, query, variables = {}) {
      const response = await fetch(`${api.url}/graphql`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
        body: JSON.stringify({ query, variables }),
      }).catch((error: Error & { cause?: { code?: string; message?: string } }) => {
        // fetch says only "fetch failed": name the socket's reason
        throw new Error(`${error.message}: ${error.cause?.code ?? ''} ${error.cause?.message ?? ''}`, { cause: error });
      });
      const body = (await response.json()) as { data?: any; errors?: GraphQLError[] };
      return { status: response.status, ...body };
    },
    stop: () => api.stop(),
  };
}

/**
 * Limits for a test file that sends its company's requests back to back, many more than
 * a person or the page would (a walk of every input of the schema, a flood of new
 * texts), and is about something else than the company's rate of requests
 * (test/api/request-rate.test.ts is about that).
 */
export const RATE_UNBOUNDED: Partial<ApiLimits> = Object.freeze({ companyRequestsPerSecond: 1_000_000, companyRequestBurst: 1_000_000 });

/**
 * Limits for a test file that sends refused tokens by the dozen from its one address (a
 * walk of every hostile claim), or measures what a 401 costs, and is about something
 * else than an address's rate of refused tokens (test/api/token-failure-rate.test.ts is
 * about that).
 */
export const TOKEN_FAILURES_UNBOUNDED: Partial<ApiLimits> = Object.freeze({ addressTokenFailuresPerSecond: 1_000_000, addressTokenFailureBurst: 1_000_000 });

/**
 * A database of its own for the test file (as useTestDatabase) and the API running
 * against it, made one after the other in one hook (ava runs hooks at once).
 * `beforeApi` runs on the database before the API opens its first connection.
 */
export function useTestDatabaseWithApi(
  test: {
    before: (fn: () => Promise<void>) => void;
    after: { always: (fn: () => Promise<void>) => void };
  },
  options: { beforeApi?: (database: TestDatabase) => Promise<void>; limits?: Partial<ApiLimits> } = {},
): { db: () => TestDatabase; api: () => TestApi } {
  let database: TestDatabase | undefined;
  let running: TestApi | undefined;
  test.before(async () => {
    database = await createTestDatabase();
    await options.beforeApi?.(database);
    running = await startTestApi(database.url, { limits: options.limits });
  });
  test.after.always(async () => {
    await running?.stop();
    await database?.drop();
  });
  return {
    db: () => database ?? raise('database not ready'),
    api: () => running ?? raise('API not started'),
  };
}

function raise(message: string): never {
  throw new Error(message);
}

/** An admin token of the company, signed with jwtSecret, that expired a minute ago (issued two hours before). */
export function expiredToken(jwtSecret: string, companyId: string): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ role: 'webhook_admin', company_id: companyId })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt(now - 7200)
    .setExpirationTime(now - 60)
    .sign(new TextEncoder().encode(jwtSecret));
}
