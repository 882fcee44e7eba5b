// What stops `npm run api` as it starts, each in one line of its own: a setting out of
// its bounds, or a database that does not answer.
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
import { DEFAULT_LIMITS, LIMIT_MOST, LIMIT_SETTINGS, limitsFromEnv, type ApiLimits } from '../../api/limits.ts';
import { freePort } from '../../tools/embedded-postgres.ts';
import { lines } from '../helpers/lines.ts';

test('every API_ limit is a whole number from 1 to LIMIT_MOST; past it, or not one, the API stops naming the variable', (t) => {
  t.deepEqual(limitsFromEnv({}), DEFAULT_LIMITS);
  // (a default page no larger than the largest page)
  const largestPage = { [LIMIT_SETTINGS.maxPageSize]: String(LIMIT_MOST) };
  for (const [key, name] of Object.entries(LIMIT_SETTINGS) as Array<[keyof ApiLimits, string]>) {
    t.is(limitsFromEnv({ ...largestPage, [name]: String(LIMIT_MOST) })[key], LIMIT_MOST, name);
    for (const bad of [String(LIMIT_MOST + 1), '3000000000', '0', '-5', 'ten', '1.5']) {
      t.is(t.throws(() => limitsFromEnv({ ...largestPage, [name]: bad }))?.message,
        `${name} must be a whole number from 1 to ${LIMIT_MOST}, not ${JSON.stringify(bad)}`, `${name}=${bad}`);
    }
  }
});

// (each said with its stack, the API's settings read only as it started)
for (const [name, value, said] of [
  ['API_POOL_WAIT_MS', '3000000000', `API_POOL_WAIT_MS must be a whole number from 1 to ${LIMIT_MOST}, not "3000000000"`],
  ['JWT_MAX_LIFETIME', 'forever', 'JWT_MAX_LIFETIME must be a duration such as 24h, 30m or 7d, got "forever"'],
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

// (a pg stack, and node's for a port taken: neither said it was the API's start that failed)
test('npm run api whose database does not answer at start stops with one line saying so, exit status 1', async (t) => {
  const port = await freePort();
  const api = spawn(process.execPath, [fileURLToPath(new URL('../../api/main.ts', import.meta.url))], {
    env: { PATH: process.env.PATH, DATABASE_URL: `postgres://nobody@127.0.0.1:${port}/none`, JWT_SECRET: 'limit-settings-test-secret-of-length', PORT: '0' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const err = lines(api.stderr!);
  t.teardown(() => void (api.exitCode === null && api.kill('SIGKILL')));
  const [code] = await once(api, 'close');
  t.deepEqual(err.seen, [`the API could not start: connect ECONNREFUSED 127.0.0.1:${port} (it reads its schema from the database as it starts; start it again once the database answers)`]);
  t.is(code, 1);
});
