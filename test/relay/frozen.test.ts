// A relay whose process is frozen (SIGSTOP: a paused container, a VM stalled, a
// debugger) past its lease while the receiver holds its request: another relay
// rescues the delivery and sends it again under the same webhook-id. When the frozen
// relay resumes and its request is answered, its settle is refused (the delivery is no
// longer its, and it does not change): two sends, one settle; the history keeps the
// rescue's row for the frozen attempt and, beside it, what that attempt came to.
import test from 'ava';
import { once } from 'node:events';
import { gatedReplies } from '../helpers/receiver.ts';
import { lines } from '../helpers/lines.ts';
import { relayScene, spawnRelay, testRelay, waitForFinalDeliveries } from '../helpers/relay.ts';

test('a relay frozen past its lease, resumed after another relay sent and settled the delivery: its late answer changes nothing', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  const { replies: [held], opens: [answerFrozen] } = gatedReplies(1);
  receiver.route('/hook', { secret: webhook.secret, replies: [held], otherwise: 200 });
  await f.contact(company.id);

  const frozen = spawnRelay(database.url, {
    RELAY_ID: 'relay-frozen',
    RELAY_LEASE_MS: '2000',
    RELAY_REQUEST_TIMEOUT_MS: '1500',
    RELAY_LOG_LEVEL: 'info',
  });
  const log = lines(frozen.stdout!);
  const exited = once(frozen, 'exit');
  t.teardown(() => {
    frozen.kill('SIGCONT');
    frozen.kill('SIGKILL');
  });
  const [first] = await receiver.waitFor(1, { path: '/hook' });
  frozen.kill('SIGSTOP');

  const other = testRelay(database.url, { RELAY_ID: 'relay-other' });
  t.teardown(() => other.stop());
  await other.start();
  const [delivery] = await waitForFinalDeliveries(database.pool, [webhook.id], 1);
  t.like(delivery, { state: 'succeeded', attempts: 2 });
  const again = receiver.received('/hook');
  t.is(again.length, 2);
  t.is(again[1].headers['webhook-id'], first.headers['webhook-id'], 'sent again under the same webhook-id');

  // the frozen relay's request answered, then the relay resumed: whichever it meets
  // first (the answer, or its own request timeout long past), its settle is refused
  answerFrozen();
  frozen.kill('SIGCONT');
  await log.next(/not settled: its lease had run out/, 20_000);

  const { rows: [after] } = await database.pool.query(
    'select state, attempts, locked_by from webhooks.deliveries where id = $1', [delivery.id]);
  t.deepEqual(after, { state: 'succeeded', attempts: 2, locked_by: null });
  const { rows: attempts } = await database.pool.query(
    `select attempt, status_code, error, relay_id from webhooks.delivery_attempts
     where delivery_id = $1 order by attempt`,
    [delivery.id],
  );
  t.is(attempts.length, 3, JSON.stringify(attempts));
  const rescued = attempts.find((a) => a.attempt === 1 && a.error?.startsWith('lease expired'));
  const late = attempts.find((a) => a.attempt === 1 && a !== rescued);
  t.like(rescued, { relay_id: 'relay-frozen', status_code: null });
  t.regex(rescued.error, /^lease expired: the relay did not settle this attempt/);
  // the late result as the resumed relay saw it: the receiver's 200, or its own
  // request timeout if that timer ran first on waking; said to be late, as its attempt
  // number is the rescue's row's
  t.is(late.relay_id, 'relay-frozen');
  t.true(
    (late.status_code === 200 && late.error === 'late (its lease had run out; the delivery is unchanged)')
      || /^late \(its lease had run out; the delivery is unchanged\): timeout: no complete response/.test(late.error),
    JSON.stringify(late),
  );
  t.like(attempts.at(-1), { attempt: 2, status_code: 200, relay_id: 'relay-other', error: null });
  t.is(receiver.received('/hook').length, 2, 'not sent a third time');

  frozen.kill('SIGTERM');
  const [code] = await exited;
  t.is(code, 0);
});
