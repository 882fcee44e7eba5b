// `npm start` runs the relay and the admin API as separate processes under one
// supervisor (tools/supervisor.ts): the API dying does not stop deliveries, it comes
// back by itself, and a stop ends the parts before the process exits.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { ENGINE_FINGERPRINT } from '../../ops/engine.ts';
import { freePort } from '../../tools/embedded-postgres.ts';
import { Supervisor } from '../../tools/supervisor.ts';
import { createTestDatabase, ownConnection } from '../helpers/db.ts';
import { MIGRATE_LOCK } from '../../tools/migrate.ts';
import { factories } from '../helpers/factories.ts';
import { lines } from '../helpers/lines.ts';
import { startReceiver } from '../helpers/receiver.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test('killing the API under npm start does not stop deliveries; the API is started again; Ctrl-C stops both parts', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const receiver = await startReceiver();
  t.teardown(() => receiver.close());
  const f = factories(database.pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: 'http://127.0.0.1:1/placeholder' });
  await database.pool.query('update webhooks.webhooks set url = $1 where id = $2', [receiver.route('/hook', { secret: hook.secret }), hook.id]);

  const port = await freePort();
  const start = spawn(process.execPath, [`${root}tools/start.ts`], {
    cwd: root,
    env: {
      PATH: process.env.PATH,
      DATABASE_URL: database.url,
      PORT: String(port),
      JWT_SECRET: 'start-test-secret-of-enough-length',
      RELAY_POLL_INTERVAL_MS: '50',
      RELAY_LOG_LEVEL: 'silent',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = lines(start.stdout!);
  lines(start.stderr!); // drained, so a part never blocks on a full pipe
  const exited = new Promise<number | null>((resolve) => start.once('exit', (code) => resolve(code)));
  t.teardown(() => void (start.exitCode === null && start.kill('SIGKILL')));

  const relayPid = Number((await out.next(/^relay: started \(pid (\d+)\)/, 60_000, 0))[1]);
  const apiPid = Number((await out.next(/^api: started \(pid (\d+)\)/, 60_000, 0))[1]);
  await out.next(/bpd-webhooks is up/, 60_000, 0);
  t.is((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);

  await f.contact(company.id, { first_name: 'Before' });
  await receiver.waitFor(1, { path: '/hook' });

  // the API dies hard: the supervisor logs it as every part logs, one JSON line (pino)
  const crashLogged = out.next(new RegExp(`"msg":"api \\(pid ${apiPid}\\) exited on SIGKILL.*restarting in`));
  const restarted = out.next(/^api: started \(pid (\d+)\)/);
  process.kill(apiPid, 'SIGKILL');
  t.like(JSON.parse((await crashLogged).input!), { level: 50, name: 'bpd-webhooks-supervisor' });
  // deliveries go on meanwhile
  await f.contact(company.id, { first_name: 'During' });
  const received = await receiver.waitFor(2, { path: '/hook' });
  t.true(received.every((r) => r.verified));
  t.regex(received[1].body, /During/);
  t.true(alive(relayPid));

  // and the API is back, in a new process
  const newApiPid = Number((await restarted)[1]);
  t.not(newApiPid, apiPid);
  for (let i = 0; ; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false);
    if (ok) break;
    if (i > 600) t.fail('the API did not come back within a minute');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  start.kill('SIGINT');
  t.is(await exited, 0);
  t.false(alive(relayPid));
  t.false(alive(newApiPid));
  t.regex(out.seen.join('\n'), /SIGINT: stopping[\s\S]*stopped/);
});

test('a part that keeps dying is restarted after pauses that double, each crash logged', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bpd-supervisor-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const script = join(dir, 'dies.ts');
  await writeFile(script, 'process.exit(3);\n');
  const logged: string[] = [];
  let thirdCrash!: () => void;
  const crashes = new Promise<void>((resolve) => (thirdCrash = resolve));
  const supervisor = new Supervisor([{ name: 'dies', script, env: { PATH: process.env.PATH } }], {
    backoff: { initialMs: 10, maxMs: 40, resetAfterMs: 60_000 },
    log: (line) => {
      logged.push(line);
      if (logged.length === 4) thirdCrash();
    },
  });
  supervisor.start();
  await crashes;
  await supervisor.stop();
  t.deepEqual(logged.map((line) => /with code (\d+).*restarting in (\d+) ms \(crash (\d+) in a row\)/.exec(line)?.slice(1)), [
    ['3', '10', '1'],
    ['3', '20', '2'],
    ['3', '40', '3'],
    ['3', '40', '4'], // the longest pause
  ]);
});

/**
 * npm start, expected to stop by itself: its exit code once its output is read to the
 * end ('up' if it came up instead, or a sentence if neither within a minute), and its
 * lines.
 */
async function startExpectingStop(t: { teardown: (fn: () => void) => void }, databaseUrl: string, port: number, ...args: string[]) {
  return startWithEnvExpectingStop(t, databaseUrl, port, {}, ...args);
}

async function startWithEnvExpectingStop(t: { teardown: (fn: () => void) => void }, databaseUrl: string, port: number,
                                         env: Record<string, string>, ...args: string[]) {
  const start = spawn(process.execPath, [`${root}tools/start.ts`, ...args], {
    cwd: root,
    env: { PATH: process.env.PATH, DATABASE_URL: databaseUrl, PORT: String(port), JWT_SECRET: 'start-test-secret-of-enough-length', RELAY_LOG_LEVEL: 'silent', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = lines(start.stdout!);
  const err = lines(start.stderr!);
  t.teardown(() => void (start.exitCode === null && start.kill('SIGKILL')));
  const code = await Promise.race([
    // (close: its output read to the end)
    new Promise<number | null>((resolve) => start.once('close', (exitCode) => resolve(exitCode))),
    out.next(/bpd-webhooks is up/, 60_000, 0).then(() => 'up', () => 'neither up nor stopped within a minute'),
  ]);
  return { code, out, err };
}

test("npm start on a port something else answers says so and stops: never 'up' on another server's /healthz", async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  // something else (another npm start, say) on the API's port, answering /healthz
  const other = createServer((_req, res) => res.writeHead(200).end('{"status":"ok"}'));
  await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => other.close(() => resolve())));
  const port = (other.address() as AddressInfo).port;

  const { code, out, err } = await startExpectingStop(t, database.url, port);
  t.is(code, 1);
  t.regex(err.seen.join('\n'), new RegExp(`port ${port} .*is taken`));
  t.false(out.seen.some((line) => /bpd-webhooks is up/.test(line)));
});

test('npm start whose migrate fails (a database migrated by newer code) says why in one line, with no stack, and stops with status 1', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  await database.pool.query(`insert into webhooks_private.migrations (name, run_on) values ('9999_from_the_future', now())`);
  const { code, err } = await startExpectingStop(t, database.url, await freePort());
  t.is(code, 1);
  t.deepEqual(err.seen.filter((line) => line.trim() !== ''), [
    'this database was migrated by newer code (9999_from_the_future: no such file in migrations/); ' +
      'nothing was done, so as not to put this older engine under it: run the newer code, or its migrate',
  ]);
});

test('npm start over a shared database rolled back on purpose to an earlier release does not move it forward again: it says so in one line and stops with status 1', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  // this release applied, then the release before it rolled back to (its npm run migrate -- --rollback)
  const earlier = 'ab'.repeat(32);
  await database.pool.query('delete from webhooks_private.sql_releases');
  for (const fingerprint of [earlier, ENGINE_FINGERPRINT]) {
    await database.pool.query(`insert into webhooks_private.sql_releases (fingerprint, migration, first_applied_at)
                               select $1, migration, now() from webhooks_private.sql_applied`, [fingerprint]);
  }
  await database.pool.query(`update webhooks_private.sql_applied set replaced = fingerprint, fingerprint = $1`, [earlier]);
  const { rows: [{ migration }] } = await database.pool.query('select migration from webhooks_private.sql_applied');
  const { code, err } = await startExpectingStop(t, database.url, await freePort());
  t.is(code, 1);
  t.deepEqual(err.seen.filter((line) => line.trim() !== ''), [
    `this database was rolled back on purpose to an earlier release's sql/ (abababababab, migrated to ${migration}), ` +
      'after a later release\'s was applied here: npm start does not undo that. Nothing was applied. ' +
      'To move it forward again on purpose: npm run migrate',
  ]);
  t.is((await database.pool.query('select fingerprint from webhooks_private.sql_applied')).rows[0].fingerprint, earlier);
});

// npm start's migrate and hourly maintain read the settings npm run migrate and npm run
// maintain read (MIGRATE_LOCK_WAIT_MS, MIGRATE_ANSWER_SILENCE_MS, MAINTAIN_LOCK_WAIT_MS):
// until 2026-12-07 they ran on the defaults, and npm start behind a stuck migrate
// waited its 5 minutes whatever MIGRATE_LOCK_WAIT_MS said
test('npm start behind a session holding the migrate lock stops after MIGRATE_LOCK_WAIT_MS, naming the holder, status 1', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const holder = await ownConnection(database.url, t);
  const { rows: [{ pid }] } = await holder.query<{ pid: number }>('select pg_advisory_lock($1), pg_backend_pid() as pid', [MIGRATE_LOCK]);
  const { code, err } = await startWithEnvExpectingStop(t, database.url, await freePort(), { MIGRATE_LOCK_WAIT_MS: '1500' });
  t.is(code, 1, err.seen.join('\n'));
  const said = err.seen.filter((line) => line.trim() !== '');
  t.is(said.length, 1, said.join('\n'));
  t.regex(said[0] ?? '', new RegExp(`^migrate waited 1500 ms \\(MIGRATE_LOCK_WAIT_MS\\) for another migrate to end, and stopped: nothing was done\\. ` +
    `The lock \\(advisory key ${MIGRATE_LOCK}\\) is held by server process ${pid} `));
});

test('npm start with a migrate or maintain setting that is not a whole number of milliseconds starts nothing and names it, status 1', async (t) => {
  for (const setting of ['MIGRATE_LOCK_WAIT_MS', 'MIGRATE_ANSWER_SILENCE_MS', 'MAINTAIN_LOCK_WAIT_MS']) {
    const { code, err } = await startWithEnvExpectingStop(t, 'postgres://nowhere.invalid/none', await freePort(), { [setting]: '5s' });
    t.is(code, 1, setting);
    t.deepEqual(err.seen.filter((line) => line.trim() !== ''), [`${setting}=5s: not a whole number of milliseconds from 1 to 2147483647`]);
  }
});

test('npm start -- --rollback rolls back on purpose, as npm run migrate -- --rollback does (the only way for its embedded database)', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  // the next release, of sql/ only, migrated after this one
  const later = 'cd'.repeat(32);
  await database.pool.query(`insert into webhooks_private.sql_releases (fingerprint, migration, first_applied_at)
                             select $1, migration, now() from webhooks_private.sql_applied`, [later]);
  await database.pool.query(`update webhooks_private.sql_applied set replaced = fingerprint, fingerprint = $1`, [later]);
  const refused = await startExpectingStop(t, database.url, await freePort());
  t.is(refused.code, 1);
  t.regex(refused.err.seen.join('\n'), /To roll back on purpose: npm run migrate -- --rollback \(its embedded database: npm start -- --rollback\)$/);
  await startedSays(t, database.url, '--rollback');
  t.is((await database.pool.query('select fingerprint from webhooks_private.sql_applied')).rows[0].fingerprint, ENGINE_FINGERPRINT);
});

test('npm start --rollback, the flag kept by npm for itself (no -- before it), starts nothing and says how to write it', async (t) => {
  const start = spawn(process.execPath, [`${root}tools/start.ts`], {
    cwd: root,
    env: { PATH: process.env.PATH, DATABASE_URL: 'postgres://nowhere.invalid/none', PORT: String(await freePort()), npm_config_rollback: 'true' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const err = lines(start.stderr!);
  t.teardown(() => void (start.exitCode === null && start.kill('SIGKILL')));
  const [code] = await once(start, 'close');
  t.is(code, 1);
  t.deepEqual(err.seen, ['npm took --rollback for an option of its own (npm_config_rollback): nothing was done. Write it after --: npm start -- --rollback']);
});

/** npm start against the database until it is up: what it printed, then stopped. */
async function startedSays(t: import('ava').ExecutionContext, databaseUrl: string, ...args: string[]): Promise<string[]> {
  const start = spawn(process.execPath, [`${root}tools/start.ts`, ...args], {
    cwd: root,
    env: { PATH: process.env.PATH, DATABASE_URL: databaseUrl, PORT: String(await freePort()), JWT_SECRET: 'start-test-secret-of-enough-length', RELAY_LOG_LEVEL: 'silent' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = lines(start.stdout!);
  lines(start.stderr!);
  const exited = new Promise<number | null>((resolve) => start.once('exit', (code) => resolve(code)));
  t.teardown(() => void (start.exitCode === null && start.kill('SIGKILL')));
  await out.next(/bpd-webhooks is up/, 60_000, 0);
  start.kill('SIGINT');
  t.is(await exited, 0);
  return out.seen;
}

test('npm start says how to get a token for a company the CRM has, and that a fresh CRM has none yet (npm run demo makes one)', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const empty = (await startedSays(t, database.url)).join('\n');
  t.regex(empty, /no company in crm\.companies yet: npm run demo makes Demo Realty, company 1 .*\n +an admin token for company 1: +npm run token -- --company 1\n/);

  const company = await factories(database.pool).company();
  const filled = (await startedSays(t, database.url)).join('\n');
  t.regex(filled, new RegExp(`an admin token for company ${company.id}: +npm run token -- --company ${company.id}\\n`));
  t.regex(filled, new RegExp(`read-only: +npm run token -- --company ${company.id} --role webhook_viewer`));
  t.notRegex(filled, /no company in crm\.companies/);
});

test("npm start over DATABASE_URL names the database it runs on without the URL's password (its output is an operator's log)", async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const url = new URL(database.url);
  t.truthy(url.password, 'the test server is reached with a password');
  const said = (await startedSays(t, database.url)).join('\n');
  t.false(said.includes(`${url.username}:${url.password}@`), said);
  const password = url.password;
  url.password = '';
  t.true(said.includes(`Postgres: ${url.href}`), said);
  // pg takes a password from the query as well
  const inQuery = new URL(url);
  inQuery.searchParams.set('password', password);
  const saidOfQuery = (await startedSays(t, inQuery.href)).join('\n');
  t.false(saidOfQuery.includes('password='), saidOfQuery);
  t.true(saidOfQuery.includes(`Postgres: ${url.href}`), saidOfQuery);
});
