// Each client address's rate of refused tokens: a bucket of failures for each address
// (an IPv6 one by its /64, what one host or network is given), holding at most `burst`
// and filling at `perSecond`; a token refused (401) takes one, and a request from an
// address whose bucket is empty is refused (api/server.ts: 429, before its token's
// signature is checked) unless its token is one kept verified (api/auth.ts).
//
// Why: the company's rate (api/request-rate.ts) is counted once a token names its
// company. A request without a token or with a bad one cost the API's one thread 250
// to 480 µs, and a client that sent them as fast as it could, a few thousand a second,
// held the thread every company shares (test/api/token-failure-rate.test.ts).
//
// The client's address is the connection's, or, from a proxy the operator names
// (API_TRUSTED_PROXIES), the one it adds to X-Forwarded-For: a header anyone can send
// is believed only from a proxy that writes it.
import { isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';
import ipaddr from 'ipaddr.js';
import { parseNetworks } from '../relay/destinations.ts';
import { PlanningBudget } from './planning-budget.ts';

/** The environment variable naming the proxies whose X-Forwarded-For is believed. */
export const API_TRUSTED_PROXIES = 'API_TRUSTED_PROXIES';

/** How many addresses are counted at once: the one that failed longest ago goes first. */
export const TOKEN_FAILURE_ADDRESSES_KEPT = 10_000;

/** The proxies whose X-Forwarded-For is believed: has() takes an address as plainAddress writes it. */
export interface TrustedProxies {
  has(address: string): boolean;
}

/**
 * The proxies of API_TRUSTED_PROXIES (comma or space separated): addresses, or networks
 * in CIDR form (10.0.0.0/8, 2001:db8::/64, ::ffff:10.0.0.0/104 for IPv4 ones written
 * as IPv6), as relay/destinations.ts reads a network: its first address, its prefix in
 * plain decimal, no zone. A word that is none stops the API at start, named.
 */
export function trustedProxies(env: NodeJS.ProcessEnv = process.env): TrustedProxies {
  const words = (env[API_TRUSTED_PROXIES] ?? '').split(/[\s,]+/).filter((word) => word !== '');
  const networks: Array<[ipaddr.IPv4 | ipaddr.IPv6, number]> = [];
  for (const word of words) {
    let network: [ipaddr.IPv4 | ipaddr.IPv6, number];
    try {
      network = parseNetworks(word).networks[0]!;
    } catch {
      throw new Error(`${API_TRUSTED_PROXIES} must name IP addresses or networks in CIDR form such as 10.0.0.0/8 ` +
        `or 2001:db8::/64 (comma separated), got ${JSON.stringify(word)}`);
    }
    const [address, prefix] = network;
    // an IPv4 network written as IPv6 (::ffff:10.0.0.0/104): addresses are compared as IPv4
    if (address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress() && prefix >= 96) {
      networks.push([(address as ipaddr.IPv6).toIPv4Address(), prefix - 96]);
    } else {
      networks.push(network);
    }
  }
  return {
    has(address: string): boolean {
      if (networks.length === 0 || isIP(address) === 0) return false;
      const parsed = ipaddr.parse(address);
      return networks.some(([network, prefix]) => network.kind() === parsed.kind() && parsed.match(network, prefix));
    },
  };
}

/** An IPv4 address as itself (also one written as IPv6, ::ffff:a.b.c.d); an IPv6 one in full, eight groups of four, lower case. */
function plainAddress(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (isIP(address) !== 6) return address;
  // (the URL parser writes it canonically: lower case, hex groups only, one ::)
  const canonical = new URL(`http://[${address.replace(/%.*$/, '')}]/`).hostname.slice(1, -1);
  const [head, tail] = canonical.split('::') as [string, string | undefined];
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const full = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return full.map((group) => group.padStart(4, '0')).join(':');
}

/**
 * What the request's failures are counted under: its client's IPv4 address, or the /64
 * of its IPv6 one. The connection's address, or the last of X-Forwarded-For's that is not
 * a trusted proxy when the connection is from one (what a client writes there itself
 * comes before what the proxies add).
 */
export function clientKey(req: IncomingMessage, trusted: TrustedProxies): string {
  let address = plainAddress(req.socket.remoteAddress ?? '');
  if (trusted.has(address)) {
    const header = req.headers['x-forwarded-for'];
    const forwarded = (Array.isArray(header) ? header.join(',') : header ?? '').split(',').map((word) => word.trim());
    for (let i = forwarded.length - 1; i >= 0; i--) {
      const hop = forwarded[i]!;
      if (isIP(hop) === 0) break;
      address = plainAddress(hop);
      if (!trusted.has(address)) break;
    }
  }
  return isIP(address) === 6 ? address.split(':').slice(0, 4).join(':') + '::/64' : address;
}

export interface TokenFailureLimits {
  /** refused tokens an address may send in a second, over time */
  perSecond: number;
  /** refused tokens it may send at once, after a quiet spell */
  burst: number;
}

export class TokenFailures {
  readonly #buckets: PlanningBudget;

  constructor(limits: TokenFailureLimits, now?: () => number) {
    this.#buckets = new PlanningBudget({ msPerSecond: limits.perSecond, burstMs: limits.burst }, now,
      TOKEN_FAILURE_ADDRESSES_KEPT);
  }

  /** Addresses whose tokens were refused lately (their bucket is not full). */
  get addresses(): number {
    return this.#buckets.companies;
  }

  /** 0 when a token of the address may be checked; else how many milliseconds until one may. */
  waitMs(key: string): number {
    return this.#buckets.waitMs(key);
  }

  /**
   * A token of the address is being checked: counted as refused until it passes (the
   * check is not synchronous, and as many as a client sends at once were checked while
   * its bucket held one).
   */
  checking(key: string): void {
    this.#buckets.spend(key, 1);
  }

  /** The token counted by checking() passed: it is not counted. */
  passed(key: string): void {
    this.#buckets.spend(key, -1);
  }
}
