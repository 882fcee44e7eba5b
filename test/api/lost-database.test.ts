// The API when Postgres ends its connections: a request whose connection the server
// ends while it runs (a DBA's pg_terminate_backend, a failover) and requests while
// the server restarts are answered with a named error a client can send again
// (DATABASE_UNAVAILABLE), never a masked "An error occurred" or a hang; nothing of
// such a request is kept, /readyz says not ready meanwhile, and once the server is
// back the same API answers again, without a restart of its own. So does an API
// started while the server is down: it serves /healthz and /readyz meanwhile.
import test from 'ava';
import pg from 'pg';
import { AUTHENTICATOR_ROLE } from '../../api/authenticator.ts';
import { EXPECTED_MIGRATION } from '../../ops/operations.ts';
import { startTestApi, testAuthenticatorUrl, type TestApi } from '../helpers/api.ts';
import { connectionsTaken, memberLoginUrl } from '../helpers/crm-role.ts';
import { createEmptyTestDatabase, createTestDatabase, ownConnection, useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { logLines } from '../helpers/lines.ts';
import { restartablePostgres } from '../helpers/restartable-postgres.ts';
import { until, within } from '../helpers/until.ts';
import { migrate } from '../../tools/migrate.ts';

const db = useTestDatabase(test);

const CREATE = `mutation($name: String!) {
  createWebhook(input: { name: $name, url: "https://receiver.example.com/bpd", fields: ["first_name"], actions: [CONTACT_CREATED] }) {
    result { webhook { id name } }
  }
}`;

/** A request while the database cannot answer gets its answer within this long (the pool's wait, API_POOL_WAIT_MS, is longer). */
const ANSWERED_WITHIN_MS = 5_000;

const namesOf = async (pool: pg.Pool, companyId: string) => (await pool.query<{ name: string }>(
  'select name from webhooks.webhooks where company_id = $1 order by name', [companyId])).rows.map((r) => r.name);

test.serial('a mutation whose connection the server ends while it runs: DATABASE_UNAVAILABLE, nothing kept, and the next request works', async (t) => {
  const api = await startTestApi(db().url);
  t.teardown(() => api.stop());
  const company = await factories(db().pool).company();
  const token = await api.token(company.id);
  // the mutation's insert waits for the test's lock
  const holder = await ownConnection(db().url, t);
  await holder.query('begin');
  await holder.query('lock table webhooks.webhooks in share mode');
  const answer = api.gql(token, CREATE, { name: 'Ended meanwhile' });
  const waiting = `select pid from pg_stat_activity
    where datname = current_database() and usename = $1 and wait_event_type = 'Lock'`;
  await until('the mutation waits for the lock', async () => (await db().pool.query(waiting, [AUTHENTICATOR_ROLE])).rowCount === 1);
  await db().pool.query(`select pg_terminate_backend(pid) from (${waiting}) w`, [AUTHENTICATOR_ROLE]);
  const ended = await within(ANSWERED_WITHIN_MS, answer);
  await holder.query('rollback');
  t.not(ended, 'still waiting');
  if (ended === 'still waiting') return;
  t.is(ended.status, 200);
  t.is(ended.errors?.[0]?.extensions?.code, 'DATABASE_UNAVAILABLE', JSON.stringify(ended.errors));
  t.is(ended.errors?.[0]?.extensions?.sqlstate, '57P01', 'the SQLSTATE Postgres ended the connection with (admin_shutdown)');
  t.regex(ended.errors![0]!.message, /send it again/);
  t.deepEqual(await namesOf(db().pool, company.id), []);
  const next = await api.gql(token, CREATE, { name: 'Next' });
  t.is(next.errors, undefined);
  t.deepEqual(await namesOf(db().pool, company.id), ['Next']);
});

/** GET /readyz: its status and body. */
async function readyz(api: TestApi): Promise<{ status: number; body: string }> {
  const response = await fetch(`${api.api.url}/readyz`);
  return { status: response.status, body: await response.text() };
}

test.serial('Postgres restarted while the API runs: DATABASE_UNAVAILABLE meanwhile, /readyz not ready, then answers again', async (t) => {
  const server = await restartablePostgres(t, { migrated: true });
  const pool = server.pool();
  const company = await factories(pool).company();

  const api = await startTestApi(server.url);
  t.teardown(() => api.stop());
  const token = await api.token(company.id);
  t.is((await api.gql(token, CREATE, { name: 'Before' })).errors, undefined);
  t.is((await readyz(api)).status, 200);

  await server.stop();
  for (const [what, sent] of [
    ['a read', () => api.gql(token, '{ allWebhooks { nodes { name } } }')],
    ['a mutation', () => api.gql(token, CREATE, { name: 'During' })],
  ] as const) {
    const started = Date.now();
    const during = await within(ANSWERED_WITHIN_MS, sent());
    t.not(during, 'still waiting', what);
    if (during === 'still waiting') continue;
    t.is(during.errors?.[0]?.extensions?.code, 'DATABASE_UNAVAILABLE', `${what}: ${JSON.stringify(during.errors)}`);
    t.true(Date.now() - started < ANSWERED_WITHIN_MS, what);
    t.log(`${what} answered in ${Date.now() - started} ms`);
  }
  const notReady = await readyz(api);
  t.is(notReady.status, 503);
  t.regex(notReady.body, /database: not answering/);

  await server.start();
  await until('/readyz says ready again', async () => (await readyz(api)).status === 200);
  const after = await api.gql(token, CREATE, { name: 'After' });
  t.is(after.errors, undefined, JSON.stringify(after.errors));
  const read = await api.gql(token, '{ allWebhooks { nodes { name } } }');
  t.deepEqual(read.data?.allWebhooks.nodes.map((n: { name: string }) => n.name).sort(), ['After', 'Before']);
  t.deepEqual(await namesOf(pool, company.id), ['After', 'Before']);
});

// (it exited 1 at start, and under a supervisor nothing answered on its port until a
// restart found the database up: an orchestrator's probes saw a refused connection,
// not "alive, not ready")
test.serial('an API started while Postgres is down: /healthz alive, /readyz not ready, DATABASE_UNAVAILABLE; ready once it is up, without a restart', async (t) => {
  const server = await restartablePostgres(t, { migrated: true });
  const pool = server.pool();
  const company = await factories(pool).company();
  const databaseUrl = await testAuthenticatorUrl(server.url);
  await server.stop();

  const { lines, log } = logLines();
  const api = await startTestApi(server.url, { databaseUrl, log });
  t.teardown(() => api.stop());
  const token = await api.token(company.id);
  t.is((await fetch(`${api.api.url}/healthz`)).status, 200);
  const notReady = await readyz(api);
  t.is(notReady.status, 503);
  t.deepEqual(JSON.parse(notReady.body), { status: 'unavailable', reason: 'database: not answering (ECONNREFUSED)' });
  const refused = await api.gql(token, '{ allWebhooks { nodes { name } } }');
  t.is(refused.status, 503);
  t.is(refused.errors?.[0]?.extensions?.code, 'DATABASE_UNAVAILABLE', JSON.stringify(refused.errors));
  t.regex(refused.errors![0]!.message, /send it again/);
  t.notRegex(JSON.stringify(refused), /\bat \S+ \(|127\.0\.0\.1|ECONNREFUSED/, 'no stack, no address of the database');
  t.is((await api.gql(undefined, '{ allWebhooks { nodes { name } } }')).status, 401, 'a request without a token is refused as ever');
  t.deepEqual(lines.map((line) => JSON.parse(line).msg), ['database not reachable yet; the API answers /healthz and /readyz and keeps trying']);

  await server.start();
  await until('/readyz says ready', async () => (await readyz(api)).status === 200);
  const created = await api.gql(token, CREATE, { name: 'Once up' });
  t.is(created.errors, undefined, JSON.stringify(created.errors));
  const read = await api.gql(token, '{ allWebhooks { nodes { name } } }');
  t.deepEqual(read.data?.allWebhooks.nodes.map((n: { name: string }) => n.name), ['Once up']);
  t.deepEqual(await namesOf(pool, company.id), ['Once up']);
  t.deepEqual(lines.map((line) => JSON.parse(line).msg), [
    'database not reachable yet; the API answers /healthz and /readyz and keeps trying',
    'database reachable: the API read its GraphQL schema and serves it',
  ]);
});

// (the database a deployment starts beside the API answers before its migrate has
// run: the schema read then, of a database without the engine, was served for good,
// GraphQL without a webhook in it, while /readyz said ready once the migrate ran)
test.serial('an API that waited for Postgres reads its schema once the database is this code\'s, not as soon as it answers', async (t) => {
  const server = await restartablePostgres(t);
  await server.stop();
  const { lines, log } = logLines();
  // (the owner's login: the API's own role is made by the migrate)
  const api = await startTestApi(server.url, { databaseUrl: server.url, log });
  t.teardown(() => api.stop());
  await server.start();
  await until('/readyz no longer says the database does not answer', async () => !/not answering \(ECONNREFUSED/.test((await readyz(api)).body));
  t.deepEqual(JSON.parse((await readyz(api)).body), {
    status: 'unavailable', reason: `database migrated to nothing, this code expects ${EXPECTED_MIGRATION}: run npm run migrate` });
  const token = await api.token('1');
  const early = await api.gql(token, '{ allWebhooks { nodes { name } } }');
  t.is(early.status, 503);
  t.is(early.errors?.[0]?.extensions?.code, 'DATABASE_UNAVAILABLE', JSON.stringify(early.errors));

  await migrate(server.url);
  const company = await factories(server.pool()).company();
  await until('/readyz says ready', async () => (await readyz(api)).status === 200);
  const created = await api.gql(await api.token(company.id), CREATE, { name: 'Once migrated' });
  t.is(created.errors, undefined, JSON.stringify(created.errors));
  t.deepEqual(created.data?.createWebhook.result.webhook.name, 'Once migrated');
  t.deepEqual(lines.map((line) => JSON.parse(line).msg), [
    'database not reachable yet; the API answers /healthz and /readyz and keeps trying',
    'database reachable: the API read its GraphQL schema and serves it',
  ]);
});

// (a database that answered at the API's first try was read and served as it was: the
// schema of no engine, or of the previous release, until the API was restarted)
test.serial('an API whose database answers at start but is not migrated: /readyz 503, DATABASE_UNAVAILABLE, then serves once migrated', async (t) => {
  const database = await createEmptyTestDatabase();
  t.teardown(() => database.drop());
  const { lines, log } = logLines();
  // (the owner's login: the API's own role is made by the migrate)
  const api = await startTestApi(database.url, { databaseUrl: database.url, log });
  t.teardown(() => api.stop());
  const notReady = await readyz(api);
  t.is(notReady.status, 503);
  t.deepEqual(JSON.parse(notReady.body), {
    status: 'unavailable', reason: `database migrated to nothing, this code expects ${EXPECTED_MIGRATION}: run npm run migrate` });
  const early = await api.gql(await api.token('1'), '{ allWebhooks { nodes { name } } }');
  t.is(early.status, 503);
  t.is(early.errors?.[0]?.extensions?.code, 'DATABASE_UNAVAILABLE', JSON.stringify(early.errors));
  t.regex(early.errors![0]!.message, /not yet migrated/);

  await migrate(database.url);
  const company = await factories(database.pool).company();
  await until('/readyz says ready', async () => (await readyz(api)).status === 200);
  const created = await api.gql(await api.token(company.id), CREATE, { name: 'Once migrated' });
  t.is(created.errors, undefined, JSON.stringify(created.errors));
  t.deepEqual(created.data?.createWebhook.result.webhook.name, 'Once migrated');
  t.deepEqual(lines.map((line) => JSON.parse(line).msg), [
    'database not migrated for this code yet; the API answers /healthz and /readyz and keeps trying',
    'database reachable: the API read its GraphQL schema and serves it',
  ]);
});

// (a loaded machine: the schema read, and the readiness check after it given no answer
// within its time; until 2026-12-07 the log said "database not migrated for this code
// yet", and sent its operator to run a migrate for nothing)
test.serial('an API whose readiness check times out at start, the schema read, logs that it timed out and after how long, then serves', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  // (the check's first read slower than its time, as on a loaded machine)
  await database.pool.query('alter function webhooks_ops.latest_migration() rename to latest_migration_kept');
  await database.pool.query(`create function webhooks_ops.latest_migration() returns text language sql
                             as $$ select pg_sleep(30); select webhooks_ops.latest_migration_kept() $$`);
  const { lines, log } = logLines();
  const api = await startTestApi(database.url, { databaseUrl: database.url, log });
  t.teardown(() => api.stop());
  await until('the first line', async () => lines.length >= 1);
  await database.pool.query('drop function webhooks_ops.latest_migration()');
  await database.pool.query('alter function webhooks_ops.latest_migration_kept() rename to latest_migration');
  await until('/readyz says ready', async () => (await readyz(api)).status === 200);
  await until('the schema served', async () => lines.length >= 2);
  t.deepEqual(lines.map((line) => JSON.parse(line).msg), [
    'database readiness check timed out (database: no answer within 5000 ms), its schema read; ' +
      'the API answers /healthz and /readyz and keeps trying',
    'database reachable: the API read its GraphQL schema and serves it',
  ]);
});

// (too many connections, 53300: the server's max_connections taken by the CRM's own
// apps, here the login's limit; until 2026-12-07 the API took it for an error it did
// not know: "An error occurred", logged with a hash, where a client should send again)
test.serial('a request that needs a new connection while the database takes no more: DATABASE_UNAVAILABLE, 53300; the next once one is let go works', async (t) => {
  const { url: login, role } = await memberLoginUrl(t, db(), AUTHENTICATOR_ROLE, 'api');
  const api = await startTestApi(db().url, { databaseUrl: login });
  t.teardown(() => api.stop());
  const company = await factories(db().pool).company();
  const token = await api.token(company.id);
  t.is((await api.gql(token, CREATE, { name: 'Before' })).errors, undefined);
  // its connections end (a failover, a DBA), and the apps take every one there is
  const { letGo } = await connectionsTaken(t, db().pool, role);
  await db().pool.query(`select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and usename = $1`, [role]);
  // (a request may meet one of the pool's ended connections first: 57P01, as above,
  // or, ended as it was handed out, a connection closed with no SQLSTATE)
  let refused = await api.gql(token, CREATE, { name: 'Refused' });
  await until('a request that needs a new connection', async () => {
    const ended = refused.errors?.[0]?.extensions?.code === 'DATABASE_UNAVAILABLE'
      && [undefined, '57P01'].includes(refused.errors?.[0]?.extensions?.sqlstate as string | undefined);
    if (!ended) return true;
    refused = await api.gql(token, CREATE, { name: 'Refused' });
    return false;
  });
  t.is(refused.errors?.[0]?.extensions?.code, 'DATABASE_UNAVAILABLE', JSON.stringify(refused.errors));
  t.is(refused.errors?.[0]?.extensions?.sqlstate, '53300', JSON.stringify(refused.errors));
  await letGo();
  const next = await api.gql(token, CREATE, { name: 'Next' });
  t.is(next.errors, undefined, JSON.stringify(next.errors));
  t.deepEqual(await namesOf(db().pool, company.id), ['Before', 'Next']);
});
