// The destination guard. A webhook URL is written by a customer's admin, so the relay
// must not become a way into the networks it runs in: it sends only to public unicast
// addresses, unless RELAY_ALLOW_NETWORKS names the network.
//
// Addresses are parsed and classified with ipaddr.js (its IANA special-purpose ranges),
// not with hand-written patterns: an address has many spellings, and a pattern that
// knows one of them is a bypass for the others. An IPv6 address that carries an IPv4
// address (IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64, 6to4, Teredo) is
// judged by the IPv4 address it carries, since that is where its packets end up.
//
// Where the check runs: on the URL's host when it is an address literal (sockets
// skip the lookup for those), on every address a name resolves to (the lookup below
// is the socket's own, so a name that resolves differently on a second look cannot
// slip past it; dns.ts says how names are resolved), and once more on the peer of each
// new connection (guardedConnector).
//
// What a tenant sees of a refusal is TENANT_REFUSAL and nothing more; which address,
// which kind of network and the allow-list are for the operator's log (`detail`).
import type { LookupAddress } from 'node:dns';
import type { Socket } from 'node:net';
import ipaddr from 'ipaddr.js';
import { buildConnector } from 'undici';
import type { ReceiverResolver } from './dns.ts';
import { leastRecentlyUsed } from './lru.ts';

type Address = ipaddr.IPv4 | ipaddr.IPv6;

/** The whole of what a refusal says in delivery history (lastError, an attempt's error). */
export const TENANT_REFUSAL = 'destination refused: not a public address';

export interface NetworkList {
  networks: Array<[Address, number]>;
  /** as given, for the operator's log */
  cidrs: string[];
  /** address literal → refusal (null: allowed), remembered: the answer never changes */
  verdicts: Map<string, string | null>;
  /** a URL's host → refusal (null: allowed, or a name, judged when it resolves) */
  hostVerdicts: Map<string, string | null>;
}

/** Parses "127.0.0.0/8, ::1/128" (a bare address means that one address). */
export function parseNetworks(text: string): NetworkList {
  const networks: Array<[Address, number]> = [];
  const cidrs: string[] = [];
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const [address = '', prefixText, extra] = part.split('/');
    // four decimal parts only: "10.1" or "0x0a.0.0.1" in a setting is a typo, not a
    // network; and no zone (fe80::1%eth0): ipaddr.js reads it and matches without it,
    // so it allowed the network on every interface
    const family = ipaddr.IPv4.isValidFourPartDecimal(address) ? 4 : ipaddr.IPv6.isValid(address) && !address.includes('%') ? 6 : 0;
    const max = family === 6 ? 128 : 32;
    const prefix = prefixText === undefined ? max : Number(prefixText);
    // a prefix in plain decimal (08 was read as 8, which other tools read otherwise),
    // and an address whose bits past the prefix are zero: 10.0.0.1/8 allowed all of
    // 10.0.0.0/8 where 10.0.0.1/32 may have been meant
    if (!family || extra !== undefined || !/^(0|[1-9]\d*)$/.test(prefixText ?? '0') || prefix > max ||
        ipaddr.parse(address).toNormalizedString() !== (family === 4 ? ipaddr.IPv4 : ipaddr.IPv6).networkAddressFromCIDR(`${address}/${prefix}`).toNormalizedString()) {
      throw new Error(`${JSON.stringify(part)} is not a network in CIDR form such as 127.0.0.0/8 or ::1/128 (a network's first address, its prefix in plain decimal, no zone)`);
    }
    networks.push([ipaddr.parse(address), prefix]);
    cidrs.push(part);
  }
  return { networks, cidrs, verdicts: new Map(), hostVerdicts: new Map() };
}

const cidr = (text: string): [Address, number] => ipaddr.parseCIDR(text);

/** Named first because they are the usual target (checked before the ranges below). */
const CLOUD_METADATA = [cidr('169.254.169.254/32'), cidr('100.100.100.200/32'), cidr('fd00:ec2::254/128')];

/** How an IPv6 range carries an IPv4 address: the byte offsets of its four octets. */
const EMBEDDING: Array<{ network: [Address, number]; name: string; octets: number[][]; xor?: number }> = [
  { network: cidr('::ffff:0:0/96'), name: 'IPv4-mapped', octets: [[12, 13, 14, 15]] },
  { network: cidr('::ffff:0:0:0/96'), name: 'IPv4-translated', octets: [[12, 13, 14, 15]] },
  { network: cidr('::/96'), name: 'IPv4-compatible', octets: [[12, 13, 14, 15]] },
  { network: cidr('64:ff9b::/96'), name: 'NAT64', octets: [[12, 13, 14, 15]] },
  // local-use NAT64 (RFC 8215): the prefix length is the local operator's choice, so
  // the address is read at every position RFC 6052 allows inside a /48 (/96, /64,
  // /56, /48; bits 64-71 are skipped) and must be public at each of them
  {
    network: cidr('64:ff9b:1::/48'),
    name: 'NAT64 (local use)',
    octets: [[12, 13, 14, 15], [9, 10, 11, 12], [7, 9, 10, 11], [6, 7, 9, 10]],
  },
  { network: cidr('2002::/16'), name: '6to4', octets: [[2, 3, 4, 5]] },
  // Teredo: the server in bits 32-63, the client obscured (xor) in the last 32 bits
  { network: cidr('2001::/32'), name: 'Teredo', octets: [[4, 5, 6, 7], [12, 13, 14, 15]] },
];
const teredo = EMBEDDING.at(-1)!;

const GLOBAL_UNICAST = cidr('2000::/3');

/** ipaddr.js range names, as the operator's log says them */
const KIND: Record<string, string> = {
  unspecified: 'unspecified',
  broadcast: 'broadcast',
  multicast: 'multicast',
  linkLocal: 'link-local',
  loopback: 'loopback',
  carrierGradeNat: 'shared (carrier-grade NAT)',
  private: 'private',
  uniqueLocal: 'private (unique local)',
  deprecatedSiteLocal: 'private (site-local)',
  reserved: 'reserved',
  benchmarking: 'benchmarking',
  discard: 'discard',
};

/** Parses an address in any spelling ipaddr.js (and so inet_aton) reads; null if it is no address. */
export function parseAddress(text: string): Address | null {
  const bare = text.replace(/^\[(.*)\]$/, '$1');
  return ipaddr.isValid(bare) ? ipaddr.parse(bare) : null;
}

/** The IPv4 addresses an IPv6 address carries (none for an ordinary one), with how it carries them. */
export function embeddedIPv4(address: Address): { via: string; addresses: ipaddr.IPv4[] } | null {
  if (address.kind() !== 'ipv6') return null;
  const v6 = address as ipaddr.IPv6;
  // :: and ::1 lie inside ::/96 but are IPv6's own unspecified and loopback addresses
  if (v6.range() === 'unspecified' || v6.range() === 'loopback') return null;
  const bytes = v6.toByteArray();
  for (const form of EMBEDDING) {
    if (!v6.match(form.network)) continue;
    const addresses = form.octets.map((offsets, i) => {
      const xor = form === teredo && i === 1 ? 0xff : 0;
      return new ipaddr.IPv4(offsets.map((at) => bytes[at]! ^ xor));
    });
    return { via: form.name, addresses };
  }
  return null;
}

function kindOfRange(address: Address): string | null {
  if (CLOUD_METADATA.some((network) => address.kind() === network[0].kind() && address.match(network))) {
    return 'cloud metadata';
  }
  const range = address.range();
  if (address.kind() === 'ipv4') return range === 'unicast' ? null : (KIND[range] ?? range);
  if (range !== 'unicast' && !['ipv4Mapped', 'rfc6145', 'rfc6052', '6to4', 'teredo'].includes(range)) {
    return KIND[range] ?? range;
  }
  return null;
}

/** What kind of special address this is, or null for an ordinary public address. */
export function specialKind(text: string): string | null {
  const address = parseAddress(text);
  if (!address) return 'not an IP address';
  const own = kindOfRange(address);
  if (own) return own;
  const embedded = embeddedIPv4(address);
  if (embedded) {
    for (const v4 of embedded.addresses) {
      const kind = kindOfRange(v4);
      if (kind) return `${kind}, as ${embedded.via} of ${v4.toString()}`;
    }
    return null;
  }
  if (address.kind() === 'ipv6' && !address.match(GLOBAL_UNICAST)) return 'reserved (outside 2000::/3)';
  return null;
}

function allowed(address: Address, allow: NetworkList): boolean {
  // an IPv4-mapped address is the IPv4 address itself on the wire; the other
  // embeddings go elsewhere (a gateway, a relay) and must be allowed as written
  const candidates = [address];
  if (address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress()) {
    candidates.push((address as ipaddr.IPv6).toIPv4Address());
  }
  return candidates.some((candidate) =>
    allow.networks.some(([network, prefix]) => network.kind() === candidate.kind() && candidate.match(network, prefix)),
  );
}

/** Null when the relay may send to this address, else why not (for the operator's log). */
export function refusal(text: string, allow: NetworkList): string | null {
  const kind = specialKind(text);
  if (kind === null) return null;
  const address = parseAddress(text);
  if (address && allowed(address, allow)) return null;
  const because = allow.cidrs.length
    ? `RELAY_ALLOW_NETWORKS (${allow.cidrs.join(', ')}) does not include it`
    : 'RELAY_ALLOW_NETWORKS is empty';
  return `${text} (${kind}) is not a public address and ${because}`;
}

/**
 * A refused destination. `message` is what delivery history shows the tenant;
 * `detail` (address, kind, allow-list) is for the operator's log.
 */
export class DestinationRefused extends Error {
  override name = 'DestinationRefused';
  readonly code = 'ERR_DESTINATION_REFUSED';
  readonly detail: string;
  constructor(detail: string) {
    super(TENANT_REFUSAL);
    this.detail = `destination refused: ${detail}`;
  }
}

function cachedRefusal(text: string, allow: NetworkList): string | null {
  return cached(allow.verdicts, text, () => refusal(text, allow));
}

/** Refuses a host that is an address literal in any spelling; null for a name (judged when it resolves). */
export function refuseLiteral(host: string, allow: NetworkList): DestinationRefused | null {
  // asked before every request: the verdict on each host is kept (parsing the address
  // cost more than the rest of the check)
  const why = cached(allow.hostVerdicts, host, () =>
    parseAddress(host) ? cachedRefusal(host.replace(/^\[(.*)\]$/, '$1'), allow) : null);
  return why ? new DestinationRefused(why) : null;
}

/**
 * The verdicts kept, in each of a NetworkList's two maps (a verdict is a string or
 * null: under 200 bytes). Past the bound the least recently asked is forgotten: a
 * fleet sending to more hosts than this judges again only those it sends to least
 * often, one at a time, not every host at once (until 2026-12-06 the maps were
 * emptied whenever they held this many, as the signing keys were: relay/sign.ts).
 */
export const DESTINATION_VERDICTS_MAX = 10_000;

let judged = 0;

/** How many verdicts this process has judged (each a miss of the cache). */
export function destinationsJudged(): number {
  return judged;
}

// (least recently asked out: relay/lru.ts, whose measure of a hit docs/relay.md gives
// for verdicts, "Where it sends")
function cached(verdicts: Map<string, string | null>, key: string, judge: () => string | null): string | null {
  return leastRecentlyUsed(verdicts, key, DESTINATION_VERDICTS_MAX, () => {
    judged++;
    return judge();
  });
}

/** Refuses a URL whose host is an address literal, before any connection. */
export function refuseLiteralHost(url: URL, allow: NetworkList): DestinationRefused | null {
  return refuseLiteral(url.hostname, allow);
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** A socket `lookup` that resolves through `resolver` (dns.ts) and keeps only the addresses allowed. */
export function guardedLookup(allow: NetworkList, resolver: Pick<ReceiverResolver, 'lookup'>) {
  return (hostname: string, options: { family?: number | string; all?: boolean }, callback: LookupCallback): void => {
    const family = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : Number(options.family ?? 0);
    resolver.lookup(hostname, family as 0 | 4 | 6).then((addresses) => {
      const permitted = addresses.filter((a) => refusal(a.address, allow) === null);
      if (permitted.length === 0) {
        const reasons = addresses.map((a) => refusal(a.address, allow)).join('; ');
        return callback(new DestinationRefused(`${hostname} resolves to ${reasons}`), []);
      }
      if (options.all) return callback(null, permitted);
      callback(null, permitted[0]!.address, permitted[0]!.family);
    }, (error: NodeJS.ErrnoException) => callback(error, []));
  };
}

/**
 * undici's connector with the guard at the socket: an address host is judged before
 * connecting, a name through guardedLookup, and every new connection's peer once it
 * is up (whatever path led there, nothing is sent to a refused peer).
 */
export function guardedConnector(allow: NetworkList, options: { timeout: number; resolver: ReceiverResolver }): buildConnector.connector {
  const connect = buildConnector({ timeout: options.timeout, lookup: guardedLookup(allow, options.resolver) } as buildConnector.BuildOptions);
  return (target, callback) => {
    const literal = refuseLiteral(target.hostname, allow);
    if (literal) {
      callback(literal, null);
      return;
    }
    connect(target, (error, socket) => {
      if (error) return callback(error, null);
      const peer = (socket as Socket).remoteAddress;
      const why = peer === undefined ? 'the peer address is unknown' : cachedRefusal(peer, allow);
      if (why) {
        socket!.destroy();
        return callback(new DestinationRefused(why), null);
      }
      callback(null, socket!);
    });
  };
}
