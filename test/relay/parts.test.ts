// The relay's small parts on their own: the destination guard, settings, signatures,
// Retry-After, the settle's array parameters. (Everything with a database and a receiver is in the other relay-* files.)
import test from 'ava';
import { Webhook } from 'standardwebhooks';
import { parseRetryAfter } from '../../relay/deliver.ts';
import {
  DESTINATION_VERDICTS_MAX,
  destinationsJudged,
  embeddedIPv4,
  guardedLookup,
  parseAddress,
  parseNetworks,
  refusal,
  refuseLiteral,
  refuseLiteralHost,
  specialKind,
  TENANT_REFUSAL,
} from '../../relay/destinations.ts';
import { receiverResolver } from '../../relay/dns.ts';
import { numberArray, timeArray } from '../../relay/queries.ts';
import { leastRecentlyUsed } from '../../relay/lru.ts';
import { relaySettings } from '../../relay/settings.ts';
import { deliveryHeaders, sign, signatures, signedTimestamp, SIGNING_KEYS_MAX, signingKeysDerived } from '../../relay/sign.ts';

test('special addresses are recognised, IPv4 carried in IPv6 judged by the IPv4 address', (t) => {
  const cases: Array<[string, string | null]> = [
    ['127.0.0.1', 'loopback'],
    ['10.20.30.40', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['172.32.0.1', null],
    ['192.168.1.1', 'private'],
    ['169.254.169.254', 'cloud metadata'],
    ['100.100.100.200', 'cloud metadata'],
    ['169.254.1.1', 'link-local'],
    ['100.64.0.1', 'shared (carrier-grade NAT)'],
    ['0.0.0.0', 'unspecified'],
    ['255.255.255.255', 'broadcast'],
    ['224.0.0.1', 'multicast'],
    ['198.18.0.1', 'reserved'],
    ['240.0.0.1', 'reserved'],
    ['8.8.8.8', null],
    ['::1', 'loopback'],
    ['::', 'unspecified'],
    ['fe80::1', 'link-local'],
    ['fd00::1', 'private (unique local)'],
    ['fd00:ec2::254', 'cloud metadata'],
    ['fec0::1', 'private (site-local)'],
    ['ff02::1', 'multicast'],
    ['2001:db8::1', 'reserved'],
    ['100::1', 'discard'],
    ['::2:3:4', 'reserved (outside 2000::/3)'],
    ['2001:4860:4860::8888', null],
    // IPv4-mapped, both spellings
    ['::ffff:10.0.0.1', 'private, as IPv4-mapped of 10.0.0.1'],
    ['::ffff:127.0.0.1', 'loopback, as IPv4-mapped of 127.0.0.1'],
    ['::ffff:7f00:2', 'loopback, as IPv4-mapped of 127.0.0.2'],
    ['0:0:0:0:0:ffff:a9fe:a9fe', 'cloud metadata, as IPv4-mapped of 169.254.169.254'],
    ['::ffff:8.8.8.8', null],
    // IPv4-translated, IPv4-compatible
    ['::ffff:0:a00:1', 'private, as IPv4-translated of 10.0.0.1'],
    ['::7f00:1', 'loopback, as IPv4-compatible of 127.0.0.1'],
    ['::a9fe:a9fe', 'cloud metadata, as IPv4-compatible of 169.254.169.254'],
    // NAT64
    ['64:ff9b::10.0.0.1', 'private, as NAT64 of 10.0.0.1'],
    ['64:ff9b::808:808', null],
    ['64:ff9b:1::7f00:1', 'loopback, as NAT64 (local use) of 127.0.0.1'],
    ['64:ff9b:1:7f08:808:808:808:808', 'loopback, as NAT64 (local use) of 127.8.8.8'], // read with a /48 prefix
    ['64:ff9b:1::808:808', 'unspecified, as NAT64 (local use) of 0.0.0.8'], // public only if read with a /96 prefix
    // 6to4: bits 16-48
    ['2002:7f00:1::1', 'loopback, as 6to4 of 127.0.0.1'],
    ['2002:a9fe:a9fe::', 'cloud metadata, as 6to4 of 169.254.169.254'],
    ['2002:808:808::1', null],
    // Teredo: the server (bits 32-64) and the client (last 32 bits, inverted)
    ['2001:0:7f00:1::', 'loopback, as Teredo of 127.0.0.1'],
    ['2001:0:808:808::f5ff:fffe', 'private, as Teredo of 10.0.0.1'],
    ['2001:0:808:808::f7f7:f7f7', null],
    // not an address at all
    ['localhost', 'not an IP address'],
  ];
  for (const [address, kind] of cases) t.is(specialKind(address), kind, address);
});

test('embedded IPv4 addresses: where each form carries them', (t) => {
  const carried = (text: string) => {
    const found = embeddedIPv4(parseAddress(text)!);
    return found && { via: found.via, addresses: found.addresses.map(String) };
  };
  t.deepEqual(carried('::ffff:7f00:2'), { via: 'IPv4-mapped', addresses: ['127.0.0.2'] });
  t.deepEqual(carried('2002:c000:0204::1'), { via: '6to4', addresses: ['192.0.2.4'] });
  t.deepEqual(carried('2001:0:4136:e378:8000:63bf:3fff:fdd2'), { via: 'Teredo', addresses: ['65.54.227.120', '192.0.2.45'] });
  t.is(carried('::1'), null);
  t.is(carried('2a00:1450::1'), null);
  t.is(carried('127.0.0.1'), null);
});

test('the allow-list lets named networks through, and nothing else', (t) => {
  const allow = parseNetworks('127.0.0.0/8, ::1/128, 10.1.2.3');
  t.is(refusal('127.0.0.1', allow), null);
  t.is(refusal('::1', allow), null);
  t.is(refusal('::ffff:127.0.0.1', allow), null, 'an IPv4-mapped address is its IPv4 address on the wire');
  t.is(refusal('10.1.2.3', allow), null);
  t.is(refusal('10.1.2.4', allow), '10.1.2.4 (private) is not a public address and RELAY_ALLOW_NETWORKS (127.0.0.0/8, ::1/128, 10.1.2.3) does not include it');
  t.regex(refusal('2002:7f00:1::', allow)!, /loopback, as 6to4 of 127\.0\.0\.1/, 'a 6to4 address goes to a relay, not to the IPv4 address: allowed only as written');
  t.is(refusal('8.8.8.8', parseNetworks('')), null);
  const one = parseNetworks('127.0.0.1/32');
  t.is(refusal('::ffff:7f00:1', one), null);
  t.regex(refusal('::ffff:7f00:2', one)!, /^::ffff:7f00:2 \(loopback, as IPv4-mapped of 127\.0\.0\.2\) is not a public address and RELAY_ALLOW_NETWORKS \(127\.0\.0\.1\/32\) does not include it$/);
  for (const bad of ['localhost', '10.0.0.0/33', '::1/129', '10.0.0.0/', '10.0.0.0/8/1', '10.0.0.0/x', '10.1/16', '0x0a.0.0.0/8', '10.0.0.0/-1']) {
    t.throws(() => parseNetworks(bad), { message: /is not a network in CIDR form/ }, bad);
  }
});

// An entry the parser once took without a word: a zone (fe80::1%eth0/64, read as
// fe80::/64 on every interface, the zone dropped), a prefix with a leading zero
// (10.0.0.0/08, read as /8 where other tools read octal or refuse it), an address
// with bits past its prefix (10.0.0.1/8, read as all of 10.0.0.0/8 where a /32 may
// have been meant). Each is refused at start, naming the variable and the entry.
test('RELAY_ALLOW_NETWORKS takes plain CIDRs only: a zone, a padded prefix or host bits past the prefix stop the relay at start, named', (t) => {
  for (const bad of ['fe80::1%eth0/64', 'fe80::%eth0/64', 'fe80::1%eth0', '10.0.0.0/08', '::1/0128', '10.0.0.0/008', '10.0.0.1/8', 'fe80::1/64', '127.0.0.1/0']) {
    t.throws(() => parseNetworks(bad), { message: /is not a network in CIDR form/ }, bad);
    t.is(t.throws(() => relaySettings({ DATABASE_URL: 'postgres://d', RELAY_ALLOW_NETWORKS: `127.0.0.0/8, ${bad}` }))?.message,
      `RELAY_ALLOW_NETWORKS: ${JSON.stringify(bad)} is not a network in CIDR form such as 127.0.0.0/8 or ::1/128 (a network's first address, its prefix in plain decimal, no zone)`, bad);
  }
  const plain = parseNetworks('10.0.0.0/8, fe80::/64, 10.1.2.3, ::1, 0.0.0.0/0, 192.168.0.0/16');
  t.deepEqual(plain.cidrs, ['10.0.0.0/8', 'fe80::/64', '10.1.2.3', '::1', '0.0.0.0/0', '192.168.0.0/16']);
  t.is(refusal('fe80::5', plain), null);
  t.is(refusal('10.200.0.1', plain), null);
});

test('an address literal in the URL is refused before any connection, in every spelling; the tenant learns only that', (t) => {
  const allow = parseNetworks('127.0.0.1/32');
  const spellings = [
    'http://127.0.0.2/', 'http://2130706434/', 'http://0x7f000002/', 'http://0x7f.0.0.2/', 'http://0177.0.0.2/', 'http://127.2/',
    'http://[::ffff:127.0.0.2]/', 'http://[::ffff:7f00:2]/', 'http://[::127.0.0.2]/', 'http://[64:ff9b::7f00:2]/',
    'http://[2002:7f00:2::]/', 'http://[2001:0:7f00:2::80ff:fffd]/', 'https://[::ffff:a9fe:a9fe]/latest/meta-data',
    'http://[::ffff:10.0.0.1]/', 'http://[fd00:ec2::254]/',
  ];
  for (const url of spellings) {
    const refused = refuseLiteralHost(new URL(url), allow);
    t.is(refused?.message, TENANT_REFUSAL, url);
    t.regex(refused?.detail ?? '', /^destination refused: .+ is not a public address and RELAY_ALLOW_NETWORKS \(127\.0\.0\.1\/32\) does not include it$/, url);
  }
  // the resolver reads spellings that the URL parser leaves to it
  for (const host of ['127.2', '0x7f.0.0.2', '017700000002', '[::ffff:7f00:2]']) t.is(refuseLiteral(host, allow)?.message, TENANT_REFUSAL, host);
  t.is(refuseLiteralHost(new URL('http://127.0.0.1:8080/hook'), allow), null);
  t.is(refuseLiteralHost(new URL('http://[::ffff:127.0.0.1]:8080/hook'), allow), null);
  t.is(refuseLiteralHost(new URL('https://93.184.215.14/hook'), parseNetworks('')), null);
  t.is(refuseLiteralHost(new URL('https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/hook'), parseNetworks('')), null);
  t.is(refuseLiteralHost(new URL('https://hooks.example.com/hook'), parseNetworks('')), null, 'names are checked when they resolve');
});

test('a name is checked on the addresses it resolves to', async (t) => {
  const resolve = (allow: string) =>
    new Promise<{ error: (Error & { detail?: string }) | null; address: unknown }>((done) =>
      guardedLookup(parseNetworks(allow), receiverResolver({ servers: null, timeoutMs: 5_000 }))('localhost', { family: 4 }, (error, address) => done({ error, address })),
    );
  const refused = await resolve('');
  t.is(refused.error?.message, TENANT_REFUSAL);
  t.regex(refused.error?.detail ?? '', /^destination refused: localhost resolves to 127\.0\.0\.1 \(loopback\)/);
  const allowed = await resolve('127.0.0.0/8');
  t.is(allowed.error, null);
  t.is(allowed.address, '127.0.0.1');
});

test('settings: defaults, and bad values named', (t) => {
  const settings = relaySettings({ DATABASE_URL: 'postgres://x@localhost/db' });
  t.like(settings, { databaseRole: 'bpd_webhooks_relay', batchSize: 200, maxInFlight: 512, perWebhookInFlight: 32, prefetch: 32, leaseMs: 60_000, requestTimeoutMs: 15_000, databaseConnectionLifetimeMs: 300_000 });
  t.deepEqual(settings.allowNetworks.cidrs, []);
  t.is(relaySettings({ DATABASE_URL: 'postgres://d', RELAY_PER_WEBHOOK_IN_FLIGHT: '4' }).prefetch, 4, 'prefetch follows the per-webhook cap');
  t.is(relaySettings({ DATABASE_URL: 'postgres://d', RELAY_PREFETCH: '0' }).prefetch, 0);
  t.is(relaySettings({ DATABASE_URL: 'postgres://x@localhost/db', RELAY_DB_ROLE: '' }).databaseRole, null);
  // an empty number is unset, as an empty RELAY_PREFETCH, RELAY_ID or RELAY_METRICS_PORT
  // is (a compose file's `RELAY_BATCH_SIZE: ${RELAY_BATCH_SIZE}` with it unset): it
  // stopped the relay, 'must be a whole number …, got ""'
  t.like(relaySettings({ DATABASE_URL: 'postgres://d', RELAY_BATCH_SIZE: '', RELAY_LEASE_MS: '', RELAY_REQUEST_TIMEOUT_MS: '', RELAY_DB_CONNECTION_LIFETIME_MS: '' }),
    { batchSize: 200, leaseMs: 60_000, requestTimeoutMs: 15_000, databaseConnectionLifetimeMs: 300_000 });
  t.deepEqual(relaySettings({}, { DATABASE_URL: 'postgres://d', RELAY_ALLOW_NETWORKS: '127.0.0.0/8' }).allowNetworks.cidrs, ['127.0.0.0/8']);

  const error = (env: Record<string, string>) => t.throws(() => relaySettings({ DATABASE_URL: 'postgres://x@localhost/db', ...env }))?.message;
  t.is(t.throws(() => relaySettings({}))?.message, 'DATABASE_URL is not set: the relay needs the database to drain');
  // (pg's forms: a URL of postgres:, postgresql: or socket:, or a socket's folder and a database)
  for (const url of ['postgresql://x@localhost:5432/db', 'socket:/var/run/postgresql?db=bpd', '/var/run/postgresql bpd']) {
    t.is(relaySettings({ DATABASE_URL: url }).databaseUrl, url);
  }
  for (const url of ['bpd', 'host=db dbname=bpd', 'postgres://db:99999/bpd', 'postgres://db:abc/bpd']) {
    t.regex(t.throws(() => relaySettings({ DATABASE_URL: url }))?.message ?? '', /^DATABASE_URL is no URL \(or its port is none\): it must be postgres:\/\//, url);
  }
  t.regex(t.throws(() => relaySettings({ DATABASE_URL: 'mysql://db/bpd' }))?.message ?? '', /^DATABASE_URL's scheme is "mysql:"/);
  t.is(error({ RELAY_BATCH_SIZE: 'lots' }), 'RELAY_BATCH_SIZE must be a whole number from 1 to 10000, got "lots"');
  t.is(error({ RELAY_DB_CONNECTION_LIFETIME_MS: '5m' }), 'RELAY_DB_CONNECTION_LIFETIME_MS must be a whole number from 100 to 86400000, got "5m"');
  t.is(error({ RELAY_MAX_IN_FLIGHT: '0' }), 'RELAY_MAX_IN_FLIGHT must be a whole number from 1 to 100000, got "0"');
  t.regex(error({ RELAY_LEASE_MS: '1000', RELAY_REQUEST_TIMEOUT_MS: '1000' })!, /^RELAY_LEASE_MS \(1000\) must be longer than RELAY_REQUEST_TIMEOUT_MS \(1000\)/);
  t.regex(error({ RELAY_PER_WEBHOOK_IN_FLIGHT: '4', RELAY_PREFETCH: '5' })!, /^RELAY_PREFETCH \(5\) must not exceed RELAY_PER_WEBHOOK_IN_FLIGHT \(4\)/);
  t.regex(error({ RELAY_ALLOW_NETWORKS: '10.0.0.0/40' })!, /^RELAY_ALLOW_NETWORKS: "10\.0\.0\.0\/40" is not a network/);
  t.is(settings.dnsServers, null, "the system's DNS servers");
  t.deepEqual(relaySettings({ DATABASE_URL: 'postgres://d', RELAY_DNS_SERVERS: '10.0.0.2, 127.0.0.1:5353, ::1, [::1]:53' }).dnsServers,
    ['10.0.0.2', '127.0.0.1:5353', '::1', '[::1]:53']);
  for (const bad of ['dns.example.com', '10.0.0.2:0', '10.0.0.2:99999', '[::1]', '10.0.0.256']) {
    t.is(error({ RELAY_DNS_SERVERS: bad }), `RELAY_DNS_SERVERS: ${JSON.stringify(bad)} is not a DNS server such as 10.0.0.2, 127.0.0.1:5353 or [::1]:53`, bad);
  }
  t.regex(error({ RELAY_DB_ROLE: 'x; drop table y' })!, /^RELAY_DB_ROLE must be a plain role name/);
  t.regex(error({ RELAY_LOG_LEVEL: 'loud' })!, /^RELAY_LOG_LEVEL must be one of/);
});

test('signatures verify with the standardwebhooks package, both of them during a rotation', (t) => {
  const current = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
  const previous = 'whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD';
  const body = '{"type": "contact.created", "data": {"contact": {"id": 1, "first_name": "Zoë"}}}';
  const signatureHeaders = (secret: string, previousSecrets: string[]) => {
    const timestamp = signedTimestamp(Date.now());
    return deliveryHeaders('test', 'msg_1', timestamp, signatures('msg_1', body, secret, previousSecrets, timestamp));
  };
  const headers = signatureHeaders(current, [previous]);
  t.is(headers['webhook-id'], 'msg_1');
  t.regex(headers['webhook-timestamp'], /^\d{10}$/);
  t.is(headers['webhook-signature'].split(' ').length, 2);
  for (const secret of [current, previous]) {
    t.notThrows(() => new Webhook(secret).verify(body, { ...headers }), secret);
  }
  t.is(headers['webhook-signature'].split(' ')[0], new Webhook(current).sign('msg_1', new Date(Number(headers['webhook-timestamp']) * 1000), body));
  t.is(signatureHeaders(current, [])['webhook-signature'].split(' ').length, 1);
  t.throws(() => new Webhook('whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA').verify(body, { ...headers }));
});

test('the signing keys kept (SIGNING_KEYS_MAX): one more secret than the bound forgets the least recently used key, not every key', (t) => {
  // a fleet with more webhooks than the bound signs with each of them in turn
  const secret = (i: number) => `whsec_${Buffer.from(`bound-${i}`.padEnd(32, '.')).toString('base64')}`;
  const signWith = (from: number, to: number) => {
    const before = signingKeysDerived();
    for (let i = from; i < to; i++) sign(secret(i), 'msg_1', 1, '{}');
    return signingKeysDerived() - before;
  };
  t.is(signWith(0, SIGNING_KEYS_MAX), SIGNING_KEYS_MAX, 'each secret derived once');
  t.is(signWith(0, SIGNING_KEYS_MAX), 0, 'all of them kept');
  t.is(signWith(SIGNING_KEYS_MAX, SIGNING_KEYS_MAX + 1), 1, 'one more');
  t.is(signWith(1, SIGNING_KEYS_MAX), 0, 'the others are still kept');
  t.is(signWith(0, 1), 1, 'the least recently used one was forgotten');
  // a key used again is the most recent: the next one forgotten is another
  t.is(signWith(1, 2), 0);
  t.is(signWith(SIGNING_KEYS_MAX + 1, SIGNING_KEYS_MAX + 2), 1);
  t.is(signWith(1, 2), 0, 'kept: it was used more recently than the one forgotten');
});

test('the verdicts kept on receiver hosts (DESTINATION_VERDICTS_MAX): one more host than the bound forgets the least recently asked, not every verdict', (t) => {
  // a fleet with more receiver hosts than the bound sends to each of them in turn
  const allow = parseNetworks('');
  const host = (i: number) => `hooks-${i}.example.com`;
  const ask = (from: number, to: number) => {
    const before = destinationsJudged();
    for (let i = from; i < to; i++) refuseLiteral(host(i), allow);
    return destinationsJudged() - before;
  };
  t.is(ask(0, DESTINATION_VERDICTS_MAX), DESTINATION_VERDICTS_MAX, 'each host judged once');
  t.is(ask(0, DESTINATION_VERDICTS_MAX), 0, 'all of them kept');
  t.is(ask(DESTINATION_VERDICTS_MAX, DESTINATION_VERDICTS_MAX + 1), 1, 'one more');
  t.is(ask(1, DESTINATION_VERDICTS_MAX), 0, 'the others are still kept');
  t.is(ask(0, 1), 1, 'the least recently asked one was forgotten');
  // a host asked again is the most recent: the next one forgotten is another
  t.is(ask(1, 2), 0);
  t.is(ask(DESTINATION_VERDICTS_MAX + 1, DESTINATION_VERDICTS_MAX + 2), 1);
  t.is(ask(1, 2), 0, 'kept: it was asked more recently than the one forgotten');
  t.is(allow.hostVerdicts.size, DESTINATION_VERDICTS_MAX);
});

test('a bounded cache: a key used again, the last used or another, is kept over those used before it', (t) => {
  const cache = new Map<string, string>();
  const made: string[] = [];
  const use = (...keys: string[]) => {
    for (const key of keys) leastRecentlyUsed(cache, key, 2, (k) => (made.push(k), k.toUpperCase()));
  };
  use('a', 'b', 'a', 'a', 'c');
  t.deepEqual([...cache.keys()], ['a', 'c'], 'b, used least recently, forgotten');
  use('a', 'c', 'a', 'b');
  t.deepEqual([...cache.keys()], ['a', 'b'], 'c forgotten: a was used after it, last and again');
  use('b', 'b', 'a', 'd');
  t.deepEqual([...cache.keys()], ['a', 'd'], 'b forgotten: a was used after it');
  t.deepEqual(made, ['a', 'b', 'c', 'b', 'd'], 'each made once a miss');
  t.is(leastRecentlyUsed(cache, 'd', 2, () => 'not made'), 'D');
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

test('the settle\'s array parameters: numbers and bigint strings as they are, NULL for null, times in UTC to the millisecond', (t) => {
  t.is(numberArray(['9007199254740993', '1']), '{9007199254740993,1}');
  t.is(numberArray([204, null, 0]), '{204,NULL,0}');
  t.is(numberArray([]), '{}');
  t.is(timeArray([new Date(Date.UTC(2026, 11, 1, 23, 59, 59, 7)), new Date(0)]), '{2026-12-01T23:59:59.007Z,1970-01-01T00:00:00.000Z}');
});
