// The destination guard. A webhook URL is written by a customer's admin, so the relay
// must not become a way into the networks it runs in: it refuses loopback, private,
// link-local (cloud metadata lives there), shared, multicast and reserved addresses,
// unless RELAY_ALLOW_NETWORKS names them. The check runs on the addresses a name
// resolves to, at connect time (the lookup below is the socket's own), so a name
// that resolves differently on a second look cannot slip past it.
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';

export interface NetworkList {
  blocks: BlockList;
  /** as given, for messages */
  cidrs: string[];
  /** address literal → refusal (null: allowed), remembered: the answer never changes */
  verdicts: Map<string, string | null>;
}

/** Parses "127.0.0.0/8, ::1/128" (a bare address means that one address). */
export function parseNetworks(text: string): NetworkList {
  const blocks = new BlockList();
  const cidrs: string[] = [];
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const [address, prefixText, extra] = part.split('/');
    const family = isIP(address ?? '');
    const max = family === 6 ? 128 : 32;
    const prefix = prefixText === undefined ? max : Number(prefixText);
    if (!family || extra !== undefined || !Number.isInteger(prefix) || prefix < 0 || prefix > max || prefixText === '') {
      throw new Error(`${JSON.stringify(part)} is not a network in CIDR form such as 127.0.0.0/8 or ::1/128`);
    }
    blocks.addSubnet(address!, prefix, family === 6 ? 'ipv6' : 'ipv4');
    cidrs.push(part);
  }
  return { blocks, cidrs, verdicts: new Map() };
}

// [network, prefix, what it is]; checked in order, so the specific names come first
const FORBIDDEN: Array<[string, number, string]> = [
  ['169.254.169.254', 32, 'cloud metadata'],
  ['100.100.100.200', 32, 'cloud metadata'],
  ['0.0.0.0', 8, 'unspecified'],
  ['127.0.0.0', 8, 'loopback'],
  ['10.0.0.0', 8, 'private'],
  ['172.16.0.0', 12, 'private'],
  ['192.168.0.0', 16, 'private'],
  ['100.64.0.0', 10, 'shared (carrier-grade NAT)'],
  ['169.254.0.0', 16, 'link-local'],
  ['192.0.0.0', 24, 'IETF protocol assignments'],
  ['198.18.0.0', 15, 'benchmarking'],
  ['224.0.0.0', 4, 'multicast'],
  ['240.0.0.0', 4, 'reserved'],
  ['::', 128, 'unspecified'],
  ['::1', 128, 'loopback'],
  ['fd00:ec2::254', 128, 'cloud metadata'],
  ['fc00::', 7, 'private (unique local)'],
  ['fe80::', 10, 'link-local'],
  ['ff00::', 8, 'multicast'],
  ['64:ff9b::', 96, 'NAT64'],
  ['100::', 64, 'discard'],
];
const forbidden = FORBIDDEN.map(([network, prefix, kind]) => {
  const list = new BlockList();
  list.addSubnet(network, prefix, isIP(network) === 6 ? 'ipv6' : 'ipv4');
  return { list, kind, family: isIP(network) === 6 ? ('ipv6' as const) : ('ipv4' as const) };
});

/** An IPv4 address written as IPv6 (::ffff:10.0.0.1) is judged as the IPv4 address. */
function normalise(address: string): { address: string; family: 'ipv4' | 'ipv6' } {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return { address: mapped[1]!, family: 'ipv4' };
  return { address, family: isIP(address) === 6 ? 'ipv6' : 'ipv4' };
}

/** What kind of special address this is, or null for an ordinary public address. */
export function specialKind(address: string): string | null {
  const { address: plain, family } = normalise(address);
  for (const entry of forbidden) {
    if (entry.family === family && entry.list.check(plain, family)) return entry.kind;
  }
  return null;
}

/** Null when the relay may send to this address, else why not. */
export function refusal(address: string, allow: NetworkList): string | null {
  const kind = specialKind(address);
  if (kind === null) return null;
  const { address: plain, family } = normalise(address);
  if (allow.blocks.check(plain, family) || allow.blocks.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4')) {
    return null;
  }
  const allowed = allow.cidrs.length
    ? `RELAY_ALLOW_NETWORKS (${allow.cidrs.join(', ')}) does not include it`
    : 'RELAY_ALLOW_NETWORKS is empty';
  return `${address} (${kind}) is not a public address and ${allowed}`;
}

export class DestinationRefused extends Error {
  override name = 'DestinationRefused';
  readonly code = 'ERR_DESTINATION_REFUSED';
}

/** Refuses a URL whose host is an address literal (sockets skip the lookup for those). */
export function refuseLiteralHost(url: URL, allow: NetworkList): DestinationRefused | null {
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (!isIP(host)) return null;
  let why = allow.verdicts.get(host);
  if (why === undefined) {
    why = refusal(host, allow);
    if (allow.verdicts.size >= 10_000) allow.verdicts.clear();
    allow.verdicts.set(host, why);
  }
  return why ? new DestinationRefused(`destination refused: ${why}`) : null;
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** A socket `lookup` that resolves as usual and keeps only the addresses allowed. */
export function guardedLookup(allow: NetworkList) {
  return (hostname: string, options: { family?: number | string; all?: boolean }, callback: LookupCallback): void => {
    const family = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : Number(options.family ?? 0);
    dnsLookup(hostname, { all: true, family: family as 0 | 4 | 6 }, (error, addresses) => {
      if (error) return callback(error, []);
      const allowed = addresses.filter((a) => refusal(a.address, allow) === null);
      if (allowed.length === 0) {
        const reasons = addresses.map((a) => refusal(a.address, allow)).join('; ');
        return callback(new DestinationRefused(`destination refused: ${hostname} resolves to ${reasons}`), []);
      }
      if (options.all) return callback(null, allowed);
      callback(null, allowed[0]!.address, allowed[0]!.family);
    });
  };
}
