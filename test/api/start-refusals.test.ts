// What stops `npm run api` as it starts, each in one line of its own: a setting out of
// its bounds, or a database that refuses it for good; and what does not: a database
// that does not answer yet, which it waits for, answering /healthz and /readyz.
//
// The API's limits as the environment sets them (limitsFromEnv, api/limits.ts): each a
// whole number within what node's timers and Postgres's settings hold. Past 2^31 - 1
// ms, node ran API_POOL_WAIT_MS's timer after 1 ms (the API could not open a
// connection: "Connection terminated due to connection timeout"), and Postgres
// refused every connection whose idle_in_transaction_session_timeout the API derives
// from API_STATEMENT_TIMEOUT_MS: the API never started, neither error naming the setting.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { signToken } from '../../api/auth.ts';
import { DEFAULT_LIMITS, LIMIT_MOST, LIMIT_SETTINGS, limitsFromEnv, type ApiLimits } from '../../api/limits.ts';
import { freePort } from '../../tools/embedded-postgres.ts';
import { connectionsTaken, memberLoginUrl } from '../helpers/crm-role.ts';
import { createTestDatabase, databaseUrl } from '../helpers/db.ts';
import { lines } from '../helpers/lines.ts';
import { until } from '../helpers/until.ts';
import { restartablePostgres } from '../helpers/restartable-postgres.ts';

test('every API_ limit is a whole number from 1 to LIMIT_MOST; past it, or not one, the API stops naming the variable', (t) => {
  t.deepEqual(limitsFromEnv({}), DEFAULT_LIMITS);
  // (a default page no larger than the largest page)
  const largestPage = { [LIMIT_SETTINGS.maxPageSize]: String(LIMIT_MOST) };
  for (const [key, name] of Object.entries(LIMIT_SETTINGS) as Array<[keyof ApiLimits, string]>) {
    t.is(limitsFromEnv({ ...largestPage, [name]: String(LIMIT_MOST) })[key], LIMIT_MOST, name);
    // (and none but decimal digits: Number() read 0x10 as 16, 1e3 as 1000 and 5.0 as 5,
    // where the relay's settings refuse them)
    for (const bad of [String(LIMIT_MOST + 1), '3000000000', '0', '-5', 'ten', '1.5', '0x10', '0b11', '1e3', '5.0', ' 5', '+5']) {
      t.is(t.throws(() => limitsFromEnv({ ...largestPage, [name]: bad }))?.message,
        `${name} must be a whole number from 1 to ${LIMIT_MOST}, not ${JSON.stringify(bad)}`, `${name}=${bad}`);
    }
  }
});

// (each said with its stack, the API's settings read only as it started)
for (const [name, value, said] of [
  ['API_POOL_WAIT_MS', '3000000000', `API_POOL_WAIT_MS must be a whole number from 1 to ${LIMIT_MOST}, not "3000000000"`],
  ['JWT_MAX_LIFETIME', 'forever', 'JWT_MAX_LIFETIME must be a duration such as 24h, 30m or 7d, got "forever"'],
  // (a network's first address: 10.0.0.1/8 may have meant 10.0.0.1 alone)
  ['API_TRUSTED_PROXIES', '10.0.0.0/8, 10.0.0.1/8', 'API_TRUSTED_PROXIES must name IP addresses or networks in CIDR form ' +
    'such as 10.0.0.0/8 or 2001:db8::/64 (comma separated), got "10.0.0.1/8"'],
  // (a word: guessed from any token it signed, test/api/auth.test.ts)
  ['JWT_SECRET', 'changeme',
    'JWT_SECRET must be at least 32 bytes, random (openssl rand -base64 32), not 8: the API verifies tokens with it (HS256)'],
] as const) {
  test(`npm run api with ${name}=${value} stops with one line naming it, exit status 2, before it asks the database`, async (t) => {
    const api = spawn(process.execPath, [fileURLToPath(new URL('../../api/main.ts', import.meta.url))], {
      env: { PATH: process.env.PATH, DATABASE_URL: 'postgres://nowhere.invalid/none', JWT_SECRET: 'limit-settings-test-secret-of-length', [name]: value },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const err = lines(api.stderr!);
    t.teardown(() => void (api.exitCode === null && api.kill('SIGKILL')));
    const [code] = await once(api, 'close');
    t.deepEqual(err.seen, [said]);
    t.is(code, 2);
  });
}

const SECRET = 'limit-settings-test-secret-of-length';

/** `npm run api` against databaseUrl on a free port; its stdout and stderr lines. */
function runApi(t: { teardown: (fn: () => void) => void }, url: string) {
  const api = spawn(process.execPath, [fileURLToPath(new URL('../../api/main.ts', import.meta.url))], {
    env: { PATH: process.env.PATH, DATABASE_URL: url, JWT_SECRET: SECRET, PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => void (api.exitCode === null && api.signalCode === null && api.kill('SIGKILL')));
  return { api, out: lines(api.stdout!), err: lines(api.stderr!) };
}

// (it exited 1, in one line, for its supervisor to start it again: nothing answered
// on its port meanwhile, and an orchestrator's probes saw a refused connection)
test('npm run api whose database does not answer at start stays up: /healthz alive, /readyz not ready, GraphQL DATABASE_UNAVAILABLE', async (t) => {
  const port = await freePort();
  const { api, out, err } = runApi(t, `postgres://nobody@127.0.0.1:${port}/none`);
  const [, url] = await out.next(/^Admin API: (http:\/\/\S+)\/graphql /);
  await out.next(/database not reachable yet/, 60_000, 0);
  t.is((await fetch(`${url}/healthz`)).status, 200);
  const ready = await fetch(`${url}/readyz`);
  t.is(ready.status, 503);
  t.deepEqual(await ready.json(), { status: 'unavailable', reason: 'database: not answering (ECONNREFUSED)' });
  const graphql = (token?: string) => fetch(`${url}/graphql`, { method: 'POST', body: '{"query":"{ __typename }"}',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) } });
  const refused = await graphql(await signToken(SECRET, { companyId: '1' }));
  t.is(refused.status, 503);
  t.is(refused.headers.get('retry-after'), '1');
  const { errors } = await refused.json() as { errors: Array<{ message: string; extensions: { code: string } }> };
  t.deepEqual(errors.map((e) => e.extensions), [{ code: 'DATABASE_UNAVAILABLE' }]);
  t.is((await graphql()).status, 401, 'no token: refused as ever');
  t.deepEqual(err.seen, []);
  api.kill('SIGTERM');
  const [code] = await once(api, 'close');
  t.is(code, 0);
  t.deepEqual(err.seen, []);
});

// (a wrong password, 28P01, likewise: neither is what a restart or a wait mends, and
// the relay stops for them too)
test('npm run api whose database refuses it for good (no such database, 3D000) stops with one line saying so, exit status 1', async (t) => {
  const { api, err } = runApi(t, databaseUrl('bpd_no_such_database'));
  const [code] = await once(api, 'close');
  t.deepEqual(err.seen, ['the API could not start: database "bpd_no_such_database" does not exist (reading its schema from the database)']);
  t.is(code, 1);
});

test('npm run api that waited for its database, which then refuses it for good, stops with one line saying so, exit status 1', async (t) => {
  const server = await restartablePostgres(t);
  const missing = new URL(server.url);
  missing.pathname = '/bpd_no_such_database';
  await server.stop();
  const { api, out, err } = runApi(t, missing.toString());
  await out.next(/database not reachable yet/);
  await server.start();
  const [code] = await once(api, 'close');
  t.deepEqual(err.seen, ['the API could not start: database "bpd_no_such_database" does not exist (reading its schema from the database)']);
  t.is(code, 1);
});

// (too many connections, SQLSTATE 53300: the server's max_connections, or the
// database's limit, taken by the CRM's own apps, which a wait mends; until 2026-12-07
// the API took it for a refusal for good and stopped, exit status 1)
test('npm run api started while the CRM\'s apps hold every connection its database takes waits, /readyz saying why, and serves once one is let go', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const { url: login, role } = await memberLoginUrl(t, database, 'webhook_authenticator', 'api');
  const { letGo } = await connectionsTaken(t, database.pool, role);
  const { api, out, err } = runApi(t, login);
  const [, url] = await out.next(/^Admin API: (http:\/\/\S+)\/graphql /);
  await out.next(/database not reachable yet/, 60_000, 0);
  t.is(api.exitCode, null);
  const ready = await fetch(`${url}/readyz`);
  t.is(ready.status, 503);
  t.deepEqual(await ready.json(), { status: 'unavailable', reason: 'database: not answering (SQLSTATE 53300)' });
  await letGo();
  await out.next(/database reachable: the API read its GraphQL schema and serves it/);
  // (the 503 answered before is reused for up to DATABASE_ANSWER_REUSE_MS)
  await until('ready', async () => (await fetch(`${url}/readyz`)).status === 200);
  t.deepEqual(err.seen, []);
});
