// The relay's notification listener: closed while Postgres is down and it is
// reconnecting, it stops reconnecting (a relay stopped during an outage leaves nothing
// that keeps its process alive); a connection that goes silent is noticed by its
// periodic check and replaced.
import test from 'ava';
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { startListener } from '../../relay/listener.ts';
import { CHANNEL } from '../../relay/engine-names.ts';
import { createTestDatabase } from '../helpers/db.ts';
import { freezableProxy } from '../helpers/proxy.ts';
import { restartablePostgres } from '../helpers/restartable-postgres.ts';

const CHILD = fileURLToPath(new URL('../helpers/listener-child.ts', import.meta.url));

test('closed during a database outage, the listener stops reconnecting and its process exits by itself', async (t) => {
  const server = await restartablePostgres(t);

  const child = fork(CHILD, { env: { ...process.env, DATABASE_URL: server.url }, execArgv: process.execArgv });
  const exited = once(child, 'exit');
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  const heard = (what: string) => new Promise<void>((resolve) => child.on('message', (m) => m === what && resolve()));

  const lost = heard('lost');
  await heard('listening');
  await server.stop();
  await lost; // the connection is gone and the listener is trying again

  child.send('close');
  await heard('closed');
  const timeout = new Promise((resolve) => setTimeout(resolve, 15_000, 'still running'));
  const outcome = await Promise.race([exited.then(() => 'exited'), timeout]);
  t.is(outcome, 'exited', 'nothing is left running in the listener\'s process once it is closed');
});

test('a connection that goes silent is given up at the next check and listening resumes on a new one', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const proxy = await freezableProxy(new URL(database.url));
  t.teardown(() => proxy.close());
  let wakes = 0;
  let woken: () => void = () => {};
  const listener = startListener({
    databaseUrl: proxy.url,
    log: pino({ level: 'silent' }),
    onWake: () => {
      wakes += 1;
      woken();
    },
    checkEveryMs: 500, // (also its bound on the handshake and on LISTEN: not so short that a busy machine misses it)
  });
  t.teardown(() => listener.close());
  const nextWake = () => new Promise<void>((resolve) => (woken = resolve));

  await nextWake(); // listening (a first look)
  proxy.freeze();
  // the check asks and gets no answer: the listener gives the connection up and
  // listens again on a new one, which wakes the relay once (a bound of 5 s on a wait
  // that, without the check's own bound, lasted as long as TCP keepalive: hours)
  const bound = new Promise<'no'>((resolve) => setTimeout(resolve, 5_000, 'no'));
  t.is(await Promise.race([nextWake().then(() => 'yes' as const), bound]), 'yes', 'listening again after the path went silent');
  // and it hears notifications there
  const heard = nextWake();
  await database.pool.query(`select pg_notify($1, '')`, [CHANNEL]);
  await heard;
  t.true(wakes >= 3);
});
