// How the relay finds a receiver's addresses: by DNS queries from the event loop
// (c-ares, node:dns's Resolver), not by the system's getaddrinfo (dns.lookup).
//
// getaddrinfo runs on libuv's thread pool, four threads shared with the file system
// and crypto. A tenant whose webhooks name hosts whose DNS never answers (a zone
// delegated to a server that drops queries: a minute to set up) would hold all four
// for the resolver's timeout, again and again, and every other company's new
// connections would wait behind them: one company starving all the others. c-ares
// sends any number of queries at once from the event loop, each bounded by its
// timeout; a name that hangs holds nothing but its own request.
//
// The system is still asked for names no tenant can delegate: `localhost` and its
// subdomains, and names of one label (the hosts file, the operator's search domains).
// Those go through getaddrinfo as before.
import type { LookupAddress } from 'node:dns';
import { lookup as systemLookup, Resolver } from 'node:dns/promises';

export interface ReceiverResolver {
  /** The addresses of `hostname` (IPv4 first), as dns.lookup({ all: true }) gives them. */
  lookup(hostname: string, family: 0 | 4 | 6): Promise<LookupAddress[]>;
  /** Ends the queries under way (they fail with ECANCELLED). */
  close(): void;
}

/**
 * Once the A query has answered with addresses, how long the AAAA query is waited for:
 * some servers never answer AAAA queries, and the name's IPv4 addresses need not wait
 * the whole DNS timeout for them. The A answer is always waited for (within the DNS
 * timeout), whichever comes first: until 2026-12-07 the grace ran from the first answer
 * of either family, and an A answer slower than an AAAA one (not in the server's
 * cache) was dropped: a name whose AAAA address the relay may not send to (a private
 * one) was refused although its IPv4 address was allowed, and on a host without an
 * IPv6 route the connection failed (test/relay/dns.test.ts).
 */
export const OTHER_FAMILY_GRACE_MS = 50;

type Asked = PromiseSettledResult<string[]>;

/** The A and AAAA answers; the AAAA waited for OTHER_FAMILY_GRACE_MS at most once the A has addresses. */
async function bothFamilies(v4: Promise<string[]>, v6: Promise<string[]>): Promise<[Asked, Asked]> {
  const [a, aaaa] = [v4, v6].map((p) => p.then(
    (value): Asked => ({ status: 'fulfilled', value }),
    (reason: unknown): Asked => ({ status: 'rejected', reason }),
  )) as [Promise<Asked>, Promise<Asked>];
  const first = await a;
  if (first.status !== 'fulfilled' || first.value.length === 0) return [first, await aaaa];
  let timer: NodeJS.Timeout | undefined;
  const grace = new Promise<Asked>((resolve) => {
    timer = setTimeout(resolve, OTHER_FAMILY_GRACE_MS, { status: 'fulfilled', value: [] });
  });
  const second = await Promise.race([aaaa, grace]);
  clearTimeout(timer);
  return [first, second];
}

/** Names the system resolves (hosts file, search domains): none a tenant can delegate. */
export function askSystem(hostname: string): boolean {
  const name = hostname.toLowerCase().replace(/\.$/, '');
  return !name.includes('.') || name === 'localhost' || name.endsWith('.localhost');
}

/**
 * A resolver for receivers' names: `servers` (address or address:port; null: the
 * system's, from resolv.conf), each query given up after about `timeoutMs`.
 */
export function receiverResolver(options: { servers: string[] | null; timeoutMs: number }): ReceiverResolver {
  // two tries, a quarter of the time and then (c-ares doubles it) half: a lost packet
  // is asked again once, and a name that never answers is told as such before the
  // connect timeout that covers the lookup ends the attempt
  const resolver = new Resolver({ timeout: Math.max(25, Math.floor(options.timeoutMs / 4)), tries: 2 });
  if (options.servers) resolver.setServers(options.servers);
  return {
    async lookup(hostname, family) {
      if (askSystem(hostname)) return systemLookup(hostname, { all: true, family });
      const asked = await bothFamilies(
        family === 6 ? Promise.resolve([]) : resolver.resolve4(hostname),
        family === 4 ? Promise.resolve([]) : resolver.resolve6(hostname),
      );
      const addresses: LookupAddress[] = [];
      for (const [i, result] of asked.entries()) {
        if (result.status === 'fulfilled') for (const address of result.value) addresses.push({ address, family: i === 0 ? 4 : 6 });
      }
      if (addresses.length > 0) return addresses;
      // neither answered with an address: a timeout says more than "no such name"
      const errors = asked.flatMap((r) => (r.status === 'rejected' ? [r.reason as NodeJS.ErrnoException] : []));
      const error = errors.find((e) => e.code === 'ETIMEOUT') ?? errors[0];
      throw error ?? Object.assign(new Error(`queryA ENODATA ${hostname}`), { code: 'ENODATA', hostname });
    },
    close() {
      resolver.cancel();
    },
  };
}
