// A webhook whose every attempt has failed for webhooks.auto_disable_after is
// disabled by the relay, with a reason the page shows; enabling it again starts clean.
import test from 'ava';
import { fileURLToPath } from 'node:url';
import { relayScene, spawnRelay, testRelay, waitForRows } from '../helpers/relay.ts';

test('every attempt failing for auto_disable_after disables the webhook (audited as "relay"); enabling it again starts clean', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  for (const [name, value] of [
    ['webhooks.auto_disable_after', '1 second'],
    ['webhooks.breaker_after', '2'],
    ['webhooks.breaker_probe_interval', '100 milliseconds'],
    ['webhooks.breaker_probe_max_interval', '200 milliseconds'],
  ]) {
    await database.pool.query(`alter database ${database.name} set ${name} = '${value}'`);
  }
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/gone-quiet') });
  receiver.route('/gone-quiet', { secret: webhook.secret, otherwise: { status: 503, body: 'maintenance' } });
  for (let i = 0; i < 3; i++) await f.contact(company.id);

  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();

  const [disabled] = await waitForRows(
    database.pool,
    'select enabled, disabled_at, disabled_by, disabled_reason from webhooks.webhooks where id = $1',
    [webhook.id],
    (rows) => rows[0].enabled === false,
  );
  t.is(disabled.disabled_by, 'relay');
  t.regex(disabled.disabled_reason, /^every attempt has failed for \S.* \(\d+ attempts since .+\); the last: HTTP 503$/);
  const { rows: firstFailure } = await database.pool.query(
    'select min(attempted_at) as at from webhooks.delivery_attempts where webhook_id = $1',
    [webhook.id],
  );
  t.true(disabled.disabled_at.getTime() - firstFailure[0].at.getTime() >= 1000, 'not before the span had passed');
  // the audit trail says the relay did it, and why
  const { rows: audit } = await database.pool.query(
    `select actor, action, details from webhooks.audit_log where webhook_id = $1 and action = 'webhook.disabled'`, [webhook.id]);
  t.deepEqual(audit, [{ actor: 'relay', action: 'webhook.disabled', details: { reason: disabled.disabled_reason } }]);

  // the report (what the page shows) carries the reason
  const { rows: report } = await database.pool.query(
    'select enabled, disabled_by, disabled_reason from webhooks.webhook_report() where webhook_id = $1',
    [webhook.id],
  );
  t.deepEqual(report[0], { enabled: false, disabled_by: 'relay', disabled_reason: disabled.disabled_reason });

  // enabled again: the breaker starts clean, and the next delivery goes at once
  receiver.route('/gone-quiet', { otherwise: 200 });
  await database.pool.query('select webhooks.enable_webhook($1)', [webhook.id]);
  const { rows: lane } = await database.pool.query(
    'select failures, failing_since, open_until, probes from webhooks_private.lanes where webhook_id = $1',
    [webhook.id],
  );
  t.deepEqual(lane[0], { failures: 0, failing_since: null, open_until: null, probes: 0 });
  const contact = await f.contact(company.id);
  const [delivered] = await waitForRows(
    database.pool,
    'select state, attempts from webhooks.deliveries where webhook_id = $1 and contact_id = $2',
    [webhook.id, contact.id],
    (rows) => rows[0]?.state === 'succeeded',
  );
  t.is(delivered.attempts, 1);
});

test('an endpoint error of any length or characters (controls, bidi controls) still makes a reason the webhook may carry', async (t) => {
  const { database, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const client = await database.pool.connect();
  try {
    await client.query(`set webhooks.auto_disable_after = '0 seconds'`);
    await client.query('select webhooks_private.lane_results($1::bigint[], $2::timestamptz[], $3::integer[], $4::text[])', [
      [webhook.id],
      [new Date(Date.now() - 1000)],
      [null],
      // (control characters, and a bidi control, which a disable reason may not hold)
      [`bad\u0001news\u009f\u202e ${'x'.repeat(2000)}`],
    ]);
  } finally {
    client.release(true);
  }
  const { rows } = await database.pool.query('select enabled, disabled_by, disabled_reason from webhooks.webhooks where id = $1', [webhook.id]);
  t.false(rows[0].enabled);
  t.is(rows[0].disabled_by, 'relay');
  t.true(rows[0].disabled_reason.length <= 500);
  t.regex(rows[0].disabled_reason, /^every attempt has failed for 00:00:00 \(1 attempts since .+\); the last: bad news {3}x+$/);
});

test('a relay whose clock is days behind the database\'s: its first failure disables nothing, and history has the attempt when it was made', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/blip') });
  receiver.route('/blip', { replies: [503], otherwise: 200 });
  await f.contact(company.id);

  // six days behind: more than webhooks.auto_disable_after (5 days) between the
  // relay's clock and the database's
  const relay = spawnRelay(database.url, { TEST_CLOCK_SHIFT_MS: String(-6 * 86_400_000) },
    ['--import', fileURLToPath(new URL('../helpers/shifted-clock.ts', import.meta.url))]);
  t.teardown(() => void relay.kill('SIGKILL'));

  const [delivered] = await waitForRows(
    database.pool,
    'select state, attempts from webhooks.deliveries where webhook_id = $1',
    [webhook.id],
    (rows) => rows[0]?.state === 'succeeded' || rows[0]?.state === 'failed',
  );
  t.like(delivered, { state: 'succeeded', attempts: 2 });
  const { rows: [hook] } = await database.pool.query('select enabled, disabled_reason from webhooks.webhooks where id = $1', [webhook.id]);
  t.like(hook, { enabled: true, disabled_reason: null });
  const { rows: attempts } = await database.pool.query(
    `select status_code, extract(epoch from now() - attempted_at)::float8 as age_s
     from webhooks.delivery_attempts where webhook_id = $1 order by attempt`,
    [webhook.id],
  );
  t.deepEqual(attempts.map((a) => a.status_code), [503, 200]);
  t.true(attempts.every((a) => a.age_s > -60 && a.age_s < 60), `attempted ${attempts.map((a) => a.age_s).join(', ')} s ago`);
});
