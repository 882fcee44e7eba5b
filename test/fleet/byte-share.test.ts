// What a relay holds of payloads is bounded in bytes, and shared among companies as
// its request slots are (RELAY_MAX_HELD_BYTES; sql/28_lanes.sql): a company whose
// endpoints hang, with large payloads, holds its share of the bytes and no more, and
// another company's changes are each taken by the next discovery and sent beside it.
// Without the bound, these four silent webhooks held 2.6 MB of payloads where the
// relay was given 1 MiB. Counted, not timed: the bytes held, the claims between a
// change's commit and the claim that took it.
import test from 'ava';
import { healthyCompany } from '../helpers/healthy-company.ts';
import { relayScene } from '../helpers/relay.ts';

const SILENT_WEBHOOKS = 4;
const BACKLOG_CONTACTS = 100; // × 4 webhooks: 400 deliveries of about 20 kB waiting
const PAYLOAD_NOTES = 20_000;
const MAX_HELD_BYTES = 1_048_576;
const HEALTHY_CHANGES = 30;
/**
 * Discoveries between a healthy change's commit and the claim that takes it, at most:
 * the one under way when it committed, and the next, which takes it.
 */
const DISCOVERIES_AT_MOST = 2;
/** Claims between the same, at most: those two discoveries, and a refill of another company's webhooks. */
const CLAIMS_AT_MOST = 3;

test('a company with silent endpoints and large payloads holds its share of the relay\'s bytes; another company\'s changes are each taken by the next discovery', async (t) => {
  const scene = await relayScene(t);
  const { database, receiver, f, company: noisy } = scene;
  const silentPaths = Array.from({ length: SILENT_WEBHOOKS }, (_, i) => `/silent-${i}`);
  for (const path of silentPaths) {
    await f.webhook({ companyId: noisy.id, actions: ['contact.created'], fields: ['custom'], url: receiver.route(path, { otherwise: 'hang' }) });
  }
  // (the relay's request timeout longer than the test: a healthy delivery that
  // arrives while the silent endpoints hang did not wait for one of them to time out)
  const healthy = await healthyCompany(t, scene, {
    relayEnvironment: { RELAY_MAX_HELD_BYTES: String(MAX_HELD_BYTES), RELAY_REQUEST_TIMEOUT_MS: '50000' },
  });

  await database.pool.query(
    `insert into crm.contacts (company_id, custom)
     select $1, jsonb_build_object('notes', repeat('n', $3::int) || n) from generate_series(1, $2::int) n`,
    [noisy.id, BACKLOG_CONTACTS, PAYLOAD_NOTES],
  );
  await Promise.all(silentPaths.map((path) => receiver.waitFor(1, { path, timeoutMs: 60_000 })));
  const { between, verified } = await healthy.changes(HEALTHY_CHANGES);

  // what the relay holds now, by the queue rows it leased: the silent endpoints' and
  // their queues (none of them has answered)
  const { rows: [held] } = await database.pool.query(
    `select count(*)::int as deliveries, coalesce(sum(payload_bytes), 0)::int as bytes, max(payload_bytes) as largest
     from webhooks.delivery_queue where company_id = $1 and locked_by is not null`,
    [noisy.id],
  );
  const sent = silentPaths.reduce((sum, path) => sum + receiver.received(path).length, 0);
  const hanging = silentPaths.reduce((sum, path) => sum + receiver.unanswered(path), 0);
  t.log(`the noisy company holds ${held.deliveries} deliveries, ${held.bytes} bytes (${sent} requests, ${hanging} hanging)`);
  t.log(`discoveries between a healthy change's commit and its claim: ${between.map((b) => b.discoveries).join(' ')}; claims: ${between.map((b) => b.claims).join(' ')}`);
  t.true(held.largest > PAYLOAD_NOTES);
  t.true(held.deliveries >= SILENT_WEBHOOKS, 'each silent webhook holds some');
  // its share: seven eighths of the relay's bytes (an eighth is kept for companies
  // that hold nothing), and the row that took it over
  t.true(held.bytes <= (MAX_HELD_BYTES * 7) / 8 + held.largest, `${held.bytes} bytes held`);
  t.true(verified.every(Boolean), 'each healthy request signed with its webhook\'s secret');
  t.is(hanging, sent, 'the silent endpoints\' requests all still hang: no healthy delivery waited for one to end');
  t.true(between.every((b) => b.discoveries <= DISCOVERIES_AT_MOST),
    `discoveries between a change and the claim that took it: ${between.map((b) => b.discoveries).join(' ')}`);
  t.true(between.every((b) => b.claims <= CLAIMS_AT_MOST),
    `claims between a change and the claim that took it: ${between.map((b) => b.claims).join(' ')}`);
});
