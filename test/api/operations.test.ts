// The admin API's operator endpoints (ops/operations.ts, api/metrics.ts): /healthz,
// /readyz that follows the database (down and back, migrated or not, running this
// code's sql/ or not) and /metrics in Prometheus text whose numbers move with what happens.
import { createServer as createHttpServer } from 'node:http';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import test from 'ava';
import { authenticatorUrl } from '../../api/authenticator.ts';
import { startApi } from '../../api/server.ts';
import { ENGINE_FINGERPRINT } from '../../ops/engine.ts';
import { DATABASE_ANSWER_REUSE_MS, EXPECTED_MIGRATION, operationsRegistry, operationsRoutes } from '../../ops/operations.ts';
import { freePort } from '../../tools/embedded-postgres.ts';
import { migrate, MIGRATIONS_SCHEMA, MIGRATIONS_TABLE } from '../../tools/migrate.ts';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { createTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { scrape } from '../helpers/prometheus.ts';
import { until } from '../helpers/until.ts';

const { db, api } = useTestDatabaseWithApi(test);

const metrics = scrape;

test('/healthz says the process lives; /readyz that the database answers at the expected migration', async (t) => {
  const health = await fetch(`${api().api.url}/healthz`);
  t.is(health.status, 200);
  t.deepEqual(await health.json(), { status: 'ok' });
  const ready = await fetch(`${api().api.url}/readyz`);
  t.is(ready.status, 200);
  t.deepEqual(await ready.json(), { status: 'ready', migration: EXPECTED_MIGRATION });
  t.is((await fetch(`${api().api.url}/metrics`, { method: 'POST' })).status, 405);
});

test('/metrics is Prometheus text with process metrics; request counts and the backlog move', async (t) => {
  const before = await metrics(api().api.url);
  for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds',
    'bpd_webhooks_database_up', 'bpd_webhooks_due', 'bpd_webhooks_oldest_due_seconds', 'bpd_webhooks_settings_refused',
    'bpd_webhooks_api_requests_in_flight', 'bpd_webhooks_partition_days_ahead',
    'bpd_webhooks_history_days_past_retention', 'bpd_webhooks_deleted_webhooks_to_purge',
    'bpd_webhooks_report_counts_days_behind', 'bpd_webhooks_capturing_transactions',
    'bpd_webhooks_oldest_capturing_transaction_seconds', 'bpd_webhooks_capturing_prepared_transactions',
    'bpd_webhooks_oldest_prepared_capturing_transaction_seconds', 'bpd_webhooks_capturing_transactions_of_unknown_age',
    'bpd_webhooks_oldest_capturing_transaction_xid_age']) {
    t.true(before.has(name), name);
  }
  t.is(before.get('bpd_webhooks_database_up'), 1);
  const graphql = 'bpd_webhooks_api_requests_total{route="graphql",code="200"}';

  // three due deliveries, the oldest due for an hour (no relay runs against this database)
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, next_attempt_at)
     select $1, $2, 'contact.created', n, '{}', now() - n * interval '20 minutes' from generate_series(1, 3) n`,
    [hook.id, company.id]);
  // and one not due yet
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, next_attempt_at)
     values ($1, $2, 'contact.created', 9, '{}', now() + interval '1 hour')`, [hook.id, company.id]);
  // and a deleted webhook with more kept deliveries than its delete removes
  const gone = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at)
     select $1, $2, 'contact.created', n, '{}', 'succeeded', 1, now()
     from generate_series(1, webhooks_private.inline_purge_max_rows() + 1) n`, [gone.id, company.id]);
  await db().pool.query('delete from webhooks.webhooks where id = $1', [gone.id]);
  const token = await api().token(company.id, 'webhook_viewer');
  await api().gql(token, '{ currentCompanyId }');
  await api().gql(token, '{ currentCompanyId }');

  // a scrape whose backlog question timed out on a busy machine says so (database_up 0): ask again
  let after = await metrics(api().api.url);
  for (let i = 0; after.get('bpd_webhooks_database_up') !== 1 && i < 10; i++) after = await metrics(api().api.url);
  t.is(after.get(graphql), (before.get(graphql) ?? 0) + 2);
  t.is(after.get('bpd_webhooks_due'), (before.get('bpd_webhooks_due') ?? 0) + 3);
  t.true(after.get('bpd_webhooks_oldest_due_seconds')! >= 3600);
  t.true(after.get('bpd_webhooks_oldest_due_seconds')! < 3600 + 600);
  t.is(after.get('bpd_webhooks_deleted_webhooks_to_purge'), (before.get('bpd_webhooks_deleted_webhooks_to_purge') ?? 0) + 1);
  // the template was migrated (its days made) today, or yesterday if this run began before midnight
  t.true(after.get('bpd_webhooks_partition_days_ahead')! >= 13, 'two weeks ahead, less a day at most');
  t.is(after.get('bpd_webhooks_history_days_past_retention'), 0);
  // (the webhooks here were made today: no countable day yet)
  t.is(after.get('bpd_webhooks_report_counts_days_behind'), 0);
  t.true(after.has('bpd_webhooks_api_request_duration_seconds_count{route="graphql"}'));
  // no label names a company or a webhook
  for (const series of after.keys()) t.notRegex(series, /company|webhook_id|url=/);
});

/** A TCP relay to Postgres that the test can cut and restore: the database "goes down". */
async function cuttableProxy(target: URL) {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  const port = await freePort();
  const open = () => new Promise<void>((resolve, reject) => {
    server = createServer((client) => {
      const upstream = connect(Number(target.port), target.hostname);
      for (const socket of [client, upstream]) {
        sockets.add(socket);
        socket.on('close', () => sockets.delete(socket));
        socket.on('error', () => {});
      }
      client.pipe(upstream).pipe(client);
    });
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  await open();
  return {
    url(original: string) {
      const url = new URL(original);
      url.port = String(port);
      return url.toString();
    },
    async cut() {
      // (close() calls back once every connection has ended: the API keeps its idle
      // ones for minutes, so they are ended here first)
      const closed = new Promise<void>((resolve) => server!.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
    restore: open,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => (server?.listening ? server.close(() => resolve()) : resolve()));
    },
  };
}

async function readyzUntil(url: string, status: number): Promise<any> {
  for (let i = 0; ; i++) {
    const response = await fetch(`${url}/readyz`);
    if (response.status === status) return await response.json();
    if (i >= 300) throw new Error(`/readyz did not answer ${status} within a minute`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** An API of its own on databaseUrl, stopped with the test. */
async function apiOn(t: { teardown: (fn: () => Promise<void>) => void }, databaseUrl: string) {
  const running = await startApi({ databaseUrl, jwtSecret: 'operations-test-secret-of-enough-length', port: 0, poolSize: 2, reportCountsEveryMs: 0, operationsReuseMs: 0 });
  t.teardown(() => running.stop());
  return running;
}

// WebhookFailureRatioHigh was a ratio over the whole fleet: one busy tenant whose
// receiver fails half its requests (its breaker never opening) held it on alone. Whether
// failures are widespread is how many webhooks, and of how many companies, are in a run
// of failed attempts now (docs/operations.md bases the alert on it).
test('/metrics counts the webhooks in a run of failures and the companies they belong to', async (t) => {
  const f = factories(db().pool);
  const [one, two] = [await f.company(), await f.company()];
  const hooks = await Promise.all([one, one, two, two].map((c) => f.webhook({ companyId: c.id, actions: ['contact.created'] })));
  const scrape = async () => {
    let answer = await metrics(api().api.url);
    for (let i = 0; answer.get('bpd_webhooks_database_up') !== 1 && i < 10; i++) answer = await metrics(api().api.url);
    return answer;
  };
  const before = await scrape();
  t.true(before.has('bpd_webhooks_webhooks_failing'));
  t.true(before.has('bpd_webhooks_companies_failing'));
  // two of the first company's webhooks failing, one of the second's; its other is fine
  await db().pool.query(
    `update webhooks_private.lanes set failures = 2, failing_since = now() - interval '1 minute'
     where webhook_id = any ($1::bigint[])`, [[hooks[0].id, hooks[1].id, hooks[2].id]]);
  const after = await scrape();
  t.is(after.get('bpd_webhooks_webhooks_failing'), before.get('bpd_webhooks_webhooks_failing')! + 3);
  t.is(after.get('bpd_webhooks_companies_failing'), before.get('bpd_webhooks_companies_failing')! + 2);
});

test('/readyz fails while the database is unreachable and recovers when it is back; /healthz stays up', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const proxy = await cuttableProxy(new URL(database.url));
  t.teardown(() => proxy.close());
  const running = await apiOn(t, proxy.url(await authenticatorUrl(database.url, 'authenticator-for-tests')));
  await readyzUntil(running.url, 200);

  await proxy.cut();
  const down = await readyzUntil(running.url, 503);
  t.is(down.status, 'unavailable');
  t.regex(down.reason, /^database: /);
  t.is((await fetch(`${running.url}/healthz`)).status, 200);
  const downMetrics = await metrics(running.url);
  t.is(downMetrics.get('bpd_webhooks_database_up'), 0);
  t.true(Number.isNaN(downMetrics.get('bpd_webhooks_due')), 'unknown, not 0, while the database does not answer');

  await proxy.restore();
  const back = await readyzUntil(running.url, 200);
  t.is(back.migration, EXPECTED_MIGRATION);
  t.is((await metrics(running.url)).get('bpd_webhooks_database_up'), 1);
});

test('bpd_webhooks_settings_refused counts the engine settings whose value set is not in force', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  await database.pool.query(`alter database ${database.name} set webhooks.retry_factor = 'x3'`);
  await database.pool.query(`alter database ${database.name} set webhooks.max_in_flight = '0'`);
  const running = await apiOn(t, await authenticatorUrl(database.url, 'authenticator-for-tests'));
  t.is((await metrics(running.url)).get('bpd_webhooks_settings_refused'), 2);
  t.is((await metrics(api().api.url)).get('bpd_webhooks_settings_refused'), 0, 'none in a database that sets none');
});

// A session takes its database's settings when it connects; the API keeps some
// connections however long idle, which counted no refused setting made after they
// opened (and their requests ran on the limits of then: max_webhooks_per_company …)
test('bpd_webhooks_settings_refused counts a setting refused after the API started, once its connections are renewed', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const running = await startApi({ databaseUrl: await authenticatorUrl(database.url, 'authenticator-for-tests'), jwtSecret: 'operations-test-secret-of-enough-length',
    port: 0, poolSize: 2, reportCountsEveryMs: 0, operationsReuseMs: 0, connectionLifetimeMs: 300 });
  t.teardown(() => running.stop());
  t.is((await metrics(running.url)).get('bpd_webhooks_settings_refused'), 0);
  await database.pool.query(`alter database ${database.name} set webhooks.max_in_flight = 'thirty'`);
  await until('the refused setting counted', async () => (await metrics(running.url)).get('bpd_webhooks_settings_refused') === 1);
  t.pass();
});

test('/readyz fails while the database is behind the migrations this code expects', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const running = await apiOn(t, await authenticatorUrl(database.url, 'authenticator-for-tests'));
  await database.pool.query('delete from webhooks_private.migrations where name = $1', [EXPECTED_MIGRATION]);
  const response = await fetch(`${running.url}/readyz`);
  t.is(response.status, 503);
  t.regex((await response.json()).reason, /this code expects .*npm run migrate/);
});

test('/readyz fails while the database is ahead of this code under sql/ neither this code\'s nor the one that replaced it, and says to run the newer code, not migrate', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const running = await apiOn(t, await authenticatorUrl(database.url, 'authenticator-for-tests'));
  // a migration newer code ran (migrate of this code refuses such a database), and
  // sql/ of a release that did not replace this code's (two releases on)
  await database.pool.query(
    `insert into webhooks_private.migrations (name, run_on) values ($1, now())`, ['9999_from_newer_code']);
  await database.pool.query(`update webhooks_private.sql_applied set fingerprint = $1, replaced = $2`, ['ef'.repeat(32), 'cd'.repeat(32)]);
  const response = await fetch(`${running.url}/readyz`);
  t.is(response.status, 503);
  const { reason } = await response.json();
  t.regex(reason, /^database migrated by newer code \(9999_from_newer_code\), this code expects /);
  t.notRegex(reason, /npm run migrate/);
});

test('/readyz stays ready while the next release\'s migrate has run its migrations and not yet its sql/ (it runs, or it stopped): this code\'s sql/ runs', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const running = await apiOn(t, await authenticatorUrl(database.url, 'authenticator-for-tests'));
  // (its migrate registers it first)
  await database.pool.query(`insert into webhooks_private.sql_releases (fingerprint, migration) values ($1, $2)`,
    ['cd'.repeat(32), '9998_from_the_next_release']);
  await database.pool.query(
    `insert into webhooks_private.migrations (name, run_on) values ($1, now())`, ['9998_from_the_next_release']);
  t.deepEqual(await readyzUntil(running.url, 200), {
    status: 'ready', migration: '9998_from_the_next_release',
    note: "database migrated by newer code (9998_from_the_next_release), under this code's sql/ still: " +
      "run that release's migrate to its end, then replace this process with that release's",
  });
});

test('/readyz stays ready while the next release, migrations and sql/, has replaced this code\'s (a rolling upgrade: this process keeps working until replaced), and fails once a further one has', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const running = await apiOn(t, await authenticatorUrl(database.url, 'authenticator-for-tests'));
  await readyzUntil(running.url, 200);

  // the next release's migrate, over this code's database: a migration of its own,
  // then its sql/ in place of this code's, which it records as the one it replaced
  const migrated = async (fingerprint: string, migration: string) => {
    await database.pool.query(`insert into webhooks_private.sql_releases (fingerprint, migration, first_applied_at) values ($1, $2, now())`,
      [fingerprint, migration]);
    await database.pool.query(`insert into webhooks_private.migrations (name, run_on) values ($1, now())`, [migration]);
    await database.pool.query(`update webhooks_private.sql_applied set replaced = fingerprint, fingerprint = $1, migration = $2`,
      [fingerprint, migration]);
  };
  await migrated('cd'.repeat(32), '9998_from_the_next_release');
  const next = await readyzUntil(running.url, 200);
  t.is(next.status, 'ready');
  t.is(next.migration, '9998_from_the_next_release');
  t.is(next.note, "database's sql/ cdcdcdcdcdcd (migrated to 9998_from_the_next_release) replaced this code's: replace this process with that release's");

  // and the release after it: this code is two behind
  await migrated('ef'.repeat(32), '9999_from_the_release_after');
  t.is((await readyzUntil(running.url, 503)).reason,
    "database migrated by code two or more releases past this one's (9999_from_the_release_after, sql/ efefefefefef): " +
    "replace this process with the newest release's");
});

test('/readyz after a rollback: this code\'s migrate run after the next release\'s makes this code ready again; an earlier release\'s migrate run after this code\'s makes it unavailable, until this code\'s migrate runs again', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const running = await apiOn(t, await authenticatorUrl(database.url, 'authenticator-for-tests'));
  await readyzUntil(running.url, 200);
  const migrated = async (fingerprint: string) => {
    await database.pool.query(
      `insert into webhooks_private.sql_releases (fingerprint, migration, first_applied_at) values ($1, $2, now())
       on conflict (fingerprint, migration) do nothing`, [fingerprint, EXPECTED_MIGRATION]);
    await database.pool.query(`update webhooks_private.sql_applied set replaced = fingerprint, fingerprint = $1, migration = $2`,
      [fingerprint, EXPECTED_MIGRATION]);
  };

  // the next release (sql/ only: this code's migrate refuses a database with
  // migrations it has not) migrated: this code is one behind; then this code's
  // migrate rolled the database back to it
  await migrated('cd'.repeat(32));
  t.regex((await readyzUntil(running.url, 200)).note, /^database's sql\/ cdcdcdcdcdcd .*replaced this code's/);
  await migrate(database.url, () => {}, { rollback: true });
  t.deepEqual(await readyzUntil(running.url, 200), { status: 'ready', migration: EXPECTED_MIGRATION });

  // this code after an earlier release (registered before it): that release's
  // migrate rolled the database back; then this code's went forward again
  await database.pool.query(`delete from webhooks_private.sql_releases`);
  await database.pool.query(`insert into webhooks_private.sql_releases (fingerprint, migration, first_applied_at)
                             values ($1, $3, now()), ($2, $3, now())`, ['ab'.repeat(32), ENGINE_FINGERPRINT, EXPECTED_MIGRATION]);
  await migrated('ab'.repeat(32));
  const back = await readyzUntil(running.url, 503);
  t.is(back.reason, `database's sql/ abababababab (migrated to ${EXPECTED_MIGRATION}) is an earlier release's, rolled back to after ` +
    "this code's was applied: replace this process with that release's, or run this release's npm run migrate again (its npm start over a shared database does not)");
  await migrate(database.url);
  t.deepEqual(await readyzUntil(running.url, 200), { status: 'ready', migration: EXPECTED_MIGRATION });
});

test('/readyz after the next release\'s migrate stopped before its sql/ and a mended release\'s ran after it: this code is one release behind the mended one, not two', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const running = await apiOn(t, await authenticatorUrl(database.url, 'authenticator-for-tests'));
  await readyzUntil(running.url, 200);
  // the next release: registered, its migration run, then killed before its sql/
  await database.pool.query(`insert into webhooks_private.sql_releases (fingerprint, migration) values ($1, '9998_of_the_next_release')`,
    ['cd'.repeat(32)]);
  await database.pool.query(`insert into webhooks_private.migrations (name, run_on) values ('9998_of_the_next_release', now())`);
  t.regex((await readyzUntil(running.url, 200)).note, /^database migrated by newer code \(9998_of_the_next_release\), under this code's sql\/ still/);
  // that release mended (a migration of its own more) migrated in its place: its
  // migrations, then its sql/
  await database.pool.query(`insert into webhooks_private.sql_releases (fingerprint, migration) values ($1, '9999_of_the_mended_release')`,
    ['ef'.repeat(32)]);
  await database.pool.query(`insert into webhooks_private.migrations (name, run_on) values ('9999_of_the_mended_release', now())`);
  t.regex((await readyzUntil(running.url, 200)).note, /^database migrated by newer code \(9999_of_the_mended_release\), under this code's sql\/ still/);
  await database.pool.query(`update webhooks_private.sql_releases set first_applied_at = now() where fingerprint = $1`, ['ef'.repeat(32)]);
  await database.pool.query(`update webhooks_private.sql_applied set replaced = fingerprint, fingerprint = $1, migration = '9999_of_the_mended_release'`,
    ['ef'.repeat(32)]);
  t.is((await readyzUntil(running.url, 200)).note,
    "database's sql/ efefefefefef (migrated to 9999_of_the_mended_release) replaced this code's: replace this process with that release's");
});

test('/readyz of a process two releases behind while the newest migrate stopped between its migrations and sql/: unavailable, as it is for a release before the record of releases (replaced_sql() null)', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const running = await apiOn(t, await authenticatorUrl(database.url, 'authenticator-for-tests'));
  await readyzUntil(running.url, 200);
  const replaced = async () => (await database.pool.query('select webhooks_ops.replaced_sql() as fingerprint')).rows[0].fingerprint;
  // the next release migrated, to its end: this code is one behind
  await database.pool.query(`insert into webhooks_private.migrations (name, run_on) values ('9998_of_the_next_release', now())`);
  await database.pool.query(`insert into webhooks_private.sql_releases (fingerprint, migration, first_applied_at)
                             values ($1, '9998_of_the_next_release', now())`, ['cd'.repeat(32)]);
  await database.pool.query(`update webhooks_private.sql_applied set replaced = fingerprint, fingerprint = $1, migration = '9998_of_the_next_release'`,
    ['cd'.repeat(32)]);
  t.regex((await readyzUntil(running.url, 200)).note, /^database's sql\/ cdcdcdcdcdcd .*replaced this code's/);
  t.is(await replaced(), ENGINE_FINGERPRINT);
  // the release after it: its migrate registered, ran its migrations and stopped
  await database.pool.query(`insert into webhooks_private.sql_releases (fingerprint, migration) values ($1, '9999_of_the_release_after')`,
    ['ef'.repeat(32)]);
  await database.pool.query(`insert into webhooks_private.migrations (name, run_on) values ('9999_of_the_release_after', now())`);
  t.is((await readyzUntil(running.url, 503)).reason,
    "database migrated by code two or more releases past this one's (9999_of_the_release_after, sql/ cdcdcdcdcdcd): " +
    "replace this process with the newest release's");
  t.is(await replaced(), null, 'a release before the record, asking no more than replaced_sql(), is not ready either');
});

test('/readyz fails while the database runs sql/ other than this code\'s, migrations current, and says to run npm run migrate, which makes it ready', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const running = await apiOn(t, await authenticatorUrl(database.url, 'authenticator-for-tests'));
  await readyzUntil(running.url, 200);

  // a migrate of another release ran last, over the same migrations: its sql/ (here,
  // one function of it) and its record of what it applied
  await database.pool.query(`create or replace function webhooks_private.payload_bytes_floor() returns integer
                             language sql immutable as $$ select 131072 $$`);
  await database.pool.query(`update webhooks_private.sql_applied set fingerprint = $1`, ['ab'.repeat(32)]);
  const other = await readyzUntil(running.url, 503);
  t.is(other.status, 'unavailable');
  t.regex(other.reason, /^database's sql\/ .*is not this code's \(abababababab, this code's [0-9a-f]{12}\): run npm run migrate$/);

  // this code's migrate ran its migrations, then stopped before sql/ (or an install
  // older than the record): no record at all
  await database.pool.query('delete from webhooks_private.sql_applied');
  const never = await readyzUntil(running.url, 503);
  t.regex(never.reason, /^database's sql\/ .*was never recorded as applied.*: run npm run migrate$/);
  // the sql/ of a release from before the record, which has not the question either
  await database.pool.query('drop function webhooks_ops.applied_sql()');
  t.is((await readyzUntil(running.url, 503)).reason, never.reason);
  // and before the migration of the record too: the migrations say what to do
  await database.pool.query('delete from webhooks_private.migrations where name = $1', [EXPECTED_MIGRATION]);
  t.regex((await readyzUntil(running.url, 503)).reason, /^database migrated to \d{4}_\w+, this code expects .*: run npm run migrate$/);

  await migrate(database.url);
  t.deepEqual(await readyzUntil(running.url, 200), { status: 'ready', migration: EXPECTED_MIGRATION });
  const { rows: [floor] } = await database.pool.query('select webhooks_private.payload_bytes_floor() as n');
  t.is(floor.n, 65536, "this code's sql/ is back");
});

test('/readyz and /metrics ask the database once a second at most, however many ask them (anyone who reaches the port may)', async (t) => {
  const pool = db().pool;
  // the database's questions, counted as the routes ask them
  const asked = { readiness: 0, gauges: 0 };
  const counted = {
    query: (text: string) => {
      if (/latest_migration/.test(text)) asked.readiness++;
      else asked.gauges++;
      return pool.query(text);
    },
  } as unknown as import('pg').Pool;
  const registry = operationsRegistry(counted);
  const serve = operationsRoutes({ registry, db: counted });
  const server = createHttpServer((req, res) => void serve(req, res, new URL(req.url!, 'http://localhost').pathname));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = `http://127.0.0.1:${(server.address() as import('node:net').AddressInfo).port}`;

  const started = performance.now();
  for (let round = 0; round < 20; round++) {
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => fetch(`${url}/${i % 2 ? 'readyz' : 'metrics'}`)));
    t.true(answers.every((r) => r.status === 200));
  }
  // 100 of each: as many questions as seconds went by (and the first), not one each
  const most = Math.ceil((performance.now() - started) / DATABASE_ANSWER_REUSE_MS) + 1;
  t.true(asked.readiness <= most, `readiness asked ${asked.readiness} times, at most ${most}`);
  t.true(asked.gauges <= most, `gauges asked ${asked.gauges} times, at most ${most}`);
  t.true(asked.readiness >= 1 && asked.gauges >= 1);
});

test('a request target that is no URL path (GET //[) is the client\'s error, 400, counted as such: not a failure of the API', async (t) => {
  const { port } = api().api;
  const before = await metrics(api().api.url);
  for (const target of ['//[', '//a:b/graphql', '//:99999/metrics']) {
    const status = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => socket.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
      let answer = '';
      socket.setEncoding('latin1');
      socket.on('data', (chunk) => { answer += chunk; });
      socket.on('error', reject);
      socket.on('close', () => resolve(answer.slice(0, answer.indexOf('\r\n'))));
    });
    t.is(status, 'HTTP/1.1 400 Bad Request', target);
  }
  const after = await metrics(api().api.url);
  const count = (series: string) => (after.get(series) ?? 0) - (before.get(series) ?? 0);
  t.is(count('bpd_webhooks_api_requests_total{route="page",code="400"}'), 3);
  t.is(count('bpd_webhooks_api_requests_total{route="page",code="500"}'), 0);
});

test('an empty HOST is no host: the API listens on loopback, not on every address (/metrics, /healthz and /readyz ask no token)', async (t) => {
  const outside = Object.values(networkInterfaces()).flat().find((a) => a && !a.internal && a.family === 'IPv4');
  if (!outside) {
    t.pass('this machine has no address but loopback');
    return;
  }
  // as a compose file's `HOST: ${HOST}` gives it when HOST is unset
  const running = await startApi({
    databaseUrl: await authenticatorUrl(db().url, 'authenticator-for-tests'), jwtSecret: 'operations-test-secret-of-enough-length',
    port: 0, host: '', poolSize: 1, reportCountsEveryMs: 0,
  });
  t.teardown(() => running.stop());
  t.is((await fetch(`http://127.0.0.1:${running.port}/healthz`)).status, 200);
  await t.throwsAsync(fetch(`http://${outside.address}:${running.port}/healthz`), undefined, `not on ${outside.address}`);
});

test('a database that does not answer is asked once, not once a request: a question past its 5 s is waited for, not sent again (each held a connection of the pool)', async (t) => {
  // questions sent, each left unanswered (a lock a migration holds, a silent network)
  const asked = { readiness: 0, gauges: 0 };
  const silent = {
    query: (text: string) => {
      if (/latest_migration/.test(text)) asked.readiness++;
      else asked.gauges++;
      return new Promise(() => {});
    },
  } as unknown as import('pg').Pool;
  const serve = operationsRoutes({ registry: operationsRegistry(silent, undefined, 0), db: silent, reuseMs: 0 });
  const server = createHttpServer((req, res) => void serve(req, res, new URL(req.url!, 'http://localhost').pathname));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  }));
  const url = `http://127.0.0.1:${(server.address() as import('node:net').AddressInfo).port}`;
  for (let round = 0; round < 2; round++) {
    const [ready, scraped] = await Promise.all([fetch(`${url}/readyz`), metrics(url)]);
    t.is(ready.status, 503);
    t.deepEqual(await ready.json(), { status: 'unavailable', reason: 'database: no answer within 5000 ms' });
    t.is(scraped.get('bpd_webhooks_database_up'), 0);
  }
  t.deepEqual(asked, { readiness: 1, gauges: 1 });
});
