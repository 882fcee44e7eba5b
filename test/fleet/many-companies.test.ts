// Many companies, few slots each: a company's share of the relay's request slots,
// (slots − slots/8) ÷ companies with work, falls below one when more companies have
// work than the relay has slots to share. A company that holds nothing at the relay
// still gets one delivery while the relay has a free slot: else every newcomer waited
// for some company's hanging request to time out (the relay's default 512 slots: once
// 449 companies had work).
import test, { type ExecutionContext } from 'ava';
import type { Reply } from '../helpers/receiver.ts';
import { relayScene, testRelay, waitForFinalDeliveries } from '../helpers/relay.ts';

const SLOTS = 8; // 7 to share, 1 kept free for a company that has nothing yet

// Endpoints that hang answer only once the test is over, and the relay's request
// timeout is longer than any wait of the test: a delivery that arrives while they
// hang did not wait for one of them to time out, however slow the machine. (Bounds of
// a second on the wait, with the hanging requests ended after 5 s, failed under load.)
const REQUEST_TIMEOUT_MS = '50000';   // (under the relay's lease, 60 s)

/**
 * An answer for endpoints that hang until the test ends: the relay's requests to them
 * are answered then (before the relay stops: teardowns run last first), so that its
 * stop does not wait out their timeout.
 */
function hangingUntilTheEnd(t: Pick<ExecutionContext, 'teardown'>): Reply {
  let release = () => {};
  const released = new Promise<void>((resolve) => { release = resolve; });
  t.teardown(() => release());
  return { status: 200, after: released };
}

test('companies whose endpoints hang hold all but the kept slot: another company\'s delivery still goes while they hang', async (t) => {
  const { database, receiver, f } = await relayScene(t);
  const relay = testRelay(database.url, { RELAY_MAX_IN_FLIGHT: String(SLOTS), RELAY_REQUEST_TIMEOUT_MS: REQUEST_TIMEOUT_MS });
  t.teardown(() => relay.stop());
  await relay.start();
  const hang = hangingUntilTheEnd(t);

  // one company after another, each one delivery to an endpoint that does not answer
  const hanging = SLOTS - SLOTS / 8;
  const hangingPaths = Array.from({ length: hanging }, (_, i) => `/hang-${i}`);
  for (const path of hangingPaths) {
    const company = await f.company();
    await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.route(path, { otherwise: hang }) });
    await f.contact(company.id);
    await receiver.waitFor(1, { path, timeoutMs: 30_000 });
  }

  const newcomer = await f.company();
  const webhook = await f.webhook({ companyId: newcomer.id, actions: ['contact.created'], url: receiver.url('/newcomer') });
  receiver.route('/newcomer', { secret: webhook.secret });
  const written = performance.timeOrigin + performance.now();
  await f.contact(newcomer.id);
  const [request] = await receiver.waitFor(1, { path: '/newcomer', timeoutMs: 30_000 });
  t.log(`the newcomer's delivery arrived after ${Math.round(request!.receivedAt - written)} ms beside ${hanging} hanging requests of ${hanging} companies`);
  t.true(request!.verified);
  t.deepEqual(hangingPaths.map((path) => receiver.unanswered(path)), hangingPaths.map(() => 1),
    'every hanging request still held when the newcomer\'s arrived');
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
  const requests = await receiver.waitFor(companies, { path: '/hook', timeoutMs: 30_000 });
  t.is(new Set(requests.map((r) => r.headers['webhook-id'])).size, companies);
});

// A claim looks at no more lanes than its batch (RELAY_BATCH_SIZE, or the relay's
// room if less), those served longest ago first. A company at its share gets nothing
// from its turn; if it kept its place at the front, such companies would fill every
// claim's view, and a company served after them would wait behind them for as long
// as they hold their share (their endpoints hang: the request timeout).
test('companies at their share hold no claim\'s view: a company served after them still gets its next delivery while they hang', async (t) => {
  const { database, receiver, f } = await relayScene(t);
  const relay = testRelay(database.url, {
    RELAY_MAX_IN_FLIGHT: String(SLOTS), RELAY_BATCH_SIZE: '2', RELAY_REQUEST_TIMEOUT_MS: REQUEST_TIMEOUT_MS,
  });
  t.teardown(() => relay.stop());
  await relay.start();
  const hang = hangingUntilTheEnd(t);

  // two companies whose endpoints hang, with more deliveries than their share
  const noisy = [await f.company(), await f.company()];
  for (const [i, company] of noisy.entries()) {
    await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.route(`/hang-${i}`, { otherwise: hang }) });
  }
  for (const company of noisy) {
    await database.pool.query(
      `insert into crm.contacts (company_id, first_name) select $1, 'Noisy ' || n from generate_series(1, 10) n`,
      [company.id],
    );
  }
  // each holds its share of the 7 slots shared between them: 3
  await receiver.waitFor(3, { path: '/hang-0', timeoutMs: 30_000 });
  await receiver.waitFor(3, { path: '/hang-1', timeoutMs: 30_000 });

  // a third company, served after them...
  const quiet = await f.company();
  const webhook = await f.webhook({ companyId: quiet.id, actions: ['contact.created'], url: receiver.url('/quiet') });
  receiver.route('/quiet', { secret: webhook.secret });
  await f.contact(quiet.id);
  await receiver.waitFor(1, { path: '/quiet', timeoutMs: 30_000 });
  await waitForFinalDeliveries(database.pool, [webhook.id], 1);

  // ...gets its next delivery while they still hang
  const written = performance.timeOrigin + performance.now();
  await f.contact(quiet.id);
  const [, request] = await receiver.waitFor(2, { path: '/quiet', timeoutMs: 30_000 });
  t.log(`the quiet company's second delivery arrived after ${Math.round(request!.receivedAt - written)} ms; the noisy companies' endpoints got ${receiver.received('/hang-0').length} and ${receiver.received('/hang-1').length} requests`);
  t.deepEqual([receiver.unanswered('/hang-0'), receiver.unanswered('/hang-1')], [3, 3],
    'the noisy companies\' requests, their share each, still held when the quiet company\'s second arrived');
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
