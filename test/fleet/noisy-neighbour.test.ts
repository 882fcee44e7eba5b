// One company's dead endpoints and deep backlog do not delay another company: at the
// relay's default settings, eight webhooks of one company pointing at a socket that
// never answers, with hundreds of deliveries each, fill their share of the relay's
// request slots and no more; a healthy webhook of another company is delivered at
// once all the while.
import test from 'ava';
import { relayScene, spawnRelay } from '../helpers/relay.ts';

const SILENT_WEBHOOKS = 8;
const BACKLOG_CONTACTS = 400; // × 8 webhooks: 3,200 deliveries waiting
const HEALTHY_CHANGES = 40;

test('a company with eight silent endpoints and a deep backlog does not delay another company: p99 under a second', async (t) => {
  const { database, receiver, f, company: noisy } = await relayScene(t);
  const quiet = await f.company();
  for (let i = 0; i < SILENT_WEBHOOKS; i++) {
    const url = receiver.route(`/silent-${i}`, { otherwise: 'hang' });
    await f.webhook({ companyId: noisy.id, actions: ['contact.created'], url });
  }
  const healthy = await f.webhook({ companyId: quiet.id, actions: ['contact.created'], url: receiver.url('/healthy') });
  receiver.route('/healthy', { secret: healthy.secret, otherwise: 200 });
  await database.pool.query(
    `insert into crm.contacts (company_id, first_name) select $1, 'Noisy ' || n from generate_series(1, $2::int) n`,
    [noisy.id, BACKLOG_CONTACTS],
  );

  // the relay at its defaults (256 requests in flight, 32 per webhook, 15 s timeout),
  // in a process of its own as in production
  const relay = spawnRelay(database.url);
  t.teardown(() => void relay.kill('SIGKILL'));

  // the silent endpoints hold requests...
  const silentPaths = Array.from({ length: SILENT_WEBHOOKS }, (_, i) => `/silent-${i}`);
  await Promise.all(silentPaths.map((path) => receiver.waitFor(1, { path })));
  const { rows: held } = await database.pool.query(
    `select count(*)::int as n from webhooks.deliveries where company_id = $1 and state = 'in_flight'`,
    [noisy.id],
  );
  t.log(`the noisy company holds ${held[0].n} deliveries in flight`);
  t.true(held[0].n >= SILENT_WEBHOOKS);

  // ...while the other company's changes are written one by one
  const committedAt = new Map<string, number>();
  for (let i = 0; i < HEALTHY_CHANGES; i++) {
    const contact = await f.contact(quiet.id);
    const committed = performance.timeOrigin + performance.now();
    const { rows } = await database.pool.query(
      'select message_id from webhooks.deliveries where webhook_id = $1 and contact_id = $2',
      [healthy.id, contact.id],
    );
    committedAt.set(rows[0].message_id, committed);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  const arrived = await receiver.waitFor(HEALTHY_CHANGES, { path: '/healthy', timeoutMs: 60_000 });

  const silentRequests = silentPaths.reduce((sum, path) => sum + receiver.received(path).length, 0);
  t.log(`the silent endpoints got ${silentRequests} requests, none answered`);
  t.true(arrived.every((r) => r.verified));
  const latencies = arrived
    .map((r) => r.receivedAt - committedAt.get(String(r.headers['webhook-id']))!)
    .sort((a, b) => a - b);
  const p99 = latencies[Math.ceil(latencies.length * 0.99) - 1]!;
  t.log(`healthy company: p50 ${latencies[Math.floor(latencies.length / 2)]!.toFixed(0)} ms, p99 ${p99.toFixed(0)} ms`);
  t.true(p99 < 1000, `p99 ${p99.toFixed(0)} ms: ${latencies.map((l) => l.toFixed(0)).join(' ')}`);
});
