// Payloads near webhooks.max_payload_bytes to endpoints that never answer, at the
// relay's default settings and as `npm run relay` runs it (a heap of 128 MiB): the
// relay holds no more of them than RELAY_MAX_HELD_BYTES (48 MiB), and lives. Bounded
// in deliveries only, four such webhooks held their 32 requests and a queue of 32
// each: every one of these 160 payloads, 144 MB.
import test from 'ava';
import { freePort } from '../../tools/embedded-postgres.ts';
import { scrape } from '../helpers/prometheus.ts';
import { relayScene, spawnRelay } from '../helpers/relay.ts';

const WEBHOOKS = 4;
const CONTACTS = 40; // × 4 webhooks: 160 deliveries
const NOTES = 900_000; // payloads of about 0.9 MB, under the 1 MiB limit
const MAX_HELD_BYTES = 48 * 1024 * 1024;
/** the company's share: seven eighths of the bytes (an eighth is kept for companies that hold nothing) */
const SHARE = (MAX_HELD_BYTES * 7) / 8;

test('payloads near the size limit to endpoints that hang: the relay holds its byte budget\'s share of them, no more', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const paths = Array.from({ length: WEBHOOKS }, (_, i) => `/hang-${i}`);
  for (const path of paths) {
    await f.webhook({ companyId: company.id, actions: ['contact.created'], fields: ['custom'], url: receiver.route(path, { otherwise: 'hang' }) });
  }
  await database.pool.query(
    `insert into crm.contacts (company_id, custom)
     select $1, jsonb_build_object('notes', repeat('n', $3::int) || n) from generate_series(1, $2::int) n`,
    [company.id, CONTACTS, NOTES],
  );

  const port = await freePort();
  const relay = spawnRelay(database.url, { RELAY_METRICS_PORT: String(port) });
  t.teardown(() => void relay.kill('SIGKILL'));
  t.teardown(() => receiver.close());
  let exited: number | null | undefined;
  relay.once('exit', (code) => (exited = code));
  const held = () => scrape(`http://127.0.0.1:${port}`).then((m) => m.get('bpd_webhooks_payload_bytes_held') ?? 0, () => 0);
  const hanging = () => paths.reduce((sum, path) => sum + receiver.received(path).length, 0);

  // its share is some 46 of these payloads: wait for most of them, then watch the
  // gauge for a second more (it sends no signal when it moves)
  const shareOfPayloads = Math.floor(SHARE / NOTES);
  await Promise.race([
    receiver.waitFor(shareOfPayloads - 6, { timeoutMs: 60_000 }),
    new Promise((resolve) => relay.once('exit', resolve)),
  ]);
  let mostHeld = 0;
  for (let i = 0; i < 20 && exited === undefined; i++) {
    mostHeld = Math.max(mostHeld, await held());
    await new Promise((resolve) => setTimeout(resolve, 50));
  }

  t.is(exited, undefined, 'the relay is still running');
  t.log(`${hanging()} requests hanging; the relay held at most ${(mostHeld / 1048576).toFixed(1)} MiB of payloads`);
  t.true(mostHeld > 0);
  t.true(mostHeld <= SHARE + 1_048_576, `${mostHeld} bytes held`);
  t.true(hanging() <= shareOfPayloads + 1, `${hanging()} requests hanging`);
});
