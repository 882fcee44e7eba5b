// Many companies, few slots each: a company's share of the relay's request slots,
// (slots − slots/8) ÷ companies with work, falls below one when more companies have
// work than the relay has slots to share. A company that holds nothing at the relay
// still gets one delivery while the relay has a free slot: else every newcomer waited
// for some company's hanging request to time out (the relay's default 512 slots: once
// 449 companies had work).
import test from 'ava';
import { relayScene, testRelay, waitForFinalDeliveries } from '../helpers/relay.ts';

const SLOTS = 8; // 7 to share, 1 kept free for a company that has nothing yet

test('companies whose endpoints hang hold all but the kept slot: another company\'s delivery still goes within a second', async (t) => {
  const { database, receiver, f } = await relayScene(t);
  // (hanging requests end after 5 s: well after the second the newcomer may wait)
  const relay = testRelay(database.url, { RELAY_MAX_IN_FLIGHT: String(SLOTS), RELAY_REQUEST_TIMEOUT_MS: '5000' });
  t.teardown(() => relay.stop());
  await relay.start();

  // one company after another, each one delivery to an endpoint that never answers
  const hanging = SLOTS - SLOTS / 8;
  for (let i = 0; i < hanging; i++) {
    const company = await f.company();
    await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.route(`/hang-${i}`, { otherwise: 'hang' }) });
    await f.contact(company.id);
    await receiver.waitFor(1, { path: `/hang-${i}`, timeoutMs: 10_000 });
  }

  const newcomer = await f.company();
  const webhook = await f.webhook({ companyId: newcomer.id, actions: ['contact.created'], url: receiver.url('/newcomer') });
  receiver.route('/newcomer', { secret: webhook.secret });
  const written = Date.now();
  await f.contact(newcomer.id);
  const [request] = await receiver.waitFor(1, { path: '/newcomer', timeoutMs: 10_000 });
  const waited = request!.receivedAt - written;
  t.log(`the newcomer's delivery arrived after ${waited} ms beside ${hanging} hanging requests of ${hanging} companies`);
  t.true(request!.verified);
  t.true(waited < 1000, `waited ${waited} ms`);
});

test('more companies with one delivery each than the relay has slots to share: every one is served', async (t) => {
  const { database, receiver, f } = await relayScene(t);
  const companies = SLOTS + 4;
  const webhooks: string[] = [];
  for (let i = 0; i < companies; i++) {
    const company = await f.company();
    const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
    webhooks.push(webhook.id);
    await f.contact(company.id);
  }
  const relay = testRelay(database.url, { RELAY_MAX_IN_FLIGHT: String(SLOTS) });
  t.teardown(() => relay.stop());
  await relay.start();
  const requests = await receiver.waitFor(companies, { path: '/hook', timeoutMs: 10_000 });
  t.is(new Set(requests.map((r) => r.headers['webhook-id'])).size, companies);
});

// A claim looks at no more lanes than its batch (RELAY_BATCH_SIZE, or the relay's
// room if less), those served longest ago first. A company at its share gets nothing
// from its turn; if it kept its place at the front, such companies would fill every
// claim's view, and a company served after them would wait behind them for as long
// as they hold their share (their endpoints hang: the request timeout).
test('companies at their share hold no claim\'s view: a company served after them still gets its next delivery within a second', async (t) => {
  const { database, receiver, f } = await relayScene(t);
  // (hanging requests end after 5 s: well after the second the other company may wait)
  const relay = testRelay(database.url, {
    RELAY_MAX_IN_FLIGHT: String(SLOTS), RELAY_BATCH_SIZE: '2', RELAY_REQUEST_TIMEOUT_MS: '5000',
  });
  t.teardown(() => relay.stop());
  await relay.start();

  // two companies whose endpoints hang, with more deliveries than their share
  const noisy = [await f.company(), await f.company()];
  for (const [i, company] of noisy.entries()) {
    await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.route(`/hang-${i}`, { otherwise: 'hang' }) });
  }
  for (const company of noisy) {
    await database.pool.query(
      `insert into crm.contacts (company_id, first_name) select $1, 'Noisy ' || n from generate_series(1, 10) n`,
      [company.id],
    );
  }
  // each holds its share of the 7 slots shared between them: 3
  await receiver.waitFor(3, { path: '/hang-0', timeoutMs: 10_000 });
  await receiver.waitFor(3, { path: '/hang-1', timeoutMs: 10_000 });

  // a third company, served after them...
  const quiet = await f.company();
  const webhook = await f.webhook({ companyId: quiet.id, actions: ['contact.created'], url: receiver.url('/quiet') });
  receiver.route('/quiet', { secret: webhook.secret });
  await f.contact(quiet.id);
  await receiver.waitFor(1, { path: '/quiet', timeoutMs: 10_000 });
  await waitForFinalDeliveries(database.pool, [webhook.id], 1);

  // ...gets its next delivery at once
  const written = Date.now();
  await f.contact(quiet.id);
  const [, request] = await receiver.waitFor(2, { path: '/quiet', timeoutMs: 10_000 });
  const waited = request!.receivedAt - written;
  t.log(`the quiet company's second delivery arrived after ${waited} ms; the noisy companies' endpoints got ${receiver.received('/hang-0').length} and ${receiver.received('/hang-1').length} requests`);
  t.true(waited < 1000, `waited ${waited} ms`);
});

// More companies with work than a discovery's window holds (eight batches, at least
// 256: sql/28_lanes.sql): each discovery of the relay's connections goes on where its
// last one stopped, so the relay comes round to every company, with no capture left
// to wake it once the first discoveries found work.
test('more companies with a delivery each than a discovery\'s window: the relay serves every one', async (t) => {
  const COMPANIES = 600;
  const { database, receiver } = await relayScene(t);
  await database.pool.query(
    `insert into crm.companies (name) select 'Many ' || n from generate_series(1, $1::int) n`, [COMPANIES]);
  await database.pool.query(
    `insert into webhooks.webhooks (company_id, name, url, fields, actions)
     select c.id, 'Hook', $1, '{first_name}', '{contact.created}' from crm.companies c where c.name like 'Many %'`,
    [receiver.url('/many')]);
  await database.pool.query(
    `insert into crm.contacts (company_id, first_name) select c.id, 'Contact' from crm.companies c where c.name like 'Many %'`);
  const relay = testRelay(database.url, { RELAY_BATCH_SIZE: '8' });
  t.teardown(() => relay.stop());
  await relay.start();
  const requests = await receiver.waitFor(COMPANIES, { path: '/many', timeoutMs: 60_000 });
  t.is(new Set(requests.map((r) => r.headers['webhook-id'])).size, COMPANIES);
});
