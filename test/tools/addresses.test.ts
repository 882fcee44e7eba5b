// Where `npm start`'s parts are, as every command reads it from the environment: an
// empty PORT, HOST, DATABASE_URL or EMBEDDED_PG_PORT is unset (a compose file's
// `PORT: ${PORT}` with PORT unset), as npm start and the API take them. `npm run
// demo` read them with `??`: PORT= made it look for the API at port 0, and HOST= at
// "http://:5678".
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { apiAddress, apiUrl } from '../../api/address.ts';
import { startDatabaseUrl } from '../../tools/database-url.ts';
import { lines } from '../helpers/lines.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

test('the API\'s address: PORT and HOST, their defaults when unset or empty, localhost for every address', (t) => {
  t.deepEqual(apiAddress({}), { port: 5678, host: '127.0.0.1' });
  t.deepEqual(apiAddress({ PORT: '', HOST: '' }), { port: 5678, host: '127.0.0.1' });
  t.deepEqual(apiAddress({ PORT: '6000', HOST: '::1' }), { port: 6000, host: '::1' });
  t.is(apiUrl({ PORT: '', HOST: '' }), 'http://127.0.0.1:5678');
  t.is(apiUrl({ PORT: '6000', HOST: '0.0.0.0' }), 'http://localhost:6000');
});

test('the database npm start uses: DATABASE_URL, else its embedded one, an empty setting unset', (t) => {
  t.is(startDatabaseUrl({}), 'postgres://postgres:postgres@127.0.0.1:5433/bpd_webhooks');
  t.is(startDatabaseUrl({ DATABASE_URL: '', EMBEDDED_PG_PORT: '' }), 'postgres://postgres:postgres@127.0.0.1:5433/bpd_webhooks');
  t.is(startDatabaseUrl({ EMBEDDED_PG_PORT: '6543' }), 'postgres://postgres:postgres@127.0.0.1:6543/bpd_webhooks');
  t.is(startDatabaseUrl({ DATABASE_URL: 'postgres://crm@db/crm' }), 'postgres://crm@db/crm');
});

// A port that is not one (PORT=abc, 99999, 5678x) reached node's listen, whose
// RangeError and stack were all the API and npm start said, and the embedded
// Postgres was given NaN
test('a PORT or EMBEDDED_PG_PORT that is no port is refused by name', (t) => {
  for (const bad of ['abc', '99999', '-1', '5678x', '1e3', ' ']) {
    t.is(t.throws(() => apiAddress({ PORT: bad }))?.message, `PORT must be a port, a whole number from 0 to 65535, got ${JSON.stringify(bad)}`, bad);
    t.is(t.throws(() => startDatabaseUrl({ EMBEDDED_PG_PORT: bad }))?.message,
      `EMBEDDED_PG_PORT must be a port, a whole number from 0 to 65535, got ${JSON.stringify(bad)}`, bad);
  }
  t.deepEqual(apiAddress({ PORT: '0' }), { port: 0, host: '127.0.0.1' }, 'any free port, as node takes 0');
});

// (each with the exit status of its other refusals at start: the API's of DATABASE_URL
// and JWT_SECRET, npm start's of a port taken)
for (const [command, script, status] of [['npm run api', 'api/main.ts', 2], ['npm start', 'tools/start.ts', 1]] as const) {
  test(`${command} with PORT=abc stops with one line naming PORT, exit status ${status}`, async (t) => {
    const child = spawn(process.execPath, [`${root}${script}`], {
      cwd: root,
      env: { PATH: process.env.PATH, DATABASE_URL: 'postgres://nowhere.invalid/none', JWT_SECRET: 'addresses-test-secret-of-enough-length', PORT: 'abc' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const err = lines(child.stderr!);
    t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')));
    const [code] = await once(child, 'close');
    t.deepEqual(err.seen, ['PORT must be a port, a whole number from 0 to 65535, got "abc"']);
    t.is(code, status);
  });
}

// A DATABASE_URL that is none pg connects with: text that is no URL pg read as a
// database on the host "base" (the relay and the API waited for it, "not reachable
// yet", forever), another scheme's URL as a Postgres's, and a port that is none failed
// at the first connection, which the relay took for a database it may not work in
// ("… GRANT bpd_webhooks_relay TO the user of DATABASE_URL"). Each command says so in
// one line that does not repeat the URL (it may hold a password), before connecting.
const NO_URL = "DATABASE_URL is no URL (or its port is none): it must be postgres://user:password@host:port/database, or a socket's folder and a database: /var/run/postgresql bpd";
const BAD_DATABASE_URLS = [
  ['bpd_webhooks', NO_URL],
  ['postgres://u:secret@127.0.0.1:99999/db', NO_URL],
  ['http://u:secret@127.0.0.1:5432/db', `DATABASE_URL's scheme is "http:": it must be postgres://user:password@host:port/database, or a socket's folder and a database: /var/run/postgresql bpd`],
] as const;

for (const [command, script, status, prefix] of [
  ['npm run relay', 'relay/main.ts', 2, 'relay: '],
  ['npm run api', 'api/main.ts', 2, ''],
  ['npm run migrate', 'tools/migrate.ts', 2, ''],
  ['npm run maintain', 'tools/maintain.ts', 2, ''],
  ['npm start', 'tools/start.ts', 1, ''],
] as const) {
  test(`${command} with a DATABASE_URL pg cannot connect with stops with one line saying so, exit status ${status}`, async (t) => {
    for (const [url, said] of BAD_DATABASE_URLS) {
      const child = spawn(process.execPath, [`${root}${script}`], {
        cwd: root,
        env: { PATH: process.env.PATH, DATABASE_URL: url, JWT_SECRET: 'addresses-test-secret-of-enough-length', PORT: '0' },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      const err = lines(child.stderr!);
      t.teardown(() => void (child.exitCode === null && child.signalCode === null && child.kill('SIGKILL')));
      // (bounded: one that waits for the host "base" would not stop by itself)
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      const [code] = await once(child, 'close');
      clearTimeout(timer);
      t.deepEqual(err.seen, [`${prefix}${said}`], url);
      t.is(code, status, url);
    }
  });
}
