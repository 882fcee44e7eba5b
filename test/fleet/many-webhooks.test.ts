// One company with thousands of webhooks, each with a backlog, beside a company with
// one healthy webhook: a discovery ranks a window of lanes (sql/28_lanes.sql), and a
// company whose webhooks are many must not fill every window, or the other company's
// webhook comes into one only every (lanes ÷ window) discoveries, and discoveries
// come only as often as the relay has room to claim. The promise: no
// company's endpoints or backlog delay another company's deliveries by more than
// about a second.
import test from 'ava';
import { relayScene, testRelay } from '../helpers/relay.ts';
import type { Reply } from '../helpers/receiver.ts';

const HOSTILE_WEBHOOKS = 2_000;
const BACKLOG_EACH = 5; // × 2,000 webhooks: 10,000 deliveries waiting
const HEALTHY_CHANGES = 20;
/**
 * Discoveries between a healthy change's commit and its arrival, at most: the one
 * under way when it committed, and the next, which takes it. Walked in webhook order
 * alone, its lane came into a window once in eight (2,000 lanes, windows of 256 at a
 * claim of 32).
 */
const DISCOVERIES_AT_MOST = 2;

for (const [receiverKind, reply] of [
  ['slow but answering (2 s)', { status: 200, delayMs: 2_000 }],
  ['silent (the breaker not yet open)', 'hang'],
] as Array<[string, Reply]>) {
  test(`a company with ${HOSTILE_WEBHOOKS} webhooks with a backlog each, ${receiverKind}: another company's change is taken by the next discovery`, async (t) => {
    const { database, receiver, f, company: hostile } = await relayScene(t);
    const url = receiver.route('/hostile', { otherwise: reply });
    const writer = await database.pool.connect();
    try {
      await writer.query('begin');
      await writer.query(`set local webhooks.max_webhooks_per_company = '${HOSTILE_WEBHOOKS}'`);
      await writer.query(
        `insert into webhooks.webhooks (company_id, name, url, fields, actions)
         select $1, 'Hostile ' || n, $2, '{first_name}', '{contact.deleted}' from generate_series(1, $3::int) n`,
        [hostile.id, url, HOSTILE_WEBHOOKS]);
      await writer.query('commit');
    } finally {
      writer.release();
    }
    const healthy = await f.company();
    const webhook = await f.webhook({ companyId: healthy.id, actions: ['contact.created'], url: receiver.url('/healthy') });
    receiver.route('/healthy', { secret: webhook.secret, otherwise: 200 });
    // the relay at its defaults, its poll too (1 s; the tests' relays poll every 50 ms),
    // but for claims of 32: a discovery's window is 256 lanes, an eighth of the hostile
    // company's (at the default 200, 1,600: most of them)
    const relay = testRelay(database.url, { RELAY_POLL_INTERVAL_MS: '1000', RELAY_BATCH_SIZE: '32' });
    t.teardown(() => relay.stop());
    await relay.start();

    // the hostile company's backlog, every webhook's, all due at once
    await database.pool.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload)
       select w.id, w.company_id, 'contact.deleted', i, '{}'
       from webhooks.webhooks w, generate_series(1, $2::int) i where w.company_id = $1`, [hostile.id, BACKLOG_EACH]);
    await receiver.waitFor(HOSTILE_WEBHOOKS / 4, { path: '/hostile', timeoutMs: 60_000 });

    const discoveries = () => relay.stats.claims - relay.stats.refills;
    const latencies: number[] = [];
    const passedOver: number[] = [];
    for (let i = 1; i <= HEALTHY_CHANGES; i++) {
      await f.contact(healthy.id);
      const [committed, before] = [performance.now(), discoveries()];
      await receiver.waitFor(i, { path: '/healthy', timeoutMs: 30_000 });
      latencies.push(performance.now() - committed);
      passedOver.push(discoveries() - before);
    }
    const { rows: [hostileState] } = await database.pool.query(
      `select count(*) filter (where locked_by is not null)::int as in_flight, count(*)::int as waiting
       from webhooks.delivery_queue where company_id = $1`, [hostile.id]);
    latencies.sort((a, b) => a - b);
    t.log(`the hostile company: ${hostileState.in_flight} in flight, ${hostileState.waiting} on their way; its endpoints got ${receiver.received('/hostile').length} requests`);
    t.log(`the healthy company's changes, commit to arrival: p50 ${latencies[HEALTHY_CHANGES / 2]!.toFixed(0)} ms, ` +
          `the slowest ${latencies.at(-1)!.toFixed(0)} ms; discoveries meanwhile: ${passedOver.join(' ')}`);
    t.true(hostileState.waiting > HOSTILE_WEBHOOKS, 'the hostile company still had a backlog when the healthy one was measured');
    t.true(passedOver.every((n) => n <= DISCOVERIES_AT_MOST), `discoveries between a change and its arrival: ${passedOver.join(' ')}`);
  });
}
