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
  t.throws(() => trustedProxies({ API_TRUSTED_PROXIES: '10.0.0.0/8' }), { message: /API_TRUSTED_PROXIES must name IP addresses/ });
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
