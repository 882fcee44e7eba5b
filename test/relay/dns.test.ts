// Receivers' names are resolved by DNS queries from the event loop (relay/dns.ts), not
// on the thread pool: a tenant whose webhooks name hosts whose DNS never answers holds
// nothing but its own requests, and another company's deliveries go meanwhile.
import test from 'ava';
import { startDnsServer } from '../helpers/dns-server.ts';
import { relayScene, testRelay, waitForFinalDeliveries, waitForRows } from '../helpers/relay.ts';
import { askSystem, receiverResolver } from '../../relay/dns.ts';
import { guardedLookup, parseNetworks, TENANT_REFUSAL } from '../../relay/destinations.ts';

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

  const relay = testRelay(database.url, {
    RELAY_DNS_SERVERS: dns.server,
    RELAY_CONNECT_TIMEOUT_MS: '3000',
    RELAY_REQUEST_TIMEOUT_MS: '4000',
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

  // meanwhile the other company's changes go, each well within the hanging lookups' time
  for (let i = 0; i < 5; i++) await f.contact(other.id);
  const done = await waitForFinalDeliveries(database.pool, [healthy.id], 5, 2_500);
  t.deepEqual(done.map((d) => d.state), Array(5).fill('succeeded'));
  t.true(receiver.received('/ok').every((r) => r.verified));

  // the hanging names' attempts fail as DNS that did not answer, and are retried later
  const [failed] = await waitForRows(
    database.pool,
    'select error from webhooks.delivery_attempts where webhook_id = any ($1::bigint[]) limit 1',
    [hooks.map((h) => h.id)],
    (rows) => rows.length > 0,
    10_000,
  );
  t.regex(failed.error, /^DNS: no answer for h\d\.hang\.test within 3000 ms$/);
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
