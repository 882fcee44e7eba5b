// One company with thousands of webhooks, each with a backlog, beside a company with
// one healthy webhook: a discovery ranks a window of lanes (sql/28_lanes.sql), and a
// company whose webhooks are many must not fill every window, or the other company's
// webhook comes into one only every (lanes ÷ window) discoveries, and discoveries
// come only as often as the relay has room to claim. The promise: no
// company's endpoints or backlog delay another company's deliveries by more than
// about a second.
import test from 'ava';
import { healthyCompany } from '../helpers/latencies.ts';
import { relayScene } from '../helpers/relay.ts';
import type { Reply } from '../helpers/receiver.ts';

const HOSTILE_WEBHOOKS = 2_000;
const BACKLOG_EACH = 5; // × 2,000 webhooks: 10,000 deliveries waiting
const HEALTHY_CHANGES = 40;

for (const [receiverKind, reply] of [
  ['slow but answering (2 s)', { status: 200, delayMs: 2_000 }],
  ['silent (the breaker not yet open)', 'hang'],
] as Array<[string, Reply]>) {
  test(`a company with ${HOSTILE_WEBHOOKS} webhooks with a backlog each, ${receiverKind}, delays another company by less than a second, p99`, async (t) => {
    const scene = await relayScene(t);
    const { database, receiver, f, company: hostile } = scene;
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
    // the relay at its defaults, its poll too (1 s; the tests' relays poll every 50 ms)
    const healthy = await healthyCompany(t, scene, { changes: HEALTHY_CHANGES, relayEnvironment: { RELAY_POLL_INTERVAL_MS: '1000' } });
    const { alone } = healthy;

    // the hostile company's backlog, every webhook's, all due at once
    await database.pool.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload)
       select w.id, w.company_id, 'contact.deleted', i, '{}'
       from webhooks.webhooks w, generate_series(1, $2::int) i where w.company_id = $1`, [hostile.id, BACKLOG_EACH]);
    await receiver.waitFor(HOSTILE_WEBHOOKS / 4, { path: '/hostile', timeoutMs: 60_000 });

    const beside = await healthy.beside();
    const { rows: [hostileState] } = await database.pool.query(
      `select count(*) filter (where locked_by is not null)::int as in_flight, count(*)::int as waiting
       from webhooks.delivery_queue where company_id = $1`, [hostile.id]);
    t.log(`the hostile company: ${hostileState.in_flight} in flight, ${hostileState.waiting} on their way; its endpoints got ${receiver.received('/hostile').length} requests`);
    t.log(`healthy company alone: p50 ${alone.p50.toFixed(0)} ms, p99 ${alone.p99.toFixed(0)} ms; beside the hostile one: p50 ${beside.p50.toFixed(0)} ms, p99 ${beside.p99.toFixed(0)} ms`);
    t.true(hostileState.waiting > HOSTILE_WEBHOOKS, 'the hostile company still had a backlog when the healthy one was measured');
    t.true(beside.p99 - alone.p99 < 1000, `p99 ${beside.p99.toFixed(0)} ms beside, ${alone.p99.toFixed(0)} ms alone: ${beside.all}`);
  });
}
