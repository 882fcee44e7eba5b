// One company with thousands of webhooks, each with a backlog, beside a company with
// one healthy webhook: a discovery ranks a window of lanes (sql/28_lanes.sql), and a
// company whose webhooks are many must not fill every window, or the other company's
// webhook comes into one only every (lanes ÷ window) discoveries, and discoveries
// come only as often as the relay has room to claim. The promise: no
// company's endpoints or backlog delay another company's deliveries by more than
// about a second. A healthy change waits for the discovery under way and is taken
// by the next, which follows at once (discoveries repeat while they find work, and a
// capture's NOTIFY asks for one once they have not: relay/wakeup.ts), so what a
// discovery costs sets its delay: at claims of 200, beside a silent hostile
// company, p50 159 ms and the slowest 770 ms with windows of 1,600 of its lanes,
// 50-70 ms and 95-210 ms walked by company (2026-12-06, a loaded machine), the counts
// of discoveries and claims between the same (1 to 3). The scenes run one at a time:
// four relays of 2,000 webhooks at once stretched each one's discoveries past the
// counts.
import test from 'ava';
import { webhooksInBulk } from '../helpers/factories.ts';
import { claimsTaking } from '../helpers/healthy-company.ts';
import { relayScene, testRelay } from '../helpers/relay.ts';
import type { Reply } from '../helpers/receiver.ts';

const HOSTILE_WEBHOOKS = 2_000;
const BACKLOG_EACH = 5; // × 2,000 webhooks: 10,000 deliveries waiting
const HEALTHY_CHANGES = 20;
/**
 * Discoveries between a healthy change's commit and the claim that takes it, at most:
 * the one under way when it committed, and the next, which takes it. Walked in webhook order
 * alone, its lane came into a window once in eight (2,000 lanes, windows of 256 at a
 * claim of 32).
 */
const DISCOVERIES_AT_MOST = 2;

const scenes = [
  ['slow but answering (2 s)', { status: 200, delayMs: 2_000 }, '32'],
  ['silent (the breaker not yet open)', 'hang', '32'],
  // (the relay's default claim: a discovery's window, 1,600 lanes, held most of the
  // hostile company's when walked in webhook order)
  ['slow but answering (2 s)', { status: 200, delayMs: 2_000 }, '200'],
  ['silent (the breaker not yet open)', 'hang', '200'],
] as Array<[string, Reply, string]>;
for (const [receiverKind, reply, batch] of scenes) {
  test.serial(`a company with ${HOSTILE_WEBHOOKS} webhooks with a backlog each, ${receiverKind}, claims of ${batch}: another company's change is taken by the next discovery`, async (t) => {
    const { database, receiver, f, company: hostile } = await relayScene(t);
    const url = receiver.route('/hostile', { otherwise: reply });
    await webhooksInBulk(database.pool, hostile.id, HOSTILE_WEBHOOKS, { name: 'Hostile', url });
    const healthy = await f.company();
    const webhook = await f.webhook({ companyId: healthy.id, actions: ['contact.created'], url: receiver.url('/healthy') });
    receiver.route('/healthy', { secret: webhook.secret, otherwise: 200 });
    // the relay at its defaults, its poll too (1 s; the tests' relays poll every 50 ms),
    // claims of 200 or of 32 (a discovery's window of 256 lanes, an eighth of the
    // hostile company's: walked in webhook order, it held the other company's lane
    // once in eight)
    const relay = testRelay(database.url, { RELAY_POLL_INTERVAL_MS: '1000', RELAY_BATCH_SIZE: batch });
    t.teardown(() => relay.stop());
    // the discoveries and claims up to each claim that took a healthy delivery
    const taken = claimsTaking(relay, webhook.id);
    await relay.start();

    // the hostile company's backlog, every webhook's, all due at once
    await database.pool.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload)
       select w.id, w.company_id, 'contact.deleted', i, '{}'
       from webhooks.webhooks w, generate_series(1, $2::int) i where w.company_id = $1`, [hostile.id, BACKLOG_EACH]);
    await receiver.waitFor(HOSTILE_WEBHOOKS / 4, { path: '/hostile', timeoutMs: 60_000 });

    const discoveries = () => relay.stats.claims - relay.stats.refills;
    // what became of each healthy delivery, shown when one does not come: under a
    // loaded full run (load 45-97 on two cores) change 15 waited past 30 s beside a
    // webhook-id received twice, and nothing said whether a lease had run out, a
    // result waited to be written, or a delivery was pending still
    const showHealthyRows = async () => {
      const { rows: attempts } = await database.pool.query(
        `select delivery_id, attempt, attempted_at, duration_ms, status_code, left(error, 100) as error
         from webhooks.delivery_attempts where webhook_id = $1 order by delivery_id, attempted_at`, [webhook.id]);
      const { rows: queued } = await database.pool.query(
        `select delivery_id, attempts, locked_until, next_attempt_at, last_error, now() as now
         from webhooks.delivery_queue where webhook_id = $1 order by delivery_id`, [webhook.id]);
      t.log(`relay: ${JSON.stringify(relay.stats)}, mode ${relay.mode}`);
      for (const row of attempts) t.log(`attempt ${JSON.stringify(row)}`);
      for (const row of queued) t.log(`queued ${JSON.stringify(row)}`);
    };
    const latencies: number[] = [];
    const passedOver: number[] = [];
    const claimsBetween: number[] = [];
    for (let i = 1; i <= HEALTHY_CHANGES; i++) {
      await f.contact(healthy.id);
      const [committed, before, claimsBefore] = [performance.now(), discoveries(), relay.stats.claims];
      await receiver.waitFor(i, { path: '/healthy', timeoutMs: 30_000 }).catch(async (error: unknown) => {
        await showHealthyRows();
        throw error;
      });
      latencies.push(performance.now() - committed);
      passedOver.push(taken[i - 1]!.discoveries - before);
      claimsBetween.push(taken[i - 1]!.claims - claimsBefore);
    }
    t.is(taken.length, HEALTHY_CHANGES, 'each healthy delivery was claimed once');
    const { rows: [hostileState] } = await database.pool.query(
      `select count(*) filter (where locked_by is not null)::int as in_flight, count(*)::int as waiting
       from webhooks.delivery_queue where company_id = $1`, [hostile.id]);
    latencies.sort((a, b) => a - b);
    t.log(`the hostile company: ${hostileState.in_flight} in flight, ${hostileState.waiting} on their way; its endpoints got ${receiver.received('/hostile').length} requests`);
    t.log(`the healthy company's changes, commit to arrival: p50 ${latencies[HEALTHY_CHANGES / 2]!.toFixed(0)} ms, ` +
          `the slowest ${latencies.at(-1)!.toFixed(0)} ms; discoveries up to its claim: ${passedOver.join(' ')}; ` +
          `claims up to it: ${claimsBetween.join(' ')}`);
    t.true(hostileState.waiting > HOSTILE_WEBHOOKS, 'the hostile company still had a backlog when the healthy one was measured');
    t.true(passedOver.every((n) => n <= DISCOVERIES_AT_MOST), `discoveries between a change and the claim that took it: ${passedOver.join(' ')}`);
  });
}
