// The circuit breaker: after a run of failed attempts a webhook's deliveries wait
// behind it, and its endpoint gets one probe at growing intervals instead of every
// delivery's own retries. Held deliveries are not attempted and not charged an
// attempt. Once a probe succeeds, the rest go.
import test from 'ava';
import { relayScene, testRelay, waitForFinalDeliveries, waitForRows } from '../helpers/relay.ts';
import { until } from '../helpers/until.ts';

const PROBE_INTERVAL_MS = 300;
// enough that some wait behind the breaker untried however many go before it opens
const CONTACTS = 16;

test('a failing endpoint costs one probe per growing interval; its deliveries go once it recovers', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  await database.pool.query(`alter database ${database.name} set webhooks.breaker_after = 3`);
  await database.pool.query(`alter database ${database.name} set webhooks.breaker_probe_interval = '${PROBE_INTERVAL_MS} milliseconds'`);
  await database.pool.query(`alter database ${database.name} set webhooks.breaker_probe_max_interval = '${4 * PROBE_INTERVAL_MS} milliseconds'`);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/down') });
  // one request at a time, so that the order of attempts is the order of results
  await database.pool.query('update webhooks.webhooks set max_in_flight = 1 where id = $1', [webhook.id]);
  receiver.route('/down', { secret: webhook.secret, otherwise: 500 });
  for (let i = 0; i < CONTACTS; i++) await f.contact(company.id);

  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();

  // three failures open the breaker. How many requests went before it opened depends
  // on the machine: a request's slot is free once its response is in, before its
  // result is written (results wait up to SETTLE_GATHER_MS to be written together),
  // so a few more go while the results that open the breaker wait, and while the
  // settle that opens it runs: its wait (open_until) counts from the settle's start,
  // but claims see the breaker open only once it commits (a CI run sent four requests
  // 18 to 78 ms after that start). So the attempts judged are those sent after the
  // test saw the breaker open (seen_at, the database's clock, as attempted_at is).
  const [opened] = await waitForRows<{ failures: number; probes: number; opened_at: Date; seen_at: Date }>(database.pool,
    `select failures, probes, open_until - interval '${PROBE_INTERVAL_MS} milliseconds' as opened_at, clock_timestamp() as seen_at
     from webhooks_private.lanes where webhook_id = $1 and open_until is not null`,
    [webhook.id], (rows) => rows.length === 1);
  t.true(opened!.failures >= 3, `${opened!.failures} failures in a row opened it`);
  t.is(opened!.probes, 0, 'seen open before its first probe');
  const openedAt = opened!.opened_at.getTime();

  // then probes, one per interval, each interval twice the one before up to the cap:
  // 300 ms after it opened, then 600, 1200, 1200 ms between probes. The first four
  // probes are judged, by when the relay sent each (the attempt rows' attempted_at).
  // A probe is claimed no earlier than its interval after the claim of the one
  // before; a busy machine can only delay a send after its claim, which shortens the
  // next gap by that delay: the span of the three gaps must hold within that, and
  // each gap stay at least one interval (half the shortest wanted: a send delayed by
  // a busy machine took one from 600 to 390 ms; a probe that did not wait would
  // follow the one before within milliseconds). (Seen open late, past the first
  // probe, the probes judged start at the second: the same checks hold for them.)
  // One request leased before the breaker opened (max_in_flight = 1 leaves at most
  // one) may be sent after the test saw it open, late on a busy machine (a fresh-clone
  // run sent it 268 ms after the breaker's start, 92 ms before the first probe). So the
  // first attempt judged is that one if it went before three quarters of the first
  // wait, or if another follows it within half an interval; the probes are the four
  // after it. Only the first may be passed over so: a second early attempt is an early
  // probe, and fails the test below.
  const attempts = await waitForRows<{ attempted_at: Date }>(
    database.pool,
    'select attempted_at from webhooks.delivery_attempts where webhook_id = $1 and attempted_at >= $2 order by attempted_at',
    [webhook.id, opened!.seen_at],
    (rows) => rows.length >= 5,
  );
  const sentAt = attempts.map((r) => r.attempted_at.getTime());
  const leasedBefore = sentAt[0]! - openedAt < PROBE_INTERVAL_MS * 0.75 || sentAt[1]! - sentAt[0]! < PROBE_INTERVAL_MS / 2 ? 1 : 0;
  const probes = sentAt.slice(leasedBefore, leasedBefore + 4);
  const gaps = probes.slice(1).map((at, i) => at - probes[i]!);
  // the figures go in the message, so that a failure's log holds them
  const seen = `seen open ${opened!.seen_at.getTime() - openedAt} ms and attempts sent ${sentAt.map((at) => at - openedAt).join(', ')} ms after the breaker opened; ` +
    `${leasedBefore ? 'the first passed over as leased before; ' : ''}probe gaps ${gaps.join(', ')} ms`;
  t.log(seen);
  t.true(probes[0]! - openedAt >= PROBE_INTERVAL_MS * 0.75, `the first probe waited its interval: ${seen}`);
  const span = probes.at(-1)! - probes[0]!;
  const wanted = (2 + 4 + 4) * PROBE_INTERVAL_MS;
  t.true(span >= wanted * 0.85, `the three probe gaps span ${span} ms, wanted ${wanted}`);
  gaps.forEach((gap, i) => t.true(gap >= PROBE_INTERVAL_MS, `probe gap ${i + 1}: ${gap} ms`));
  const { rows: lane } = await database.pool.query('select open_until is not null as open from webhooks_private.lanes where webhook_id = $1', [webhook.id]);
  t.true(lane[0].open, 'the breaker is still open');

  // the history stays truthful: one attempt row per request, and the deliveries the
  // breaker held were never attempted
  const { rows: before } = await database.pool.query(
    `select (select count(*)::int from webhooks.delivery_attempts where webhook_id = $1) as attempt_rows,
            (select sum(attempts)::int from webhooks.deliveries where webhook_id = $1) as charged,
            (select count(*)::int from webhooks.deliveries where webhook_id = $1 and attempts = 0) as untouched`,
    [webhook.id],
  );
  const sent = receiver.received('/down').length;
  t.true(before[0].attempt_rows <= sent && before[0].attempt_rows >= sent - 1, 'an attempt row for each request (the last may be on its way)');
  t.true(before[0].charged <= sent, 'no delivery was charged an attempt it did not make');
  t.true(before[0].untouched >= 1, 'deliveries waited behind the breaker untried');

  // the endpoint recovers: the next probe succeeds and everything goes
  receiver.route('/down', { otherwise: 200 });
  const deliveries = await waitForFinalDeliveries(database.pool, [webhook.id], CONTACTS, 30_000);
  t.true(deliveries.every((d) => d.state === 'succeeded'));
  const { rows: history } = await database.pool.query(
    `select d.attempts, (select count(*)::int from webhooks.delivery_attempts a where a.delivery_id = d.id) as rows
     from webhooks.deliveries d where d.webhook_id = $1`,
    [webhook.id],
  );
  t.true(history.every((h) => h.attempts === h.rows), 'each delivery\'s attempt count is its history');
  t.is(history.reduce((sum, h) => sum + h.attempts, 0), receiver.received('/down').length, 'one attempt per request');
  await waitForRows(
    database.pool,
    'select failures, open_until, probes from webhooks_private.lanes where webhook_id = $1',
    [webhook.id],
    (rows) => rows[0].failures === 0 && rows[0].open_until === null && rows[0].probes === 0,
  );
  t.pass();
});

test('a probe that hangs lets no second probe through, however short the probe interval', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  await database.pool.query(`alter database ${database.name} set webhooks.breaker_after = 2`);
  // waits far shorter than the request timeout (the settings allow 0 s)
  await database.pool.query(`alter database ${database.name} set webhooks.breaker_probe_interval = '50 milliseconds'`);
  await database.pool.query(`alter database ${database.name} set webhooks.breaker_probe_max_interval = '50 milliseconds'`);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/down') });
  // one request at a time until the breaker opens
  await database.pool.query('update webhooks.webhooks set max_in_flight = 1 where id = $1', [webhook.id]);
  // two quick failures open the breaker; every request after them hangs
  receiver.route('/down', { secret: webhook.secret, replies: [500, 500], otherwise: 'hang' });
  for (let i = 0; i < 8; i++) await f.contact(company.id);

  const relay = testRelay(database.url, { RELAY_REQUEST_TIMEOUT_MS: '1500', RELAY_LEASE_MS: '5000' });
  t.teardown(() => relay.stop());
  await relay.start();
  await waitForRows(database.pool, 'select 1 from webhooks_private.lanes where webhook_id = $1 and open_until is not null',
    [webhook.id], (rows) => rows.length === 1);
  // open: room for a second request beside a probe that hangs, were it let through
  await database.pool.query('update webhooks.webhooks set max_in_flight = 2 where id = $1', [webhook.id]);
  const before = receiver.received('/down').length;

  // two probes: each went once every request before it had ended (timed out)
  const probes = (await receiver.waitFor(before + 2, { path: '/down' })).slice(before);
  t.deepEqual(probes.map((r) => r.concurrent), [1, 1], `requests to the endpoint at once: ${probes.map((r) => r.concurrent).join(', ')}`);
  const { rows: [lane] } = await database.pool.query('select probes, open_until is not null as open from webhooks_private.lanes where webhook_id = $1', [webhook.id]);
  t.true(lane.open && lane.probes >= 2, JSON.stringify(lane));
});

// The breaker guards an endpoint: a webhook given a new URL starts with a closed one.
// Until 2026-12-07 its deliveries still waited for the probe the old URL's failures had
// put off (up to breaker_probe_max_interval, an hour), and those failures counted
// towards disabling it (auto_disable_after from the first of them).
test('a URL changed while the breaker is open: the held deliveries go to the new URL at once, the failures of the old forgotten', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  await database.pool.query(`alter database ${database.name} set webhooks.breaker_after = 2`);
  await database.pool.query(`alter database ${database.name} set webhooks.breaker_probe_interval = '1 hour'`);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/down') });
  await database.pool.query('update webhooks.webhooks set max_in_flight = 1 where id = $1', [webhook.id]);
  receiver.route('/down', { secret: webhook.secret, otherwise: 500 });
  receiver.route('/up', { secret: webhook.secret });
  for (let i = 0; i < 6; i++) await f.contact(company.id);

  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  await waitForRows(database.pool, 'select 1 from webhooks_private.lanes where webhook_id = $1 and open_until is not null',
    [webhook.id], (rows) => rows.length === 1);
  // (no attempt to the old URL left to settle after the change: none in flight)
  await waitForRows(database.pool, `select 1 from webhooks.deliveries where webhook_id = $1 and state = 'in_flight'`,
    [webhook.id], (rows) => rows.length === 0);
  await database.pool.query('update webhooks.webhooks set url = $2 where id = $1', [webhook.id, receiver.url('/up')]);
  const { rows: [lane] } = await database.pool.query(
    'select failures, failing_since, open_until, probes from webhooks_private.lanes where webhook_id = $1', [webhook.id]);
  t.deepEqual(lane, { failures: 0, failing_since: null, open_until: null, probes: 0 });

  const deliveries = await waitForFinalDeliveries(database.pool, [webhook.id], 6, 20_000);
  t.true(deliveries.every((d) => d.state === 'succeeded'), JSON.stringify(deliveries.map((d) => [d.state, d.attempts])));
  t.is(receiver.received('/up').length, 6);
});

// A request to the old URL still on its way when the URL changes was the old endpoint's:
// its failure is the delivery's (an attempt made, recorded and charged) but not the new
// URL's. Until 2026-12-07 it counted as the new URL's first failure in a row (its
// breaker, and auto_disable_after from then), and a 410 Gone from the old URL disabled
// the webhook and failed the delivery, which the new URL had never been asked for.
for (const status of [500, 410]) {
  test(`a request to the old URL answered ${status} after the URL changed: recorded as the delivery's attempt, not counted against the new URL`, async (t) => {
    // (the retry waits: nothing goes to the new URL while the test looks)
    const { database, receiver, f, company } = await relayScene(t, { retryBase: '1 hour' });
    const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/old') });
    let answer!: () => void;
    const held = new Promise<void>((resolve) => (answer = resolve));
    receiver.route('/old', { secret: webhook.secret, replies: [{ status, after: held }] });
    const contact = await f.contact(company.id);

    const relay = testRelay(database.url);
    t.teardown(() => relay.stop());
    await relay.start();
    await receiver.waitFor(1, { path: '/old' });
    await database.pool.query('update webhooks.webhooks set url = $2 where id = $1', [webhook.id, receiver.url('/new')]);
    answer();

    const [attempt] = await waitForRows(database.pool,
      'select attempt, status_code from webhooks.delivery_attempts where webhook_id = $1', [webhook.id],
      (rows) => rows.length === 1);
    t.deepEqual(attempt, { attempt: 1, status_code: status });
    const { rows: [delivery] } = await database.pool.query(
      'select state, attempts from webhooks.deliveries where webhook_id = $1 and contact_id = $2', [webhook.id, contact.id]);
    t.deepEqual(delivery, { state: 'pending', attempts: 1 }, 'retried, to the new URL');
    const { rows: [lane] } = await database.pool.query(
      'select failures, failing_since, open_until from webhooks_private.lanes where webhook_id = $1', [webhook.id]);
    t.deepEqual(lane, { failures: 0, failing_since: null, open_until: null });
    const { rows: [row] } = await database.pool.query('select enabled, disabled_reason from webhooks.webhooks where id = $1', [webhook.id]);
    t.deepEqual(row, { enabled: true, disabled_reason: null });
    t.is(receiver.received('/new').length, 0);
  });
}

// A success of the old URL, settled after the new URL has failed, is the old endpoint's
// too: the delivery succeeded (it was delivered), but the new URL's failures in a row,
// and since when, stand. Until 2026-12-07 it cleared them: the breaker opened later
// than it should, and auto_disable_after counted from the new URL's next failure.
test('a request to the old URL answered 200 after the new URL failed: the delivery succeeded, the new URL keeps its failures in a row', async (t) => {
  // (the new URL's failure waits for its retry: nothing else settles while the test looks)
  const { database, receiver, f, company } = await relayScene(t, { retryBase: '1 hour' });
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/old') });
  let answer!: () => void;
  const held = new Promise<void>((resolve) => (answer = resolve));
  receiver.route('/old', { secret: webhook.secret, replies: [{ status: 200, after: held }] });
  receiver.route('/new', { secret: webhook.secret, otherwise: 500 });
  const first = await f.contact(company.id);

  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  await receiver.waitFor(1, { path: '/old' });
  await database.pool.query('update webhooks.webhooks set url = $2 where id = $1', [webhook.id, receiver.url('/new')]);
  const second = await f.contact(company.id);
  const [failing] = await waitForRows(database.pool,
    'select failures, failing_since from webhooks_private.lanes where webhook_id = $1', [webhook.id],
    (rows) => rows[0]?.failures === 1);
  answer();

  await waitForRows(database.pool,
    `select 1 from webhooks.deliveries where webhook_id = $1 and contact_id = $2 and state = 'succeeded'`,
    [webhook.id, first.id], (rows) => rows.length === 1);
  const { rows: attempts } = await database.pool.query(
    'select contact_id, a.status_code from webhooks.delivery_attempts a join webhooks.deliveries d on d.id = a.delivery_id where a.webhook_id = $1 order by contact_id',
    [webhook.id]);
  t.deepEqual(attempts, [{ contact_id: first.id, status_code: 200 }, { contact_id: second.id, status_code: 500 }]);
  const { rows: [lane] } = await database.pool.query(
    'select failures, failing_since from webhooks_private.lanes where webhook_id = $1', [webhook.id]);
  t.deepEqual(lane, failing, 'the failures in a row of the new URL, and since when');
  t.is(receiver.received('/new').length, 1);
});

// A success of the old URL that the relay settles before it hears the webhook_changed
// notice (a few milliseconds after the commit; longer while its listening connection is
// down): the relay cannot tell the settle the URL changed. The delivery was delivered,
// to the URL the webhook had when the request went: it succeeded, its history says the
// attempt's 200 (no URL: an attempt records none), and it is not sent again to the new
// URL, whose receiver never asked for it twice. Only the next deliveries go there.
test('a request to the old URL answered 200, settled before the relay heard of the change: succeeded, not sent again to the new URL', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/old') });
  let answer!: () => void;
  const held = new Promise<void>((resolve) => (answer = resolve));
  receiver.route('/old', { secret: webhook.secret, replies: [{ status: 200, after: held }] });
  receiver.route('/new', { secret: webhook.secret, otherwise: 200 });
  const first = await f.contact(company.id);

  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  // the notices of webhook changes held back until the settle is written (relay.start()
  // resolves once the relay LISTENs: the update's notice, committed after, reaches it;
  // it resolved before, and a loaded run's update could commit first, heard by none)
  const heard = relay as unknown as { webhookChanged(id: string): void };
  const hear = heard.webhookChanged.bind(relay);
  const notices: string[] = [];
  heard.webhookChanged = (id) => void notices.push(id);
  await relay.start();
  await receiver.waitFor(1, { path: '/old' });
  await database.pool.query('update webhooks.webhooks set url = $2 where id = $1', [webhook.id, receiver.url('/new')]);
  await until('the notice came, held back', async () => notices.includes(webhook.id));
  answer();
  await waitForRows(database.pool,
    `select 1 from webhooks.deliveries where webhook_id = $1 and contact_id = $2 and state = 'succeeded'`,
    [webhook.id, first.id], (rows) => rows.length === 1);
  for (const id of notices.splice(0)) hear(id);
  heard.webhookChanged = hear;

  const second = await f.contact(company.id);
  await waitForFinalDeliveries(database.pool, [webhook.id], 2);
  const { rows: history } = await database.pool.query(
    `select d.contact_id, d.state, d.attempts, array_agg(a.status_code order by a.attempt) as codes
     from webhooks.deliveries d join webhooks.delivery_attempts a on a.delivery_id = d.id
     where d.webhook_id = $1 group by d.id, d.contact_id, d.state, d.attempts order by d.id`, [webhook.id]);
  t.deepEqual(history, [
    { contact_id: first.id, state: 'succeeded', attempts: 1, codes: [200] },
    { contact_id: second.id, state: 'succeeded', attempts: 1, codes: [200] },
  ]);
  t.is(receiver.received('/old').length, 1);
  t.deepEqual(receiver.received('/new').map((r) => JSON.parse(r.body).data.contact.id), [Number(second.id)],
    'the new URL gets the next delivery alone');
});
