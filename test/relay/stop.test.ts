// SIGTERM: the relay stops claiming, lets the requests it holds finish, writes their
// results, and exits 0. Nothing is left in flight (leased to the stopped relay).
import test from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { lines } from '../helpers/lines.ts';
import { relayScene, spawnRelay, testRelayEnvironment } from '../helpers/relay.ts';
import { until } from '../helpers/until.ts';

test('SIGTERM while a request is in flight: it finishes, is settled, and the relay exits 0', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  receiver.route('/hook', { secret: webhook.secret, replies: [{ status: 200, after: released }] });
  await f.contact(company.id);

  const relay = spawnRelay(database.url, { RELAY_ID: 'relay-stopping', RELAY_LOG_LEVEL: 'info' });
  const exited = once(relay, 'exit');
  t.teardown(() => {
    relay.kill('SIGKILL');
  });
  const stopping = new Promise<void>((resolve) => {
    const lines = createInterface({ input: relay.stdout! });
    lines.on('line', (line) => {
      if (JSON.parse(line).msg === 'stopping') resolve();
    });
  });
  await receiver.waitFor(1, { path: '/hook' });
  relay.kill('SIGTERM');
  await stopping;
  // written after the stop began: the stopping relay must leave it alone
  await f.contact(company.id);
  release();

  const [code] = await exited;
  t.is(code, 0);
  const { rows } = await database.pool.query(
    'select state, attempts, locked_by, last_status_code from webhooks.deliveries where webhook_id = $1 order by id',
    [webhook.id],
  );
  t.deepEqual(rows[0], { state: 'succeeded', attempts: 1, locked_by: null, last_status_code: 200 });
  // The second was written after the stop began. A claim already on its way to the
  // database when the signal came may still have taken it; then it was sent and
  // settled like the first. Either way nothing is left leased to the stopped relay.
  const second = rows[1];
  if (second.state === 'pending') {
    t.deepEqual(second, { state: 'pending', attempts: 0, locked_by: null, last_status_code: null });
    t.is(receiver.received('/hook').length, 1);
  } else {
    t.deepEqual(second, { state: 'succeeded', attempts: 1, locked_by: null, last_status_code: 200 });
    t.is(receiver.received('/hook').length, 2);
  }
});

// `npm run relay` runs the relay in a process of its own, with its V8 flags: when the
// process a supervisor knows (the one npm started) was killed outright (SIGKILL after
// a stop timeout, `kill -9`), the relay ran on unseen, holding its connections and
// sending, and a relay "stopped" to stop sending did not stop
test('npm run relay whose first process is killed outright: the relay it runs stops too', async (t) => {
  const { database } = await relayScene(t);
  const parent = spawn(process.execPath, [fileURLToPath(new URL('../../relay/main.ts', import.meta.url))], {
    env: { PATH: process.env.PATH, ...testRelayEnvironment(database.url, { RELAY_LOG_LEVEL: 'info' }) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => void (parent.exitCode === null && parent.kill('SIGKILL')));
  const out = lines(parent.stdout!);
  lines(parent.stderr!);
  const [started] = await out.next(/"msg":"relay started"/, 30_000, 0);
  const line = out.seen.find((seen) => seen.includes(started))!;
  const relayPid = Number((JSON.parse(line).relay as string).split(':').at(-2));
  t.not(relayPid, parent.pid, 'the relay runs in a process of its own');
  t.teardown(() => { try { process.kill(relayPid, 'SIGKILL'); } catch {} });
  const alive = () => { try { process.kill(relayPid, 0); return true; } catch { return false; } };
  t.true(alive());

  parent.kill('SIGKILL');
  await until('the relay process ends', async () => !alive(), 20_000);
  const { rows } = await database.pool.query(
    `select count(*)::int as n from pg_stat_activity where datname = current_database() and application_name like 'bpd-webhooks-relay%'`);
  t.is(rows[0].n, 0, 'none of its connections left');
});
