// Postgres restarts under a running relay: the relay reconnects by itself, writes the
// result of a request that finished while the database was down, and delivers what
// was written while it was away (no NOTIFY reached it for those); its /readyz says
// "not ready" meanwhile.
import test from 'ava';
import { EXPECTED_MIGRATION } from '../../ops/operations.ts';
import { freePort } from '../../tools/embedded-postgres.ts';
import { factories } from '../helpers/factories.ts';
import { startReceiver } from '../helpers/receiver.ts';
import { restartablePostgres } from '../helpers/restartable-postgres.ts';
import { rememberedLog, relayAsleepInProcess, spawnRelay, testRelay, waitForFinalDeliveries } from '../helpers/relay.ts';

test('Postgres restarted while the relay runs: it reconnects and delivers what was written meanwhile', async (t) => {
  const server = await restartablePostgres(t, { migrated: true });
  const pool = server.pool();
  const receiver = await startReceiver();
  t.teardown(() => receiver.close());
  const f = factories(pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret });

  const relay = testRelay(server.url);
  t.teardown(() => relay.stop());
  await relay.start();
  await f.contact(company.id, { first_name: 'Before' });
  await receiver.waitFor(1, { path: '/hook' });
  await waitForFinalDeliveries(pool, [webhook.id], 1);

  // one request is still in flight when Postgres goes away: its answer comes while
  // the database is down, and its result must wait and be written afterwards
  let answer!: () => void;
  receiver.route('/hook', { replies: [{ status: 200, after: new Promise<void>((resolve) => (answer = resolve)) }] });
  await f.contact(company.id, { first_name: 'In flight' });
  await receiver.waitFor(2, { path: '/hook' });

  await server.stop();
  answer();
  await server.start();
  // written at once, while the relay is still finding its way back
  await f.contact(company.id, { first_name: 'After 1' });
  await f.contact(company.id, { first_name: 'After 2' });

  const requests = await receiver.waitFor(4, { path: '/hook' });
  const deliveries = await waitForFinalDeliveries(pool, [webhook.id], 4);
  t.true(deliveries.every((d) => d.state === 'succeeded' && d.attempts === 1));
  t.deepEqual(
    requests.map((r) => JSON.parse(r.body).data.contact.first_name),
    ['Before', 'In flight', 'After 1', 'After 2'],
  );
  t.true(requests.every((r) => r.verified));

  // and later writes arrive as usual
  await f.contact(company.id, { first_name: 'Later' });
  const [, , , , later] = await receiver.waitFor(5, { path: '/hook' });
  t.is(JSON.parse(later!.body).data.contact.first_name, 'Later');
  t.is(receiver.received('/hook').length, 5, 'nothing sent twice');
});

/** Asks url/readyz until it answers `status` (every 200 ms, for at most a minute). */
async function readyzUntil(url: string, status: number): Promise<any> {
  for (let i = 0; ; i++) {
    const response = await fetch(`${url}/readyz`).catch(() => undefined);
    if (response?.status === status) return await response.json();
    if (i >= 300) throw new Error(`the relay's /readyz did not answer ${status} within a minute`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

test('the relay\'s /readyz fails while Postgres is down and recovers when it is back; /healthz stays up', async (t) => {
  const server = await restartablePostgres(t, { migrated: true });

  const metricsPort = await freePort();
  const relay = spawnRelay(server.url, { RELAY_METRICS_PORT: String(metricsPort) });
  relay.stdout!.resume();
  relay.stderr!.resume();
  t.teardown(() => void relay.kill('SIGKILL'));
  const url = `http://127.0.0.1:${metricsPort}`;
  t.deepEqual(await readyzUntil(url, 200), { status: 'ready', migration: EXPECTED_MIGRATION });

  await server.stop();
  const down = await readyzUntil(url, 503);
  t.is(down.status, 'unavailable');
  t.regex(down.reason, /^database: /);
  t.is((await fetch(`${url}/healthz`)).status, 200);
  t.is(relay.exitCode, null, 'the relay waits for the database, it does not exit');

  await server.start();
  t.deepEqual(await readyzUntil(url, 200), { status: 'ready', migration: EXPECTED_MIGRATION });
});

test('Postgres restarted while the relay sleeps (no poll to fall back on): it sleeps again, and a change after the restart wakes it at once; a few log lines for the outage', async (t) => {
  const server = await restartablePostgres(t, { migrated: true });
  const pool = server.pool();
  const receiver = await startReceiver();
  t.teardown(() => receiver.close());
  const f = factories(pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret });

  const { log, lines } = rememberedLog(5_000);
  const relay = testRelay(server.url, { RELAY_POLL_INTERVAL_MS: String(60 * 60 * 1000) }, { log });
  t.teardown(() => relay.stop());
  await relay.start();
  await relayAsleepInProcess(relay, pool);

  const before = lines().length;
  await server.stop();
  // down long enough for the reconnect backoff to reach its cap
  await new Promise((resolve) => setTimeout(resolve, 5_000));
  await server.start();
  const back = performance.now();
  await relayAsleepInProcess(relay, pool, 20_000);
  t.log(`asleep again ${Math.round(performance.now() - back)} ms after the restart`);
  const outage = lines().slice(before).map((line) => JSON.parse(line))
    .filter((line) => line.level >= 40);
  t.log(`${outage.length} warn/error lines for the outage`);
  t.true(outage.length <= 20, JSON.stringify(outage.map((line) => line.msg)));

  const captured = performance.now();
  await f.contact(company.id, { first_name: 'After' });
  const [request] = await receiver.waitFor(1, { path: '/hook', timeoutMs: 5_000 });
  t.log(`delivered ${Math.round(performance.now() - captured)} ms after the capture`);
  t.is(JSON.parse(request!.body).data.contact.first_name, 'After');
  await waitForFinalDeliveries(pool, [webhook.id], 1);
});

test('Postgres down for seconds under a relay that polls often: its failed claims say so once, and once when it claims again', async (t) => {
  const server = await restartablePostgres(t, { migrated: true });
  const pool = server.pool();
  const receiver = await startReceiver();
  t.teardown(() => receiver.close());
  const f = factories(pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret });
  const { log, lines } = rememberedLog(5_000);
  const relay = testRelay(server.url, {}, { log });   // a poll each 50 ms
  t.teardown(() => relay.stop());
  await relay.start();

  await server.stop();
  await new Promise((resolve) => setTimeout(resolve, 3_000));
  await server.start();
  await f.contact(company.id);
  await waitForFinalDeliveries(pool, [webhook.id], 1);
  const said = lines().map((line) => JSON.parse(line).msg as string);
  t.is(said.filter((msg) => msg === 'claim failed; will try again').length, 1, JSON.stringify(said));
  t.is(said.filter((msg) => msg === 'claiming again after errors').length, 1);
});

test('Postgres crashed (immediate shutdown, crash recovery) while the relay holds a claim: nothing lost, it comes back and listens again; only the request in flight may go twice', async (t) => {
  const server = await restartablePostgres(t, { migrated: true, crashSafe: true });
  const pool = server.pool();
  const receiver = await startReceiver();
  t.teardown(() => receiver.close());
  const f = factories(pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret });
  // no poll to fall back on: after the crash only a LISTEN made again wakes it
  const relay = testRelay(server.url, { RELAY_POLL_INTERVAL_MS: String(60 * 60 * 1000) });
  t.teardown(() => relay.stop());
  await relay.start();
  await f.contact(company.id, { first_name: 'Before' });
  await receiver.waitFor(1, { path: '/hook' });
  await waitForFinalDeliveries(pool, [webhook.id], 1);

  // claimed and sent; the receiver answers while the server is down, so its settle is
  // in flight across the crash
  let answer!: () => void;
  receiver.route('/hook', {
    secret: webhook.secret,
    replies: [{ status: 200, after: new Promise<void>((resolve) => (answer = resolve)) }],
    otherwise: 200,
  });
  await f.contact(company.id, { first_name: 'In flight' });
  await receiver.waitFor(2, { path: '/hook' });
  await server.crash();
  answer();
  // written at once after recovery, before the relay is back
  await f.contact(company.id, { first_name: 'After crash' });

  await relayAsleepInProcess(relay, pool, 30_000);
  await f.contact(company.id, { first_name: 'Woken' });
  const deliveries = await waitForFinalDeliveries(pool, [webhook.id], 4, 30_000);
  t.is(deliveries.length, 4);
  t.true(deliveries.every((d) => d.state === 'succeeded'), JSON.stringify(deliveries));

  const requests = receiver.received('/hook');
  const names = requests.map((r) => JSON.parse(r.body).data.contact.first_name as string);
  t.true(requests.every((r) => r.verified));
  for (const name of ['Before', 'After crash', 'Woken']) t.is(names.filter((n) => n === name).length, 1, `${name}: ${names}`);
  // at least once: the request in flight may go again (its lease or result lost with
  // the server), always under the same webhook-id
  const inFlight = requests.filter((r) => JSON.parse(r.body).data.contact.first_name === 'In flight');
  t.true(inFlight.length >= 1 && inFlight.length <= 2, names.join());
  t.is(new Set(inFlight.map((r) => r.headers['webhook-id'])).size, 1);
  t.log(`the request in flight was sent ${inFlight.length} time(s)`);

  // its history: one attempt, or (its claim lost with the server: the relay's commits
  // are not waited for) one result recorded as late beside the other's
  const { rows: attempts } = await pool.query(
    `select a.attempt, a.status_code, a.error from webhooks.delivery_attempts a
     join webhooks.deliveries d on d.id = a.delivery_id
     where d.webhook_id = $1 and d.payload->'data'->'contact'->>'first_name' = 'In flight' order by a.id`,
    [webhook.id],
  );
  if (inFlight.length === 1) t.deepEqual(attempts, [{ attempt: 1, status_code: 200, error: null }]);
  else {
    t.deepEqual(attempts.sort((a, b) => (a.error ?? '').localeCompare(b.error ?? '')), [
      { attempt: 1, status_code: 200, error: null },
      { attempt: 1, status_code: 200, error: 'late (its lease had run out; the delivery is unchanged)' },
    ]);
  }
  const { rows: others } = await pool.query(
    `select count(*)::int as n from webhooks.delivery_attempts a join webhooks.deliveries d on d.id = a.delivery_id
     where d.webhook_id = $1 and d.payload->'data'->'contact'->>'first_name' <> 'In flight'`,
    [webhook.id],
  );
  t.is(others[0].n, 3, 'one attempt each for the others');
});
