// Back-pressure: while the database cannot take the results, the relay stops claiming
// after a bounded number of deliveries (each one sent meanwhile would be sent again
// if the relay stopped before writing its result), and goes on once they are written.
import test from 'ava';
import { UNSETTLED_BATCHES_LIMIT } from '../../relay/scheduler.ts';
import { settleBatchSize } from '../../relay/settle.ts';
import { relayScene, rememberedLog, testRelay, waitForFinalDeliveries } from '../helpers/relay.ts';

const CLAIM_BATCH = 2;
const SLOTS = 2;
// held back once more than two settles' worth of results wait: 2 × 4 + 1 = 9
const WAITING_WHEN_HELD_BACK = UNSETTLED_BATCHES_LIMIT * settleBatchSize(CLAIM_BATCH) + 1;

async function until(condition: () => boolean, timeoutMs = 10_000, look?: () => Promise<void>) {
  const deadline = Date.now() + timeoutMs;
  while ((await look?.(), !condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

test('results that cannot be written hold further claims back', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret });
  await database.pool.query('insert into crm.contacts (company_id) select $1 from generate_series(1, 40)', [company.id]);

  // every settle records its attempts: a lock on that table holds every settle back,
  // while claims, which never touch it, go on
  const blocker = await database.pool.connect();
  await blocker.query('begin');
  await blocker.query('lock table webhooks.delivery_attempts in share mode');

  const relay = testRelay(database.url, { RELAY_BATCH_SIZE: String(CLAIM_BATCH), RELAY_PER_WEBHOOK_IN_FLIGHT: String(SLOTS) });
  await relay.start();
  try {
    await until(() => relay.mode === 'held_back');
    // what it holds is still sent (its leases run on), and nothing more is claimed:
    // held back at WAITING_WHEN_HELD_BACK results waiting, it holds at most its two
    // request slots and a queue of two claim batches (a fast webhook's, slots.ts)
    await until(() => receiver.received('/hook').length === relay.stats.claimed);
    const sent = receiver.received('/hook').length;
    t.true(sent <= WAITING_WHEN_HELD_BACK + SLOTS + 2 * CLAIM_BATCH, `sent ${sent} before holding back`);
    t.is(relay.mode, 'held_back');
    t.is(relay.stats.claimed, sent);

    await blocker.query('commit');
    const rows = await waitForFinalDeliveries(database.pool, [webhook.id], 40);
    t.true(rows.every((row) => row.state === 'succeeded'));
    t.is(new Set(receiver.received('/hook').map((r) => r.headers['webhook-id'])).size, 40);
  } finally {
    await blocker.query('rollback').catch(() => {});
    blocker.release();
    await relay.stop();
  }
});

test('a lock on the attempts table held past the settle\'s wait (an index built without CONCURRENTLY) makes the results wait, not be sent again', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret });
  await database.pool.query('insert into crm.contacts (company_id) select $1 from generate_series(1, 10)', [company.id]);

  // CREATE INDEX takes this lock on its table for as long as it builds
  const blocker = await database.pool.connect();
  await blocker.query('begin');
  await blocker.query('lock table webhooks.delivery_attempts in share mode');

  const { log, lines } = rememberedLog();
  const relay = testRelay(database.url, { RELAY_BATCH_SIZE: String(CLAIM_BATCH) }, { log });
  await relay.start();
  try {
    // a settle gave up waiting for the lock (settle_lock_wait(), 1 s): with the
    // results left out of its answer, each delivery stayed in flight until its lease
    // ran out (60 s) and was sent again
    await until(() => lines().some((line) => /settle failed|not settled/.test(line)), 20_000);
    await blocker.query('commit');
    const rows = await waitForFinalDeliveries(database.pool, [webhook.id], 10);
    t.true(rows.every((row) => row.state === 'succeeded'));
    const { rows: attempts } = await database.pool.query<{ attempts: number }>(
      'select attempts from webhooks.deliveries where webhook_id = $1', [webhook.id]);
    t.deepEqual(attempts.map((row) => row.attempts), Array(10).fill(1));
    t.is(receiver.received('/hook').length, 10);
    t.true(lines().some((line) => /settle failed; will try again/.test(line) && /delivery_attempts/.test(line)));
  } finally {
    await blocker.query('rollback').catch(() => {});
    blocker.release();
    await relay.stop();
  }
});

test('settles that keep failing are logged as the other parts on a timer are: one line while they fail, a line when they work again', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret });
  await database.pool.query('insert into crm.contacts (company_id) select $1 from generate_series(1, 3)', [company.id]);

  const blocker = await database.pool.connect();
  await blocker.query('begin');
  await blocker.query('lock table webhooks.delivery_attempts in share mode');
  const { log, lines } = rememberedLog();
  const relay = testRelay(database.url, {}, { log });
  await relay.start();
  try {
    // three settles gave up waiting for the lock: three tries of the same results,
    // each one a statement of its own waiting in pg_stat_activity
    const tries = new Set<string>();
    await until(() => tries.size >= 3, 30_000, async () => {
      const { rows } = await database.pool.query<{ started: string }>(
        `select a.query_start::text as started from pg_stat_activity a
         where a.datname = current_database() and a.application_name = 'bpd-webhooks-relay'
           and a.wait_event_type = 'Lock' and a.query ~ 'settle_deliveries'`);
      for (const row of rows) tries.add(row.started);
    });
    await blocker.query('commit');
    await waitForFinalDeliveries(database.pool, [webhook.id], 3);
    await until(() => lines().some((line) => line.includes('settling again after errors')));
    const said = lines().map((line) => JSON.parse(line) as { level: number; msg: string; failures?: number });
    const failed = said.filter((line) => line.msg === 'settle failed; will try again');
    t.is(failed.length, 1, 'one line while the settles fail (a line a minute at most)');
    t.like(failed[0], { level: 40, failures: 1 });
    const again = said.filter((line) => line.msg === 'settling again after errors');
    t.is(again.length, 1);
    t.is(again[0].level, 30);
    t.true(again[0].failures! >= 2, `failures in a row: ${again[0].failures}`);
  } finally {
    await blocker.query('rollback').catch(() => {});
    blocker.release();
    await relay.stop();
  }
});
