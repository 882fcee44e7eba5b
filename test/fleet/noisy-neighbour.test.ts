// One company's dead endpoints and deep backlog do not delay another company: at the
// relay's default settings, eight webhooks of one company pointing at a socket that
// never answers, with hundreds of deliveries each, fill their share of the relay's
// request slots and no more; a healthy webhook of another company is delivered as
// fast beside them as it was alone (its p99 within a second more).
import test from 'ava';
import { healthyCompany } from '../helpers/latencies.ts';
import { relayScene } from '../helpers/relay.ts';

const SILENT_WEBHOOKS = 8;
const BACKLOG_CONTACTS = 400; // × 8 webhooks: 3,200 deliveries waiting
const HEALTHY_CHANGES = 40;

test('a company with eight silent endpoints and a deep backlog delays another company by less than a second, p99', async (t) => {
  const scene = await relayScene(t);
  const { database, receiver, f, company: noisy } = scene;
  for (let i = 0; i < SILENT_WEBHOOKS; i++) {
    const url = receiver.route(`/silent-${i}`, { otherwise: 'hang' });
    await f.webhook({ companyId: noisy.id, actions: ['contact.created'], url });
  }
  // the relay at its defaults (512 requests in flight, 32 per webhook, 15 s timeout);
  // alone: the healthy company's latency on this machine, now
  const healthy = await healthyCompany(t, scene, { changes: HEALTHY_CHANGES });
  const { alone } = healthy;

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
  const beside = await healthy.beside();
  const silentRequests = silentPaths.reduce((sum, path) => sum + receiver.received(path).length, 0);
  t.log(`the noisy company held ${held[0].n} deliveries in flight; its silent endpoints got ${silentRequests} requests, none answered`);
  t.log(`healthy company alone: p50 ${alone.p50.toFixed(0)} ms, p99 ${alone.p99.toFixed(0)} ms; beside the noisy one: p50 ${beside.p50.toFixed(0)} ms, p99 ${beside.p99.toFixed(0)} ms`);
  t.true(beside.p99 - alone.p99 < 1000, `p99 ${beside.p99.toFixed(0)} ms beside, ${alone.p99.toFixed(0)} ms alone: ${beside.all}`);
});

// The same with an ordered webhook: its requests to a silent endpoint in flight, and
// thousands of later updates of the same contacts held back behind them, which claims
// put off (put_off_held_back, sql/28_lanes.sql) a bounded number at a time.
const ORDERED_CONTACTS = 8; // fewer than the webhook's 32 requests: claims keep looking at it
const UPDATES_EACH = 500; // × 8 contacts: 4,000 deliveries held back

test('a company\'s ordered webhook with thousands of deliveries held back behind a silent endpoint delays another company by less than a second, p99', async (t) => {
  const scene = await relayScene(t);
  const { database, receiver, f, company: noisy } = scene;
  const url = receiver.route('/silent-ordered', { otherwise: 'hang' });
  const ordered = await f.webhook({ companyId: noisy.id, actions: ['contact.updated'], url });
  await database.pool.query(`select webhooks.set_webhook_delivery($1, null, true)`, [ordered.id]);
  await database.pool.query(
    `insert into crm.contacts (company_id, first_name) select $1, 'Noisy ' || n from generate_series(1, $2::int) n`,
    [noisy.id, ORDERED_CONTACTS],
  );
  const healthy = await healthyCompany(t, scene, { changes: HEALTHY_CHANGES });
  const { alone } = healthy;

  // a first update of each contact on its way, never answered...
  await database.pool.query(`update crm.contacts set city = 'Update 0' where company_id = $1`, [noisy.id]);
  await receiver.waitFor(ORDERED_CONTACTS, { path: '/silent-ordered', timeoutMs: 60_000 });
  // ...and hundreds more of each behind them
  await database.pool.query(
    `do $$ begin for i in 1..${UPDATES_EACH} loop
       update crm.contacts set city = 'Update ' || i where company_id = ${Number(noisy.id)};
     end loop; end $$`);

  const beside = await healthy.beside();
  const { rows: [queue] } = await database.pool.query(
    `select count(*) filter (where held_due is not null)::int as put_off, count(*)::int as waiting
     from webhooks.delivery_queue where webhook_id = $1`, [ordered.id]);
  t.log(`the ordered webhook: ${queue.waiting} deliveries waiting, ${queue.put_off} of them put off`);
  t.log(`healthy company alone: p50 ${alone.p50.toFixed(0)} ms, p99 ${alone.p99.toFixed(0)} ms; beside the noisy one: p50 ${beside.p50.toFixed(0)} ms, p99 ${beside.p99.toFixed(0)} ms`);
  t.true(queue.put_off > 0, 'the held-back deliveries were put off');
  t.true(beside.p99 - alone.p99 < 1000, `p99 ${beside.p99.toFixed(0)} ms beside, ${alone.p99.toFixed(0)} ms alone: ${beside.all}`);
});
