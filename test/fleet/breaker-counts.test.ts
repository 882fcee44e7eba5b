// The breaker's counters after years of failures: a webhook may fail for up to
// webhooks.auto_disable_after (365 days at most) before it is disabled, and with
// probe intervals of 0 s its breaker holds nothing back, so its failures in a row
// (and its probes) count every attempt: 2^31 - 1 of them come in 25 days at 1,000
// failed attempts a second. The lane's integer counters stop at their largest value
// rather than fail the settle (or the claim) that would pass it; and the breaker's
// wait, doubled 30 times, stops at its longest rather than overflow an interval.
import test from 'ava';
import { relayScene, testRelay, waitForRows } from '../helpers/relay.ts';

const INT_MAX = 2_147_483_647;

test('a failure past 2^31 - 1 failures in a row is written; the count stays at its largest', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/down') });
  receiver.route('/down', { secret: webhook.secret, otherwise: 500 });
  // failing for ever, the breaker closed (as a probe interval of 0 s leaves it)
  await database.pool.query(
    `update webhooks_private.lanes set failures = $2, failing_since = now() - interval '300 days' where webhook_id = $1`,
    [webhook.id, INT_MAX]);
  await f.contact(company.id);

  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();

  const [attempt] = await waitForRows<{ attempt: number; status_code: number }>(database.pool,
    'select attempt, status_code from webhooks.delivery_attempts where webhook_id = $1', [webhook.id],
    (rows) => rows.length >= 1, 10_000);
  t.is(attempt!.status_code, 500);
  const { rows: [lane] } = await database.pool.query(
    'select failures, open_until is not null as open from webhooks_private.lanes where webhook_id = $1', [webhook.id]);
  t.deepEqual(lane, { failures: INT_MAX, open: true });
});

test('a probe past 2^31 - 1 probes is claimed and sent; the count stays at its largest', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/down') });
  receiver.route('/down', { secret: webhook.secret, otherwise: 500 });
  // open, its next probe due now, after 2^31 - 1 probes
  await database.pool.query(
    `update webhooks_private.lanes
     set failures = 1000, failing_since = now() - interval '300 days', open_until = now() - interval '1 second', probes = $2
     where webhook_id = $1`,
    [webhook.id, INT_MAX]);
  await f.contact(company.id);

  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();

  await receiver.waitFor(1, { path: '/down', timeoutMs: 10_000 });
  await waitForRows(database.pool, 'select 1 from webhooks.delivery_attempts where webhook_id = $1', [webhook.id],
    (rows) => rows.length === 1, 10_000);
  const { rows: [lane] } = await database.pool.query(
    'select probes, open_until > now() as open from webhooks_private.lanes where webhook_id = $1', [webhook.id]);
  t.deepEqual(lane, { probes: INT_MAX, open: true });
});

test('a probe after 30 doublings of an interval of hours is claimed and sent; its wait is the longest allowed', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  // within the settings' bounds (1 day, 7 days): 3 hours * 2^30 is past what an interval holds
  await database.pool.query(`alter database ${database.name} set webhooks.breaker_probe_interval = '3 hours'`);
  await database.pool.query(`alter database ${database.name} set webhooks.breaker_probe_max_interval = '7 days'`);
  await database.pool.query(`alter database ${database.name} set webhooks.auto_disable_after = '365 days'`);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/down') });
  receiver.route('/down', { secret: webhook.secret, otherwise: 500 });
  // open for half a year, its 40th probe due now
  await database.pool.query(
    `update webhooks_private.lanes
     set failures = 1000, failing_since = now() - interval '180 days', open_until = now() - interval '1 second', probes = 40
     where webhook_id = $1`,
    [webhook.id]);
  await f.contact(company.id);

  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();

  await receiver.waitFor(1, { path: '/down', timeoutMs: 10_000 });
  const { rows: [lane] } = await database.pool.query(
    `select probes, open_until - now() between interval '6 days 23 hours' and interval '7 days' as waits_the_most
     from webhooks_private.lanes where webhook_id = $1`, [webhook.id]);
  t.deepEqual(lane, { probes: 41, waits_the_most: true });
});
