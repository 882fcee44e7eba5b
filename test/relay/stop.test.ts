// SIGTERM: the relay stops claiming, lets the requests it holds finish, writes their
// results, and exits 0. Nothing is left in flight (leased to the stopped relay).
import test from 'ava';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { relayScene, spawnRelay } from '../helpers/relay.ts';

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
