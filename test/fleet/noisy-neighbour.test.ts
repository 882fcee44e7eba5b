// One company's dead endpoints and deep backlog do not delay another company: at the
// relay's default settings, eight webhooks of one company pointing at a socket that
// never answers, with hundreds of deliveries each, fill their share of the relay's
// request slots and no more; a healthy webhook of another company is delivered as
// fast beside them as it was alone (its p99 within a second more).
import test from 'ava';
import { healthyLatencies } from '../helpers/latencies.ts';
import { relayScene, spawnRelay } from '../helpers/relay.ts';

const SILENT_WEBHOOKS = 8;
const BACKLOG_CONTACTS = 400; // × 8 webhooks: 3,200 deliveries waiting
const HEALTHY_CHANGES = 40;

test('a company with eight silent endpoints and a deep backlog delays another company by less than a second, p99', async (t) => {
  const { database, receiver, f, company: noisy } = await relayScene(t);
  const quiet = await f.company();
  for (let i = 0; i < SILENT_WEBHOOKS; i++) {
    const url = receiver.route(`/silent-${i}`, { otherwise: 'hang' });
    await f.webhook({ companyId: noisy.id, actions: ['contact.created'], url });
  }
  const healthy = await f.webhook({ companyId: quiet.id, actions: ['contact.created'], url: receiver.url('/healthy') });
  receiver.route('/healthy', { secret: healthy.secret, otherwise: 200 });

  // the relay at its defaults (256 requests in flight, 32 per webhook, 15 s timeout),
  // in a process of its own as in production
  const relay = spawnRelay(database.url);
  t.teardown(() => void relay.kill('SIGKILL'));
  // hanging requests end when the receiver drops them (teardowns run last first)
  t.teardown(() => receiver.close());

  // the relay is up once a first delivery has arrived
  await f.contact(quiet.id);
  await receiver.waitFor(1, { path: '/healthy', timeoutMs: 60_000 });
  // alone: the healthy company's latency on this machine, now
  const alone = await healthyLatencies({ database, receiver, f, companyId: quiet.id, webhookId: healthy.id, arrivedBefore: 1, changes: HEALTHY_CHANGES });

  // the noisy company's backlog; its silent endpoints hold requests...
  await database.pool.query(
    `insert into crm.contacts (company_id, first_name) select $1, 'Noisy ' || n from generate_series(1, $2::int) n`,
    [noisy.id, BACKLOG_CONTACTS],
  );
  const silentPaths = Array.from({ length: SILENT_WEBHOOKS }, (_, i) => `/silent-${i}`);
  await Promise.all(silentPaths.map((path) => receiver.waitFor(1, { path, timeoutMs: 60_000 })));
  const { rows: held } = await database.pool.query(
    `select count(*)::int as n from webhooks.deliveries where company_id = $1 and state = 'in_flight'`,
    [noisy.id],
  );
  t.true(held[0].n >= SILENT_WEBHOOKS);

  // ...while the healthy company's changes are written again
  const beside = await healthyLatencies({ database, receiver, f, companyId: quiet.id, webhookId: healthy.id, arrivedBefore: 1 + HEALTHY_CHANGES, changes: HEALTHY_CHANGES });
  const silentRequests = silentPaths.reduce((sum, path) => sum + receiver.received(path).length, 0);
  t.log(`the noisy company held ${held[0].n} deliveries in flight; its silent endpoints got ${silentRequests} requests, none answered`);
  t.log(`healthy company alone: p50 ${alone.p50.toFixed(0)} ms, p99 ${alone.p99.toFixed(0)} ms; beside the noisy one: p50 ${beside.p50.toFixed(0)} ms, p99 ${beside.p99.toFixed(0)} ms`);
  t.true(beside.p99 - alone.p99 < 1000, `p99 ${beside.p99.toFixed(0)} ms beside, ${alone.p99.toFixed(0)} ms alone: ${beside.all}`);
});
