// A second `npm run migrate` or `npm run maintain` behind a session that holds its run
// lock (another run, or one stuck) waited for it without end and said nothing; and
// maintain asked for its lock before setting its own lock_timeout, under the
// database's. Each now says which session holds the lock (pid, application_name,
// since when), again every few seconds, and after its bound (MIGRATE_LOCK_WAIT_MS,
// MAINTAIN_LOCK_WAIT_MS) stops, naming it, having done nothing: exit status 1.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { createTestDatabase, ownConnection } from '../helpers/db.ts';
import { lines } from '../helpers/lines.ts';
import { within } from '../helpers/until.ts';
import { ENGINE_FINGERPRINT } from '../../ops/engine.ts';
import { MAINTAIN_LOCK } from '../../tools/maintain.ts';
import { MIGRATE_LOCK } from '../../tools/migrate.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

/** `npm run <command>` against `databaseUrl`: its lines, and its exit code once it ends. */
function run(t: { teardown: (fn: () => void) => void }, command: 'migrate' | 'maintain', databaseUrl: string, env: Record<string, string>) {
  const child = spawn(process.execPath, [`${root}tools/${command}.ts`], {
    cwd: root,
    env: { PATH: process.env.PATH, DATABASE_URL: databaseUrl, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')));
  const out = lines(child.stdout!);
  const err = lines(child.stderr!);
  const exited = once(child, 'close').then(([code]) => code as number | null);
  return { out, err, exited };
}

/** A session of the test's that holds `key`, as a stuck run would: its pid and its start. */
async function holdKey(t: Parameters<typeof ownConnection>[1], url: string, key: number) {
  const holder = await ownConnection(url, t);
  await holder.query(`set application_name = 'stuck-run'`);
  const { rows: [held] } = await holder.query<{ pid: number; started: Date }>(
    'select pg_advisory_lock($1), pg_backend_pid() as pid, backend_start as started from pg_stat_activity where pid = pg_backend_pid()', [key]);
  return { holder, pid: held!.pid, started: held!.started.toISOString() };
}

for (const command of ['migrate', 'maintain'] as const) {
  const key = command === 'migrate' ? MIGRATE_LOCK : MAINTAIN_LOCK;
  const setting = command === 'migrate' ? 'MIGRATE_LOCK_WAIT_MS' : 'MAINTAIN_LOCK_WAIT_MS';

  test(`${command} behind a session holding its lock says who holds it, and after ${setting} exits 1 naming it, having done nothing, whatever the database's lock_timeout`, async (t) => {
    const database = await createTestDatabase();
    t.teardown(() => database.drop());
    // (maintain asked for its lock under the database's lock_timeout: 0, no end, or this)
    await database.pool.query(`alter database ${database.name} set lock_timeout = '20ms'`);
    await database.pool.query(`update webhooks_private.sql_applied set fingerprint = $1`, ['ab'.repeat(32)]);
    const { pid, started } = await holdKey(t, database.url, key);
    const { out, err, exited } = run(t, command, database.url, { [setting]: '1500' });
    const code = await within(60_000, exited);
    t.is(code, 1, [...out.seen, ...err.seen].join('\n'));
    const holder = `held by server process ${pid} \\(pg_stat_activity: application_name 'stuck-run', connected since ${started.replace(/\./g, '\\.')}, idle since `;
    t.regex(out.seen.join('\n'), new RegExp(`^${command} waits for another ${command} to end \\(\\d+ s of at most 2 s\\): the lock \\(advisory key ${key}\\) is ${holder}`, 'm'));
    const said = err.seen.filter(Boolean);
    t.is(said.length, 1, said.join('\n'));
    t.regex(said[0] ?? '', new RegExp(`^${command} waited 1500 ms \\(${setting}\\) for another ${command} to end, and stopped: nothing was done\\. ` +
      `The lock \\(advisory key ${key}\\) is ${holder}.*; run ${command} again once that one ends, or end it \\(pg_terminate_backend\\) if it is stuck$`));
    t.is((await database.pool.query('select fingerprint from webhooks_private.sql_applied')).rows[0].fingerprint, 'ab'.repeat(32));
  });

  test(`${command} behind a run that ends within ${setting} says what it waits for, then runs`, async (t) => {
    const database = await createTestDatabase();
    t.teardown(() => database.drop());
    const { holder, pid } = await holdKey(t, database.url, key);
    const { out, err, exited } = run(t, command, database.url, { [setting]: '60000' });
    await out.next(new RegExp(`^${command} waits for another ${command} to end .*held by server process ${pid} `), 60_000);
    await holder.query('select pg_advisory_unlock($1)', [key]);
    t.is(await within(60_000, exited), 0, err.seen.join('\n'));
    if (command === 'migrate') {
      t.is((await database.pool.query('select fingerprint from webhooks_private.sql_applied')).rows[0].fingerprint, ENGINE_FINGERPRINT);
    } else {
      t.true(out.seen.some((line) => line.startsWith('partitions made: ')), out.seen.join('\n'));
    }
  });
}

test('a wait that is not a whole number of milliseconds stops migrate and maintain at once, naming the variable (exit status 2)', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  for (const [command, setting] of [['migrate', 'MIGRATE_LOCK_WAIT_MS'], ['maintain', 'MAINTAIN_LOCK_WAIT_MS']] as const) {
    const { err, exited } = run(t, command, database.url, { [setting]: '5s' });
    t.is(await exited, 2);
    t.deepEqual(err.seen.filter(Boolean), [`${setting}=5s: not a whole number of milliseconds from 1 to 2147483647`]);
  }
});
