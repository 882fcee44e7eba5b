// Receivers' names are resolved by DNS queries from the event loop (relay/dns.ts), not
// on the thread pool: a tenant whose webhooks name hosts whose DNS never answers holds
// nothing but its own requests, and another company's deliveries go meanwhile.
import test from 'ava';
import { startDnsServer } from '../helpers/dns-server.ts';
import { relayScene, testRelay, waitForFinalDeliveries, waitForRows } from '../helpers/relay.ts';
import { askSystem, OTHER_FAMILY_GRACE_MS, receiverResolver } from '../../relay/dns.ts';
import { guardedLookup, parseNetworks, TENANT_REFUSAL } from '../../relay/destinations.ts';

/** How long the relay's lookups of the names that never answer take to give up (its connect timeout). */
const HANGING_LOOKUP_MS = 10_000;

const hangs = (name: string) => name.endsWith('.hang.test');
const answer = (name: string, type: string) =>
  hangs(name) || (name === 'v4.no-aaaa.test' && type === 'AAAA') ? 'hang'
    : name === 'ok.fast.test' || name === 'v4.no-aaaa.test' ? '127.0.0.1' : null;

test('a company whose webhooks name hosts whose DNS never answers does not hold up another company\'s deliveries', async (t) => {
  const { database, receiver, f, company: hostile } = await relayScene(t);
  const dns = await startDnsServer(answer);
  t.teardown(() => dns.close());
  const port = new URL(receiver.url('/')).port;
  const hooks = [];
  for (let i = 0; i < 8; i++) {
    hooks.push(await f.webhook({ companyId: hostile.id, actions: ['contact.created'], url: `http://h${i}.hang.test:${port}/x` }));
  }
  const other = await f.company();
  const healthy = await f.webhook({ companyId: other.id, actions: ['contact.created'], url: `http://ok.fast.test:${port}/ok` });
  receiver.route('/ok', { secret: healthy.secret, otherwise: 200 });

  // (the hanging lookups give up after 10 s: the other company's deliveries are shown
  // to go while they still hang, not by a bound of 2.5 s, which a loaded machine failed)
  const relay = testRelay(database.url, {
    RELAY_DNS_SERVERS: dns.server,
    RELAY_CONNECT_TIMEOUT_MS: String(HANGING_LOOKUP_MS),
    RELAY_REQUEST_TIMEOUT_MS: String(HANGING_LOOKUP_MS + 2_000),
  });
  t.teardown(() => relay.stop());
  await relay.start();
  // 80 deliveries to names that never resolve: far more lookups at once than the
  // thread pool's four threads
  await database.pool.query(
    `insert into crm.contacts (company_id, first_name) select $1, 'Hostile ' || n from generate_series(1, 10) n`,
    [hostile.id],
  );
  await dns.waitFor(16, hangs);

  // meanwhile the other company's changes go, while the hanging lookups still hang
  for (let i = 0; i < 5; i++) await f.contact(other.id);
  const done = await waitForFinalDeliveries(database.pool, [healthy.id], 5, 30_000);
  const { rows: hostileEnded } = await database.pool.query(
    'select 1 from webhooks.delivery_attempts where webhook_id = any ($1::bigint[])', [hooks.map((h) => h.id)]);
  t.deepEqual(done.map((d) => d.state), Array(5).fill('succeeded'));
  t.true(receiver.received('/ok').every((r) => r.verified));
  t.is(hostileEnded.length, 0, 'no hanging lookup had given up when the other company\'s deliveries were done');

  // the hanging names' attempts fail as DNS that did not answer, and are retried later
  const [failed] = await waitForRows(
    database.pool,
    'select error from webhooks.delivery_attempts where webhook_id = any ($1::bigint[]) limit 1',
    [hooks.map((h) => h.id)],
    (rows) => rows.length > 0,
    HANGING_LOOKUP_MS + 30_000,
  );
  t.regex(failed.error, new RegExp(`^DNS: no answer for h\\d\\.hang\\.test within ${HANGING_LOOKUP_MS} ms$`));
});

test('a name resolves through the DNS servers given, each address checked; localhost and one-label names are the system\'s', async (t) => {
  const dns = await startDnsServer(answer);
  t.teardown(() => dns.close());
  const resolver = receiverResolver({ servers: [dns.server], timeoutMs: 400 });
  t.teardown(() => resolver.close());
  const lookup = (name: string, allow: string) =>
    new Promise<{ error: (NodeJS.ErrnoException & { detail?: string }) | null; address: unknown }>((done) =>
      guardedLookup(parseNetworks(allow), resolver)(name, { family: 0 }, (error, address) => done({ error, address })));

  t.deepEqual(await lookup('ok.fast.test', '127.0.0.0/8'), { error: null, address: '127.0.0.1' });
  const refused = await lookup('ok.fast.test', '');
  t.is(refused.error?.message, TENANT_REFUSAL);
  t.regex(refused.error?.detail ?? '', /^destination refused: ok\.fast\.test resolves to 127\.0\.0\.1 \(loopback\)/);
  t.is((await lookup('nowhere.test', '127.0.0.0/8')).error?.code, 'ENOTFOUND');
  t.is((await lookup('x.hang.test', '127.0.0.0/8')).error?.code, 'ETIMEOUT');
  // a server that never answers AAAA: the IPv4 addresses do not wait for its query
  // to give up, whose first try alone waits 10 s (a quarter of the timeout: relay/dns.ts).
  // (With a 4 s timeout and a bound of a second, a loaded machine failed it.)
  const PATIENT_MS = 40_000;
  const patient = receiverResolver({ servers: [dns.server], timeoutMs: PATIENT_MS });
  t.teardown(() => patient.close());
  const started = performance.now();
  t.deepEqual(await patient.lookup('v4.no-aaaa.test', 0), [{ address: '127.0.0.1', family: 4 }]);
  t.true(performance.now() - started < PATIENT_MS / 4, `${Math.round(performance.now() - started)} ms`);
  t.false(dns.queries.includes('localhost'));
  t.deepEqual(await lookup('localhost', '127.0.0.0/8'), { error: null, address: '127.0.0.1' });
  t.false(dns.queries.includes('localhost'), 'asked of the system');

  for (const name of ['localhost', 'LOCALHOST.', 'db.localhost', 'receiver']) t.true(askSystem(name), name);
  for (const name of ['hooks.example.com', 'localhost.example.com', 'x.hang.test']) t.false(askSystem(name), name);
});

// A name with addresses of both families whose AAAA answer comes first: its A answer
// was waited for OTHER_FAMILY_GRACE_MS only (a grace meant for servers that never
// answer AAAA), and a slower A answer, one not in the server's cache, was dropped. A
// receiver whose AAAA address the relay may not send to (a private one) was refused
// although its IPv4 address is allowed, and one the relay's host has no IPv6 route to
// failed to connect.
test('an A answer that comes after the AAAA answer is waited for, not dropped after the grace', async (t) => {
  const dns = await startDnsServer((_name, type) =>
    type === 'A' ? { address: '127.0.0.1', afterMs: OTHER_FAMILY_GRACE_MS * 4 } : 'fd00::1');
  t.teardown(() => dns.close());
  const resolver = receiverResolver({ servers: [dns.server], timeoutMs: 4_000 });
  t.teardown(() => resolver.close());
  t.deepEqual(await resolver.lookup('both.slow-a.test', 0), [
    { address: '127.0.0.1', family: 4 },
    { address: 'fd00::1', family: 6 },
  ]);
  const looked = await new Promise<{ error: Error | null; address: unknown }>((done) =>
    guardedLookup(parseNetworks('127.0.0.0/8'), resolver)('both.slow-a.test', { family: 0 }, (error, address) => done({ error, address })));
  t.deepEqual(looked, { error: null, address: '127.0.0.1' });
});
