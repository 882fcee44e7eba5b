// The relay's small parts on their own: the destination guard, settings, signatures,
// Retry-After. (Everything with a database and a receiver is in the other relay-* files.)
import test from 'ava';
import { Webhook } from 'standardwebhooks';
import { parseRetryAfter } from '../../relay/deliver.ts';
import { guardedLookup, parseNetworks, refusal, refuseLiteralHost, specialKind } from '../../relay/destinations.ts';
import { relaySettings } from '../../relay/settings.ts';
import { signatureHeaders } from '../../relay/sign.ts';

test('special addresses are recognised, IPv4 written as IPv6 included', (t) => {
  const cases: Array<[string, string | null]> = [
    ['127.0.0.1', 'loopback'],
    ['10.20.30.40', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['172.32.0.1', null],
    ['192.168.1.1', 'private'],
    ['169.254.169.254', 'cloud metadata'],
    ['169.254.1.1', 'link-local'],
    ['100.64.0.1', 'shared (carrier-grade NAT)'],
    ['0.0.0.0', 'unspecified'],
    ['224.0.0.1', 'multicast'],
    ['8.8.8.8', null],
    ['::1', 'loopback'],
    ['::', 'unspecified'],
    ['fe80::1', 'link-local'],
    ['fd00::1', 'private (unique local)'],
    ['fd00:ec2::254', 'cloud metadata'],
    ['::ffff:10.0.0.1', 'private'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['2001:4860:4860::8888', null],
  ];
  for (const [address, kind] of cases) t.is(specialKind(address), kind, address);
});

test('the allow-list lets named networks through, and nothing else', (t) => {
  const allow = parseNetworks('127.0.0.0/8, ::1/128, 10.1.2.3');
  t.is(refusal('127.0.0.1', allow), null);
  t.is(refusal('::1', allow), null);
  t.is(refusal('::ffff:127.0.0.1', allow), null);
  t.is(refusal('10.1.2.3', allow), null);
  t.is(refusal('10.1.2.4', allow), '10.1.2.4 (private) is not a public address and RELAY_ALLOW_NETWORKS (127.0.0.0/8, ::1/128, 10.1.2.3) does not include it');
  t.is(refusal('8.8.8.8', parseNetworks('')), null);
  for (const bad of ['localhost', '10.0.0.0/33', '::1/129', '10.0.0.0/', '10.0.0.0/8/1', '10.0.0.0/x']) {
    t.throws(() => parseNetworks(bad), { message: /is not a network in CIDR form/ }, bad);
  }
});

test('an address literal in the URL is checked before any connection', (t) => {
  const none = parseNetworks('');
  t.is(refuseLiteralHost(new URL('http://[::1]:8080/hook'), none)?.message, 'destination refused: ::1 (loopback) is not a public address and RELAY_ALLOW_NETWORKS is empty');
  t.regex(refuseLiteralHost(new URL('https://192.168.0.10/hook'), none)?.message ?? '', /192\.168\.0\.10 \(private\)/);
  t.is(refuseLiteralHost(new URL('http://[::1]:8080/hook'), parseNetworks('::1/128')), null);
  t.is(refuseLiteralHost(new URL('https://93.184.215.14/hook'), none), null);
  t.is(refuseLiteralHost(new URL('https://hooks.example.com/hook'), none), null, 'names are checked when they resolve');
});

test('a name is checked on the addresses it resolves to', async (t) => {
  const resolve = (allow: string) =>
    new Promise<{ error: Error | null; address: unknown }>((done) =>
      guardedLookup(parseNetworks(allow))('localhost', { family: 4 }, (error, address) => done({ error, address })),
    );
  const refused = await resolve('');
  t.regex(refused.error?.message ?? '', /^destination refused: localhost resolves to 127\.0\.0\.1 \(loopback\)/);
  const allowed = await resolve('127.0.0.0/8');
  t.is(allowed.error, null);
  t.is(allowed.address, '127.0.0.1');
});

test('settings: defaults, and bad values named', (t) => {
  const settings = relaySettings({ DATABASE_URL: 'postgres://x@localhost/db' });
  t.like(settings, { databaseRole: 'bpd_webhooks_relay', batchSize: 100, perWebhookInFlight: 32, prefetch: 32, leaseMs: 60_000, requestTimeoutMs: 15_000 });
  t.deepEqual(settings.allowNetworks.cidrs, []);
  t.is(relaySettings({ DATABASE_URL: 'postgres://d', RELAY_PER_WEBHOOK_IN_FLIGHT: '4' }).prefetch, 4, 'prefetch follows the per-webhook cap');
  t.is(relaySettings({ DATABASE_URL: 'postgres://d', RELAY_PREFETCH: '0' }).prefetch, 0);
  t.is(relaySettings({ DATABASE_URL: 'postgres://x@localhost/db', RELAY_DB_ROLE: '' }).databaseRole, null);
  t.deepEqual(relaySettings({}, { DATABASE_URL: 'postgres://d', RELAY_ALLOW_NETWORKS: '127.0.0.0/8' }).allowNetworks.cidrs, ['127.0.0.0/8']);

  const error = (env: Record<string, string>) => t.throws(() => relaySettings({ DATABASE_URL: 'postgres://x@localhost/db', ...env }))?.message;
  t.is(t.throws(() => relaySettings({}))?.message, 'DATABASE_URL is not set: the relay needs the database to drain');
  t.is(error({ RELAY_BATCH_SIZE: 'lots' }), 'RELAY_BATCH_SIZE must be a whole number from 1 to 10000, got "lots"');
  t.is(error({ RELAY_MAX_IN_FLIGHT: '0' }), 'RELAY_MAX_IN_FLIGHT must be a whole number from 1 to 100000, got "0"');
  t.regex(error({ RELAY_LEASE_MS: '1000', RELAY_REQUEST_TIMEOUT_MS: '1000' })!, /^RELAY_LEASE_MS \(1000\) must be longer than RELAY_REQUEST_TIMEOUT_MS \(1000\)/);
  t.regex(error({ RELAY_PER_WEBHOOK_IN_FLIGHT: '4', RELAY_PREFETCH: '5' })!, /^RELAY_PREFETCH \(5\) must not exceed RELAY_PER_WEBHOOK_IN_FLIGHT \(4\)/);
  t.regex(error({ RELAY_ALLOW_NETWORKS: '10.0.0.0/40' })!, /^RELAY_ALLOW_NETWORKS: "10\.0\.0\.0\/40" is not a network/);
  t.regex(error({ RELAY_DB_ROLE: 'x; drop table y' })!, /^RELAY_DB_ROLE must be a plain role name/);
  t.regex(error({ RELAY_LOG_LEVEL: 'loud' })!, /^RELAY_LOG_LEVEL must be one of/);
});

test('signatures verify with the standardwebhooks package, both of them during a rotation', (t) => {
  const current = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
  const previous = 'whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD';
  const body = '{"type": "contact.created", "data": {"contact": {"id": 1, "first_name": "Zoë"}}}';
  const headers = signatureHeaders('msg_1', body, current, previous);
  t.is(headers['webhook-id'], 'msg_1');
  t.regex(headers['webhook-timestamp'], /^\d{10}$/);
  t.is(headers['webhook-signature'].split(' ').length, 2);
  for (const secret of [current, previous]) {
    t.notThrows(() => new Webhook(secret).verify(body, { ...headers }), secret);
  }
  t.is(headers['webhook-signature'].split(' ')[0], new Webhook(current).sign('msg_1', new Date(Number(headers['webhook-timestamp']) * 1000), body));
  t.is(signatureHeaders('msg_1', body, current, null)['webhook-signature'].split(' ').length, 1);
  t.throws(() => new Webhook('whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA').verify(body, { ...headers }));
});

test('Retry-After: seconds or an HTTP date; anything else is ignored', (t) => {
  t.is(parseRetryAfter('120'), 120);
  t.is(parseRetryAfter(' 7 '), 7);
  t.is(parseRetryAfter(undefined), null);
  t.is(parseRetryAfter('soon'), null);
  t.is(parseRetryAfter('-5'), null);
  const inAMinute = parseRetryAfter(new Date(Date.now() + 60_000).toUTCString())!;
  t.true(inAMinute >= 58 && inAMinute <= 61, String(inAMinute));
  t.is(parseRetryAfter(new Date(Date.now() - 60_000).toUTCString()), 0);
  t.is(parseRetryAfter('99999999999'), 2_147_483_647);
});
