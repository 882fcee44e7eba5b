// Whose refused tokens a request counts under (api/token-failures.ts): the connection's
// address, an IPv6 one by its /64; X-Forwarded-For only from a proxy the operator names.
import test from 'ava';
import type { IncomingMessage } from 'node:http';
import { clientKey, TokenFailures, trustedProxies } from '../../api/token-failures.ts';

function request(remoteAddress: string, forwardedFor?: string): IncomingMessage {
  return { socket: { remoteAddress }, headers: forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor } } as unknown as IncomingMessage;
}

test('the connection\'s address, IPv4 as itself, IPv6 by its /64 however it is written', (t) => {
  const none = trustedProxies({});
  t.is(clientKey(request('::ffff:192.0.2.7'), none), '192.0.2.7');
  t.is(clientKey(request('2001:db8::1'), none), '2001:0db8:0000:0000::/64');
  t.is(clientKey(request('2001:DB8:0:0:ffff::2'), none), '2001:0db8:0000:0000::/64');
  t.not(clientKey(request('2001:db8:0:1::1'), none), clientKey(request('2001:db8::1'), none));
});

test('X-Forwarded-For is ignored unless the connection is from a trusted proxy; from one, its last address not a proxy counts', (t) => {
  t.is(clientKey(request('192.0.2.7', '203.0.113.9'), trustedProxies({})), '192.0.2.7', 'anyone can send the header');
  const proxies = trustedProxies({ API_TRUSTED_PROXIES: '10.0.0.1, 10.0.0.2' });
  t.is(clientKey(request('192.0.2.7', '203.0.113.9'), proxies), '192.0.2.7');
  // what the client wrote itself (198.51.100.1) comes before what the proxies added
  t.is(clientKey(request('::ffff:10.0.0.1', '198.51.100.1, 203.0.113.9, 10.0.0.2'), proxies), '203.0.113.9');
  t.is(clientKey(request('10.0.0.1', 'not-an-address, 2001:db8::5'), proxies), '2001:0db8:0000:0000::/64');
  t.is(clientKey(request('10.0.0.1'), proxies), '10.0.0.1', 'no header: the proxy itself');
  t.throws(() => trustedProxies({ API_TRUSTED_PROXIES: '10.0.0.1/8' }), { message: /API_TRUSTED_PROXIES must name IP addresses/ });
});

test('an address is refused past its burst until its bucket fills; a token that passes is not counted; the table is bounded', (t) => {
  let now = 0;
  const failures = new TokenFailures({ perSecond: 2, burst: 3 }, () => now);
  for (let i = 0; i < 3; i++) {
    t.is(failures.waitMs('a'), 0);
    failures.checking('a');
  }
  t.is(failures.waitMs('a'), 500);
  t.is(failures.waitMs('b'), 0, 'another address is not refused');
  now = 500;
  t.is(failures.waitMs('a'), 0);
  failures.checking('a');
  failures.passed('a');
  t.is(failures.waitMs('a'), 0);
  for (let i = 0; i < 20_000; i++) failures.checking(`x${i}`);
  t.true(failures.addresses <= 10_000, String(failures.addresses));
});

test('API_TRUSTED_PROXIES takes networks: a connection inside one has its forwarded address counted, one outside its own', (t) => {
  const proxies = trustedProxies({ API_TRUSTED_PROXIES: '10.1.0.0/16 2001:db8:aa::/48,::ffff:172.16.0.0/112, 192.0.2.9' });
  t.is(clientKey(request('10.1.200.3', '203.0.113.9'), proxies), '203.0.113.9', 'IPv4, inside');
  t.is(clientKey(request('::ffff:10.1.0.1', '203.0.113.9'), proxies), '203.0.113.9', 'IPv4-mapped connection, inside');
  t.is(clientKey(request('10.2.0.1', '203.0.113.9'), proxies), '10.2.0.1', 'IPv4, outside');
  t.is(clientKey(request('2001:db8:aa:ff::7', '198.51.100.4'), proxies), '198.51.100.4', 'IPv6, inside');
  t.is(clientKey(request('2001:db8:ab::7', '198.51.100.4'), proxies), '2001:0db8:00ab:0000::/64', 'IPv6, outside');
  t.is(clientKey(request('172.16.9.9', '198.51.100.4'), proxies), '198.51.100.4', 'an IPv4 network written as IPv6, inside');
  t.is(clientKey(request('172.17.0.1', '198.51.100.4'), proxies), '172.17.0.1', 'an IPv4 network written as IPv6, outside');
  t.is(clientKey(request('192.0.2.9', '198.51.100.4'), proxies), '198.51.100.4', 'a single address');
  t.is(clientKey(request('192.0.2.10', '198.51.100.4'), proxies), '192.0.2.10');
  // a hop inside the network is a proxy too: the client is the last one outside it
  t.is(clientKey(request('10.1.0.1', '198.51.100.1, 203.0.113.9, 10.1.5.5'), proxies), '203.0.113.9');
  // an IPv4 network does not match the IPv6 address that happens to share its bits
  t.is(clientKey(request('::a01:1', '203.0.113.9'), proxies), '0000:0000:0000:0000::/64');
});

test('a malformed API_TRUSTED_PROXIES entry stops the API at start, named in one line', (t) => {
  for (const word of ['10.0.0.1/8', '10.0.0.0/33', '10.0.0.0/08', 'fe80::/10%eth0', '10.0.0', 'proxy.internal', '2001:db8::/64/1', '::/129']) {
    const error = t.throws(() => trustedProxies({ API_TRUSTED_PROXIES: `192.0.2.1, ${word}` }));
    t.is(error?.message, `API_TRUSTED_PROXIES must name IP addresses or networks in CIDR form such as 10.0.0.0/8 ` +
      `or 2001:db8::/64 (comma separated), got ${JSON.stringify(word)}`, word);
    t.false(error?.message.includes('\n'));
  }
});
