// The relay's notification listener, closed while Postgres is down and it is
// reconnecting, stops reconnecting: a relay stopped during an outage leaves nothing
// that keeps its process alive.
import test from 'ava';
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, startEmbeddedPostgres } from '../../tools/embedded-postgres.ts';

const CHILD = fileURLToPath(new URL('../helpers/listener-child.ts', import.meta.url));

test('closed during a database outage, the listener stops reconnecting and its process exits by itself', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'bpd-listener-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const server = await startEmbeddedPostgres({ dataDir, port: await freePort(), persistent: true, fast: true });
  let running = true;
  t.teardown(() => (running ? server.stop() : undefined));

  const child = fork(CHILD, { env: { ...process.env, DATABASE_URL: server.url() }, execArgv: process.execArgv });
  const exited = once(child, 'exit');
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  const heard = (what: string) => new Promise<void>((resolve) => child.on('message', (m) => m === what && resolve()));

  const lost = heard('lost');
  await heard('listening');
  await server.stop();
  running = false;
  await lost; // the connection is gone and the listener is trying again

  child.send('close');
  await heard('closed');
  const timeout = new Promise((resolve) => setTimeout(resolve, 15_000, 'still running'));
  const outcome = await Promise.race([exited.then(() => 'exited'), timeout]);
  t.is(outcome, 'exited', 'nothing is left running in the listener\'s process once it is closed');
});
