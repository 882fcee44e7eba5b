// `npm run maintain` whose connection the server ends mid-run (a restart, a failover,
// a DBA's pg_terminate_backend): one line that says so and what to do, exit code 1,
// never a stack; each of its steps is a transaction of its own, so the next run
// finishes the work.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { ownConnection, useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { lines } from '../helpers/lines.ts';
import { freePort } from '../../tools/embedded-postgres.ts';
import { until } from '../helpers/until.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const db = useTestDatabase(test);

/** `npm run maintain` against the test's database: its process, its lines, and its exit code once it ends. */
function runMaintain(databaseUrl = db().url) {
  const child = spawn(process.execPath, [`${root}tools/maintain.ts`], {
    cwd: root,
    env: { PATH: process.env.PATH, DATABASE_URL: databaseUrl },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = lines(child.stdout!);
  const err = lines(child.stderr!);
  // ('close', not 'exit': its output read to the end, which 'exit' may come before)
  const exited = once(child, 'close').then(([code]) => code as number | null);
  return { child, out, err, exited };
}

test('maintain whose connection the server ends mid-run: one line and exit code 1; the next run finishes', async (t) => {
  // a delivery of a webhook: a day for the roll-up to count
  const f = factories(db().pool);
  const company = await f.company();
  await f.webhook({ companyId: company.id, actions: ['contact.created'], url: 'http://127.0.0.1:1/hook' });
  await f.contact(company.id);
  const holder = await ownConnection(db().url, t);
  const { rows: [{ pid: holderPid }] } = await holder.query<{ pid: number }>('select pg_backend_pid() as pid');
  await holder.query('begin');
  // a step of its that reads the outbox waits here
  await holder.query('lock table webhooks.deliveries in access exclusive mode');
  const run = runMaintain();
  t.teardown(() => void (run.child.exitCode === null && run.child.kill('SIGKILL')));
  const waiting = `select pid, query from pg_stat_activity
    where datname = current_database() and wait_event_type = 'Lock' and pid <> $1 and backend_type = 'client backend'`;
  await until('maintain waits for the lock', async () => (await db().pool.query(waiting, [holderPid])).rowCount === 1)
    .catch((error: Error) => { throw new Error(`${error.message}; it said: ${[...run.out.seen, ...run.err.seen].join('\n')}`); });
  const { rows: [ended] } = await db().pool.query(`select pg_terminate_backend(pid) as ended, query from (${waiting}) w`, [holderPid]);
  t.log(`ended while it ran: ${ended.query}`);
  await holder.query('rollback');
  t.is(await run.exited, 1);
  const said = run.err.seen.filter(Boolean);
  t.is(said.length, 1, said.join('\n'));
  t.regex(said[0] ?? '', /^maintain lost its connection to the database \(terminating connection due to administrator command\): the steps it finished are kept; run it again to finish$/);

  const again = runMaintain();
  t.is(await again.exited, 0, again.err.seen.join('\n'));
  t.true(again.out.seen.some((line) => line.startsWith('partitions made: ')), again.out.seen.join('\n'));
});

// (it said it "lost its connection" and that "the steps it finished are kept": it had
// none, and had never connected)
test('maintain whose database does not answer: one line saying nothing was done, exit code 1', async (t) => {
  const port = await freePort();
  const run = runMaintain(`postgres://nobody@127.0.0.1:${port}/none`);
  t.teardown(() => void (run.child.exitCode === null && run.child.kill('SIGKILL')));
  t.is(await run.exited, 1);
  t.deepEqual(run.err.seen.filter(Boolean),
    [`maintain could not connect to the database (connect ECONNREFUSED 127.0.0.1:${port}): nothing was done; run it again once the database answers`]);
});
